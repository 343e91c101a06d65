import Foundation
import PianoDaemon
import PianoIO
import PianoTestKit
import XCTest

/// `--name`: two daemons side by side, each with its own JACK client, ALSA client and control
/// socket, and `ddsp-piano ctl --name` reaching the right one.
final class NameTests: XCTestCase {
    func testNameRuleAndSocketPaths() {
        for good in ["a", "piano-2", "Upright_1", "n.ABCD", "nABCD", String(repeating: "x", count: 63)] {
            XCTAssertTrue(DaemonRules.isName(good), good)
        }
        for bad in ["", "a:b", "a/b", "..", ".hidden", "two words", "é", "tab\t", String(repeating: "x", count: 64)] {
            XCTAssertFalse(DaemonRules.isName(bad), bad)
        }
        let env = ["XDG_RUNTIME_DIR": "/run/user/1000"]
        XCTAssertEqual(ControlClient.defaultSocketPath(environment: env), "/run/user/1000/ddsp-piano/control.sock")
        XCTAssertEqual(ControlClient.defaultSocketPath(name: "ddsp-piano", environment: env), "/run/user/1000/ddsp-piano/control.sock",
                       "the default name is the default socket")
        XCTAssertEqual(ControlClient.defaultSocketPath(name: "upright", environment: env), "/run/user/1000/ddsp-piano/upright.sock")
        XCTAssertEqual(DaemonSettings.defaultSocketPath(name: "upright", environment: env), "/run/user/1000/ddsp-piano/upright.sock",
                       "the daemon's rule is the client's")
        XCTAssertEqual(ControlClient.defaultSocketPath(name: "upright", environment: [:]), "/tmp/ddsp-piano-\(getuid())/upright.sock")
    }

    /// A bad name on the command line, in the config file, or for ctl: one line, a usage status.
    func testBadNamesAreOneLine() throws {
        let dir = try DaemonSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let daemon = try TestKit.executable("ddsp-pianod")
        for bad in ["", "a:b", "../x"] {
            let r = try DaemonSupport.run(daemon, ["--name", bad, "--audio", "null"])
            print("--name '\(bad)': status \(r.status): \(r.output)")
            XCTAssertEqual(r.status, 2)
            XCTAssertEqual(r.output.split(separator: "\n").count, 1, r.output)
            XCTAssertTrue(r.output.contains("--name takes 1 to 63 letters"), r.output)
        }
        let config = dir.appendingPathComponent("bad.toml")
        try "name = \"a:b\"\n".write(to: config, atomically: true, encoding: .utf8)
        let r = try DaemonSupport.run(daemon, ["--config", config.path, "--audio", "null"])
        print("config name 'a:b': status \(r.status): \(r.output)")
        XCTAssertEqual(r.status, 2)
        XCTAssertEqual(r.output.split(separator: "\n").count, 1, r.output)
        XCTAssertTrue(r.output.contains("'name' must be"), r.output)
        var env = ProcessInfo.processInfo.environment
        env["XDG_RUNTIME_DIR"] = dir.path
        let c = try DaemonSupport.run(try TestKit.executable("ddsp-piano"), ["ctl", "--name", "a/b", "status"], environment: env)
        print("ctl --name a/b: status \(c.status): \(c.output)")
        XCTAssertEqual(c.status, 1)
        XCTAssertEqual(c.output.split(separator: "\n").count, 1, c.output)
        XCTAssertTrue(c.output.contains("--name takes"), c.output)
    }

    /// Two daemons with different names at once (null audio): each its own socket, each answering
    /// with its own settings, through the library and through `ddsp-piano ctl --name`.
    func testTwoNamedDaemonsSideBySide() throws {
        let dir = try DaemonSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let weights = try DaemonSupport.syntheticWeights(in: dir)
        let common = ["--audio", "null", "--sample-rate", "16000", "--weights", weights.path]
        let a = try EnvDaemon(common + ["--name", "grand", "--piano", "alpha"], dir: dir, environment: [:])
        // The second one's name from its config file.
        let config = dir.appendingPathComponent("upright.toml")
        try "name = \"upright\"\npiano = \"beta\"\n".write(to: config, atomically: true, encoding: .utf8)
        let b = try EnvDaemon(common + ["--config", config.path], dir: dir, environment: [:])
        XCTAssertTrue(a.waitReady(name: "grand"), a.output)
        XCTAssertTrue(b.waitReady(name: "upright"), b.output)
        XCTAssertTrue(a.process.isRunning && b.process.isRunning)
        let sa = try a.status(name: "grand"), sb = try b.status(name: "upright")
        print("grand: \(sa["instrument"] ?? "-") at \(a.socket(name: "grand")); upright: \(sb["instrument"] ?? "-") at \(b.socket(name: "upright"))")
        XCTAssertEqual(sa["instrument"], "piano 0 (alpha)")
        XCTAssertEqual(sb["instrument"], "piano 1 (beta)")
        XCTAssertEqual(a.socket(name: "grand"), dir.appendingPathComponent("run/ddsp-piano/grand.sock").path)

        // ctl --name reaches the right one: a gain set on one leaves the other alone.
        let g = try a.cli(["--name", "grand", "gain", "-9"])
        XCTAssertEqual(g.status, 0, g.output)
        let ca = try a.cli(["--name", "grand", "status"]), cb = try a.cli(["--name", "upright", "status"])
        XCTAssertEqual(ca.status, 0, ca.output)
        XCTAssertEqual(cb.status, 0, cb.output)
        XCTAssertTrue(ca.output.contains("instrument: piano 0 (alpha)") && ca.output.contains("gain db: -9.0"), ca.output)
        XCTAssertTrue(cb.output.contains("instrument: piano 1 (beta)") && cb.output.contains("gain db: 0.0"), cb.output)
        let none = try a.cli(["--name", "nobody", "status"])
        print("ctl --name nobody: status \(none.status): \(none.output)")
        XCTAssertEqual(none.status, 1)
        XCTAssertTrue(none.output.contains("nobody.sock"), none.output)

        XCTAssertEqual(a.terminate().status, 0, a.output)
        XCTAssertTrue(b.process.isRunning, "stopping one leaves the other playing")
        XCTAssertNotNil(try? b.status(name: "upright"))
        XCTAssertEqual(b.terminate().status, 0, b.output)
    }

    /// Two named daemons on a real JACK server (jackd -d dummy): two JACK clients named after them,
    /// each with its ports, each reporting its own client name.
    func testTwoNamedDaemonsOnJack() throws {
        let dir = try DaemonSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let jack = try JackServer(dir: dir)
        try jack.start()
        defer { jack.stop() }
        let weights = try DaemonSupport.syntheticWeights(in: dir)
        let env = jack.environment
        let args = ["--weights", weights.path, "--connect-audio", "none", "--connect-midi", "none", "--no-wait"]
        let a = try EnvDaemon(args + ["--name", "grand"], dir: dir, environment: env)
        let b = try EnvDaemon(args + ["--name", "upright"], dir: dir, environment: env)
        let expected = ["grand:out_L", "grand:out_R", "grand:midi_in", "upright:out_L", "upright:out_R", "upright:midi_in"]
        let up = DaemonSupport.waitUntil(30) { Set(expected).isSubset(of: Set(jack.ports())) || !a.process.isRunning || !b.process.isRunning }
        let ports = jack.ports()
        print("jack_lsp: \(ports)")
        XCTAssertTrue(up, "\(ports)\n\(a.output)\n\(b.output)")
        for p in expected { XCTAssertTrue(ports.contains(p), p) }
        XCTAssertFalse(ports.contains { $0.hasPrefix("ddsp-piano:") }, "no client under the default name")
        XCTAssertTrue(a.waitReady(name: "grand") && b.waitReady(name: "upright"))
        let audioA = try a.status(name: "grand")["audio"] ?? "", audioB = try b.status(name: "upright")["audio"] ?? ""
        print("grand: \(audioA); upright: \(audioB)")
        XCTAssertTrue(audioA.hasPrefix("jack grand "), audioA)
        XCTAssertTrue(audioB.hasPrefix("jack upright "), audioB)
        XCTAssertEqual(a.terminate().status, 0, a.output)
        XCTAssertEqual(b.terminate().status, 0, b.output)
        XCTAssertTrue(DaemonSupport.waitUntil(5) { !jack.ports().contains { $0.hasPrefix("grand:") || $0.hasPrefix("upright:") } })
    }
}

/// The config writer an NSM save uses: what it writes reads back to the same settings, and it
/// writes every key the reader knows.
final class ConfigWriterTests: XCTestCase {
    func testWrittenSettingsReadBackTheSame() throws {
        var s = DaemonSettings()
        s.weights = "/w/some \"quoted\" \\ path.safetensors"
        s.piano = "2009"
        s.gainDB = -7.25
        s.velocityCurve = "0.7"
        s.channels = [1, 3, 16]
        s.programMap = [0, -1, 2]
        s.audio = "null"
        s.connectAudio = "^system:playback_[12]$"
        s.connectMIDI = "none"
        s.controlSocket = "/tmp/x.sock"
        s.noWait = true
        s.noise = false
        s.sampleRate = 44100
        s.blockSize = 128
        s.alsaDevice = "hw:1,0"
        s.period = 128
        s.periods = 4
        s.name = "upright"
        s.a4Hz = 441.5
        s.transpose = -3
        s.width = 0.8
        s.takesDir = "/t/takes"
        s.takeSilence = 2.5
        let text = s.tomlText(header: "two\nlines")
        print(text)
        let back = try DaemonSettings().applying(try MiniTOML.parse(text, file: "written"), file: "written")
        XCTAssertEqual(back, s)
        let keys = Set(try MiniTOML.parse(text, file: "written").keys)
        XCTAssertEqual(keys, DaemonSettings.keys, "every key written (a new key needs its line in tomlText)")
        // The defaults too (nil values left out; all channels as "all").
        let d = DaemonSettings()
        XCTAssertEqual(try DaemonSettings().applying(try MiniTOML.parse(d.tomlText(), file: "defaults"), file: "defaults"), d)
    }
}
