import Foundation
import PianoIO
#if canImport(Glibc)
import Glibc
#endif

/// The control socket's listening side: a Unix stream socket, one command line per connection,
/// answered with body lines and a last line "ok" or "error: …". Polled by the control loop.
public final class ControlSocket {
    public let path: String
    public let fd: Int32

    public struct Failure: Error, CustomStringConvertible { public var description: String }

    public init(path: String) throws {
        self.path = path
        let dir = (path as NSString).deletingLastPathComponent
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        guard path.utf8.count < 108 else { throw Failure(description: "\(path): socket path too long") }
        if FileManager.default.fileExists(atPath: path) {
            // A live daemon answers; a stale socket from a crash is removed.
            if (try? ControlClient.send("status", socket: path, timeout: 1)) != nil {
                throw Failure(description: "\(path): another ddsp-pianod is running")
            }
            unlink(path)
        }
        let s = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard s >= 0 else { throw Failure(description: "\(path): cannot create socket") }
        var addr = Self.address(path)
        let ok = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard ok == 0, listen(s, 8) == 0 else {
            let e = String(cString: strerror(errno))
            close(s)
            throw Failure(description: "\(path): \(e)")
        }
        chmod(path, 0o600)
        fd = s
    }

    static func address(_ path: String) -> sockaddr_un {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { p in
            for (i, b) in path.utf8.enumerated() { p[i] = b }
        }
        return addr
    }

    /// Accepts a waiting connection, reads its line (bounded), answers with `handler`.
    public func serveOne(_ handler: (String) -> (ok: Bool, lines: [String], error: String)) {
        let c = accept(fd, nil, nil)
        guard c >= 0 else { return }
        defer { close(c) }
        // Blocking with timeouts (the listening socket is non-blocking; accepted ones may inherit it).
        _ = fcntl(c, F_SETFL, 0)
        _ = fcntl(c, F_SETFD, FD_CLOEXEC)
        var tv = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var data = [UInt8]()
        var byte: UInt8 = 0
        while data.count < 4096 {
            let n = read(c, &byte, 1)
            if n <= 0 || byte == 10 { break }
            data.append(byte)
        }
        let line = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        let r = handler(line)
        var reply = r.lines.map { $0 + "\n" }.joined()
        reply += r.ok ? "ok\n" : "error: \(r.error)\n"
        _ = reply.withCString { write(c, $0, strlen($0)) }
    }

    public func closeAndRemove() {
        close(fd)
        unlink(path)
    }
}
