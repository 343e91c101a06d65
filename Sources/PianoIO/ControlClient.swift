import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The client side of ddsp-pianod's control socket (used by `ddsp-piano ctl`): sends one
/// command line, returns the reply's body lines; a reply ending "error: …" throws.
public enum ControlClient {
    public struct Failure: Error, CustomStringConvertible, Equatable {
        public var description: String
    }

    /// `$XDG_RUNTIME_DIR/ddsp-piano/control.sock`, else `/tmp/ddsp-piano-UID/control.sock`
    /// (the daemon's default).
    public static func defaultSocketPath(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let r = environment["XDG_RUNTIME_DIR"], r.hasPrefix("/") { return r + "/ddsp-piano/control.sock" }
        return "/tmp/ddsp-piano-\(getuid())/control.sock"
    }

    public static func send(_ command: String, socket path: String, timeout: Int = 10) throws -> [String] {
        guard path.utf8.count < 108 else { throw Failure(description: "\(path): socket path too long") }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "cannot create a socket") }
        defer { close(fd) }
        var tv = timeval(tv_sec: timeout, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { p in
            for (i, b) in path.utf8.enumerated() { p[i] = b }
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else {
            throw Failure(description: "\(path): \(String(cString: strerror(errno))) (is ddsp-pianod running?)")
        }
        let line = command.replacingOccurrences(of: "\n", with: " ") + "\n"
        _ = line.withCString { write(fd, $0, strlen($0)) }
        var data = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(fd, &buffer, buffer.count)
            if n <= 0 { break }
            data += buffer[0..<n]
        }
        var lines = String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        while lines.last == "" { lines.removeLast() }
        guard let last = lines.popLast() else { throw Failure(description: "\(path): no answer from ddsp-pianod") }
        if last == "ok" { return lines }
        if last.hasPrefix("error: ") { throw Failure(description: String(last.dropFirst(7))) }
        throw Failure(description: "\(path): unexpected answer '\(last)'")
    }
}
