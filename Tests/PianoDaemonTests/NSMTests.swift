import Foundation
import PianoDaemon
import PianoIO
import PianoTestKit
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// A session manager stand-in: OSC over UDP on 127.0.0.1, messages encoded and decoded here by
/// hand (OSC 1.0: NUL-padded strings, big-endian int32/float32), so the daemon's liblo is checked
/// against the format, not against itself.
final class OSCPeer {
    let fd: Int32
    let port: UInt16
    /// Where the last message came from (the daemon's port): replies go there.
    private var peer = sockaddr_in()
    private(set) var peerKnown = false

    init() throws {
        let s = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard s >= 0 else { throw XCTSkip("no UDP socket") }
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_addr.s_addr = inet_addr("127.0.0.1")
        a.sin_port = 0
        let rc = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard rc == 0 else { close(s); throw XCTSkip("cannot bind 127.0.0.1") }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(s, $0, &len) } }
        fd = s
        port = UInt16(bigEndian: a.sin_port)
    }

    deinit { close(fd) }

    var url: String { "osc.udp://127.0.0.1:\(port)/" }

    enum Arg: Equatable, CustomStringConvertible {
        case s(String), i(Int32), f(Float)
        var description: String {
            switch self { case .s(let x): return "\"\(x)\""; case .i(let x): return "\(x)"; case .f(let x): return "\(x)f" }
        }
    }

    static func encode(_ path: String, _ args: [Arg]) -> [UInt8] {
        func str(_ s: String) -> [UInt8] {
            var b = Array(s.utf8) + [0]
            while b.count % 4 != 0 { b.append(0) }
            return b
        }
        var out = str(path) + str("," + args.map { a -> String in
            switch a { case .s: return "s"; case .i: return "i"; case .f: return "f" }
        }.joined())
        for a in args {
            switch a {
            case .s(let x): out += str(x)
            case .i(let x): withUnsafeBytes(of: x.bigEndian) { out += $0 }
            case .f(let x): withUnsafeBytes(of: x.bitPattern.bigEndian) { out += $0 }
            }
        }
        return out
    }

    /// Path, type tags and arguments; nil for what is not a well-formed message of s/i/f.
    static func decode(_ b: [UInt8]) -> (path: String, types: String, args: [Arg])? {
        var at = 0
        func str() -> String? {
            guard let end = b[at...].firstIndex(of: 0) else { return nil }
            let s = String(decoding: b[at..<end], as: UTF8.self)
            at = (end + 4) & ~3
            return s
        }
        func word() -> UInt32? {
            guard at + 4 <= b.count else { return nil }
            defer { at += 4 }
            return UInt32(b[at]) << 24 | UInt32(b[at + 1]) << 16 | UInt32(b[at + 2]) << 8 | UInt32(b[at + 3])
        }
        guard let path = str(), let tags = str(), tags.hasPrefix(",") else { return nil }
        var args: [Arg] = []
        for t in tags.dropFirst() {
            switch t {
            case "s": guard let s = str() else { return nil }; args.append(.s(s))
            case "i": guard let w = word() else { return nil }; args.append(.i(Int32(bitPattern: w)))
            case "f": guard let w = word() else { return nil }; args.append(.f(Float(bitPattern: w)))
            default: return nil
            }
        }
        return (path, String(tags.dropFirst()), args)
    }

    /// The next message within `seconds` (nil: none).
    func receive(within seconds: Double) -> (path: String, types: String, args: [Arg])? {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, Int32(seconds * 1000)) == 1 else { return nil }
        var buffer = [UInt8](repeating: 0, count: 65536)
        var from = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let n = withUnsafeMutablePointer(to: &from) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(fd, &buffer, buffer.count, 0, $0, &len) } }
        guard n > 0 else { return nil }
        peer = from
        peerKnown = true
        return Self.decode(Array(buffer[0..<n]))
    }

    /// To the last peer; `from`: through another socket (another port).
    func send(_ path: String, _ args: [Arg], from other: OSCPeer? = nil) {
        precondition(peerKnown, "no peer yet")
        let bytes = Self.encode(path, args)
        var to = peer
        _ = withUnsafePointer(to: &to) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            sendto(other?.fd ?? fd, bytes, bytes.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        } }
    }
}

/// ddsp-pianod started with an environment of its own (XDG_RUNTIME_DIR, NSM_URL) and no
/// --control-socket: its socket is the name rule's (`ControlClient.defaultSocketPath(name:)`).
final class EnvDaemon {
    let process = Process()
    let log: URL
    let environment: [String: String]

    init(_ arguments: [String], dir: URL, environment extra: [String: String]) throws {
        var e = ProcessInfo.processInfo.environment
        e["XDG_RUNTIME_DIR"] = dir.appendingPathComponent("run").path
        e["XDG_CONFIG_HOME"] = dir.appendingPathComponent("config").path
        e.removeValue(forKey: "NSM_URL")
        for (k, v) in extra { e[k] = v }
        environment = e
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("run"), withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        log = dir.appendingPathComponent("daemon-\(UUID().uuidString.prefix(6)).log")
        process.executableURL = try TestKit.executable("ddsp-pianod")
        process.arguments = arguments
        process.environment = e
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let h = try FileHandle(forWritingTo: log)
        process.standardOutput = h
        process.standardError = h
        try process.run()
    }

    var output: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }

    func socket(name: String?) -> String { ControlClient.defaultSocketPath(name: name, environment: environment) }

    func ctl(_ command: String, name: String?) throws -> [String] {
        try ControlClient.send(command, socket: socket(name: name), timeout: 10)
    }

    func status(name: String?) throws -> [String: String] {
        var d: [String: String] = [:]
        for line in try ctl("status", name: name) {
            if let r = line.range(of: ": ") { d[String(line[..<r.lowerBound])] = String(line[r.upperBound...]) }
        }
        return d
    }

    func waitReady(name: String?, _ seconds: Double = 30) -> Bool {
        DaemonSupport.waitUntil(seconds) { (try? self.ctl("status", name: name)) != nil || !self.process.isRunning } && process.isRunning
    }

    /// `ddsp-piano ctl ARGS` as a user types it, in this daemon's environment.
    func cli(_ arguments: [String]) throws -> (status: Int32, output: String) {
        try DaemonSupport.run(try TestKit.executable("ddsp-piano"), ["ctl"] + arguments, environment: environment)
    }

    /// SIGTERM; the exit status and how long it took (seconds; SIGKILL after 10 s).
    func terminate() -> (status: Int32, seconds: Double) {
        let start = Date()
        if process.isRunning {
            process.terminate()
            if !DaemonSupport.waitUntil(10, { !self.process.isRunning }) { kill(process.processIdentifier, SIGKILL) }
        }
        process.waitUntilExit()
        return (process.terminationStatus, Date().timeIntervalSince(start))
    }

    deinit { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
}

/// ddsp-pianod under a Non Session Manager (API 1.2): announce, open, save, quit, and the
/// ways it goes on without one.
final class NSMTests: XCTestCase {
    /// The whole life of a session client: announce (every argument), nothing opened before the
    /// server's open, a client id that cannot be a name refused, open (directory and config file
    /// made, the client id as the daemon's name), save, a setting changed with ctl and saved again,
    /// SIGTERM, and the session opened again by a new process playing what was saved.
    func testSessionOpenSaveAndQuit() throws {
        let dir = try DaemonSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let weights = try DaemonSupport.syntheticWeights(in: dir)
        let nsm = try OSCPeer()
        let args = ["--audio", "null", "--sample-rate", "16000", "--weights", weights.path]
        let d = try EnvDaemon(args, dir: dir, environment: ["NSM_URL": nsm.url])

        guard let announce = nsm.receive(within: 20) else { return XCTFail("no announce: \(d.output)") }
        print("announce: \(announce.path) ,\(announce.types) \(announce.args)")
        XCTAssertEqual(announce.path, "/nsm/server/announce")
        XCTAssertEqual(announce.types, "sssiii")
        XCTAssertEqual(announce.args, [.s("ddsp-piano"), .s(""), .s("ddsp-pianod"), .i(1), .i(2), .i(d.process.processIdentifier)])
        nsm.send("/reply", [.s("/nsm/server/announce"), .s("hello"), .s("test-nsm"), .s(":server-control:")])

        // Before the open: no control socket under any name (no JACK or ALSA client either).
        usleep(500_000)
        XCTAssertTrue(d.process.isRunning, d.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: d.socket(name: "nPIAN")), "nothing opened before the server's open")
        XCTAssertFalse(FileManager.default.fileExists(atPath: d.socket(name: nil)))

        // A client id that cannot name the daemon: /error, and the daemon waits for another open.
        let session = dir.appendingPathComponent("session/ddsp-piano.nPIAN").path
        nsm.send("/nsm/client/open", [.s(session), .s("DDSP Piano"), .s("bad:id")])
        guard let refused = nsm.receive(within: 10) else { return XCTFail("no answer to a bad open: \(d.output)") }
        print("bad open: \(refused.path) \(refused.args)")
        XCTAssertEqual(refused.path, "/error")
        XCTAssertEqual(refused.args.prefix(2), [.s("/nsm/client/open"), .i(-1)])
        XCTAssertTrue(d.process.isRunning)

        // An open from another port than the server's: dropped (no answer, nothing made).
        let evil = dir.appendingPathComponent("evil").path
        nsm.send("/nsm/client/open", [.s(evil), .s("Evil"), .s("nEVIL")], from: try OSCPeer())
        let answer = nsm.receive(within: 1.5)
        print("open from another port: answer \(answer.map { "\($0.path) \($0.args)" } ?? "none"), \(evil) made: \(FileManager.default.fileExists(atPath: evil))")
        XCTAssertNil(answer)
        XCTAssertFalse(FileManager.default.fileExists(atPath: evil))

        let opened = Date()
        nsm.send("/nsm/client/open", [.s(session), .s("DDSP Piano"), .s("nPIAN")])
        guard let reply = nsm.receive(within: 120) else { return XCTFail("no answer to open: \(d.output)") }
        print(String(format: "open answered in %.2f s: %@ %@", Date().timeIntervalSince(opened), reply.path, "\(reply.args)"))
        XCTAssertEqual(reply.path, "/reply")
        XCTAssertEqual(reply.args, [.s("/nsm/client/open"), .s("ok")])
        let file = session + "/ddsp-pianod.toml"
        XCTAssertTrue(FileManager.default.fileExists(atPath: file), "the session's config written at open")

        // The daemon is now named by its client id: its socket, through ctl --name.
        XCTAssertTrue(d.waitReady(name: "nPIAN"), d.output)
        XCTAssertEqual(d.socket(name: "nPIAN"), dir.appendingPathComponent("run/ddsp-piano/nPIAN.sock").path)
        let cli = try d.cli(["--name", "nPIAN", "status"])
        print("ctl --name nPIAN status: \(cli.status), \(cli.output.split(separator: "\n").prefix(3))")
        XCTAssertEqual(cli.status, 0, cli.output)
        XCTAssertTrue(cli.output.contains("audio: null 16000 Hz"), cli.output)
        XCTAssertNotEqual(try d.cli(["status"]).status, 0, "the default name is not this daemon")

        // Save: answered, the file holds the settings in force.
        nsm.send("/nsm/client/save", [])
        guard let saved = nsm.receive(within: 10) else { return XCTFail("no answer to save: \(d.output)") }
        XCTAssertEqual(saved.path, "/reply")
        XCTAssertEqual(saved.args, [.s("/nsm/client/save"), .s("ok")])
        var s = try DaemonSettings().applying(file: file)
        let first = try d.status(name: "nPIAN")["instrument"] ?? ""
        print("first save: piano \(s.piano ?? "-"), gain \(s.gainDB), audio \(s.audio), rate \(s.sampleRate); playing \(first)")
        XCTAssertEqual(s.audio, "null")
        XCTAssertEqual(s.sampleRate, 16000)
        XCTAssertEqual(s.weights, weights.path)
        XCTAssertEqual(s.gainDB, 0)
        XCTAssertNil(s.name)
        XCTAssertNil(s.controlSocket)
        XCTAssertTrue(first.hasSuffix("(\(s.piano ?? "?"))"), "saved piano \(s.piano ?? "-") is the one playing: \(first)")

        // Changed with ctl, saved again: the file follows.
        let other = first.hasSuffix("(alpha)") ? "beta" : "alpha"
        XCTAssertEqual(try d.ctl("piano \(other)", name: "nPIAN").count, 1)
        XCTAssertEqual(try d.ctl("gain -7.5", name: "nPIAN"), ["gain -7.5 dB"])
        XCTAssertTrue(DaemonSupport.waitUntil(5) { (try? d.status(name: "nPIAN")["instrument"])?.hasSuffix("(\(other))") == true })
        nsm.send("/nsm/client/save", [])
        XCTAssertEqual(nsm.receive(within: 10)?.args, [.s("/nsm/client/save"), .s("ok")])
        s = try DaemonSettings().applying(file: file)
        print("second save: piano \(s.piano ?? "-"), gain \(s.gainDB)")
        XCTAssertEqual(s.piano, other)
        XCTAssertEqual(s.gainDB, -7.5)

        // A take played in the session is kept in the session (written at SIGTERM: in progress).
        XCTAssertEqual(try d.ctl("midi 90 3C 64", name: "nPIAN"), ["midi 90 3C 64"])
        usleep(200_000)
        XCTAssertEqual(try d.ctl("midi 80 3C 00", name: "nPIAN"), ["midi 80 3C 00"])
        usleep(200_000)

        // SIGTERM, as NSM stops a client: a clean exit, its socket gone.
        let end = d.terminate()
        let takes = (try? FileManager.default.contentsOfDirectory(atPath: session + "/takes")) ?? []
        print("takes in the session: \(takes)")
        XCTAssertEqual(takes.filter { $0.hasSuffix(".mid") }.count, 1, "the take is in the session's directory: \(d.output)")
        print(String(format: "SIGTERM: status %d after %.2f s", end.status, end.seconds))
        XCTAssertEqual(end.status, 0, d.output)
        XCTAssertLessThan(end.seconds, 5)
        XCTAssertFalse(FileManager.default.fileExists(atPath: d.socket(name: "nPIAN")))
        XCTAssertTrue(d.output.contains("NSM save: \(file)"), d.output)

        // The session opened again by a new process: it plays what was saved.
        let nsm2 = try OSCPeer()
        let d2 = try EnvDaemon(["--weights", weights.path], dir: dir, environment: ["NSM_URL": nsm2.url])
        guard nsm2.receive(within: 20)?.path == "/nsm/server/announce" else { return XCTFail("no second announce: \(d2.output)") }
        nsm2.send("/reply", [.s("/nsm/server/announce"), .s("hello"), .s("test-nsm"), .s("")])
        nsm2.send("/nsm/client/open", [.s(session), .s("DDSP Piano"), .s("nPIAN")])
        XCTAssertEqual(nsm2.receive(within: 120)?.args, [.s("/nsm/client/open"), .s("ok")], d2.output)
        XCTAssertTrue(d2.waitReady(name: "nPIAN"), d2.output)
        let again = try d2.status(name: "nPIAN")
        print("reopened: \(again["instrument"] ?? "-"), gain \(again["gain db"] ?? "-"), \(again["audio"] ?? "-")")
        XCTAssertEqual(again["instrument"]?.hasSuffix("(\(other))"), true)
        XCTAssertEqual(again["gain db"], "-7.5")
        XCTAssertEqual(again["audio"], "null 16000 Hz 256 frames", "the saved audio settings, not the command line's default (jack)")
        XCTAssertEqual(d2.terminate().status, 0, d2.output)
    }

    /// NSM_URL naming a port nobody listens on: one line after the announce's timeout, and the
    /// daemon plays as it would without NSM_URL (default name, default socket).
    func testNobodyAtNSMURLRunsWithoutSession() throws {
        let dir = try DaemonSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let weights = try DaemonSupport.syntheticWeights(in: dir)
        let url: String
        do { let gone = try OSCPeer(); url = gone.url }   // its port, closed again: nobody there
        let start = Date()
        let d = try EnvDaemon(["--audio", "null", "--weights", weights.path, "--name", "lonely"], dir: dir, environment: ["NSM_URL": url])
        // When it gave up on the session manager (the line appears), then when it plays.
        XCTAssertTrue(DaemonSupport.waitUntil(30) { d.output.contains("running without one") || !d.process.isRunning }, d.output)
        let waited = Date().timeIntervalSince(start)
        XCTAssertTrue(d.waitReady(name: "lonely", 30), d.output)
        let lines = d.output.split(separator: "\n").filter { $0.contains("NSM") }
        print(String(format: "gave up after %.2f s, ready after %.2f s; NSM lines: %@", waited, Date().timeIntervalSince(start), "\(lines)"))
        XCTAssertEqual(lines.count, 1, d.output)
        XCTAssertTrue(lines.first?.contains("running without one") == true, d.output)
        XCTAssertGreaterThanOrEqual(waited, Daemon.nsmAnnounceTimeout - 0.5, "it waited for an answer first")
        XCTAssertEqual(try d.status(name: "lonely")["audio"], "null 48000 Hz 256 frames")
        XCTAssertEqual(d.terminate().status, 0)
    }

    /// A server that answers the announce with /error: one line, and the daemon runs without it.
    func testRefusedAnnounceRunsWithoutSession() throws {
        let dir = try DaemonSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let weights = try DaemonSupport.syntheticWeights(in: dir)
        let nsm = try OSCPeer()
        let d = try EnvDaemon(["--audio", "null", "--weights", weights.path], dir: dir, environment: ["NSM_URL": nsm.url])
        XCTAssertEqual(nsm.receive(within: 20)?.path, "/nsm/server/announce", d.output)
        let start = Date()
        nsm.send("/error", [.s("/nsm/server/announce"), .i(-2), .s("incompatible API")])
        XCTAssertTrue(DaemonSupport.waitUntil(30) { d.output.contains("refused the announce") || !d.process.isRunning }, d.output)
        let reaction = Date().timeIntervalSince(start)
        XCTAssertTrue(d.waitReady(name: nil, 30), d.output)
        let lines = d.output.split(separator: "\n").filter { $0.contains("NSM") }
        print(String(format: "refusal logged after %.2f s, ready after %.2f s; NSM lines: %@", reaction, Date().timeIntervalSince(start), "\(lines)"))
        XCTAssertEqual(lines.count, 1, d.output)
        XCTAssertTrue(lines.first?.contains("-2: incompatible API") == true, d.output)
        XCTAssertLessThan(reaction, Daemon.nsmAnnounceTimeout, "a refusal is not waited out")
        XCTAssertEqual(d.terminate().status, 0)
    }

    /// The OSC stand-in's own encoding, checked against bytes written out by the OSC 1.0 rules
    /// (so that a mistake here cannot hide one in the daemon).
    func testOSCEncodingOfTheStandIn() {
        let bytes = OSCPeer.encode("/reply", [.s("/nsm/client/save"), .i(-1), .s("ok")])
        let expected: [UInt8] = Array("/reply".utf8) + [0, 0] + Array(",sis".utf8) + [0, 0, 0, 0]
            + Array("/nsm/client/save".utf8) + [0, 0, 0, 0] + [0xFF, 0xFF, 0xFF, 0xFF] + Array("ok".utf8) + [0, 0]
        XCTAssertEqual(bytes, expected)
        let back = OSCPeer.decode(bytes)
        XCTAssertEqual(back?.path, "/reply")
        XCTAssertEqual(back?.types, "sis")
        XCTAssertEqual(back?.args, [.s("/nsm/client/save"), .i(-1), .s("ok")])
        print("encoded \(bytes.count) bytes")
    }
}
