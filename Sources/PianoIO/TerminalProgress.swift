import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A one-line progress bar on stderr, drawn only when stderr is a terminal, so logs and
/// pipes never get carriage-return noise.
// @unchecked Sendable: its state is under a lock; drawing happens on the caller's thread.
public final class TerminalProgress: @unchecked Sendable {
    private let label: String
    private let enabled: Bool
    private let started = Date()
    private let lock = NSLock()
    private var lastDraw = Date.distantPast
    private var drawn = false

    public init(label: String, enabled: Bool = TerminalProgress.stderrIsTerminal) {
        self.label = label
        self.enabled = enabled
    }

    public static var stderrIsTerminal: Bool { isatty(STDERR_FILENO) == 1 }

    /// Safe from any thread; redraws at most ten times a second.
    public func update(_ fraction: Double) {
        guard enabled else { return }
        lock.lock(); defer { lock.unlock() }
        let now = Date()
        guard fraction >= 1 || now.timeIntervalSince(lastDraw) >= 0.1 else { return }
        lastDraw = now
        let f = min(max(fraction.isFinite ? fraction : 0, 0), 1)
        let width = 30
        let filled = Int((f * Double(width)).rounded(.down))
        var line = "\r\(label) [" + String(repeating: "#", count: filled) + String(repeating: " ", count: width - filled) + "]"
        line += String(format: " %3d%%", Int(f * 100))
        let elapsed = now.timeIntervalSince(started)
        if f > 0.02, f < 1 { line += "  ETA " + Self.clock(elapsed * (1 - f) / f) } else { line += "          " }
        FileHandle.standardError.write(Data(line.utf8))
        drawn = true
    }

    /// Erases the bar so the next line starts clean.
    public func finish() {
        guard enabled else { return }
        lock.lock(); defer { lock.unlock() }
        if drawn { FileHandle.standardError.write(Data("\r\u{1B}[2K".utf8)) }
        drawn = false
    }

    /// m:ss, or h:mm:ss from an hour on.
    public static func clock(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        return s >= 3600 ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60) : String(format: "%d:%02d", s / 60, s % 60)
    }
}
