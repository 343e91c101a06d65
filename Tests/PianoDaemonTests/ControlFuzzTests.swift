import Foundation
import PianoIO
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// The control socket under abuse, with the daemon as a process (`--audio null`, synthetic
/// weights): thousands of random payloads (binary, huge lines, no newline, many words, early
/// hang-ups) and floods of hundreds of connections. The daemon must keep answering `status`
/// quickly, answer each complete line with one "ok" or one "error: …" line, and keep sane counters.
final class ControlFuzzTests: XCTestCase {
    /// A connected stream socket to `path`, or -1 (errno set); non-blocking connects may fail
    /// with EAGAIN when the listen backlog is full.
    static func connectSocket(_ path: String, nonBlocking: Bool = false, timeout: Int = 3) -> Int32 {
        let flags = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | (nonBlocking ? Int32(SOCK_NONBLOCK.rawValue) : 0)
        let fd = socket(AF_UNIX, flags, 0)
        guard fd >= 0 else { return -1 }
        var tv = timeval(tv_sec: timeout, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let rc = (try? UnixSocketAddress(path: path))?.withSockaddr { connect(fd, $0, $1) } ?? -1
        if rc != 0 { let e = errno; close(fd); errno = e; return -1 }
        return fd
    }

    static func sendAll(_ fd: Int32, _ bytes: [UInt8]) {
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }   // the daemon answered at 4096 bytes and hung up: fine
            sent += n
        }
    }

    static func readAll(_ fd: Int32) -> [UInt8] {
        var data = [UInt8](), buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(fd, &buffer, buffer.count)
            if n <= 0 { break }
            data += buffer[0..<n]
        }
        return data
    }

    func testFuzzedLinesAndConnectionFloods() throws {
        let dir = try DaemonSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let weights = try DaemonSupport.syntheticWeights(in: dir)
        let d = try DaemonProcess(arguments: ["--audio", "null", "--sample-rate", "16000", "--weights", weights.path, "--piano", "alpha"], dir: dir)
        defer { _ = d.stop() }
        XCTAssertTrue(d.waitReady(), d.output)
        let before = try d.status()

        // 1. Random payloads, one connection each.
        var g = ConfigFuzzTests.Generator(seed: 0xC0_47_20_1F)
        let words = ["status", "list", "piano", "gain", "panic", "reload", "alpha", "beta", "-6", "1e400", "nan", "0", "99",
                     "\u{0}", "\t", "\r", "é", "\u{1F3B9}", String(repeating: "z", count: 50)]
        let cases = 2000
        var answered = 0, okReplies = 0, errorReplies = 0, silent = 0, malformed: [String] = []
        let started = Date()
        for i in 0..<cases {
            var payload: [UInt8]
            switch g.below(6) {
            case 0: payload = (0..<g.below(200)).map { _ in UInt8(truncatingIfNeeded: g.next()) }      // binary
            case 1: payload = Array(repeating: UInt8(ascii: "a") &+ UInt8(g.below(26)), count: 4000 + g.below(20000))  // huge line
            case 2: payload = Array((0..<(1 + g.below(3000))).map { _ in g.pick(words) }.joined(separator: " ").utf8)  // many words
            case 3: payload = Array(g.pick(words).utf8) + (g.chancePerMillion(0.5) ? [] : Array(" \(g.pick(words))".utf8))
            case 4: payload = Array("status".utf8) + (0..<g.below(10)).map { _ in UInt8(truncatingIfNeeded: g.next()) }
            default: payload = Array(g.pick(["piano 1", "piano 0", "gain -3", "gain 99", "list", "panic", "status x", "", "\n\n"]).utf8)
            }
            if payload.contains(where: { $0 == 10 }) == false && g.chancePerMillion(0.6) { payload.append(10) }
            let fd = Self.connectSocket(d.socket)
            XCTAssertGreaterThanOrEqual(fd, 0, "connect \(i): \(String(cString: strerror(errno)))")
            if fd < 0 { break }
            Self.sendAll(fd, payload)
            let hangUpEarly = g.chancePerMillion(0.15)
            if hangUpEarly { close(fd); silent += 1; continue }
            let complete = payload.contains(10) || payload.count >= 4096
            if !complete { shutdown(fd, Int32(SHUT_WR)) }   // half-closed: the daemon serves what came
            let reply = String(decoding: Self.readAll(fd), as: UTF8.self)
            close(fd)
            var lines = reply.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            if lines.last == "" { lines.removeLast() }
            guard let last = lines.last else { malformed.append("no reply to \(payload.prefix(40))"); continue }
            answered += 1
            if last == "ok" { okReplies += 1 } else if last.hasPrefix("error: ") && lines.count == 1 { errorReplies += 1 } else {
                malformed.append(reply.debugDescription.prefix(200).description)
            }
        }
        let fuzzSeconds = Date().timeIntervalSince(started)

        // 2. 500 connections opened as fast as possible (blocking connects: each waits for the
        // daemon's accept) and left silent; the daemon keeps at most 16 and closes the oldest.
        var held: [Int32] = []
        var failedConnects = 0
        let floodStart = Date()
        for _ in 0..<500 {
            let fd = Self.connectSocket(d.socket)
            if fd >= 0 { held.append(fd) } else { failedConnects += 1 }
        }
        let openSeconds = Date().timeIntervalSince(floodStart)
        let t0 = Date()
        let statusDuringFlood = try? d.ctl("status")
        let latencyDuringFlood = Date().timeIntervalSince(t0)
        var closedByDaemon = 0
        for fd in held {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&p, 1, 0) > 0 { closedByDaemon += 1 }   // EOF: pushed out to make room
            close(fd)
        }

        // 3. 500 `status` requests from 16 threads at once.
        let lock = NSLock()
        var floodLatencies: [Double] = [], floodAnswers = 0
        DispatchQueue.concurrentPerform(iterations: 16) { worker in
            for _ in 0..<(500 / 16 + (worker < 500 % 16 ? 1 : 0)) {
                let t = Date()
                let ok = (try? ControlClient.send("status", socket: d.socket, timeout: 5))?.contains { $0.hasPrefix("cycles: ") } == true
                let dt = Date().timeIntervalSince(t)
                lock.lock(); floodLatencies.append(dt); if ok { floodAnswers += 1 }; lock.unlock()
            }
        }
        let floodSeconds = Date().timeIntervalSince(floodStart)
        floodLatencies.sort()

        // 4. Afterwards: answers quickly, counters sane.
        var latencies: [Double] = []
        for _ in 0..<20 {
            let t = Date()
            _ = try d.ctl("status")
            latencies.append(Date().timeIntervalSince(t))
        }
        let after = try d.status()
        print(String(format: "control fuzz: %d payloads in %.2f s: %d answered (%d ok, %d error), %d hung up early, %d malformed",
                     cases, fuzzSeconds, answered, okReplies, errorReplies, silent, malformed.count))
        print(String(format: "control flood: 500 silent connections opened in %.2f s (%d failed, %d closed by the daemon to make room), "
                     + "status meanwhile %@ in %.1f ms; 500 status from 16 threads: %d answered, median %.1f ms, max %.1f ms; "
                     + "floods took %.2f s; status after: median %.1f ms, max %.1f ms",
                     openSeconds, failedConnects, closedByDaemon, statusDuringFlood == nil ? "FAILED" : "answered", latencyDuringFlood * 1000,
                     floodAnswers, floodLatencies[floodLatencies.count / 2] * 1000, floodLatencies.last! * 1000, floodSeconds,
                     latencies.sorted()[latencies.count / 2] * 1000, latencies.max()! * 1000))
        print("counters after: " + ["notes received", "active voices", "dropped events", "late callbacks", "cycles"]
            .map { "\($0) \(after[$0] ?? "?")" }.joined(separator: ", "))
        for m in malformed.prefix(5) { print("  malformed: \(m)") }

        XCTAssertTrue(d.process.isRunning, d.output)
        XCTAssertEqual(malformed, [])
        XCTAssertGreaterThan(answered, cases / 2)
        XCTAssertNotNil(statusDuringFlood, "status answered while 500 connections were held")
        XCTAssertLessThan(latencyDuringFlood, 3, "status answered promptly during the flood")
        XCTAssertLessThan(latencies.max()!, 0.5)
        XCTAssertEqual(failedConnects, 0)
        XCTAssertEqual(floodAnswers, 500, "every status of the flood answered")
        XCTAssertEqual(after["notes received"], "0")
        XCTAssertEqual(after["active voices"], "0")
        XCTAssertEqual(after["dropped events"], "0")
        XCTAssertGreaterThan(Int(after["cycles"] ?? "0") ?? 0, Int(before["cycles"] ?? "0") ?? 0, "the null clock still runs")
        XCTAssertFalse(d.output.contains("Fatal error"), d.output)
    }
}
