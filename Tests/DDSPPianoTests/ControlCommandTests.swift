import XCTest
import Foundation
import DDSPPiano
import PianoIO
import PianoTestKit

/// The control commands are defined once (`ControlCommand`): the daemon parses with it and
/// `ddsp-piano ctl --help` lists it.
final class ControlCommandTests: XCTestCase {
    func testParse() {
        XCTAssertEqual(try ControlCommand.parse("status").get(), .status)
        XCTAssertEqual(try ControlCommand.parse("  list ").get(), .list)
        XCTAssertEqual(try ControlCommand.parse("piano\t2009").get(), .piano("2009"))
        XCTAssertEqual(try ControlCommand.parse("gain -6.5").get(), .gain(-6.5))
        XCTAssertEqual(try ControlCommand.parse("panic").get(), .panic)
        XCTAssertEqual(try ControlCommand.parse("reload").get(), .reload)
        for (line, expected) in [("", "empty command (known: status, piano, gain, panic, reload, list)"),
                                 ("sing", "unknown command 'sing' (known: status, piano, gain, panic, reload, list)"),
                                 ("piano", "wrong arguments for 'piano' (usage: status | piano N|YEAR | gain DB | panic | reload | list)"),
                                 ("status now", "wrong arguments for 'status'"),
                                 ("gain 30", "gain takes "), ("gain loud", "not 'loud'")] {
            switch ControlCommand.parse(line) {
            case .success(let c): XCTFail("'\(line)' parsed as \(c)")
            case .failure(let e):
                print("'\(line)' -> \(e)")
                XCTAssertTrue(e.description.hasPrefix(expected) || e.description.contains(expected), e.description)
                XCTAssertEqual(e.code, .usage)
            }
        }
    }

    func testHelpListsEveryCommand() throws {
        let help = try Self.ctlHelp()
        for c in ControlCommand.commands {
            XCTAssertTrue(help.contains("  " + c.name), "ctl --help lacks \(c.name)")
        }
    }

    static func ctlHelp() throws -> String {
        let p = Process()
        p.executableURL = try TestKit.executable("ddsp-piano")
        p.arguments = ["ctl", "--help"]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }
}
