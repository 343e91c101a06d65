import Foundation
import PianoIO
#if canImport(Glibc)
import Glibc
#endif

/// sd_notify without libsystemd: one datagram per message to $NOTIFY_SOCKET.
public struct SystemdNotify: Sendable {
    public let path: String?
    public let watchdogMicroseconds: UInt64?

    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        path = environment["NOTIFY_SOCKET"].flatMap { $0.isEmpty ? nil : $0 }
        watchdogMicroseconds = environment["WATCHDOG_USEC"].flatMap { UInt64($0) }
    }

    public func send(_ message: String) {
        guard let path, let address = try? UnixSocketAddress(path: path, abstractNamespace: true) else { return }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return }
        defer { close(fd) }
        _ = message.withCString { m in address.withSockaddr { sendto(fd, m, strlen(m), 0, $0, $1) } }
    }
}
