import DDSPPiano
import Foundation
import PianoDaemon
import PianoIO
import PianoTestKit
import XCTest

/// Issue 14, items 1–2 on the daemon: stereo width, A4 and transposition as flags, config keys
/// and control commands (`--audio null`); bad values are one line and change nothing.
final class LiveSettingsTests: XCTestCase {
    func testWidthTuneTransposeFlagsKeysAndControl() throws {
        let dir = try DaemonSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let weights = try DaemonSupport.syntheticWeights(in: dir)
        let d = try DaemonProcess(arguments: ["--audio", "null", "--sample-rate", "16000", "--weights", weights.path, "--a4", "442"], dir: dir)
        XCTAssertTrue(d.waitReady(), d.output)
        var s = try d.status()
        print("status: width \(s["width"] ?? "-"), a4 hz \(s["a4 hz"] ?? "-"), transpose \(s["transpose"] ?? "-")")
        XCTAssertEqual(s["width"], "0.5", "stereo by default, at a moderate width")
        XCTAssertEqual(s["a4 hz"], "442")
        XCTAssertEqual(s["transpose"], "0")
        XCTAssertEqual(try d.ctl("tune 415.5"), ["a4 415.5 Hz"])
        XCTAssertEqual(try d.ctl("transpose -12"), ["transpose -12"])
        XCTAssertEqual(try d.ctl("transpose +3"), ["transpose 3"])
        XCTAssertEqual(try d.ctl("width 0"), ["width 0"])
        s = try d.status()
        XCTAssertEqual(s["a4 hz"], "415.5")
        XCTAssertEqual(s["transpose"], "3")
        XCTAssertEqual(s["width"], "0")
        for (bad, expected) in [("tune 500", "tune takes hertz between 415 and 466"), ("tune high", "tune takes hertz"),
                                ("transpose 25", "transpose takes semitones between -24 and 24"), ("transpose 1.5", "transpose takes semitones"),
                                ("width 2", "width takes a number between 0 and 1"), ("width", "wrong arguments for 'width'")] {
            XCTAssertThrowsError(try d.ctl(bad)) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(bad): \(error)")
                XCTAssertFalse("\(error)".contains("\n"))
            }
        }
        s = try d.status()
        XCTAssertEqual(s["a4 hz"], "415.5", "a refused value changes nothing")
        XCTAssertEqual(d.stop(), 0, d.output)

        // The configuration file's keys, and their one-line errors.
        let good = try DaemonSettings().applying(try MiniTOML.parse("a4_hz = 441.5\ntranspose = -2\nwidth = 0.8\n", file: "t.toml"), file: "t.toml")
        XCTAssertEqual(good.a4Hz, 441.5)
        XCTAssertEqual(good.transpose, -2)
        XCTAssertEqual(good.width, 0.8)
        for (text, expected) in [("a4_hz = 400", "t.toml: 'a4_hz' must be hertz between 415 and 466"),
                                 ("transpose = 30", "t.toml: 'transpose' must be semitones between -24 and 24"),
                                 ("width = -1", "t.toml: 'width' must be a number between 0 and 1 (0: mono)"),
                                 ("width = \"wide\"", "t.toml: 'width' must be a number")] {
            XCTAssertThrowsError(try DaemonSettings().applying(try MiniTOML.parse(text, file: "t.toml"), file: "t.toml")) { error in
                XCTAssertEqual("\(error)", expected)
            }
        }
        // The command line refuses in one line, before starting.
        let bad = try DaemonSupport.run(try TestKit.executable("ddsp-pianod"), ["--audio", "null", "--transpose", "99"])
        print("ddsp-pianod --transpose 99: status \(bad.status): \(bad.output.trimmingCharacters(in: .newlines))")
        XCTAssertEqual(bad.status, 2)
        XCTAssertTrue(bad.output.contains("--transpose takes semitones between -24 and 24, not '99'"), bad.output)
    }
}
