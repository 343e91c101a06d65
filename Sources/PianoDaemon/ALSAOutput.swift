import Atomics
import CALSA
import CLinux
import DDSPPiano
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// `--audio alsa`: plain ALSA PCM playback, for a solo instrument without a sound server.
/// The device is opened and negotiated on the control thread (FLOAT_LE, else S32_LE, else
/// S16_LE; two channels, else one; the rate nearest the setting; a period and period count
/// nearest the settings); a dedicated thread (SCHED_FIFO when permitted) then loops: one period
/// from `AudioCore.process` (left and right of the stereo image, converted in a preallocated
/// buffer), written with `snd_pcm_writei`, xruns recovered with `snd_pcm_recover` and counted.
/// The loop allocates, locks and logs nothing (ALSAOutputTests count its allocator calls).
///
/// MIDI timing: a period's `cycleStart` is derived from the PCM clock (the pointer's
/// CLOCK_MONOTONIC stamp plus the frames queued ahead of the period, minus the buffer's
/// length), so events keep AudioCore's fixed one-period delay however late the thread woke.
/// Output latency: the buffer (`period × periods` frames) on top of the engine's.
// @unchecked Sendable: its thread owns the PCM and the buffers while started; the control thread touches only atomics.
public final class ALSAOutput: @unchecked Sendable {
    public struct Failure: CodedError {
        public var description: String
        public var code: ErrorCode { .system }
    }

    public enum Format: Int32, CaseIterable, Sendable {
        case float = 0, s32 = 1, s16 = 2
        public var name: String {
            switch self {
            case .float: return "FLOAT_LE"
            case .s32: return "S32_LE"
            case .s16: return "S16_LE"
            }
        }
        var bytes: Int { self == .s16 ? 2 : 4 }
    }

    public let device: String
    private let core: AudioCore
    /// What was asked for.
    public let requestedRate: Int
    public let requestedPeriod: Int
    public let requestedPeriods: Int
    private let preference: [Format]
    /// What the device gave (after `open`).
    public private(set) var sampleRate = 0
    public private(set) var period = 0
    public private(set) var periods = 0
    public private(set) var bufferFrames = 0
    public private(set) var channels = 0
    public private(set) var format = Format.float

    private var pcm: OpaquePointer?
    private var mono: UnsafeMutablePointer<Float>?
    private var raw: UnsafeMutableRawPointer?
    // A buffer's worth of silence in the device's format (written after an xrun).
    private var silence: UnsafeMutableRawPointer?
    private var periodNs: UInt64 = 0
    private var bufferNs: UInt64 = 0
    // The stream's frame counter: frames handed to the device (silence included).
    private var position = 0
    private let running = ManagedAtomic<Bool>(false)
    private var thread: Thread?
    private let finished = DispatchSemaphore(value: 0)
    /// Set by the loop when the device failed beyond recovery (a negative errno; 0: fine).
    public let failure = ManagedAtomic<Int>(0)
    /// Whether the loop's thread got SCHED_FIFO (-1: not started yet).
    public let realTime = ManagedAtomic<Int>(-1)
    /// Cycles whose start came from the device's timestamp (the rest: the wake-up time).
    public let stampedCycles = ManagedAtomic<Int>(0)

    public var isOpen: Bool { pcm != nil }

    public init(core: AudioCore, device: String, sampleRate: Int, period: Int, periods: Int,
                formats: [Format] = Format.allCases) {
        self.core = core
        self.device = device
        requestedRate = sampleRate
        requestedPeriod = period
        requestedPeriods = periods
        preference = formats
    }

    deinit {
        stop()
        close()
    }

    /// ALSA's one-line message for a negative error code.
    public static func message(_ err: Int32) -> String { String(cString: snd_strerror(err)) }

    /// Opens and configures the device (control thread). Throws one line naming the device.
    public func open() throws {
        calsa_silence_errors()   // alsa-lib's own stderr lines; the daemon says it once
        var handle: OpaquePointer?
        var err = calsa_pcm_open(&handle, device)
        guard err >= 0, let handle else {
            throw Failure(description: "cannot open ALSA device '\(device)': \(Self.message(err))")
        }
        var fmt: Int32 = 0
        var ch: UInt32 = 2, rate = UInt32(clamping: requestedRate), frames = UInt(max(1, requestedPeriod))
        var count = UInt32(clamping: max(1, requestedPeriods)), buffer: UInt = 0
        var stage: UnsafePointer<CChar>?
        let wanted = preference.map(\.rawValue)
        err = wanted.withUnsafeBufferPointer {
            calsa_pcm_configure(handle, $0.baseAddress, Int32($0.count), &fmt, &ch, &rate, &frames, &count, &buffer, &stage)
        }
        guard err >= 0 else {
            snd_pcm_close(handle)
            let what = stage.map { String(cString: $0) } ?? "configuring it"
            throw Failure(description: "ALSA device '\(device)': \(what): \(Self.message(err))")
        }
        pcm = handle
        format = Format(rawValue: fmt) ?? .float
        channels = Int(ch)
        sampleRate = Int(rate)
        period = Int(frames)
        periods = Int(count)
        bufferFrames = Int(buffer)
        periodNs = UInt64(period) * 1_000_000_000 / UInt64(max(1, sampleRate))
        bufferNs = UInt64(bufferFrames) * 1_000_000_000 / UInt64(max(1, sampleRate))
        let m = UnsafeMutablePointer<Float>.allocate(capacity: 2 * period)
        m.initialize(repeating: 0, count: 2 * period)
        mono = m   // the left channel, then the right (a stereo image on two or more channels)
        let bytes = period * channels * format.bytes
        raw = .allocate(byteCount: bytes, alignment: 16)
        raw!.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
        let quiet = bufferFrames * channels * format.bytes
        silence = .allocate(byteCount: max(1, quiet), alignment: 16)
        silence!.initializeMemory(as: UInt8.self, repeating: 0, count: max(1, quiet))
        position = 0
        failure.store(0, ordering: .relaxed)
    }

    /// After `stop` (or at shutdown): drops what is queued and closes the device.
    public func close() {
        guard !running.load(ordering: .relaxed) else { return }
        if let pcm {
            snd_pcm_drop(pcm)
            snd_pcm_close(pcm)
        }
        pcm = nil
        mono?.deallocate(); mono = nil
        raw?.deallocate(); raw = nil
        silence?.deallocate(); silence = nil
    }

    /// Output latency of the buffer: `period × periods` frames (the engine's comes on top).
    public var latencyFrames: Int { bufferFrames }

    /// "hw:Loopback,0,0 48000 Hz, 256 frames x 3 periods, FLOAT_LE, 2 channels"
    public var summary: String {
        "\(device) \(sampleRate) Hz, \(period) frames x \(periods) periods, \(format.name), \(channels) channel\(channels == 1 ? "" : "s")"
    }

    /// The last period rendered, in the engine's own floats (tests).
    public var lastPeriod: UnsafeBufferPointer<Float> { UnsafeBufferPointer(start: mono, count: mono == nil ? 0 : period) }
    /// The last period as written to the device, interleaved in its format (tests).
    public var lastWritten: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: raw, count: raw == nil ? 0 : period * channels * format.bytes)
    }

    /// Before `start`, on the control thread: the real-time path once through every branch on
    /// the installed engine (AudioCore.warmUp), and the device's clock read once, with nothing
    /// written to the device.
    public func warmUp(engine: PianoEngine) {
        guard pcm != nil else { return }
        core.warmUp(engine: engine, frames: period) { render(at: cycleStart()) }
        position = 0
        mono?.update(repeating: 0, count: 2 * period)
    }

    // MARK: - Real-time

    /// One period: rendered, converted and written (recovering from an xrun), exactly as the
    /// loop's thread runs it; tests call it on their own thread while the driver is not started.
    /// False: the device failed beyond recovery (`failure` holds the error).
    @discardableResult
    public func cycle() -> Bool {
        render(at: cycleStart())
        return write(frames: period)
    }

    /// The start of the cycle for the period about to be rendered, in CLOCK_MONOTONIC ns: when
    /// its first frame will play, minus the buffer's length (so that a cycle starts one buffer
    /// ahead of its sound, as a JACK cycle does one period ahead). From the device's stamp
    /// when it has one, else from now and the frames queued.
    @inline(__always)
    private func cycleStart() -> UInt64 {
        guard let pcm else { return monotonicNanoseconds() }
        var avail = 0, stamp: UInt64 = 0
        let now = monotonicNanoseconds()
        let ok = calsa_pcm_stamp(pcm, &avail, &stamp) >= 0
        let queued = max(0, bufferFrames - min(max(avail, 0), bufferFrames))
        let ahead = UInt64(queued) * 1_000_000_000 / UInt64(max(1, sampleRate))
        // A stamp from another clock (a plugin that ignored the type) is far from now: unused.
        if ok && stamp != 0 && stamp <= now && now - stamp < 1_000_000_000 {
            stampedCycles.wrappingIncrement(ordering: .relaxed)
            return stamp &+ ahead &- bufferNs
        }
        return now &+ ahead &- bufferNs
    }

    @inline(__always)
    private func render(at start: UInt64) {
        guard let mono, let raw else { return }
        let n = period, c = channels
        let right = mono + n
        core.process(frames: period, cycleStart: start, period: periodNs, position: position,
                     left: mono, right: c >= 2 ? right : nil, addDriverEvents: { _ in })
        // Channel 1 is the right one; every other channel (mono devices, and 3 and up) the left.
        @inline(__always) func source(_ k: Int) -> UnsafeMutablePointer<Float> { k == 1 ? right : mono }
        switch format {
        case .float:
            let out = raw.assumingMemoryBound(to: Float.self)
            for i in 0..<n { for k in 0..<c { out[i * c + k] = source(k)[i] } }
        case .s32:
            let out = raw.assumingMemoryBound(to: Int32.self)
            for i in 0..<n {
                for k in 0..<c { out[i * c + k] = Int32((Double(min(max(source(k)[i], -1), 1)) * 2_147_483_647).rounded()) }
            }
        case .s16:
            let out = raw.assumingMemoryBound(to: Int16.self)
            for i in 0..<n {
                for k in 0..<c { out[i * c + k] = Int16((min(max(source(k)[i], -1), 1) * 32767).rounded()) }
            }
        }
    }

    /// Writes `frames` frames of `raw`, waiting for room; an xrun (or a suspend) is recovered,
    /// counted, and the buffer filled with silence before the rest goes (the stream starts
    /// again full, so the next cycles see a running clock). False: a fatal error.
    @inline(__always)
    private func write(frames: Int) -> Bool {
        guard let pcm, let raw else { return false }
        let frameBytes = channels * format.bytes
        var done = 0
        while done < frames {
            let r = snd_pcm_writei(pcm, raw + done * frameBytes, snd_pcm_uframes_t(frames - done))
            if r >= 0 {
                done += Int(r)
                position += Int(r)
                continue
            }
            let err = Int32(r)
            if err == -EAGAIN {
                // Full: wait for a period's room (bounded, so that a stop is noticed).
                let w = snd_pcm_wait(pcm, 200)
                if w < 0 && !recover(pcm, w) { return false }
                if w == 0 && !running.load(ordering: .relaxed) && thread != nil { return true }
                continue
            }
            if !recover(pcm, err) { return false }
        }
        return true
    }

    @inline(__always)
    private func recover(_ pcm: OpaquePointer, _ err: Int32) -> Bool {
        if err == -EINTR { return true }
        guard snd_pcm_recover(pcm, err, 1) >= 0 else {
            failure.store(Int(err), ordering: .relaxed)
            return false
        }
        if err == -EPIPE || err == -ESTRPIPE {
            core.stats.xruns.wrappingIncrement(ordering: .relaxed)
            core.stats.xrunIncidents.wrappingIncrement(ordering: .relaxed)
        }
        return prefill(pcm)
    }

    /// A buffer of silence into a prepared stream (which starts it: the start threshold is the
    /// buffer), so that every rendered period meets a running clock.
    @inline(__always)
    private func prefill(_ pcm: OpaquePointer) -> Bool {
        // Its own buffer: the period waiting to be written after an xrun is still in `raw`.
        guard let silence else { return false }
        var left = bufferFrames
        while left > 0 {
            let r = snd_pcm_writei(pcm, silence, snd_pcm_uframes_t(left))
            if r > 0 { left -= Int(r); position += Int(r); continue }
            if r == -EAGAIN || r == 0 { break }          // already full: it is running
            if r == -EINTR { continue }
            if snd_pcm_recover(pcm, Int32(r), 1) < 0 { failure.store(Int(r), ordering: .relaxed); return false }
        }
        return true
    }

    /// Starts the loop's thread (after `open` and `warmUp`).
    public func start() {
        guard pcm != nil, !running.load(ordering: .relaxed) else { return }
        running.store(true, ordering: .relaxed)
        let t = Thread { [self] in
            realTime.store(Self.makeRealTime() ? 1 : 0, ordering: .relaxed)
            clinux_prefault_stack(256 * 1024)
            if let pcm, prefill(pcm) {
                while running.load(ordering: .relaxed) {
                    if !cycle() { break }
                }
            }
            running.store(false, ordering: .relaxed)
            finished.signal()
        }
        t.name = "ddsp-piano alsa audio"
        t.stackSize = 1 << 20
        thread = t
        t.start()
    }

    /// Stops the loop (it finishes its period: at most a buffer's time) and joins it.
    public func stop() {
        guard thread != nil else { return }
        running.store(false, ordering: .relaxed)
        finished.wait()
        thread = nil
    }

    /// Whether the loop is running (false after a fatal device error).
    public var isRunning: Bool { running.load(ordering: .relaxed) }

    /// SCHED_FIFO for the calling thread, at JACK's usual client priority (refused without
    /// CAP_SYS_NICE or an RLIMIT_RTPRIO: then the thread stays a normal one).
    static func makeRealTime() -> Bool {
        var p = sched_param()
        p.sched_priority = min(70, sched_get_priority_max(Int32(SCHED_FIFO)))
        return pthread_setschedparam(pthread_self(), Int32(SCHED_FIFO), &p) == 0
    }
}
