import Atomics
import DDSPPiano
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// `--audio null`: the same engine clocked by a timer, output discarded. For tests and for
/// machines without audio. A cycle that starts late counts as an xrun and the clock skips ahead.
// @unchecked Sendable: its timer thread owns the engine side; the control thread touches only atomics.
public final class NullDriver: @unchecked Sendable {
    public let sampleRate: Int
    public let blockSize: Int
    private let core: AudioCore
    private let running = ManagedAtomic<Bool>(false)
    private var thread: Thread?
    private let finished = DispatchSemaphore(value: 0)
    private let buffer: UnsafeMutablePointer<Float>
    private let period: UInt64
    // The driver's sample clock (audio thread, or the caller of `cycle` while not started).
    private var position = 0

    public init(core: AudioCore, sampleRate: Int, blockSize: Int) {
        self.core = core
        self.sampleRate = sampleRate
        self.blockSize = blockSize
        buffer = .allocate(capacity: 2 * blockSize)   // left, then right: the stereo image, as `ctl record` keeps it
        buffer.initialize(repeating: 0, count: 2 * blockSize)
        period = UInt64(blockSize) * 1_000_000_000 / UInt64(sampleRate)
    }

    deinit {
        stop()
        buffer.deallocate()
    }

    /// The last cycle's output (the left channel).
    public var output: UnsafeBufferPointer<Float> { UnsafeBufferPointer(start: buffer, count: blockSize) }

    /// Before `start`: the real-time path once through every branch (AudioCore.warmUp).
    public func warmUp(engine: PianoEngine) {
        core.warmUp(engine: engine, frames: blockSize) { cycle(at: monotonicNanoseconds()) }
        position = 0
    }

    /// One cycle on the calling thread, exactly as the driver's thread runs it (warm-up and
    /// tests; never while started).
    public func cycle(at cycleStart: UInt64) {
        core.process(frames: blockSize, cycleStart: cycleStart, period: period, position: position,
                     left: buffer, right: buffer + blockSize, addDriverEvents: { _ in })
        position += blockSize
    }

    public func start() {
        running.store(true, ordering: .relaxed)
        let t = Thread { [self] in loop(); finished.signal() }
        t.name = "ddsp-piano null audio"
        thread = t
        t.start()
    }

    public func stop() {
        guard running.exchange(false, ordering: .relaxed) else { return }
        finished.wait()
    }

    private func loop() {
        var next = monotonicNanoseconds()
        while running.load(ordering: .relaxed) {
            var ts = timespec(tv_sec: Int(next / 1_000_000_000), tv_nsec: Int(next % 1_000_000_000))
            while clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nil) == EINTR {}
            cycle(at: next)
            next += period
            let now = monotonicNanoseconds()
            if now > next + period {
                core.stats.xruns.wrappingIncrement(ordering: .relaxed)
                next = now
            }
        }
    }
}
