import DDSPPiano
import Foundation
import PianoFormats
import PianoIO
import PianoTestKit
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
        cli.executableURL = try TestKit.executable("ddsp-piano")
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
        // Notes without a keyboard: the keyboard's path (router, counters, voices).
        XCTAssertEqual(try d.ctl("midi 90 3C 64"), ["midi 90 3C 64"])
        XCTAssertTrue(DaemonSupport.waitUntil(5) { (try? d.status()["active voices"]) == "1" }, "a note sounds: \((try? d.status()) ?? [:])")
        XCTAssertEqual(try d.ctl("midi 80 3c 0"), ["midi 80 3C 00"])
        XCTAssertTrue(DaemonSupport.waitUntil(5) { (try? d.status()["notes released"]) == "1" }, "the note released")
        XCTAssertEqual(try d.status()["notes received"], "1")
        XCTAssertThrowsError(try d.ctl("midi F8 00 00"), "a system message is refused")
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
        XCTAssertEqual(err, "ddsp-piano: unknown command 'sing' (known: status, piano, gain, tune, transpose, width, panic, reload, list, midi, takes, record)\n")

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

    /// The weight file at the same path, damaged or replaced: reload reads it again; a damaged
    /// one is refused in one line and the old model keeps playing; a new one is taken.
    func testReloadRereadsAWeightFileReplacedInPlace() throws {
        let dir = try DaemonSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let synthetic = try DaemonSupport.syntheticWeights(in: dir)
        let weights = dir.appendingPathComponent("piano.safetensors")
        try FileManager.default.copyItem(at: synthetic, to: weights)
        let config = dir.appendingPathComponent("pianod.toml")
        try "weights = \"\(weights.path)\"\naudio = \"null\"\nsample_rate = 16000\n".write(to: config, atomically: true, encoding: .utf8)
        let d = try DaemonProcess(arguments: ["--config", config.path], dir: dir)
        defer { _ = d.stop() }
        XCTAssertTrue(d.waitReady(), d.output)
        XCTAssertEqual(try d.ctl("list"), ["  0 alpha", "* 1 beta"])

        // Damaged in place (garbage, then truncated): refused, one line naming the file.
        for damage in [Data((0..<200_000).map { UInt8(truncatingIfNeeded: $0 &* 2654435761 >> 13) }), Data()] {
            try damage.write(to: weights)
            XCTAssertThrowsError(try d.ctl("reload")) { error in
                XCTAssertTrue("\(error)".contains(weights.path) && "\(error)".contains("keeping the previous configuration"), "\(error)")
                XCTAssertFalse("\(error)".contains("\n"))
            }
        }
        XCTAssertEqual(try d.ctl("list"), ["  0 alpha", "* 1 beta"], "the old model plays on")
        XCTAssertTrue(d.output.contains("keeping the previous configuration"), "a failed ctl reload is logged too")

        // Replaced atomically by another model at the same path: taken.
        var other = PianoWeights(instruments: ["gamma", "delta", "epsilon"])
        other.releaseDuration = Tensor(shape: [1], values: [1])
        let staged = dir.appendingPathComponent("staged.safetensors")
        try Data(other.safetensors().serialized()).write(to: staged)
        XCTAssertEqual(rename(staged.path, weights.path), 0)
        XCTAssertEqual(try d.ctl("reload"), ["configuration reloaded"])
        XCTAssertTrue(DaemonSupport.waitUntil(5) { (try? d.ctl("list"))?.count == 3 }, d.output)
        print("weight file replaced in place: garbage and empty refused, a new model (\((try? d.ctl("list")) ?? [])) taken on reload")
        XCTAssertEqual(d.stop(), 0)
    }

    /// With a v2 weight file installed and no `weights` setting, the daemon plays v2 (piano 9 =
    /// 2018, as upstream); a reload with `weights` naming a dafx22 file swaps the model (built
    /// on the control thread) and `ctl status` names the model in use.
    func testPlaysInstalledV2ByDefaultAndSwapsArchitecturesOnReload() throws {
        let dir = try DaemonSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let installed = dir.appendingPathComponent("xdg/ddsp-piano/weights")
        try FileManager.default.createDirectory(at: installed, withIntermediateDirectories: true)
        let v2 = installed.appendingPathComponent("v2.safetensors")
        try Data(StructuralV2.weights().safetensors().serialized()).write(to: v2)
        let dafx22 = try DaemonSupport.syntheticWeights(in: dir)
        let config = dir.appendingPathComponent("pianod.toml")
        try "audio = \"null\"\nsample_rate = 48000\n".write(to: config, atomically: true, encoding: .utf8)
        var env = ProcessInfo.processInfo.environment
        env["XDG_DATA_HOME"] = dir.appendingPathComponent("xdg").path
        env["DDSP_PIANO_WEIGHTS"] = nil
        let d = try DaemonProcess(arguments: ["--config", config.path], dir: dir, environment: env)
        defer { _ = d.stop() }
        XCTAssertTrue(d.waitReady(), d.output)
        let model = try d.status()["model"] ?? ""
        print("default model: \(model)")
        XCTAssertEqual(model, "v2 (24 kHz, 10 pianos, \(PianoKernels.description)) from \(v2.path)")
        XCTAssertEqual(try d.ctl("list").first { $0.hasPrefix("*") }, "* 9 2018")

        try "audio = \"null\"\nsample_rate = 48000\nweights = \"\(dafx22.path)\"\n".write(to: config, atomically: true, encoding: .utf8)
        XCTAssertEqual(try d.ctl("reload"), ["configuration reloaded"])
        let swapped = try d.status()["model"] ?? ""
        print("after reload: \(swapped)")
        XCTAssertTrue(swapped.hasPrefix("dafx22 (16 kHz, 2 pianos, \(PianoKernels.description)) from "), swapped)

        try "audio = \"null\"\nsample_rate = 48000\n".write(to: config, atomically: true, encoding: .utf8)
        XCTAssertEqual(try d.ctl("reload"), ["configuration reloaded"])
        XCTAssertEqual(try d.status()["model"], "v2 (24 kHz, 10 pianos, \(PianoKernels.description)) from \(v2.path)")
        XCTAssertTrue(d.output.contains("of v2 (24 kHz, 10 pianos, \(PianoKernels.description))"), d.output)
        XCTAssertEqual(d.stop(), 0)
    }

    func testBadStartsFailInOneLine() throws {
        let dir = try DaemonSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let weights = try DaemonSupport.syntheticWeights(in: dir)
        let config = dir.appendingPathComponent("bad.toml")
        try "audio = \"pulse\"\n".write(to: config, atomically: true, encoding: .utf8)
        for (args, status, text) in [
            (["--config", config.path, "--weights", weights.path], Int32(2), "'audio' must be jack, null or alsa"),
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

/// sd_notify: READY when up (with a STATUS), STOPPING at SIGTERM, WATCHDOG=1 while the audio
/// thread cycles, through $NOTIFY_SOCKET.
final class NotifyTests: XCTestCase {
    func testReadyAndStoppingReachNotifySocket() throws {
        let dir = try DaemonSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let weights = try DaemonSupport.syntheticWeights(in: dir)
        let path = dir.appendingPathComponent("notify.sock").path
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd) }
        let bound = (try? UnixSocketAddress(path: path))?.withSockaddr { bind(fd, $0, $1) } ?? -1
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

    /// WATCHDOG_USEC=200000: READY (with its STATUS) comes first, then WATCHDOG=1 about every
    /// WATCHDOG_USEC/2 while the null audio clock cycles, and STOPPING=1 at SIGTERM.
    func testWatchdogFedAfterReadyUntilStopping() throws {
        let dir = try DaemonSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let weights = try DaemonSupport.syntheticWeights(in: dir)
        let listener = try NotifyListener(path: dir.appendingPathComponent("notify.sock").path)
        let usec = 200_000
        var env = ProcessInfo.processInfo.environment
        env["NOTIFY_SOCKET"] = listener.path
        env["WATCHDOG_USEC"] = String(usec)
        let d = try DaemonProcess(arguments: ["--audio", "null", "--sample-rate", "16000", "--weights", weights.path], dir: dir, environment: env)
        defer { _ = d.stop() }

        // Nothing before READY: the first datagram is READY=1 with the STATUS line.
        guard let ready = listener.receive(within: 20) else { return XCTFail("no READY=1: \(d.output)") }
        XCTAssertTrue(ready.text.hasPrefix("READY=1\nSTATUS=piano 1 (beta), null audio"), ready.text)

        // ~2 s of messages after READY.
        let messages = listener.collect(until: ready.at + 2)
        let watchdog = messages.filter { $0.text == "WATCHDOG=1" }
        XCTAssertEqual(messages.count, watchdog.count, "only WATCHDOG=1 while running: \(messages.map(\.text))")
        let times = [ready.at] + watchdog.map(\.at)
        let gaps = zip(times.dropFirst(), times).map { ($0 - $1) * 1000 }
        let largest = gaps.max() ?? .infinity, mean = gaps.isEmpty ? 0 : gaps.reduce(0, +) / Double(gaps.count)
        print(String(format: "watchdog: %d WATCHDOG=1 in %.2f s after READY, gaps mean %.1f ms, smallest %.1f ms, largest %.1f ms (WATCHDOG_USEC/2 = %d ms)",
                     watchdog.count, (times.last ?? ready.at) - ready.at, mean, gaps.min() ?? 0, largest, usec / 2000))
        XCTAssertGreaterThanOrEqual(watchdog.count, 10, "fed about every WATCHDOG_USEC/2")
        // The daemon sends once more than WATCHDOG_USEC/2 has passed (its loop wakes every
        // 20 ms): typical gaps just over 100 ms; systemd's deadline is WATCHDOG_USEC itself,
        // which leaves room for a loaded machine's scheduling delays.
        XCTAssertLessThan(largest, Double(usec) / 1000, "a gap reached the watchdog deadline")
        XCTAssertGreaterThan(gaps.min() ?? 0, Double(usec) / 4000, "not sent more often than needed")
        XCTAssertLessThan(mean, Double(usec) / 1000 * 0.75, "about every WATCHDOG_USEC/2")

        // SIGTERM: STOPPING=1 (after any last WATCHDOG=1), and nothing after it.
        kill(d.process.processIdentifier, SIGTERM)
        var tail: [String] = []
        while let m = listener.receive(within: 10) {
            tail.append(m.text)
            if m.text == "STOPPING=1" { break }
        }
        XCTAssertEqual(tail.last, "STOPPING=1", "\(tail)")
        XCTAssertTrue(tail.dropLast().allSatisfy { $0 == "WATCHDOG=1" }, "\(tail)")
        XCTAssertEqual(d.stop(), 0, d.output)
        XCTAssertNil(listener.receive(within: 0.5), "nothing after STOPPING=1")
    }

    /// The watchdog is fed only while the audio thread cycles: jackd stopped (SIGSTOP) with the
    /// daemon's client still open, no more WATCHDOG=1 (systemd would restart a daemon whose
    /// audio hangs); jackd continued (SIGCONT), it comes back.
    func testWatchdogStarvesWhileJackStalls() throws {
        let dir = try DaemonSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let weights = try DaemonSupport.syntheticWeights(in: dir)
        let jack = try JackServer(dir: dir)
        try jack.start()
        defer { jack.stop() }
        let listener = try NotifyListener(path: dir.appendingPathComponent("notify.sock").path)
        var env = jack.environment
        env["NOTIFY_SOCKET"] = listener.path
        env["WATCHDOG_USEC"] = "200000"
        let d = try DaemonProcess(arguments: ["--weights", weights.path, "--connect-audio", "none", "--connect-midi", "none"], dir: dir, environment: env)
        defer { _ = d.stop() }
        // The client opened (a STATUS line) before READY; no WATCHDOG=1 before it.
        var early: [String] = []
        var ready = listener.receive(within: 20)
        while let m = ready, !m.text.hasPrefix("READY=1") { early.append(m.text); ready = listener.receive(within: 20) }
        guard let ready else { return XCTFail("no READY=1: \(early) \(d.output)") }
        XCTAssertTrue(early.allSatisfy { $0.hasPrefix("STATUS=") }, "\(early)")
        XCTAssertTrue(ready.text.hasPrefix("READY=1\nSTATUS=piano 1 (beta), JACK"), ready.text)
        let running = listener.collect(until: ready.at + 0.8).filter { $0.text == "WATCHDOG=1" }
        XCTAssertGreaterThanOrEqual(running.count, 4, "fed while JACK runs")

        guard let jackd = jack.pid else { return XCTFail("no jackd") }
        kill(jackd, SIGSTOP)
        var continued = false
        defer { if !continued { kill(jackd, SIGCONT) } }
        // At most one more (cycles counted since the last one), then nothing.
        let stopped = NotifyListener.now()
        let settling = listener.collect(until: stopped + 0.3).filter { $0.text == "WATCHDOG=1" }
        let starved = listener.collect(until: stopped + 1.3).filter { $0.text == "WATCHDOG=1" }
        kill(jackd, SIGCONT)
        continued = true
        let resumedAt = NotifyListener.now()
        let resumed = listener.receive(within: 5)
        print(String(format: "watchdog with jackd stopped: %d WATCHDOG=1 in the first 0.3 s, %d in the next 1.0 s; first one %.0f ms after SIGCONT",
                     settling.count, starved.count, ((resumed?.at ?? .nan) - resumedAt) * 1000))
        XCTAssertLessThanOrEqual(settling.count, 1)
        XCTAssertEqual(starved.count, 0, "no WATCHDOG=1 while the audio thread does not cycle")
        XCTAssertEqual(resumed?.text, "WATCHDOG=1", "fed again once JACK cycles")
        XCTAssertTrue(try d.status()["audio"]?.hasPrefix("jack ddsp-piano") ?? false, d.output)
        XCTAssertEqual(d.stop(), 0, d.output)
    }
}

/// A bound Unix datagram socket standing in for systemd's $NOTIFY_SOCKET.
final class NotifyListener {
    let path: String
    private let fd: Int32

    init(path: String) throws {
        self.path = path
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        XCTAssertGreaterThanOrEqual(fd, 0)
        let bound = (try? UnixSocketAddress(path: path))?.withSockaddr { bind(fd, $0, $1) } ?? -1
        XCTAssertEqual(bound, 0)
    }

    deinit { close(fd) }

    /// Monotonic seconds.
    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// The next datagram and when it arrived; nil if none within `seconds`.
    func receive(within seconds: Double) -> (text: String, at: Double)? {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, Int32(max(0, seconds) * 1000)) == 1 else { return nil }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
        return n > 0 ? (String(decoding: buffer[0..<n], as: UTF8.self), Self.now()) : nil
    }

    /// Everything that arrives until the monotonic time `end`.
    func collect(until end: Double) -> [(text: String, at: Double)] {
        var messages: [(text: String, at: Double)] = []
        while case let left = end - Self.now(), left > 0, let m = receive(within: left) { messages.append(m) }
        return messages
    }
}
