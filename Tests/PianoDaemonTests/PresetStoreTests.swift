import Foundation
import PianoIO
import PianoTestKit
import XCTest

/// `--config NAME`: presets found beside an installation's bin/, in a checkout, or as paths.
final class PresetStoreTests: XCTestCase {
    func testNamesResolveInTheInstallationThenAsPaths() throws {
        let root = try DaemonSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        let fm = FileManager.default
        let presets = root.appendingPathComponent("usr/share/ddsp-piano/presets")
        try fm.createDirectory(at: presets, withIntermediateDirectories: true)
        try fm.createDirectory(at: root.appendingPathComponent("usr/bin"), withIntermediateDirectories: true)
        for name in ["2009", "default"] {
            try "piano = \"\(name)\"\n".write(to: presets.appendingPathComponent("\(name).toml"), atomically: true, encoding: .utf8)
        }
        let store = PresetStore(executableURL: root.appendingPathComponent("usr/bin/ddsp-pianod"), systemDirectories: [])
        XCTAssertEqual(try store.resolve("2009"), presets.appendingPathComponent("2009.toml").path)
        XCTAssertEqual(store.names(), ["2009", "default"])
        // Paths are paths, found or not (the config reader reports a missing file).
        XCTAssertEqual(try store.resolve("my/own.toml"), "my/own.toml")
        XCTAssertEqual(try store.resolve("own.toml"), "own.toml")
        XCTAssertThrowsError(try store.resolve("1999")) { error in
            let text = "\(error)"
            print("unknown preset: \(text)")
            XCTAssertEqual(text, "1999: no such file or preset (presets: 2009, default)")
            XCTAssertEqual(error.errorCode, .notFound)
        }
        let empty = PresetStore(executableURL: nil, systemDirectories: [])
        XCTAssertThrowsError(try empty.resolve("2009")) { XCTAssertEqual("\($0)", "2009: no such file, and no presets are installed") }
    }

    func testTheCheckoutsPresetsAreFoundFromTheBuiltDaemon() throws {
        let daemon = try TestKit.executable("ddsp-pianod")
        guard daemon.standardizedFileURL.path.hasPrefix(TestKit.packageRoot.standardizedFileURL.path + "/") else {
            print("skipped: the daemon was built outside the checkout (\(daemon.path)), so no presets/ above it")
            throw XCTSkip("built elsewhere")
        }
        let store = PresetStore(executableURL: daemon, systemDirectories: [])
        let found = try store.resolve("2018")
        print("2018 -> \(found)")
        XCTAssertEqual(URL(fileURLWithPath: found).standardizedFileURL.path,
                       TestKit.packageRoot.appendingPathComponent("presets/2018.toml").standardizedFileURL.path)
        XCTAssertTrue(Set(store.names()).isSuperset(of: ["2004", "2018", "default"]), "\(store.names())")
    }
}
