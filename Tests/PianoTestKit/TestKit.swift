import Foundation
import XCTest

/// What every test target looks up: the checkout, ../shared beside it (reference fixtures,
/// MIDI; $DDSP_PIANO_SHARED overrides) and the executables built beside the tests.
public enum TestKit {
    /// The package root (this file is Tests/PianoTestKit/TestKit.swift).
    public static let packageRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// ../shared beside the checkout, or $DDSP_PIANO_SHARED.
    public static var shared: URL {
        if let env = ProcessInfo.processInfo.environment["DDSP_PIANO_SHARED"], !env.isEmpty {
            return URL(fileURLWithPath: env)
        }
        return packageRoot.deletingLastPathComponent().appendingPathComponent("shared")
    }

    /// ../shared/reference: upstream's outputs the parity tests compare with.
    public static var reference: URL { shared.appendingPathComponent("reference") }

    /// The reference folder, or a printed skip line (and XCTSkip) when it is absent.
    public static func requireReference(file: StaticString = #filePath, line: UInt = #line) throws -> URL {
        let r = reference
        guard FileManager.default.fileExists(atPath: r.appendingPathComponent("dafx22").path) else {
            print("skipped: no reference fixtures (\(r.path))")
            throw XCTSkip("skipped: no reference fixtures at \(r.path)", file: file, line: line)
        }
        return r
    }

    /// Where the build puts the products (`ddsp-piano`, `ddsp-pianod`, `ddsp-piano-train`,
    /// `jack-test-client`): beside the test bundle, whatever the configuration or --scratch-path.
    public static var productDirectories: [URL] {
        var dirs: [URL] = []
        if let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            dirs.append(URL(fileURLWithPath: exe).deletingLastPathComponent())
        }
        dirs += [Bundle.main.bundleURL, Bundle.main.bundleURL.deletingLastPathComponent()]
        dirs += Bundle.allBundles.filter { $0.bundlePath.hasSuffix(".xctest") }.map { $0.bundleURL.deletingLastPathComponent() }
        return dirs
    }

    /// The built executable `name`, or nil when it is not beside the tests.
    public static func findExecutable(_ name: String) -> URL? {
        for dir in productDirectories {
            let candidate = dir.appendingPathComponent(name)
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: candidate.path, isDirectory: &isDirectory), !isDirectory.boolValue,
               FileManager.default.isExecutableFile(atPath: candidate.path) {
                return candidate
            }
        }
        return nil
    }

    /// The built executable `name`, or a printed skip line (and XCTSkip) when it is not built.
    public static func executable(_ name: String) throws -> URL {
        if let url = findExecutable(name) { return url }
        print("skipped: \(name) not built beside the tests (looked in \(productDirectories.map(\.path)))")
        throw XCTSkip("\(name) not built")
    }
}
