import Foundation
import PianoDaemon
import PianoTestKit
import XCTest

final class ConfigTests: XCTestCase {
    func testParsesTheSubsetAndAppliesOverDefaults() throws {
        let text = """
        # a comment
        weights = "/w/x.safetensors"   # trailing comment
        piano = 2011
        gain_db = -6.5
        velocity_curve = "soft"
        channels = [1, 2]
        program_map = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
        connect_audio = 'system'
        no_wait = true
        """
        let s = try DaemonSettings().applying(try MiniTOML.parse(text, file: "c.toml"), file: "c.toml")
        XCTAssertEqual(s.weights, "/w/x.safetensors")
        XCTAssertEqual(s.piano, "2011")
        XCTAssertEqual(s.gainDB, -6.5)
        XCTAssertEqual(s.velocityCurve, "soft")
        XCTAssertEqual(s.channels, [1, 2])
        XCTAssertEqual(s.programMap?.count, 10)
        XCTAssertTrue(s.noWait)
    }

    func testBrokenConfigsSayWhereInOneLine() {
        let cases: [(String, String)] = [
            ("piano = ", "c.toml:1:"),
            ("gain_db = \"loud\"", "gain_db"),
            ("x = 1", "unknown setting 'x'"),
            ("channels = [0]", "channels"),
            ("name = \"unterminated", "c.toml:1: unterminated"),
            ("[table\n", "c.toml:1: bad table header"),
            ("a = 1\na = 2", "c.toml:2:"),
            ("connect_midi = \"([\"", "regular expression"),
        ]
        for (text, expected) in cases {
            do {
                _ = try DaemonSettings().applying(try MiniTOML.parse(text, file: "c.toml"), file: "c.toml")
                XCTFail("accepted: \(text)")
            } catch {
                let line = "\(error)"
                XCTAssertTrue(line.contains(expected), "\(text) -> \(line)")
                XCTAssertFalse(line.contains("\n"))
            }
        }
    }

    func testPresetsAreValid() throws {
        let dir = TestKit.packageRoot.appendingPathComponent("presets")
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".toml") }
        XCTAssertEqual(names.count, 11, "one per piano year plus default: \(names)")
        for n in names {
            XCTAssertNoThrow(try DaemonSettings().applying(file: dir.appendingPathComponent(n).path), n)
        }
    }
}
