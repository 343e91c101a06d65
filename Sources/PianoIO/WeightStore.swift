import DDSPPiano
import Foundation
import PianoFormats
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A failure tied to one file (or URL), printed as "FILE: problem".
public struct WeightStoreError: CodedError, Equatable, Sendable {
    public var file: String
    public var problem: String
    public var code: ErrorCode
    public init(file: String, problem: String, code: ErrorCode = .badWeights) {
        self.file = file
        self.problem = problem
        self.code = code
    }
    public var description: String { "\(file): \(problem)" }
}

/// Where weight files live, and how they are read and written.
///
/// Search order for the weights a command uses (`locate`, `loadFile`):
/// 1. an explicit path (`--weights`, the daemon's `weights =`);
/// 2. `$DDSP_PIANO_WEIGHTS`;
/// 3. the installed v2 model, `${XDG_DATA_HOME:-~/.local/share}/ddsp-piano/weights/v2.safetensors`
///    (written by `weights fetch v2` or `weights import` of a v2 checkpoint): upstream's default;
/// 4. the installed dafx22 model, `.../ddsp-piano/weights/dafx22.safetensors`;
/// 5. bundled weights: the installation's `share/ddsp-piano/weights` beside the executable's
///    `bin/` (`make install`, any PREFIX), a `weights/` folder holding `*.safetensors` in a
///    directory above the executable (a source checkout), then `/usr/local/share/ddsp-piano/weights` and
///    `/usr/share/ddsp-piano/weights` (within a folder `v2.safetensors`, then
///    `dafx22.safetensors`, then by name).
///
/// An explicit path or `$DDSP_PIANO_WEIGHTS` that does not exist is an error, never a reason
/// to fall back to other weights. `loadFile`/`readFile` read either architecture; the older
/// `load`/`read` return dafx22 `PianoWeights` only, and their search skips v2 files.
public struct WeightStore: Sendable {
    public static let environmentVariable = "DDSP_PIANO_WEIGHTS"
    /// The installed dafx22 file (`installedURL`), kept for the dafx22-only API.
    public static let installedFileName = "dafx22.safetensors"
    /// The installed v2 file.
    public static let installedV2FileName = "v2.safetensors"
    /// Installed files in search order: v2 (upstream's default model), then dafx22.
    public static let installedFileNames = [installedV2FileName, installedFileName]
    public static let defaultSystemDirectories = [
        URL(fileURLWithPath: "/usr/local/share/ddsp-piano/weights"),
        URL(fileURLWithPath: "/usr/share/ddsp-piano/weights"),
    ]

    public enum Origin: String, Sendable {
        case explicit = "given path"
        case environment = "$DDSP_PIANO_WEIGHTS"
        case installed = "installed weights"
        case bundled = "bundled weights"
    }

    public struct Location: Sendable, Equatable {
        public var url: URL
        public var origin: Origin
        public init(url: URL, origin: Origin) {
            self.url = url
            self.origin = origin
        }
    }

    public var environment: [String: String]
    public var executableURL: URL?
    public var systemDirectories: [URL]

    public init(environment: [String: String] = ProcessInfo.processInfo.environment,
                executableURL: URL? = WeightStore.currentExecutableURL(),
                systemDirectories: [URL] = WeightStore.defaultSystemDirectories) {
        self.environment = environment
        self.executableURL = executableURL
        self.systemDirectories = systemDirectories
    }

    /// The running executable, symlinks resolved (so an installed symlink finds its package).
    public static func currentExecutableURL() -> URL? {
        if let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            return URL(fileURLWithPath: target)
        }
        guard let path = Bundle.main.executablePath else { return nil }
        return URL(fileURLWithPath: path).resolvingSymlinksInPath()
    }

    /// `${XDG_DATA_HOME:-~/.local/share}/ddsp-piano/weights`.
    public var dataDirectory: URL {
        // The XDG spec says a relative XDG_DATA_HOME is invalid and must be ignored.
        let base: URL
        if let xdg = environment["XDG_DATA_HOME"], xdg.hasPrefix("/") {
            base = URL(fileURLWithPath: xdg, isDirectory: true)
        } else {
            let home = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
            base = URL(fileURLWithPath: home, isDirectory: true).appendingPathComponent(".local/share", isDirectory: true)
        }
        return base.appendingPathComponent("ddsp-piano/weights", isDirectory: true)
    }

    /// Where `weights fetch dafx22` installs (the dafx22 file; see `installedURL(architecture:)`).
    public var installedURL: URL { dataDirectory.appendingPathComponent(Self.installedFileName) }

    /// Where `weights fetch`/`weights import` install weights of an architecture:
    /// `v2.safetensors` or `dafx22.safetensors` in `dataDirectory`.
    public func installedURL(architecture: String) -> URL {
        dataDirectory.appendingPathComponent(architecture == V2Weights.architecture ? Self.installedV2FileName : Self.installedFileName)
    }

    /// The installed files in search order (v2, then dafx22), whether they exist or not.
    public var installedURLs: [URL] { Self.installedFileNames.map { dataDirectory.appendingPathComponent($0) } }

    static func bundledRank(_ name: String) -> Int {
        Self.installedFileNames.firstIndex(of: name) ?? Self.installedFileNames.count
    }

    /// Bundled weight files, best first: the installation's `share/ddsp-piano/weights` beside
    /// the executable's `bin/`, each `weights/` folder above the executable, then the system folders; within a folder `v2.safetensors`, then `dafx22.safetensors`, then by name.
    public func bundledFiles() -> [URL] {
        var dirs: [URL] = []
        if let exe = executableURL {
            // An installation (`make install`, the Debian package): PREFIX/bin's PREFIX/share.
            let bin = exe.deletingLastPathComponent().standardizedFileURL
            dirs.append(bin.deletingLastPathComponent().appendingPathComponent("share/ddsp-piano/weights", isDirectory: true))
            var dir = bin
            while true {
                dirs.append(dir.appendingPathComponent("weights", isDirectory: true))
                let parent = dir.deletingLastPathComponent().standardizedFileURL
                if parent.path == dir.path { break }
                dir = parent
            }
        }
        dirs += systemDirectories
        var files: [URL] = []
        for dir in dirs {
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir.path) else { continue }
            let weights = names.filter { $0.hasSuffix(".safetensors") && !$0.hasPrefix(".") }
                .sorted { (Self.bundledRank($0), $0) < (Self.bundledRank($1), $1) }
            files += weights.map { dir.appendingPathComponent($0) }
        }
        return files
    }

    /// The weight file to use, in the search order above (either architecture). An explicit
    /// path or `$DDSP_PIANO_WEIGHTS` that does not exist is an error rather than a reason to
    /// fall back silently to other weights.
    public func locate(explicit: String? = nil) throws -> Location {
        try locate(explicit: explicit, installed: installedURLs, bundledFilter: { _ in true })
    }

    func locate(explicit: String?, installed: [URL], bundledFilter: (URL) -> Bool) throws -> Location {
        if let path = explicit, !path.isEmpty {
            try Self.checkReadableFile(path)
            return Location(url: URL(fileURLWithPath: path), origin: .explicit)
        }
        if let path = environment[Self.environmentVariable], !path.isEmpty {
            do { try Self.checkReadableFile(path) } catch let e as WeightStoreError {
                throw WeightStoreError(file: e.file, problem: e.problem + " (set by $\(Self.environmentVariable))", code: e.code)
            }
            return Location(url: URL(fileURLWithPath: path), origin: .environment)
        }
        for url in installed where FileManager.default.fileExists(atPath: url.path) {
            return Location(url: url, origin: .installed)
        }
        if let bundled = bundledFiles().first(where: bundledFilter) {
            return Location(url: bundled, origin: .bundled)
        }
        throw WeightStoreError(file: dataDirectory.path, problem: "no weights installed and none bundled; run 'ddsp-piano weights fetch v2' (or 'ddsp-piano weights fetch dafx22'), or pass a weight file (or set $\(Self.environmentVariable))", code: .notFound)
    }

    /// Locates and loads the weights a command should use, of either architecture.
    /// Errors are `WeightStoreError`s, "FILE: problem".
    public func loadFile(explicit: String? = nil) throws -> (url: URL, file: WeightFile) {
        let location = try locate(explicit: explicit)
        return (location.url, try Self.readFile(location.url))
    }

    /// `loadFile`, then the immutable model built from it (v2: every piano's reverb IR);
    /// a file whose values give no usable model fails as "FILE: problem".
    public func loadModel(explicit: String? = nil) throws -> (url: URL, model: PianoModel) {
        let (url, file) = try loadFile(explicit: explicit)
        return (url, try Self.model(file, from: url))
    }

    /// `pianos`: see `PianoModel.init` (nil: every piano).
    public static func model(_ file: WeightFile, from url: URL, pianos: Set<Int>? = nil) throws -> PianoModel {
        do { return try PianoModel(file, parallel: { n, body in DispatchQueue.concurrentPerform(iterations: n, execute: body) }, pianos: pianos) } catch {
            throw WeightStoreError(file: url.path, problem: "\(error)", code: error.errorCode)
        }
    }

    /// Locates and loads dafx22 weights (the API from before v2): the same order without the
    /// installed or bundled `v2.safetensors`; an explicit or `$DDSP_PIANO_WEIGHTS` file of
    /// another architecture is refused in one line.
    public func load(explicit: String? = nil) throws -> (url: URL, weights: PianoWeights) {
        let location = try locate(explicit: explicit, installed: [installedURL],
                                  bundledFilter: { $0.lastPathComponent != Self.installedV2FileName })
        return (location.url, try Self.load(location.url))
    }

    // MARK: - Reading

    /// Refuses files no weight file can be (a 10 GB file passed by mistake).
    public static let maxFileBytes = 1 << 30

    static func checkReadableFile(_ path: String) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw WeightStoreError(file: path, problem: "no such file", code: .notFound)
        }
        guard !isDirectory.boolValue else { throw WeightStoreError(file: path, problem: "is a directory, not a weight file", code: .unreadable) }
        guard FileManager.default.isReadableFile(atPath: path) else { throw WeightStoreError(file: path, problem: "permission denied", code: .unreadable) }
    }

    /// The bytes of a file, with one-line errors.
    public static func readBytes(_ url: URL, limit: Int = maxFileBytes) throws -> [UInt8] {
        try checkReadableFile(url.path)
        if let size = (try? FileManager.default.attributesOfItem(atPath: url.path))?[.size] as? NSNumber, size.int64Value > Int64(limit) {
            throw WeightStoreError(file: url.path, problem: "file is too large (\(size.int64Value) bytes)", code: .unreadable)
        }
        do {
            return [UInt8](try Data(contentsOf: url))
        } catch {
            throw WeightStoreError(file: url.path, problem: "cannot read: \((error as NSError).localizedDescription)", code: .unreadable)
        }
    }

    /// The safetensors container of a weight file, with one-line errors.
    static func readContainer(_ url: URL) throws -> Safetensors {
        let bytes = try readBytes(url)
        do {
            return try Safetensors(bytes: bytes)
        } catch let e as SafetensorsError {
            throw WeightStoreError(file: url.path, problem: "not a valid safetensors weight file: \(e.description)")
        }
    }

    /// Reads a weight file of either architecture (dafx22 or v2, told by its metadata).
    /// Errors are `WeightStoreError`s, "FILE: problem".
    public static func readFile(_ url: URL) throws -> WeightFile { try readFileAndMetadata(url).file }

    /// `readFile`, with the file's metadata as stored (format version, provenance...).
    public static func readFileAndMetadata(_ url: URL) throws -> (metadata: [String: String], file: WeightFile) {
        let file = try readContainer(url)
        do {
            return (file.metadata, try WeightFile(safetensors: file))
        } catch let e as WeightsError {
            throw WeightStoreError(file: url.path, problem: e.description)
        }
    }

    /// Reads a dafx22 weight file: its metadata (format, architecture, provenance) and the
    /// weights. A v2 file is refused in one line (read it with `readFile`).
    public static func read(_ url: URL) throws -> (metadata: [String: String], weights: PianoWeights) {
        let file = try readContainer(url)
        if let architecture = file.metadata["architecture"], architecture != "dafx22" {
            throw WeightStoreError(file: url.path, problem: "is a \(architecture) weight file; this needs dafx22 weights")
        }
        do {
            return (file.metadata, try PianoWeights(safetensors: file))
        } catch let e as WeightsError {
            throw WeightStoreError(file: url.path, problem: e.description)
        }
    }

    public static func load(_ url: URL) throws -> PianoWeights { try read(url).weights }

    // MARK: - Writing

    /// Serialises, re-reads the result as a check, and writes it atomically.
    public static func install(_ weights: PianoWeights, at url: URL) throws {
        let bytes = weights.safetensors().serialized()
        do {
            _ = try PianoWeights(safetensors: try Safetensors(bytes: bytes))
        } catch {
            throw WeightStoreError(file: url.path, problem: "internal error: the serialised weights do not read back (\(error))", code: .internal)
        }
        try writeAtomically(bytes, to: url)
    }

    /// Installs a weight file of either architecture: serialises, re-reads, writes atomically.
    public static func install(_ file: WeightFile, at url: URL) throws {
        let bytes = file.safetensors().serialized()
        do {
            _ = try WeightFile(safetensors: try Safetensors(bytes: bytes))
        } catch {
            throw WeightStoreError(file: url.path, problem: "internal error: the serialised weights do not read back (\(error))", code: .internal)
        }
        try writeAtomically(bytes, to: url)
    }

    /// Writes to a temporary file in the destination's directory, fsyncs it and renames it
    /// over the destination, so readers see the old file or the whole new one, and a failure
    /// leaves no partial file and never damages an existing one.
    static func errnoText() -> String { String(cString: strerror(errno)) }

    public static func writeAtomically(_ bytes: [UInt8], to url: URL) throws {
        let path = url.path
        let dir = url.deletingLastPathComponent()
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
            throw WeightStoreError(file: path, problem: "is a directory", code: .unwritable)
        }
        do {
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        } catch {
            throw WeightStoreError(file: path, problem: "cannot create directory \(dir.path): \((error as NSError).localizedDescription)", code: .unwritable)
        }
        let tmp = dir.appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw WeightStoreError(file: path, problem: "cannot create a file in \(dir.path): \(errnoText())", code: .unwritable)
        }
        var ok = false
        defer {
            if !ok { unlink(tmp) }
        }
        var written = 0
        var failure: String?
        bytes.withUnsafeBytes { raw in
            while written < raw.count {
                let n = write(fd, raw.baseAddress! + written, raw.count - written)
                if n < 0 {
                    if errno == EINTR { continue }
                    failure = "write failed: \(errnoText())"
                    return
                }
                written += n
            }
        }
        if failure == nil, fsync(fd) != 0 { failure = "fsync failed: \(errnoText())" }
        if close(fd) != 0, failure == nil { failure = "close failed: \(errnoText())" }
        if let failure { throw WeightStoreError(file: path, problem: failure, code: .unwritable) }
        guard rename(tmp, path) == 0 else {
            throw WeightStoreError(file: path, problem: "cannot replace the file: \(errnoText())", code: .unwritable)
        }
        ok = true
        // Persist the rename itself; best effort (some filesystems refuse fsync on directories).
        let dfd = open(dir.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 {
            _ = fsync(dfd)
            close(dfd)
        }
    }
}
