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
        XCTAssertEqual(try ControlCommand.parse("midi 90 3C 64").get(), .midi(status: 0x90, data1: 60, data2: 100))
        XCTAssertEqual(try ControlCommand.parse("midi 0xb0 40 7f").get(), .midi(status: 0xB0, data1: 64, data2: 127))
        XCTAssertEqual(try ControlCommand.parse("midi C1 5").get(), .midi(status: 0xC1, data1: 5, data2: 0))
        XCTAssertEqual(try ControlCommand.parse("takes").get(), .takes)
        XCTAssertEqual(try ControlCommand.parse("record start /tmp/a b.wav").get(), .recordStart("/tmp/a b.wav"))
        XCTAssertEqual(try ControlCommand.parse("record stop").get(), .recordStop)
        for (line, expected) in [("", "empty command (known: status, piano, gain, tune, transpose, width, panic, reload, list, midi, takes, record)"),
                                 ("sing", "unknown command 'sing' (known: status, piano, gain, tune, transpose, width, panic, reload, list, midi, takes, record)"),
                                 ("piano", "wrong arguments for 'piano' (usage: status | piano N|YEAR | gain DB | tune HZ | transpose N | width W | panic | reload | list | midi HEX HEX [HEX] | takes | record start FILE.wav|stop)"),
                                 ("midi 90", "wrong arguments for 'midi'"), ("midi 90 3C 64 00", "wrong arguments for 'midi'"),
                                 ("midi 90 3C", "midi status 90 takes 2 data bytes"), ("midi C0 01 02", "midi status C0 takes 1 data byte"),
                                 ("midi F0 01 02", "status 80–EF"), ("midi 90 80 10", "data bytes are 00–7F"), ("midi 90 3G 10", "not '3G'"),
                                 ("midi 90 123 10", "not '123'"),
                                 ("status now", "wrong arguments for 'status'"),
                                 ("record", "wrong arguments for 'record'"), ("record start", "record takes 'start FILE.wav' or 'stop'"),
                                 ("record stop now", "record takes 'start FILE.wav' or 'stop'"), ("takes all", "wrong arguments for 'takes'"),
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
