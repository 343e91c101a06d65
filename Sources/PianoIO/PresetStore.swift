import DDSPPiano
import Foundation

/// The daemon's presets by name (`ddsp-pianod --config 2009`): `NAME.toml` in the
/// installation's `share/ddsp-piano/presets` beside the executable's `bin/` (`make install`, the
/// Debian package), a `presets/` folder above the executable (a source checkout), then
/// `/usr/local/share/ddsp-piano/presets` and `/usr/share/ddsp-piano/presets`.
/// Anything that names a file (an existing path, a `/`, a `.toml` suffix) is that file.
public struct PresetStore: Sendable {
    public static let defaultSystemDirectories = [
        URL(fileURLWithPath: "/usr/local/share/ddsp-piano/presets"),
        URL(fileURLWithPath: "/usr/share/ddsp-piano/presets"),
    ]
    public var executableURL: URL?
    public var systemDirectories: [URL]

    public init(executableURL: URL? = WeightStore.currentExecutableURL(),
                systemDirectories: [URL] = PresetStore.defaultSystemDirectories) {
        self.executableURL = executableURL
        self.systemDirectories = systemDirectories
    }

    /// Preset folders, best first (they may not exist).
    public var directories: [URL] {
        var dirs: [URL] = []
        if let exe = executableURL {
            let bin = exe.deletingLastPathComponent().standardizedFileURL
            dirs.append(bin.deletingLastPathComponent().appendingPathComponent("share/ddsp-piano/presets", isDirectory: true))
            var dir = bin
            while true {
                dirs.append(dir.appendingPathComponent("presets", isDirectory: true))
                let parent = dir.deletingLastPathComponent().standardizedFileURL
                if parent.path == dir.path { break }
                dir = parent
            }
        }
        return dirs + systemDirectories
    }

    /// The names of the presets found (each once, from the first folder that has it), sorted.
    public func names() -> [String] {
        var seen = Set<String>()
        for dir in directories {
            let files = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
            for f in files where f.hasSuffix(".toml") && !f.hasPrefix(".") { seen.insert(String(f.dropLast(5))) }
        }
        return seen.sorted()
    }

    /// True when `text` names a file rather than a preset.
    public static func isPath(_ text: String) -> Bool {
        text.contains("/") || text.hasSuffix(".toml") || FileManager.default.fileExists(atPath: text)
    }

    /// The file for `--config TEXT`: the path itself, or the preset of that name.
    public func resolve(_ text: String) throws -> String {
        if Self.isPath(text) { return text }
        for dir in directories {
            let file = dir.appendingPathComponent("\(text).toml")
            if FileManager.default.fileExists(atPath: file.path) { return file.path }
        }
        let known = names()
        throw PresetStoreError(name: text, problem: known.isEmpty
            ? "no such file, and no presets are installed"
            : "no such file or preset (presets: \(known.joined(separator: ", ")))")
    }
}

/// `--config NAME` named neither a file nor a preset.
public struct PresetStoreError: CodedError, Equatable, Sendable {
    public var name: String
    public var problem: String
    public var code: ErrorCode { .notFound }
    public var description: String { "\(name): \(problem)" }
}
