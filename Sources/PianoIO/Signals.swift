import CLinux
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The project's one signal mechanism, for every executable: a C handler (CLinux's shim.h; this
/// is the only Swift file that calls it) that does only async-signal-safe work, in one of two ways
/// per signal:
/// - `receive`: the signal is recorded (`received`) and its number written to a self-pipe, so the
///   program acts on it at a safe point: the daemon's control loop polls `descriptor` and reads
///   `next()` (SIGINT/SIGTERM stop it, SIGHUP reloads); the trainer checks `received` between
///   steps (SIGINT/SIGTERM: checkpoint, exit 130).
/// - `removeTemporaryFilesAndDie`: every temporary file registered with `registerTemporaryFile`
///   (`AudioFileWriter`'s file being written) is unlinked, then the process dies of the signal as
///   usual (`ddsp-piano render`, `ddsp-piano-train dataset` on SIGINT/SIGTERM/SIGHUP).
/// A signal routed again takes the newer way.
public enum Signals {
    private static let lock = NSLock()

    /// Routes `signals` to the handler as received (recorded, and written to the pipe).
    /// False when the pipe or a handler could not be installed.
    @discardableResult
    public static func receive(_ signals: [Int32]) -> Bool {
        lock.lock(); defer { lock.unlock() }
        return signals.allSatisfy { clinux_signal_route($0, 0) == 0 }
    }

    /// Routes `signals` to the handler as fatal: registered temporary files are removed, then
    /// the process dies of the signal. Safe to call more than once.
    public static func removeTemporaryFilesAndDie(on signals: [Int32]) {
        lock.lock(); defer { lock.unlock() }
        for s in signals { _ = clinux_signal_route(s, 1) }
    }

    /// Ignores `signal` (the daemon: SIGPIPE; a peer that hung up is an error return).
    public static func ignore(_ signal: Int32) {
        clinux_signal_ignore(signal)
    }

    /// The pipe's read end (non-blocking, readable while a received signal waits); -1 before
    /// `receive`.
    public static var descriptor: Int32 { clinux_signal_read_fd() }

    /// The next received signal from the pipe, nil when none waits.
    public static func next() -> Int32? {
        let s = clinux_signal_next()
        return s == 0 ? nil : Int32(s)
    }

    /// The last received signal's number; 0 while none has come (reading the pipe does not
    /// change it).
    public static var received: Int32 { clinux_signal_received() }

    /// A temporary file a fatal signal removes, until `unregisterTemporaryFile`. Up to 256 at once
    /// (paths under 4096 bytes); others are not removed on a signal.
    public static func registerTemporaryFile(_ path: String) {
        lock.lock(); defer { lock.unlock() }
        _ = clinux_temp_path_add(path)
    }

    public static func unregisterTemporaryFile(_ path: String) {
        lock.lock(); defer { lock.unlock() }
        clinux_temp_path_remove(path)
    }
}
