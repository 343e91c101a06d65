import DDSPPiano
import Foundation
import PianoIO
#if canImport(Glibc)
import Glibc
#endif

/// The control socket's listening side: a Unix stream socket, one command line per connection,
/// answered with body lines and a last line "ok" or "error: …".
///
/// Nothing here blocks: the control loop polls `pollDescriptors` (the listening socket and the
/// open connections) and hands the result to `service`. Only processes of our own uid are served
/// (SO_PEERCRED); at most `maxConnections` are open at once (a new one pushes out the oldest); a
/// line is served when its "\n" arrives, when the client half-closes, or at `maxLine` bytes; a
/// connection has `deadline` to deliver its line and again to take its reply, else it is closed.
/// So a client that connects and says nothing, trickles, or never reads costs the loop (which
/// also supervises JACK and feeds the systemd watchdog) nothing but a table slot.
public final class ControlSocket {
    public let path: String
    public let fd: Int32
    public static let maxConnections = 16
    public static let deadline: UInt64 = 2_000_000_000
    static let maxLine = 4096
    /// At most one line about refused peers per this many nanoseconds.
    static let refusalLogInterval: UInt64 = 10_000_000_000

    public struct Failure: CodedError {
        public var description: String
        public var code: ErrorCode { .system }
    }

    private final class Connection {
        let fd: Int32
        var deadline: UInt64
        var input: [UInt8] = []
        var reply: [UInt8]?
        var written = 0
        init(fd: Int32, deadline: UInt64) { self.fd = fd; self.deadline = deadline }
    }

    private var connections: [Connection] = []
    private let log: (String) -> Void
    private let uid = geteuid()
    private var lastRefusalLog: UInt64?
    private var refusedSinceLog = 0

    /// `privateDirectory`: the socket's directory is the default one, made (0700) and used only
    /// if it is ours alone (`ControlClient.checkPrivateDirectory`); an explicit path's directory
    /// is made if missing and left as the user set it up.
    public init(path: String, privateDirectory: Bool = false, log: @escaping (String) -> Void = { _ in }) throws {
        self.path = path
        self.log = log
        let dir = (path as NSString).deletingLastPathComponent
        if privateDirectory {
            do { try ControlClient.checkPrivateDirectory(dir, create: true, remedy: ControlClient.daemonRemedy) } catch {
                throw Failure(description: "\(error)")
            }
        } else {
            try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        }
        let address: UnixSocketAddress
        do { address = try UnixSocketAddress(path: path) } catch { throw Failure(description: "\(error)") }
        if FileManager.default.fileExists(atPath: path) {
            // A live daemon answers; a stale socket from a crash is removed.
            if (try? ControlClient.send("status", socket: path, timeout: 1)) != nil {
                throw Failure(description: "\(path): another ddsp-pianod is running")
            }
            unlink(path)
        }
        let s = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard s >= 0 else { throw Failure(description: "\(path): cannot create socket") }
        let ok = address.withSockaddr { bind(s, $0, $1) }
        guard ok == 0, listen(s, 16) == 0 else {
            let e = String(cString: strerror(errno))
            close(s)
            throw Failure(description: "\(path): \(e)")
        }
        chmod(path, 0o600)
        fd = s
    }

    /// What the control loop polls: the listening socket first, then each connection (readable
    /// while its line is incomplete, writable while its reply is pending).
    public var pollDescriptors: [pollfd] {
        [pollfd(fd: fd, events: Int16(POLLIN), revents: 0)]
            + connections.map { pollfd(fd: $0.fd, events: Int16($0.reply == nil ? POLLIN : POLLOUT), revents: 0) }
    }

    /// After the loop's poll (whatever it returned, timeouts included): accepts waiting
    /// connections, reads, answers complete lines with `handler`, writes replies, closes
    /// connections that are done or past their deadline. Never blocks.
    public func service(_ polled: ArraySlice<pollfd>, _ handler: (String) -> (ok: Bool, lines: [String], error: String)) {
        if connections.isEmpty && (polled.first { $0.fd == fd }?.revents ?? 0) == 0 { return }
        var events: [Int32: Int16] = [:]
        for p in polled { events[p.fd] = p.revents }
        let now = Self.now()
        var done: Set<ObjectIdentifier> = []
        for c in connections where (events[c.fd] ?? 0) != 0 {
            if !progress(c, now: now, handler) { done.insert(ObjectIdentifier(c)) }
        }
        for c in connections where now >= c.deadline { done.insert(ObjectIdentifier(c)) }
        if !done.isEmpty {
            for c in connections where done.contains(ObjectIdentifier(c)) { close(c.fd) }
            connections.removeAll { done.contains(ObjectIdentifier($0)) }
        }
        if let listening = events[fd], listening != 0 { acceptWaiting(now: now, handler) }
    }

    /// Accepts what is waiting (bounded per call), refuses other uids, tries each new one at once.
    private func acceptWaiting(now: UInt64, _ handler: (String) -> (ok: Bool, lines: [String], error: String)) {
        for _ in 0..<64 {
            let c = accept(fd, nil, nil)
            guard c >= 0 else { return }   // EAGAIN: none left (or a transient error)
            _ = fcntl(c, F_SETFD, FD_CLOEXEC)
            _ = fcntl(c, F_SETFL, fcntl(c, F_GETFL) | O_NONBLOCK)
            guard let peer = ControlClient.peerUID(c), peer == uid else {
                refused(ControlClient.peerUID(c), now: now)
                close(c)
                continue
            }
            let connection = Connection(fd: c, deadline: now + Self.deadline)
            if !progress(connection, now: now, handler) { close(c); continue }
            if connections.count >= Self.maxConnections { close(connections.removeFirst().fd) }
            connections.append(connection)
        }
    }

    /// Reads what there is; serves the line once complete; writes what it can. False: finished
    /// (reply written, or the connection failed): close it.
    private func progress(_ c: Connection, now: UInt64, _ handler: (String) -> (ok: Bool, lines: [String], error: String)) -> Bool {
        if c.reply == nil {
            var buffer = [UInt8](repeating: 0, count: Self.maxLine)
            var ended = false
            while c.input.count < Self.maxLine && !c.input.contains(10) {
                let n = read(c.fd, &buffer, Self.maxLine - c.input.count)
                if n > 0 { c.input += buffer[0..<n]; continue }
                if n == 0 { ended = true; break }       // half-closed: serve what came
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK { break }
                return false
            }
            guard ended || c.input.count >= Self.maxLine || c.input.contains(10) else { return true }
            let bytes = c.input.firstIndex(of: 10).map { c.input[..<$0] } ?? c.input[...]
            let line = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            let r = handler(line)
            var text = r.lines.map { $0 + "\n" }.joined()
            text += r.ok ? "ok\n" : "error: \(r.error)\n"
            c.reply = Array(text.utf8)
            c.deadline = Self.now() + Self.deadline   // the handler may have taken a while (reload)
        }
        guard let reply = c.reply else { return true }
        while c.written < reply.count {
            let n = reply.withUnsafeBytes { send(c.fd, $0.baseAddress! + c.written, reply.count - c.written, Int32(MSG_NOSIGNAL)) }
            if n > 0 { c.written += n; continue }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { return true }
            return false
        }
        return false
    }

    /// One line about refused peers, at most every `refusalLogInterval` (with how many since).
    private func refused(_ peer: uid_t?, now: UInt64) {
        refusedSinceLog += 1
        if let last = lastRefusalLog, now - last < Self.refusalLogInterval { return }
        let who = peer.map { "uid \($0)" } ?? "an unknown uid"
        let more = refusedSinceLog > 1 ? " (\(refusedSinceLog) refused since the last such line)" : ""
        log("control socket: refused a connection from \(who): only uid \(uid) is served\(more)")
        lastRefusalLog = now
        refusedSinceLog = 0
    }

    static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    public func closeAndRemove() {
        for c in connections { close(c.fd) }
        connections.removeAll()
        close(fd)
        unlink(path)
    }
}
