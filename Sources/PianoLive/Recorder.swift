import Atomics
import DDSPPiano

/// One event the engine played, as the audio thread hands it to the take archive: after the
/// router (velocity curve applied, program numbers mapped to piano indices), at the engine
/// sample it was played at. `status == 0` marks a new engine (its sample clock restarts at 0).
public struct TakeEvent: Equatable, Sendable {
    /// Engine sample (samples the current engine has rendered before this event).
    public var sample: Int
    public var status: UInt8
    public var data1: UInt8
    public var data2: UInt8
    /// The piano the engine was playing in the event's cycle.
    public var instrument: Int16
    public init(sample: Int, status: UInt8, data1: UInt8, data2: UInt8, instrument: Int16) {
        self.sample = sample; self.status = status; self.data1 = data1; self.data2 = data2; self.instrument = instrument
    }

    /// A message's raw bytes (status, data1, data2; program change: data2 = 0).
    @inline(__always)
    public static func bytes(_ m: MIDIMessage) -> (UInt8, UInt8, UInt8) {
        switch m {
        case let .noteOn(c, p, v): return (0x90 | c, p, v)
        case let .noteOff(c, p, v): return (0x80 | c, p, v)
        case let .controlChange(c, n, v): return (0xB0 | c, n, v)
        case let .programChange(c, p): return (0xC0 | c, p, 0)
        }
    }
}

/// The daemon's output on its way to a WAV file: a preallocated lock-free ring of interleaved
/// frames (any channel count up to the capacity), filled by the audio thread with a plain copy
/// of each output block, emptied by a writer thread. The audio thread never waits: a block that
/// does not fit is dropped whole and its frames counted (`overrunFrames`).
///
/// Start and stop are a handshake through two counters: the control thread bumps `request`
/// (odd: recording, even: not), the audio thread answers at its next cycle by storing the same
/// value in `acknowledged`; so after a stop is acknowledged nothing more enters the ring, and
/// the writer can drain it to the end.
// @unchecked Sendable: one producer (audio thread), one consumer (writer thread), atomics between.
public final class OutputRecorderRing: @unchecked Sendable {
    /// Floats the ring holds (a power of two).
    public let capacity: Int
    private let storage: UnsafeMutablePointer<Float>
    private let mask: Int
    private let head = ManagedAtomic<Int>(0)   // next float to read (consumer)
    private let tail = ManagedAtomic<Int>(0)   // next float to write (producer)
    public let request = ManagedAtomic<Int>(0)
    public let acknowledged = ManagedAtomic<Int>(0)
    /// Channels interleaved in the ring while recording (set before a start).
    public let channels = ManagedAtomic<Int>(1)
    /// Engine sample of the first recorded frame (−1: none yet).
    public let startSample = ManagedAtomic<Int>(-1)
    /// Frames recorded into the ring, and frames dropped because it was full.
    public let recordedFrames = ManagedAtomic<Int>(0)
    public let overrunFrames = ManagedAtomic<Int>(0)
    /// Channels the driver last output (published each cycle by the audio thread).
    public let driverChannels = ManagedAtomic<Int>(0)

    /// `capacity`: floats, rounded up to a power of two (at least 1024).
    public init(capacity: Int) {
        var c = 1024
        while c < capacity { c <<= 1 }
        self.capacity = c
        mask = c - 1
        storage = .allocate(capacity: c)
        storage.initialize(repeating: 0, count: c)
    }

    deinit { storage.deallocate() }

    public var isRecording: Bool { request.load(ordering: .relaxed) & 1 == 1 }

    // MARK: Audio thread

    /// One output block: `frames` samples of `left` (and `right`, nil for a mono driver),
    /// written interleaved as `channels` channels (a mono block fills every channel).
    /// `engineSample`: the engine sample of the block's first frame.
    @inline(__always)
    public func capture(left: UnsafePointer<Float>, right: UnsafePointer<Float>?, frames: Int, engineSample: Int) {
        driverChannels.store(right == nil ? 1 : 2, ordering: .relaxed)
        let r = request.load(ordering: .acquiring)
        if acknowledged.load(ordering: .relaxed) != r {
            if r & 1 == 1 { startSample.store(engineSample, ordering: .relaxed) }
            acknowledged.store(r, ordering: .releasing)
        }
        guard r & 1 == 1 else { return }
        let ch = max(1, channels.load(ordering: .relaxed))
        let n = frames * ch
        let t = tail.load(ordering: .relaxed)
        guard n <= capacity - (t - head.load(ordering: .acquiring)) else {
            overrunFrames.wrappingIncrement(by: frames, ordering: .relaxed)
            return
        }
        // Plain loops (no iterators or closures: nothing for an unoptimised build to box).
        var w = t, i = 0
        if ch == 1 {
            while i < frames { storage[w & mask] = left[i]; w += 1; i += 1 }
        } else {
            let other: UnsafePointer<Float>
            if let right { other = right } else { other = left }
            while i < frames {
                var c = 0
                while c < ch { storage[w & mask] = c & 1 == 0 ? left[i] : other[i]; w += 1; c += 1 }
                i += 1
            }
        }
        tail.store(t + n, ordering: .releasing)
        recordedFrames.wrappingIncrement(by: frames, ordering: .relaxed)
    }

    // MARK: Consumer (writer thread; the control thread between recordings)

    /// Floats waiting in the ring.
    public var available: Int { tail.load(ordering: .acquiring) - head.load(ordering: .relaxed) }

    /// Moves up to `into.count` waiting floats (whole frames of `frameWidth`) out of the ring.
    public func read(into: UnsafeMutableBufferPointer<Float>, frameWidth: Int) -> Int {
        let h = head.load(ordering: .relaxed)
        var n = min(tail.load(ordering: .acquiring) - h, into.count)
        n -= n % max(1, frameWidth)
        for i in 0..<n { into[i] = storage[(h + i) & mask] }
        head.store(h + n, ordering: .releasing)
        return n
    }

    /// Drops what is waiting (consumer side, only while not recording and acknowledged).
    public func discard() {
        head.store(tail.load(ordering: .acquiring), ordering: .releasing)
    }
}
