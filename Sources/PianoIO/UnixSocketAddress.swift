import DDSPPiano
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A filled `sockaddr_un` for a Unix socket path: the one place that checks the length and
/// copies the bytes (the control socket's server and client, sd_notify).
public struct UnixSocketAddress {
    public private(set) var storage = sockaddr_un()
    /// The length to pass to bind, connect or sendto.
    public let length: socklen_t

    public struct Failure: CodedError, Equatable, Sendable {
        public var description: String
        public var code: ErrorCode { .usage }
    }

    /// The longest path that fits, without its terminating NUL (107 on Linux).
    public static let maxPathBytes = MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 1

    /// Throws "PATH: socket path too long" beyond `maxPathBytes`. `abstractNamespace`: a path
    /// starting with "@" names a socket in Linux's abstract namespace (the "@" becomes the
    /// leading NUL, the length is exact), as systemd's NOTIFY_SOCKET may.
    public init(path: String, abstractNamespace: Bool = false) throws {
        var bytes = Array(path.utf8)
        guard bytes.count <= Self.maxPathBytes else { throw Failure(description: "\(path): socket path too long") }
        let abstract = abstractNamespace && bytes.first == UInt8(ascii: "@")
        if abstract { bytes[0] = 0 }
        storage.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &storage.sun_path) { p in
            for (i, b) in bytes.enumerated() { p[i] = b }
        }
        length = abstract ? socklen_t(MemoryLayout<sa_family_t>.size + bytes.count) : socklen_t(MemoryLayout<sockaddr_un>.size)
    }

    /// Calls `body` with the address as a `sockaddr` pointer and its length.
    public func withSockaddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) throws -> R) rethrows -> R {
        var copy = storage
        return try withUnsafePointer(to: &copy) {
            try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { try body($0, length) }
        }
    }
}
