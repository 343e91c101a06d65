import Foundation
import PianoIO
import XCTest

/// The daemon as a process with `--audio null`: control socket, bad commands, broken config,
/// SIGHUP, clean shutdown.
final class ControlTests: XCTestCase {
    func testControlCommandsAndBadOnes() throws {
        let dir = try DaemonSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let weights = try DaemonSupport.syntheticWeights(in: dir)
        let d = try DaemonProcess(arguments: ["--audio", "null", "--sample-rate", "16000", "--weights", weights.path, "--piano", "alpha"], dir: dir)
        XCTAssertTrue(d.waitReady(), d.output)
        var s = try d.status()
        XCTAssertEqual(s["instrument"], "piano 0 (alpha)")
        XCTAssertEqual(s["audio"], "null 16000 Hz 256 frames")
        XCTAssertNotNil(s["callback cpu load"])
        XCTAssertEqual(try d.ctl("list"), ["* 0 alpha", "  1 beta"])
        XCTAssertEqual(try d.ctl("piano beta"), ["piano 1 (beta)"])
        XCTAssertTrue(DaemonSupport.waitUntil(5) { (try? d.status()["instrument"]) == "piano 1 (beta)" })
        XCTAssertEqual(try d.ctl("piano 0"), ["piano 0 (alpha)"])
        XCTAssertEqual(try d.ctl("gain -6"), ["gain -6.0 dB"])
        XCTAssertEqual(try d.ctl("panic"), ["all notes off"])
        s = try d.status()
        XCTAssertEqual(s["gain db"], "-6.0")
        XCTAssertGreaterThan(Int(s["cycles"] ?? "0") ?? 0, 0, "the null clock runs")

        for (bad, expected) in [("frobnicate", "unknown command 'frobnicate'"), ("piano 2004", "unknown piano '2004'"),
                                ("gain loud", "gain takes decibels"), ("gain 100", "gain takes decibels"),
                                ("piano", "wrong arguments for 'piano'"), ("", "empty command"),
                                (String(repeating: "x", count: 3000), "unknown command")] {
            XCTAssertThrowsError(try d.ctl(bad)) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(bad.prefix(20)): \(error)")
                XCTAssertFalse("\(error)".contains("\n"))
            }
        }
        XCTAssertNotNil(try? d.status(), "still running after bad commands")

        // The CLI client, as a user types it.
        let cli = Process()
        cli.executableURL = try DaemonSupport.product("ddsp-piano")
        cli.arguments = ["ctl", "--socket", d.socket, "status"]
        let pipe = Pipe()
        cli.standardOutput = pipe
        try cli.run()
        let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        cli.waitUntilExit()
        XCTAssertEqual(cli.terminationStatus, 0)
        XCTAssertTrue(text.contains("notes received: 0"), text)
        let gain = Process()
        gain.executableURL = cli.executableURL
        gain.arguments = ["ctl", "--socket", d.socket, "gain", "-12"]
        gain.standardOutput = FileHandle.nullDevice
        try gain.run()
        gain.waitUntilExit()
        XCTAssertEqual(gain.terminationStatus, 0, "a negative gain is not an option")
        XCTAssertEqual(try d.status()["gain db"], "-12.0")
        let bad = Process()
        bad.executableURL = cli.executableURL
        bad.arguments = ["ctl", "--socket", d.socket, "sing"]
        let errPipe = Pipe()
        bad.standardError = errPipe
        bad.standardOutput = FileHandle.nullDevice
        try bad.run()
        let err = String(decoding: errPipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        bad.waitUntilExit()
        XCTAssertEqual(bad.terminationStatus, 1)
        let help = Process()
        help.executableURL = cli.executableURL
        help.arguments = ["ctl", "--help"]
        let helpPipe = Pipe()
        help.standardOutput = helpPipe
        try help.run()
        let helpText = String(decoding: helpPipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        help.waitUntilExit()
        XCTAssertTrue(helpText.contains("USAGE: ddsp-piano ctl"), helpText)
        XCTAssertEqual(err, "ddsp-piano: unknown command 'sing' (known: status, piano, gain, panic, reload, list)\n")

        XCTAssertEqual(d.stop(), 0, d.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: d.socket), "socket removed at shutdown")
    }

    func testBrokenConfigKeepsThePreviousOne() throws {
        let dir = try DaemonSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let weights = try DaemonSupport.syntheticWeights(in: dir)
        let config = dir.appendingPathComponent("pianod.toml")
        try "weights = \"\(weights.path)\"\npiano = \"alpha\"\naudio = \"null\"\nsample_rate = 16000\ngain_db = -3\n".write(to: config, atomically: true, encoding: .utf8)
        let d = try DaemonProcess(arguments: ["--config", config.path], dir: dir)
        XCTAssertTrue(d.waitReady(), d.output)
        XCTAssertEqual(try d.status()["gain db"], "-3.0")

        // A good change through SIGHUP.
        try "weights = \"\(weights.path)\"\npiano = \"beta\"\naudio = \"null\"\nsample_rate = 16000\ngain_db = -9\n".write(to: config, atomically: true, encoding: .utf8)
        kill(d.process.processIdentifier, SIGHUP)
        XCTAssertTrue(DaemonSupport.waitUntil(5) { (try? d.status()["gain db"]) == "-9.0" }, d.output)
        XCTAssertTrue(DaemonSupport.waitUntil(5) { (try? d.status()["instrument"]) == "piano 1 (beta)" }, d.output)

        // A broken one: one clear line, nothing changes, the daemon keeps running.
        try "weights = \"\(weights.path)\"\ngain_db = = 4\n".write(to: config, atomically: true, encoding: .utf8)
        kill(d.process.processIdentifier, SIGHUP)
        XCTAssertTrue(DaemonSupport.waitUntil(5) { d.output.contains("keeping the previous configuration") }, d.output)
        let line = d.output.split(separator: "\n").first { $0.contains("keeping the previous") } ?? ""
        XCTAssertTrue(line.hasPrefix("ddsp-pianod: \(config.path):2: "), String(line))
        XCTAssertThrowsError(try d.ctl("reload")) { XCTAssertTrue("\($0)".contains("\(config.path):2:"), "\($0)") }
        try "piano = \"nonesuch\"\nweights = \"\(weights.path)\"\n".write(to: config, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try d.ctl("reload")) { XCTAssertTrue("\($0)".contains("unknown piano 'nonesuch'"), "\($0)") }
        try "weights = \"\(dir.path)/missing.safetensors\"\n".write(to: config, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try d.ctl("reload")) { XCTAssertTrue("\($0)".contains("missing.safetensors"), "\($0)") }
        let s = try d.status()
        XCTAssertEqual(s["gain db"], "-9.0")
        XCTAssertEqual(s["instrument"], "piano 1 (beta)")
        XCTAssertEqual(d.stop(), 0)
    }

    func testBadStartsFailInOneLine() throws {
        let dir = try DaemonSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let weights = try DaemonSupport.syntheticWeights(in: dir)
        let config = dir.appendingPathComponent("bad.toml")
        try "audio = \"alsa\"\n".write(to: config, atomically: true, encoding: .utf8)
        for (args, status, text) in [
            (["--config", config.path, "--weights", weights.path], Int32(2), "'audio' must be jack or null"),
            (["--weights", dir.path + "/none.safetensors", "--audio", "null"], 1, "none.safetensors: no such file"),
            (["--weights", weights.path, "--audio", "null", "--piano", "1999"], 2, "unknown piano '1999'"),
            (["--bogus"], 2, "unknown argument '--bogus'"),
        ] {
            let d = try DaemonProcess(arguments: args, dir: dir)
            d.process.waitUntilExit()
            XCTAssertEqual(d.process.terminationStatus, status, "\(args): \(d.output)")
            let lines = d.output.split(separator: "\n")
            XCTAssertEqual(lines.count, 1, d.output)
            XCTAssertTrue(d.output.contains(text), d.output)
        }
    }
}

/// sd_notify: READY when up (with a STATUS), STOPPING at SIGTERM, through $NOTIFY_SOCKET.
final class NotifyTests: XCTestCase {
    func testReadyAndStoppingReachNotifySocket() throws {
        let dir = try DaemonSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let weights = try DaemonSupport.syntheticWeights(in: dir)
        let path = dir.appendingPathComponent("notify.sock").path
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { p in for (i, b) in path.utf8.enumerated() { p[i] = b } }
        let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        XCTAssertEqual(bound, 0)
        var tv = timeval(tv_sec: 20, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        func receive() -> String {
            var buffer = [UInt8](repeating: 0, count: 4096)
            let n = recv(fd, &buffer, buffer.count, 0)
            return n > 0 ? String(decoding: buffer[0..<n], as: UTF8.self) : ""
        }
        var env = ProcessInfo.processInfo.environment
        env["NOTIFY_SOCKET"] = path
        let d = try DaemonProcess(arguments: ["--audio", "null", "--sample-rate", "16000", "--weights", weights.path], dir: dir, environment: env)
        let ready = receive()
        XCTAssertTrue(ready.hasPrefix("READY=1\nSTATUS=piano 1 (beta), null audio"), ready)
        XCTAssertEqual(d.stop(), 0)
        XCTAssertEqual(receive(), "STOPPING=1")
    }
}
