import Foundation
import PianoIO
import PianoTestKit
import XCTest

/// The control socket against other users and misbehaving clients: the default directory
/// (/tmp/ddsp-piano-UID without XDG_RUNTIME_DIR) is used only if it is ours alone; only our
/// uid is served (SO_PEERCRED); silent, trickling, non-reading and flooding clients do not
/// hold up the control loop. The daemon runs with `--audio null` and synthetic weights.
///
/// Tests that need a second uid run as root: they create system users (removed again at the
/// end if they created them) and start processes as them with `setpriv`.
final class ControlSocketSecurityTests: XCTestCase {
    /// Runs the daemon (fallback path) and owns the planted directory, respectively.
    static let daemonUserName = "ddsp-pianod-test"
    static let intruderName = "ddsp-piano-intruder"

    override class func tearDown() {
        TestUser.removeCreated()
        super.tearDown()
    }

    // MARK: - The fallback directory

    func testFallbackDirectoryMustBeOurs() throws {
        try TestUser.requireRoot()
        let me = try TestUser.ensure(Self.daemonUserName)
        let intruder = try TestUser.ensure(Self.intruderName)
        let dir = try DaemonSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        chmod(dir.path, 0o755)   // the daemon's user reads the weights from here
        let weights = try DaemonSupport.syntheticWeights(in: dir)
        chmod(weights.path, 0o644)
        let fallback = "/tmp/ddsp-piano-\(me.uid)"
        let socket = fallback + "/control.sock"
        let fm = FileManager.default
        try? fm.removeItem(atPath: fallback)
        defer { try? fm.removeItem(atPath: fallback) }
        let daemonArgs = ["--audio", "null", "--sample-rate", "16000", "--weights", weights.path]

        // 1. Made beforehand by another user, mode 0777: refused in one line, nothing created.
        XCTAssertEqual(mkdir(fallback, 0o777), 0)
        chown(fallback, intruder.uid, intruder.gid)
        chmod(fallback, 0o777)
        var run = try me.run(try TestKit.executable("ddsp-pianod"), daemonArgs, dir: dir)
        XCTAssertTrue(run.waitExit(30), run.output)
        XCTAssertNotEqual(run.process.terminationStatus, 0, run.output)
        var lines = run.outputLines
        print("planted directory: daemon exit status \(run.process.terminationStatus): \(lines.joined(separator: " | "))")
        XCTAssertEqual(lines.count, 1, run.output)
        for part in [fallback, "owned by uid \(intruder.uid)", "mode 0777", "XDG_RUNTIME_DIR", "--control-socket", "control_socket"] {
            XCTAssertTrue(lines.first?.contains(part) == true, "'\(part)' in: \(run.output)")
        }
        XCTAssertFalse(fm.fileExists(atPath: socket), "no socket in someone else's directory")

        // The client does not talk to a socket planted there either: it refuses before connecting.
        let planted = try Listener(path: socket)
        chmod(socket, 0o777)
        var ctl = try me.run(try TestKit.executable("ddsp-piano"), ["ctl", "status"], dir: dir)
        XCTAssertTrue(ctl.waitExit(30), ctl.output)
        print("planted directory: ctl exit status \(ctl.process.terminationStatus): \(ctl.output.trimmingCharacters(in: .newlines))")
        XCTAssertEqual(ctl.process.terminationStatus, 1, ctl.output)
        XCTAssertEqual(ctl.outputLines.count, 1, ctl.output)
        XCTAssertTrue(ctl.output.contains("\(fallback): owned by uid \(intruder.uid), mode 0777"), ctl.output)
        XCTAssertTrue(ctl.output.contains("--socket"), ctl.output)
        XCTAssertFalse(planted.hasPendingConnection(), "ctl connected to the planted socket")
        planted.close()
        try fm.removeItem(atPath: fallback)

        // 2. A symlink in its place (to a directory that would pass): refused, nothing created.
        let target = dir.appendingPathComponent("elsewhere").path
        XCTAssertEqual(mkdir(target, 0o700), 0)
        chown(target, me.uid, me.gid)
        XCTAssertEqual(symlink(target, fallback), 0)
        run = try me.run(try TestKit.executable("ddsp-pianod"), daemonArgs, dir: dir)
        XCTAssertTrue(run.waitExit(30), run.output)
        XCTAssertNotEqual(run.process.terminationStatus, 0, run.output)
        lines = run.outputLines
        print("symlink: daemon exit status \(run.process.terminationStatus): \(lines.joined(separator: " | "))")
        XCTAssertEqual(lines.count, 1, run.output)
        XCTAssertTrue(lines.first?.contains("\(fallback): is a symlink") == true, run.output)
        XCTAssertTrue(lines.first?.contains("XDG_RUNTIME_DIR") == true, run.output)
        XCTAssertEqual((try? fm.contentsOfDirectory(atPath: target)) ?? ["?"], [], "nothing created through the symlink")
        try fm.removeItem(atPath: fallback)

        // 3. Ours but with group/other bits: refused too.
        XCTAssertEqual(mkdir(fallback, 0o700), 0)
        chown(fallback, me.uid, me.gid)
        chmod(fallback, 0o750)
        run = try me.run(try TestKit.executable("ddsp-pianod"), daemonArgs, dir: dir)
        XCTAssertTrue(run.waitExit(30), run.output)
        XCTAssertNotEqual(run.process.terminationStatus, 0, run.output)
        XCTAssertTrue(run.outputLines.first?.contains("\(fallback): mode 0750") == true, run.output)
        XCTAssertFalse(fm.fileExists(atPath: socket))
        try fm.removeItem(atPath: fallback)

        // 4. Absent: the daemon makes it (0700, ours) and serves there; `ctl` finds it without
        // --socket; a second start finds its own directory and works again.
        for round in 1...2 {
            let d = try me.run(try TestKit.executable("ddsp-pianod"), daemonArgs, dir: dir)
            defer { d.stop() }
            XCTAssertTrue(DaemonSupport.waitUntil(30) { fm.fileExists(atPath: socket) || !d.process.isRunning }, d.output)
            XCTAssertTrue(d.process.isRunning, d.output)
            var st = stat()
            XCTAssertEqual(lstat(fallback, &st), 0)
            XCTAssertEqual(st.st_uid, me.uid)
            XCTAssertEqual(st.st_mode & 0o7777, 0o700)
            ctl = try me.run(try TestKit.executable("ddsp-piano"), ["ctl", "status"], dir: dir)
            XCTAssertTrue(ctl.waitExit(30), ctl.output)
            XCTAssertEqual(ctl.process.terminationStatus, 0, ctl.output + d.output)
            XCTAssertTrue(ctl.output.contains("notes received: 0"), ctl.output)
            print("own directory (round \(round)): daemon serves \(socket), ctl exit status \(ctl.process.terminationStatus)")
            XCTAssertEqual(d.stop(), 0, d.output)
            XCTAssertFalse(fm.fileExists(atPath: socket), "socket removed at shutdown")
        }
    }

    /// Under XDG_RUNTIME_DIR the daemon makes `ddsp-piano/` (0700) and checks it the same way.
    func testRuntimeDirectoryIsChecked() throws {
        let dir = try DaemonSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let weights = try DaemonSupport.syntheticWeights(in: dir)
        let runtime = dir.appendingPathComponent("run").path
        XCTAssertEqual(mkdir(runtime, 0o700), 0)
        var env = ProcessInfo.processInfo.environment
        env["XDG_RUNTIME_DIR"] = runtime
        env["XDG_CONFIG_HOME"] = dir.path
        let socketDir = runtime + "/ddsp-piano"
        let log = dir.appendingPathComponent("daemon.log")
        func start() throws -> Process {
            let p = Process()
            p.executableURL = try TestKit.executable("ddsp-pianod")
            p.arguments = ["--audio", "null", "--sample-rate", "16000", "--weights", weights.path]
            p.environment = env
            _ = FileManager.default.createFile(atPath: log.path, contents: nil)
            p.standardOutput = FileHandle.nullDevice
            p.standardError = try FileHandle(forWritingTo: log)
            try p.run()
            return p
        }
        // A directory that is too open (ours, mode 0755): refused.
        XCTAssertEqual(mkdir(socketDir, 0o700), 0)
        chmod(socketDir, 0o755)
        let refused = try start()
        XCTAssertTrue(DaemonSupport.waitUntil(30) { !refused.isRunning })
        XCTAssertEqual(refused.terminationStatus, 1)
        let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        XCTAssertTrue(text.contains("\(socketDir): mode 0755: "), text)
        XCTAssertThrowsError(try ControlClient.checkedDefaultSocketPath(environment: env)) {
            XCTAssertTrue("\($0)".hasPrefix("\(socketDir): mode 0755: "), "\($0)")
        }
        rmdir(socketDir)
        // Absent: made 0700; the client finds and accepts it.
        let p = try start()
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL) } }
        let path = try ControlClient.checkedDefaultSocketPath(environment: env)
        XCTAssertEqual(path, socketDir + "/control.sock")
        XCTAssertTrue(DaemonSupport.waitUntil(30) { (try? ControlClient.send("status", socket: path)) != nil || !p.isRunning })
        var st = stat()
        XCTAssertEqual(lstat(socketDir, &st), 0)
        XCTAssertEqual(st.st_mode & 0o7777, 0o700)
        XCTAssertEqual(st.st_uid, geteuid())
        XCTAssertNoThrow(try ControlClient.checkedDefaultSocketPath(environment: env))
        p.terminate()
        XCTAssertTrue(DaemonSupport.waitUntil(10) { !p.isRunning })
        XCTAssertEqual(p.terminationStatus, 0)
    }

    // MARK: - Only our uid

    /// The socket is normally out of other users' reach (file 0600 in a 0700 directory); to
    /// reach the SO_PEERCRED check at all, this test puts the socket in a directory it loosens
    /// to 0777 and loosens the socket file to 0777 too.
    func testOtherUidIsRefused() throws {
        try TestUser.requireRoot()
        let intruder = try TestUser.ensure(Self.intruderName)
        let dir = try DaemonSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let weights = try DaemonSupport.syntheticWeights(in: dir)
        let d = try DaemonProcess(arguments: ["--audio", "null", "--sample-rate", "16000", "--weights", weights.path], dir: dir)
        defer { _ = d.stop() }
        XCTAssertTrue(d.waitReady(), d.output)
        chmod(dir.path, 0o777)
        chmod(d.socket, 0o777)

        for i in 0..<5 {
            let start = Date()
            let ctl = try intruder.run(try TestKit.executable("ddsp-piano"), ["ctl", "--socket", d.socket, "status"], dir: dir)
            XCTAssertTrue(ctl.waitExit(30), ctl.output)
            let ms = Date().timeIntervalSince(start) * 1000
            if i == 0 { print(String(format: "uid %d: ctl exit status %d after %.0f ms: %@", intruder.uid, ctl.process.terminationStatus, ms, ctl.output.trimmingCharacters(in: .newlines))) }
            XCTAssertEqual(ctl.process.terminationStatus, 1, ctl.output)
            XCTAssertFalse(ctl.output.contains("notes received"), "served another uid: \(ctl.output)")
            XCTAssertTrue(ctl.output.contains("serves only its own uid"), ctl.output)
            // Our own clients are still served, at once.
            XCTAssertEqual(try d.status()["instrument"], "piano 1 (beta)")
        }
        let refusals = d.output.split(separator: "\n").filter { $0.contains("refused a connection") }
        print("daemon log about refusals (5 refused clients): \(refusals.joined(separator: " | "))")
        XCTAssertEqual(refusals.count, 1, "one line, rate-limited: \(d.output)")
        XCTAssertTrue(refusals.first?.contains("uid \(intruder.uid)") == true, d.output)
        XCTAssertEqual(d.stop(), 0, d.output)
    }

    // MARK: - Clients that hold the loop up

    func testSilentClientsDoNotStallTheLoop() throws {
        let dir = try DaemonSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let weights = try DaemonSupport.syntheticWeights(in: dir)
        let d = try DaemonProcess(arguments: ["--audio", "null", "--sample-rate", "16000", "--weights", weights.path], dir: dir)
        defer { _ = d.stop() }
        XCTAssertTrue(d.waitReady(), d.output)

        func timedStatus() throws -> Double {
            let start = Date()
            XCTAssertEqual(try d.status()["instrument"], "piano 1 (beta)")
            return Date().timeIntervalSince(start) * 1000
        }
        func report(_ what: String, _ ms: [Double]) {
            print(String(format: "%@: status in %@ ms (max %.1f)", what, ms.map { String(format: "%.1f", $0) }.joined(separator: ", "), ms.max() ?? 0))
        }
        let baseline = try (0..<5).map { _ in try timedStatus() }
        report("no other clients", baseline)

        // Three that connect and send nothing, one that trickles, one that never reads its reply.
        var held = try (0..<3).map { _ in try RawClient(d.socket) }
        let trickler = try RawClient(d.socket)
        trickler.write("sta")
        let deaf = try RawClient(d.socket)
        deaf.write("status\n")
        held += [trickler, deaf]
        var latencies: [Double] = []
        for i in 0..<5 {
            if i < 3 { trickler.write("t") }
            latencies.append(try timedStatus())
            usleep(100_000)
        }
        report("3 silent + 1 trickling + 1 non-reading clients", latencies)
        for ms in latencies { XCTAssertLessThan(ms, 200) }
        // The daemon hangs up on them by itself after its 2 s deadline.
        let start = Date()
        XCTAssertTrue(DaemonSupport.waitUntil(5) { held.allSatisfy { $0.isClosedByPeer() } }, "idle connections not closed")
        print(String(format: "idle connections closed by the daemon %.2f s after the measurements (deadline 2 s from connecting)", Date().timeIntervalSince(start)))
        held.forEach { $0.close() }

        // More silent clients than the table holds: the oldest go, a new request is served.
        let many = try (0..<24).map { _ in try RawClient(d.socket) }
        latencies = try (0..<5).map { _ in try timedStatus() }
        report("24 silent clients (table of 16)", latencies)
        for ms in latencies { XCTAssertLessThan(ms, 200) }
        many.forEach { $0.close() }

        // A flood of 200 connections opened and closed at once.
        let floodStart = Date()
        for _ in 0..<200 { try RawClient(d.socket).close() }
        let floodMs = Date().timeIntervalSince(floodStart) * 1000
        latencies = try (0..<5).map { _ in try timedStatus() }
        print(String(format: "flood: 200 connections opened and closed in %.1f ms", floodMs))
        report("after the flood", latencies)
        for ms in latencies { XCTAssertLessThan(ms, 200) }
        XCTAssertEqual(d.stop(), 0, d.output)
    }
}

// MARK: - Helpers

/// A client socket the test drives by hand.
private final class RawClient {
    let fd: Int32

    init(_ path: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        let rc = (try? UnixSocketAddress(path: path))?.withSockaddr { connect(fd, $0, $1) } ?? -1
        guard fd >= 0, rc == 0 else {
            let e = String(cString: strerror(errno))
            Glibc.close(fd)
            throw XCTSkip("cannot connect to \(path): \(e)")
        }
    }

    func write(_ text: String) { _ = text.withCString { send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) } }

    /// The daemon closed its end: end of file (after whatever reply it had sent) or a reset.
    func isClosedByPeer() -> Bool {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 0) == 1 else { return false }
            let n = recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
            if n <= 0 { return n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK) }
        }
    }

    func close() { Glibc.close(fd) }
}

/// A listening socket planted by the test (to see whether a client connects to it).
private final class Listener {
    let fd: Int32
    init(path: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        let rc = (try? UnixSocketAddress(path: path))?.withSockaddr { bind(fd, $0, $1) } ?? -1
        XCTAssertEqual(rc, 0)
        XCTAssertEqual(listen(fd, 8), 0)
    }
    func hasPendingConnection() -> Bool {
        let c = accept(fd, nil, nil)
        if c >= 0 { Glibc.close(c); return true }
        return false
    }
    func close() { Glibc.close(fd) }
}

/// A system user for the tests (made with useradd when missing, removed by `removeCreated`),
/// and processes run as it through setpriv.
private struct TestUser {
    let name: String
    let uid: uid_t
    let gid: gid_t
    nonisolated(unsafe) private static var created: [String] = []

    static func requireRoot() throws {
        guard geteuid() == 0 else {
            print("skipped: needs root (to create a second user and run processes as it)")
            throw XCTSkip("needs root")
        }
        guard DaemonSupport.tool("setpriv") != nil, FileManager.default.isExecutableFile(atPath: "/usr/sbin/useradd") else {
            print("skipped: needs setpriv and useradd")
            throw XCTSkip("needs setpriv and useradd")
        }
    }

    static func ensure(_ name: String) throws -> TestUser {
        if let pw = getpwnam(name) { return TestUser(name: name, uid: pw.pointee.pw_uid, gid: pw.pointee.pw_gid) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/sbin/useradd")
        p.arguments = ["--system", "--no-create-home", "--user-group", "--shell", "/usr/sbin/nologin", name]
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0, let pw = getpwnam(name) else { throw XCTSkip("useradd \(name) failed") }
        created.append(name)
        return TestUser(name: name, uid: pw.pointee.pw_uid, gid: pw.pointee.pw_gid)
    }

    static func removeCreated() {
        for name in created {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/sbin/userdel")
            p.arguments = [name]
            try? p.run()
            p.waitUntilExit()
        }
        created = []
    }

    /// `executable arguments` as this user, without XDG_RUNTIME_DIR, HOME in `dir` (no config
    /// file); stdout and stderr in one log.
    func run(_ executable: URL, _ arguments: [String], dir: URL) throws -> UserProcess {
        try UserProcess(self, executable, arguments, dir: dir)
    }
}

private final class UserProcess {
    let process = Process()
    let log: URL

    init(_ user: TestUser, _ executable: URL, _ arguments: [String], dir: URL) throws {
        log = dir.appendingPathComponent("\(executable.lastPathComponent)-\(UUID().uuidString.prefix(6)).log")
        process.executableURL = DaemonSupport.tool("setpriv")!
        process.arguments = ["--reuid=\(user.uid)", "--regid=\(user.gid)", "--clear-groups", executable.path] + arguments
        var env = ProcessInfo.processInfo.environment
        env["XDG_RUNTIME_DIR"] = nil
        env["XDG_CONFIG_HOME"] = nil
        env["HOME"] = dir.path
        process.environment = env
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let h = try FileHandle(forWritingTo: log)
        process.standardOutput = h
        process.standardError = h
        try process.run()
    }

    var output: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }

    /// The output's lines, without the daemon's warning about memory it may not lock as an
    /// ordinary user (RLIMIT_MEMLOCK), which comes before the socket is set up.
    var outputLines: [String] {
        output.split(separator: "\n").map(String.init).filter { !$0.contains("memory not locked") }
    }

    func waitExit(_ seconds: Double) -> Bool {
        if DaemonSupport.waitUntil(seconds, { !self.process.isRunning }) { process.waitUntilExit(); return true }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        return false
    }

    @discardableResult
    func stop() -> Int32 {
        if process.isRunning {
            process.terminate()
            if !DaemonSupport.waitUntil(10, { !self.process.isRunning }) { kill(process.processIdentifier, SIGKILL) }
        }
        process.waitUntilExit()
        return process.terminationStatus
    }

    deinit { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
}
