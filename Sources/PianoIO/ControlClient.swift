import DDSPPiano
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The client side of ddsp-pianod's control socket (used by `ddsp-piano ctl`): sends one
/// command line, returns the reply's body lines; a reply ending "error: …" throws.
public enum ControlClient {
    public struct Failure: CodedError, Equatable {
        public var description: String
        /// `.usage`: the daemon refused the command; `.system`: no daemon, or no answer.
        public var code: ErrorCode = .system
    }

    /// `$XDG_RUNTIME_DIR/ddsp-piano/control.sock`, else `/tmp/ddsp-piano-UID/control.sock`
    /// (the daemon's default); either directory is used only if it is ours alone
    /// (`checkPrivateDirectory`).
    /// A daemon started with `--name NAME` (other than the default, `DaemonRules.defaultName`)
    /// listens on NAME.sock in the same directory: the one rule, for the daemon and `ctl --name`.
    public static func defaultSocketPath(name: String? = nil, environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        let file = name.map { $0 == DaemonRules.defaultName ? "control.sock" : "\($0).sock" } ?? "control.sock"
        if let r = environment["XDG_RUNTIME_DIR"], r.hasPrefix("/") { return r + "/ddsp-piano/" + file }
        return "/tmp/ddsp-piano-\(getuid())/" + file
    }

    public static func send(_ command: String, socket path: String, timeout: Int = 10) throws -> [String] {
        let address: UnixSocketAddress
        do { address = try UnixSocketAddress(path: path) } catch { throw Failure(description: "\(error)", code: error.errorCode) }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "cannot create a socket") }
        defer { close(fd) }
        var tv = timeval(tv_sec: timeout, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let rc = address.withSockaddr { connect(fd, $0, $1) }
        guard rc == 0 else {
            throw Failure(description: "\(path): \(String(cString: strerror(errno))) (is ddsp-pianod running?)")
        }
        let line = command.replacingOccurrences(of: "\n", with: " ") + "\n"
        // MSG_NOSIGNAL: a daemon that hung up (e.g. on another uid) is an answer, not SIGPIPE.
        _ = line.withCString { Glibc.send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
        var data = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(fd, &buffer, buffer.count)
            if n <= 0 { break }
            data += buffer[0..<n]
        }
        var lines = String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        while lines.last == "" { lines.removeLast() }
        guard let last = lines.popLast() else {
            if let peer = peerUID(fd), peer != geteuid() {
                throw Failure(description: "\(path): no answer from ddsp-pianod (it runs as uid \(peer) and serves only its own uid)")
            }
            throw Failure(description: "\(path): no answer from ddsp-pianod")
        }
        if last == "ok" { return lines }
        if last.hasPrefix("error: ") { throw Failure(description: String(last.dropFirst(7)), code: .usage) }
        throw Failure(description: "\(path): unexpected answer '\(last)'")
    }
}

// MARK: - Who may use the socket

extension ControlClient {
    /// What a refused directory's message suggests: the daemon's options, or the client's.
    public static let daemonRemedy = "set XDG_RUNTIME_DIR, or --control-socket PATH (config key control_socket)"
    public static let clientRemedy = "set XDG_RUNTIME_DIR, or pass --socket PATH"

    /// The control socket's directory must be ours alone, so that nobody else can plant or
    /// replace a socket in it: a real directory (not a symlink), owned by our uid, mode exactly
    /// 0700. With `create`, it is made first (mode 0700) when absent; an existing one (EEXIST,
    /// whoever made it) is checked like any other. Without `create`, an absent directory passes
    /// (there is then no socket to talk to). Used by the daemon for the default socket's
    /// directory and by `ddsp-piano ctl` before it connects to the default socket. Throws one
    /// line: the path, what is wrong, what to set instead.
    public static func checkPrivateDirectory(_ dir: String, create: Bool, remedy: String) throws {
        func refuse(_ problem: String) -> Failure {
            Failure(description: "\(dir): \(problem): not using it for the control socket (it must be a directory of uid \(geteuid()) with mode 0700); \(remedy)")
        }
        if create {
            if mkdir(dir, 0o700) == 0 {
                // The umask may have taken bits away; nobody else can have it yet.
                chmod(dir, 0o700)
            } else if errno != EEXIST {
                throw refuse("cannot create it (\(String(cString: strerror(errno))))")
            }
        }
        var st = stat()
        guard lstat(dir, &st) == 0 else {
            if errno == ENOENT && !create { return }
            throw refuse("cannot check it (\(String(cString: strerror(errno))))")
        }
        let type = st.st_mode & S_IFMT
        if type == S_IFLNK { throw refuse("is a symlink") }
        if type != S_IFDIR { throw refuse("is not a directory") }
        var problems: [String] = []
        if st.st_uid != geteuid() { problems.append("owned by uid \(st.st_uid)") }
        let mode = st.st_mode & 0o7777
        if mode != 0o700 { problems.append("mode " + String(format: "%04o", mode)) }
        if !problems.isEmpty { throw refuse(problems.joined(separator: ", ")) }
    }

    /// The default socket path, its directory checked (`checkPrivateDirectory`, not created):
    /// what `ddsp-piano ctl` connects to without `--socket`.
    public static func checkedDefaultSocketPath(name: String? = nil, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> String {
        let path = defaultSocketPath(name: name, environment: environment)
        try checkPrivateDirectory((path as NSString).deletingLastPathComponent, create: false, remedy: clientRemedy)
        return path
    }

    /// The uid of the process at the other end of a connected Unix socket (SO_PEERCRED), or
    /// nil when the kernel does not say.
    public static func peerUID(_ fd: Int32) -> uid_t? {
        // struct ucred { pid_t pid; uid_t uid; gid_t gid; } (Glibc hides it without _GNU_SOURCE).
        var cred: (pid: Int32, uid: UInt32, gid: UInt32) = (0, 0, 0)
        var len = socklen_t(MemoryLayout.size(ofValue: cred))
        guard getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0, len == MemoryLayout.size(ofValue: cred) else { return nil }
        return cred.uid
    }
}
