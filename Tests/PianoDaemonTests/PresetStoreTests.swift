import Foundation
import PianoDaemon
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

    /// `ddsp-pianod --config NAME`: the name resolves (from this checkout's presets/ when the
    /// tests run in it); an unknown one is a one-line usage error with status 2.
    func testTheDaemonTakesAPresetByName() throws {
        guard case .exit(let status, let message) = DaemonCommand.parsed(["--config", "1999"]) else {
            return XCTFail("an unknown preset must be refused")
        }
        print("--config 1999: \(status) \(message)")
        XCTAssertEqual(status, 2)
        XCTAssertTrue(message.hasPrefix("ddsp-pianod: --config 1999: no such file or preset"), message)
        XCTAssertFalse(message.contains("\n"))
        if case .exit(let status, let message) = DaemonCommand.parsed(["--version"]) {
            XCTAssertEqual(status, 0)
            XCTAssertEqual(message.trimmingCharacters(in: .whitespacesAndNewlines), PianoVersion.current)
        } else { XCTFail("--version") }
        guard !PresetStore().names().isEmpty else {
            print("skipped: no presets above this test binary (built outside the checkout)")
            throw XCTSkip("no presets")
        }
        guard case .run(let c) = DaemonCommand.parsed(["--config", "2009"]) else { return XCTFail("--config 2009 refused") }
        let path = try XCTUnwrap(c.configPath)
        print("--config 2009 -> \(path)")
        XCTAssertTrue(path.hasSuffix("presets/2009.toml"), path)
        XCTAssertTrue(FileManager.default.fileExists(atPath: path))
    }
}
