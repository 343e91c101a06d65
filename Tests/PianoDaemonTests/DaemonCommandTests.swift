import Foundation
import PianoDaemon
import PianoIO
import XCTest

/// ddsp-pianod's command line (ArgumentParser, in process): every flag, a flag over the config
/// file, usage errors as one line with status 2, and the rules it shares with the config file.
final class DaemonCommandTests: XCTestCase {
    func command(_ arguments: [String], file: StaticString = #filePath, line: UInt = #line) -> DaemonCommand? {
        switch DaemonCommand.parsed(arguments) {
        case .run(let c): return c
        case .exit(let status, let message):
            XCTFail("\(arguments) refused (\(status)): \(message)", file: file, line: line)
            return nil
        }
    }

    func failure(_ arguments: [String]) -> (status: Int32, message: String)? {
        if case .exit(let status, let message) = DaemonCommand.parsed(arguments) { return (status, message) }
        return nil
    }

    func testFlagsWinOverTheConfigFile() throws {
        let text = "gain_db = -12\npiano = 3\naudio = \"null\"\nchannels = [1]\nno_wait = true\nsample_rate = 44100\nconnect_midi = \"none\"\n"
        let file = try DaemonSettings().applying(try MiniTOML.parse(text, file: "c.toml"), file: "c.toml")

        // Nothing given: the file's settings stand.
        XCTAssertEqual(command([])?.applied(to: file), file)
        XCTAssertNil(command([])?.configPath)

        guard let c = command(["--gain", "-6", "--channels", "all", "--block-size=128", "--no-noise", "--config", "x.toml",
                               "--velocity-curve", "0.5", "--weights", "w.safetensors", "--connect-audio", "none",
                               "--control-socket", "/tmp/s.sock", "--sample-rate", "96000", "--sample-rate", "32000"]) else { return }
        let s = c.applied(to: file)
        XCTAssertEqual(c.configPath, "x.toml")
        XCTAssertEqual(s.gainDB, -6)
        XCTAssertNil(s.channels)
        XCTAssertEqual(s.blockSize, 128)
        XCTAssertFalse(s.noise)
        XCTAssertEqual(s.velocityCurve, "0.5")
        XCTAssertEqual(s.weights, "w.safetensors")
        XCTAssertEqual(s.connectAudio, "none")
        XCTAssertEqual(s.controlSocket, "/tmp/s.sock")
        XCTAssertEqual(s.sampleRate, 32000, "a repeated flag: the last one")
        // Not given on the command line: the file's.
        XCTAssertEqual(s.piano, "3")
        XCTAssertEqual(s.audio, "null")
        XCTAssertTrue(s.noWait)
        XCTAssertEqual(s.connectMIDI, "none")

        let more = command(["--piano", "2011", "--audio", "jack", "--channels", "2,10", "--no-wait", "--connect-midi", "all"])?.applied(to: DaemonSettings())
        XCTAssertEqual(more?.piano, "2011")
        XCTAssertEqual(more?.audio, "jack")
        XCTAssertEqual(more?.channels, [2, 10])
        XCTAssertEqual(more?.noWait, true)
        XCTAssertEqual(more?.connectMIDI, "all")
    }

    func testUsageErrorsAreOneLineWithStatus2() {
        for (arguments, expected) in [
            (["--bogus"], "ddsp-pianod: unknown argument '--bogus' (see --help)"),
            (["extra"], "ddsp-pianod: unknown argument 'extra' (see --help)"),
            (["--gain", "100"], "ddsp-pianod: --gain takes decibels between -60 and 24, not '100'"),
            (["--gain", "loud"], "ddsp-pianod: --gain takes decibels between -60 and 24, not 'loud'"),
            (["--velocity-curve", "9"], "ddsp-pianod: --velocity-curve takes linear, soft, hard or a gamma 0.2…5, not '9'"),
            (["--channels", "0,1"], "ddsp-pianod: --channels takes 'all' or channels 1…16 separated by commas, not '0,1'"),
            (["--audio", "pulse"], "ddsp-pianod: --audio takes jack, null or alsa, not 'pulse'"),
            (["--sample-rate", "0"], "ddsp-pianod: --sample-rate takes a positive integer (at most 384000), not '0'"),
            (["--block-size", "384001"], "ddsp-pianod: --block-size takes a positive integer (at most 384000), not '384001'"),
            (["--gain"], "ddsp-pianod: "),
        ] {
            guard let f = failure(arguments) else { XCTFail("accepted: \(arguments)"); continue }
            XCTAssertEqual(f.status, 2, "\(arguments)")
            XCTAssertTrue(f.message.hasPrefix(expected), "\(arguments): \(f.message)")
            XCTAssertFalse(f.message.contains("\n"), f.message)
        }
        // A negative gain is a value, not an option.
        XCTAssertEqual(command(["--gain", "-60"])?.applied(to: DaemonSettings()).gainDB, -60)
        XCTAssertEqual(command(["--gain=-6.5"])?.applied(to: DaemonSettings()).gainDB, -6.5)
    }

    func testHelpNamesEveryFlagAndTheExitStatuses() {
        guard case .exit(let status, let help) = DaemonCommand.parsed(["--help"]) else { return XCTFail("no help") }
        XCTAssertEqual(status, 0)
        for flag in ["--config <FILE|PRESET>", "--weights <FILE>", "--piano <N|YEAR>", "--gain <DB>", "--velocity-curve <C>",
                     "--channels <LIST>", "--audio <jack|null|alsa>", "--connect-audio <SPEC>", "--connect-midi <SPEC>",
                     "--control-socket <PATH>", "--no-wait", "--no-noise", "--sample-rate <HZ>", "--block-size <N>", "-h, --help",
                     "--a4 <HZ>", "--transpose <N>", "--width <W>",
                     "-60…24", "0.2…5", "Exit status: 0 after SIGINT/SIGTERM"] {
            XCTAssertTrue(help.contains(flag), "help lacks \(flag):\n\(help)")
        }
        XCTAssertFalse(help.contains("unrecognized"), help)
        if case .exit(let s, let h) = DaemonCommand.parsed(["-h"]) { XCTAssertEqual(s, 0); XCTAssertEqual(h, help) } else { XCTFail("-h") }
    }

    /// The same value is refused by the command line and the config file, in the same words.
    func testCommandLineAndConfigFileShareTheRules() throws {
        for (flag, key, value, toml, rule) in [
            ("--gain", "gain_db", "24.5", "24.5", DaemonRules.gainRule),
            ("--velocity-curve", "velocity_curve", "0.1", "0.1", DaemonRules.velocityCurveRule),
            ("--channels", "channels", "17", "[17]", DaemonRules.channelsRule),
            ("--a4", "a4_hz", "470", "470", DaemonRules.a4Rule),
            ("--transpose", "transpose", "-25", "-25", DaemonRules.transposeRule),
            ("--width", "width", "1.5", "1.5", DaemonRules.widthRule),
            ("--audio", "audio", "pulse", "\"pulse\"", DaemonRules.audioRule),
            ("--sample-rate", "sample_rate", "384001", "384001", DaemonRules.countRule),
        ] {
            let f = failure([flag, value])
            XCTAssertTrue(f?.message.contains(rule) ?? false, "\(flag) \(value): \(f?.message ?? "accepted")")
            XCTAssertThrowsError(try DaemonSettings().applying(try MiniTOML.parse("\(key) = \(toml)", file: "c.toml"), file: "c.toml")) {
                XCTAssertTrue("\($0)".contains(rule), "\(key) = \(toml): \($0)")
            }
        }
        for (flag, key, value) in [("--gain", "gain_db", "-60"), ("--gain", "gain_db", "24"), ("--velocity-curve", "velocity_curve", "5"),
                                   ("--channels", "channels", "16"), ("--block-size", "block_size", "384000")] {
            XCTAssertNotNil(command([flag, value]), "\(flag) \(value)")
            let toml = key == "channels" ? "[\(value)]" : value
            XCTAssertNoThrow(try DaemonSettings().applying(try MiniTOML.parse("\(key) = \(toml)", file: "c.toml"), file: "c.toml"))
        }
    }

    func testUnixSocketAddressChecksTheLength() throws {
        let longest = "/" + String(repeating: "x", count: UnixSocketAddress.maxPathBytes - 1)
        XCTAssertEqual(UnixSocketAddress.maxPathBytes, 107)
        XCTAssertNoThrow(try UnixSocketAddress(path: longest))
        XCTAssertThrowsError(try UnixSocketAddress(path: longest + "x")) {
            XCTAssertEqual("\($0)", longest + "x: socket path too long")
        }
        let abstract = try UnixSocketAddress(path: "@notify", abstractNamespace: true)
        XCTAssertEqual(Int(abstract.length), MemoryLayout<sa_family_t>.size + 7)
        XCTAssertEqual(withUnsafeBytes(of: abstract.storage.sun_path) { Array($0.prefix(7)) }, [0] + Array("notify".utf8))
        let plain = try UnixSocketAddress(path: "@notify")
        XCTAssertEqual(withUnsafeBytes(of: plain.storage.sun_path) { Array($0.prefix(8)) }, Array("@notify".utf8) + [0])
    }
}
