import Atomics
import DDSPPiano

/// Requests from the control thread to the audio thread.
public enum AudioCommand: Sendable {
    case instrument(Int)
    case panic
}

/// Objects handed between threads as retained raw pointers, so that neither allocation nor
/// release (free) ever happens on the audio thread.
enum Handover {
    case engine(UnsafeMutableRawPointer)
    case router(UnsafeMutableRawPointer)
}

/// Counters the audio thread publishes (relaxed atomics: read for status, never waited on).
// @unchecked Sendable: every field is an atomic.
public final class AudioStats: @unchecked Sendable {
    public let notesReceived = ManagedAtomic<Int>(0)
    public let notesReleased = ManagedAtomic<Int>(0)
    public let programsIgnored = ManagedAtomic<Int>(0)
    /// xrun notifications from the server (JACK's xrun callback, every one counted), and the
    /// incidents they make (JACK2 sends one per cause: late driver, each unfinished client).
    public let xruns = ManagedAtomic<Int>(0)
    public let xrunIncidents = ManagedAtomic<Int>(0)
    public let voices = ManagedAtomic<Int>(0)
    public let cpuPermille = ManagedAtomic<Int>(0)
    /// Largest single-callback load seen (permille of the period).
    public let peakPermille = ManagedAtomic<Int>(0)
    /// Callbacks that took longer than their period: xruns of our own making (JACK's xrun
    /// count also includes the server's and other clients').
    public let lateCycles = ManagedAtomic<Int>(0)
    /// Events the audio thread received and did not play: non-releases refused by a full
    /// cycle (`ReleasePolicy`), redundant duplicate releases. Zero unless flooded.
    public let eventsDropped = ManagedAtomic<Int>(0)
    public let cycles = ManagedAtomic<Int>(0)
    /// Frames the server's clock moved on without calling us (JACK skipped our cycles: a busy
    /// machine, a stalled server, or after one of our own late cycles). Their MIDI is lost.
    public let skippedFrames = ManagedAtomic<Int>(0)
    public let instrument = ManagedAtomic<Int>(-1)
    public let silentCycles = ManagedAtomic<Int>(0)
    /// Driver clock (JACK frame time) minus engine samples rendered: the clock position of
    /// engine sample 0 if no cycle was skipped since; −1 before the current engine's first cycle.
    public let engineOrigin = ManagedAtomic<Int>(-1)
    /// Samples the current engine has rendered (the take archive's clock).
    public let engineSamples = ManagedAtomic<Int>(0)
    /// Played events the take archive's queue had no room for (never waited on).
    public let takeEventsLost = ManagedAtomic<Int>(0)
    public init() {}
}

/// The real-time side of the daemon, shared by the JACK and the null driver: drains the MIDI
/// queues, places events on samples, renders one PianoEngine into both outputs.
/// Everything it touches in `process` is preallocated; it never waits.
// @unchecked Sendable: `process` runs on the audio thread only; the control side meets it through SPSC queues and atomics.
public final class AudioCore: @unchecked Sendable {
    /// Events one cycle can carry to the engine. The last `releaseReserve` slots take only
    /// releases (`ReleasePolicy`), so a flood of notes can never crowd out their note-offs.
    public static let maxEventsPerCycle = 4096
    public static let releaseReserve = ReleasePolicy.distinctTargets + 1
    /// 2^21 floats: 21.8 s of stereo at 48 kHz for the writer thread to fall behind by.
    public static let daemonRecorderCapacity = 1 << 21
    /// Events played between two passes of the control loop (20 ms) that the take queue holds.
    public static let daemonTakeCapacity = 16384

    public let stats = AudioStats()
    /// Producers: one queue per producing thread (ALSA thread, control thread).
    public let alsaQueue = MIDIEventQueue()
    public let controlMIDIQueue = MIDIEventQueue(capacity: 256, backlog: 256)
    public let commands = SPSCQueue<AudioCommand>(capacity: 64)
    let inbox = SPSCQueue<Handover>(capacity: 16)
    let outbox = SPSCQueue<Handover>(capacity: 64)
    /// Output gain (linear), as Float bits.
    public let gainBits = ManagedAtomic<UInt32>(Float(1).bitPattern)
    /// The engine's live settings, read at every cycle: stereo width (0 = mono, both channels
    /// the same), A4 in Hz, transposition in semitones.
    public let widthBits = ManagedAtomic<UInt32>(Float(0).bitPattern)
    public let a4Bits = ManagedAtomic<UInt32>(Tuning.defaultA4.bitPattern)
    public let transpose = ManagedAtomic<Int>(0)
    public let freewheeling = ManagedAtomic<Bool>(false)
    /// The take archive (`TakeEvent`): while `takesOn`, every event the engine plays, with its
    /// engine sample, goes into `takeEvents` (full: counted in `stats.takeEventsLost`).
    public let takeEvents: SPSCQueue<TakeEvent>
    public let takesOn = ManagedAtomic<Bool>(false)
    /// `ctl record`: the output, copied into a preallocated ring for a writer thread.
    public let recorder: OutputRecorderRing

    // Audio-thread state.
    // Not retained here (unowned(unsafe)): the handover's retain keeps them alive until the
    // control thread releases them from the outbox. A strong reference would be dropped here
    // after the old object is already in the outbox, and the control thread's release could
    // come first: the last release, and its free, would then be the audio thread's.
    private unowned(unsafe) var engine: PianoEngine?
    private unowned(unsafe) var router: MIDIRouter?
    /// The same objects as the retained pointers they were handed over as.
    private var enginePointer: UnsafeMutableRawPointer?
    private var routerPointer: UnsafeMutableRawPointer?
    private let events: UnsafeMutablePointer<EngineEvent>
    private var eventCount = 0
    private var cycleFrames = 0
    private var loadAverage: Double = 0
    private var rendered = 0
    // Duplicate-release search for a cycle full of releases (preallocated: target → stamp, index).
    private let targetStamp: UnsafeMutablePointer<UInt32>
    private let targetIndex: UnsafeMutablePointer<Int32>
    private var stamp: UInt32 = 0
    private static let targetSlots = 2 * 16 * 128

    // Control side: handovers waiting for room in the inbox (control thread only).
    private var waiting: [Handover] = []

    /// `recorderCapacity`: floats in the `ctl record` ring; `takeCapacity`: events in the take
    /// queue. The defaults are token sizes for hosts that record neither (the LV2 plugin); the
    /// daemon asks for `daemonRecorderCapacity` and `daemonTakeCapacity`.
    public init(recorderCapacity: Int = 0, takeCapacity: Int = 2) {
        recorder = OutputRecorderRing(capacity: recorderCapacity)
        takeEvents = SPSCQueue<TakeEvent>(capacity: takeCapacity)
        events = .allocate(capacity: Self.maxEventsPerCycle)
        events.initialize(repeating: EngineEvent(offset: 0, message: .controlChange(channel: 0, controller: 0, value: 0)),
                          count: Self.maxEventsPerCycle)
        targetStamp = .allocate(capacity: Self.targetSlots)
        targetStamp.initialize(repeating: 0, count: Self.targetSlots)
        targetIndex = .allocate(capacity: Self.targetSlots)
        targetIndex.initialize(repeating: 0, count: Self.targetSlots)
    }

    deinit {
        events.deinitialize(count: Self.maxEventsPerCycle)
        events.deallocate()
        targetStamp.deallocate()
        targetIndex.deallocate()
        if let enginePointer { Unmanaged<PianoEngine>.fromOpaque(enginePointer).release() }
        if let routerPointer { Unmanaged<MIDIRouter>.fromOpaque(routerPointer).release() }
        // No audio thread is left: whatever is still in flight is ours to release.
        while let h = inbox.pop() { Self.release(h) }
        while let h = outbox.pop() { Self.release(h) }
        waiting.forEach(Self.release)
    }

    // MARK: - Control side (one control thread)

    /// Hands a prepared engine to the audio thread, which takes it over at its next cycle.
    /// Never fails: when the inbox is full the engine waits here and goes at the next
    /// `collectGarbage`; an engine still waiting when a newer one comes is superseded and
    /// released (the audio thread never saw it). True: in the inbox now.
    @discardableResult
    public func install(engine: PianoEngine) -> Bool {
        hand(.engine(Unmanaged.passRetained(engine).toOpaque()))
    }

    @discardableResult
    public func install(router: MIDIRouter) -> Bool {
        hand(.router(Unmanaged.passRetained(router).toOpaque()))
    }

    /// Objects the audio thread let go of, waiting for `collectGarbage` (any thread may ask;
    /// a plugin's audio thread asks to schedule its worker).
    public var hasGarbage: Bool { outbox.count > 0 }

    /// Handovers not yet in the inbox (the audio thread is stalled, or not running).
    public var waitingHandovers: Int { waiting.count }

    private func hand(_ h: Handover) -> Bool {
        waiting.removeAll { old in
            guard Self.sameKind(old, h) else { return false }
            Self.release(old)
            return true
        }
        waiting.append(h)
        flushHandovers()
        return waiting.isEmpty
    }

    private func flushHandovers() {
        var moved = 0
        while moved < waiting.count && inbox.push(waiting[moved]) { moved += 1 }
        if moved > 0 { waiting.removeFirst(moved) }
    }

    /// Releases what the audio thread has let go of and passes on waiting handovers (control
    /// thread, periodically).
    public func collectGarbage() {
        while let h = outbox.pop() { Self.release(h) }
        flushHandovers()
    }

    private static func release(_ h: Handover) {
        switch h {
        case .engine(let p): Unmanaged<PianoEngine>.fromOpaque(p).release()
        case .router(let p): Unmanaged<MIDIRouter>.fromOpaque(p).release()
        }
    }

    private static func sameKind(_ a: Handover, _ b: Handover) -> Bool {
        switch (a, b) {
        case (.engine, .engine), (.router, .router): return true
        default: return false
        }
    }

    // MARK: - Warm-up (control thread, while no audio thread runs)

    /// Runs the real-time path on the calling thread before the driver's audio thread exists,
    /// so that first-time costs land here instead of in the first real cycles: code pages,
    /// lazily bound symbols, Swift runtime metadata and one-time initialisers, every
    /// instrument's reverb spectra and embeddings (a glide to each), all voices, the pedal,
    /// panic, the resampler. `cycle` runs one driver cycle (the driver's own callback, so its
    /// code is warmed too). Afterwards the engine is back to silence and the counters to zero.
    /// Only while no other thread consumes the queues (before activation).
    public func warmUp(engine: PianoEngine, frames: Int, cycle: () -> Void) {
        // The warm-up's notes are nobody's take.
        let takes = takesOn.exchange(false, ordering: .relaxed)
        defer { takesOn.store(takes, ordering: .relaxed) }
        let hostPerFrame = Double(engine.frameSize) * engine.hostRate / Double(engine.modelRate)
        let glide = Int((Double(max(1, engine.options.switchFrames) + 2) * hostPerFrame / Double(max(1, frames))).rounded(.up)) + 1
        func run(_ n: Int) { for _ in 0..<n { cycle() } }
        func send(_ status: UInt8, _ d1: UInt8, _ d2: UInt8) {
            controlMIDIQueue.push(TimedMIDI(time: monotonicNanoseconds(), status: status, data1: d1, data2: d2))
        }
        let original = engine.instrument
        run(2)                                    // takes the engine: silence
        send(0xB0, 64, 127)                       // sustain pedal down
        let voices = engine.model.hyper.voices
        for v in 0..<voices { send(0x90, UInt8(21 + (v * 87) / max(1, voices - 1)), UInt8(40 + (v * 80) / max(1, voices))) }
        run(glide)
        // Every piano once, with notes sounding: embeddings, priors and reverb crossfades.
        for i in 0..<engine.model.instruments.count where i != original {
            _ = commands.push(.instrument(i))
            run(glide)
        }
        _ = commands.push(.instrument(original))
        run(glide)
        for v in 0..<voices { send(0x80, UInt8(21 + (v * 87) / max(1, voices - 1)), 0) }
        send(0x90, 60, 0)                         // a velocity-0 note-on
        send(0xB0, 64, 0)
        send(0xC0, 0, 0)                          // a program change (routed or ignored)
        run(2)
        _ = commands.push(.panic)
        run(2)
        if engine.instrument != original {        // a program change switched it
            _ = commands.push(.instrument(original))
            run(glide)
        }
        engine.reset()
        rendered = 0
        stats.engineSamples.store(0, ordering: .relaxed)
        loadAverage = 0
        stats.engineOrigin.store(-1, ordering: .relaxed)
        for counter in [stats.notesReceived, stats.notesReleased, stats.programsIgnored, stats.voices, stats.cpuPermille,
                        stats.peakPermille, stats.lateCycles,
                        stats.cycles, stats.silentCycles] {
            counter.store(0, ordering: .relaxed)
        }
    }

    // What the audio thread's engine was prepared for (published at handover).
    private let latencyAtomic = ManagedAtomic<Int>(0)
    private let blockAtomic = ManagedAtomic<Int>(0)
    /// The playing engine's latency in host samples, from an event at a sample offset to the
    /// first sample it changes: at most this (the engine's bound, `PianoEngine.latencySamples`:
    /// one model frame plus the resampler's delay), at least 0 (an event at the end of a model
    /// frame takes effect at once, and the resampler's linear-phase filter answers from its
    /// leading taps: measured down to 7 samples at 48 kHz, JackLatencyTests). Events from a
    /// driver port (JACK MIDI) have no other delay; events stamped by time (ALSA sequencer,
    /// control socket) are placed one period later (`process`), on top of this.
    public var latencySamples: Int { latencyAtomic.load(ordering: .relaxed) }
    public var engineBlockSize: Int { blockAtomic.load(ordering: .relaxed) }

    // MARK: - Audio thread

    /// One cycle: `frames` samples into `left` and `right` (right may alias left or be nil).
    /// `cycleStart`: monotonic ns at the start of this cycle; `period`: its duration in ns;
    /// `position`: the driver's sample clock at this cycle (for engineOrigin).
    /// `addDriverEvents` may call `addEvent` with the driver's own MIDI (JACK MIDI).
    /// `callbackStart`: when the driver's callback was entered (monotonic ns), for the load
    /// figures; 0: now.
    @inline(__always)
    public func process(frames: Int, cycleStart: UInt64, period: UInt64, position: Int,
                        left: UnsafeMutablePointer<Float>, right: UnsafeMutablePointer<Float>?,
                        callbackStart: UInt64 = 0,
                        addDriverEvents: (AudioCore) -> Void) {
        let start = callbackStart != 0 ? callbackStart : monotonicNanoseconds()
        takeHandovers()
        eventCount = 0
        cycleFrames = frames
        guard let engine else {
            // No engine yet (one is being prepared): silence, and keep the queues drained so
            // nothing piles up.
            while alsaQueue.pop() != nil {}
            while controlMIDIQueue.pop() != nil {}
            addDriverEvents(self)
            left.update(repeating: 0, count: frames)
            if let right, right != left { right.update(repeating: 0, count: frames) }
            stats.silentCycles.wrappingIncrement(ordering: .relaxed)
            stats.cycles.wrappingIncrement(ordering: .relaxed)
            return
        }
        while let c = commands.pop() {
            switch c {
            case .instrument(let i):
                engine.selectInstrument(i)
                if takesOn.load(ordering: .relaxed) && i >= 0 && i < 128 {
                    noteTake(TakeEvent(sample: rendered, status: 0xC0, data1: UInt8(i), data2: 0, instrument: Int16(engine.instrument)))
                }
            case .panic:
                for ch: UInt8 in 0..<16 {
                    add(offset: 0, .controlChange(channel: ch, controller: 64, value: 0))
                    add(offset: 0, .controlChange(channel: ch, controller: 123, value: 0))
                }
                add(offset: 0, .controlChange(channel: 0, controller: 120, value: 0))
            }
        }
        let rate = engine.hostRate
        let freewheel = freewheeling.load(ordering: .relaxed)
        // Events stamped during the previous cycle land at the same place in this one: a fixed
        // one-period delay instead of jitter.
        let windowStart = cycleStart &- period
        drain(alsaQueue, windowStart: windowStart, rate: rate, frames: frames, cycleStart: cycleStart, freewheel: freewheel)
        drain(controlMIDIQueue, windowStart: windowStart, rate: rate, frames: frames, cycleStart: cycleStart, freewheel: freewheel)
        addDriverEvents(self)
        sortEvents()
        if takesOn.load(ordering: .relaxed) {
            // What the engine plays this cycle, at its engine samples (before the pieces below
            // rebase the offsets).
            let instrument = Int16(clamping: engine.instrument)
            for i in 0..<eventCount {
                let (st, d1, d2) = TakeEvent.bytes(events[i].message)
                noteTake(TakeEvent(sample: rendered + events[i].offset, status: st, data1: d1, data2: d2, instrument: instrument))
            }
        }
        engine.gain = Float(bitPattern: gainBits.load(ordering: .relaxed))
        engine.width = Float(bitPattern: widthBits.load(ordering: .relaxed))
        engine.a4 = Float(bitPattern: a4Bits.load(ordering: .relaxed))
        engine.transpose = transpose.load(ordering: .relaxed)
        // The driver's clock at engine sample 0; it moves when the server skipped cycles, by
        // the frames skipped (their MIDI and audio are lost: the machine's doing, not ours).
        let origin = position - rendered, previous = stats.engineOrigin.load(ordering: .relaxed)
        if previous >= 0 && origin > previous && !freewheel {
            stats.skippedFrames.wrappingIncrement(by: origin - previous, ordering: .relaxed)
        }
        stats.engineOrigin.store(origin, ordering: .relaxed)
        // The engine renders any block up to the size it was prepared for, with the same
        // samples whatever the split (it is block-size invariant): a larger cycle (the server's
        // period grew past it) goes in pieces, each piece with its own events, so a change of
        // period never needs a new engine.
        let piece = max(1, engine.maxBlockSize)
        let stereo = right != nil && right != left
        var done = 0, next = 0
        while done < frames {
            let n = min(piece, frames - done), first = next
            while next < eventCount && events[next].offset < done + n {
                events[next].offset -= done
                next += 1
            }
            let blockEvents = UnsafeBufferPointer(start: events + first, count: next - first)
            if stereo {
                engine.render(events: blockEvents, left: UnsafeMutableBufferPointer(start: left + done, count: n),
                              right: UnsafeMutableBufferPointer(start: right! + done, count: n))
            } else {
                engine.render(events: blockEvents, into: UnsafeMutableBufferPointer(start: left + done, count: n))
            }
            done += n
        }
        rendered += frames
        recorder.capture(left: left, right: right.map { UnsafePointer($0) }, frames: frames, engineSample: rendered - frames)
        stats.engineSamples.store(rendered, ordering: .relaxed)
        stats.voices.store(engine.soundingNotes, ordering: .relaxed)
        stats.instrument.store(engine.instrument, ordering: .relaxed)
        stats.cycles.wrappingIncrement(ordering: .relaxed)
        if !freewheel && period > 0 {
            let load = Double(monotonicNanoseconds() &- start) / Double(period)
            loadAverage += 0.05 * (load - loadAverage)
            stats.cpuPermille.store(Int(loadAverage * 1000), ordering: .relaxed)
            let permille = Int(load * 1000)
            if permille > stats.peakPermille.load(ordering: .relaxed) { stats.peakPermille.store(permille, ordering: .relaxed) }
            if load > 1 { stats.lateCycles.wrappingIncrement(ordering: .relaxed) }
        }
    }

    @inline(__always)
    private func noteTake(_ e: TakeEvent) {
        if !takeEvents.push(e) { stats.takeEventsLost.wrappingIncrement(ordering: .relaxed) }
    }

    /// Driver MIDI (raw bytes) at a sample offset of the current cycle.
    @inline(__always)
    public func addRaw(offset: Int, status: UInt8, data1: UInt8, data2: UInt8) {
        route(offset: offset, status: status, data1: data1, data2: data2)
    }

    @inline(__always)
    private func drain(_ queue: MIDIEventQueue, windowStart: UInt64, rate: Double, frames: Int, cycleStart: UInt64, freewheel: Bool) {
        while let e = queue.pop() {
            var offset = 0
            if !freewheel && e.time > windowStart {
                offset = Int(Double(e.time &- windowStart) * rate / 1e9)
            }
            route(offset: min(max(offset, 0), frames - 1), status: e.status, data1: e.data1, data2: e.data2)
        }
    }

    @inline(__always)
    private func route(offset: Int, status: UInt8, data1: UInt8, data2: UInt8) {
        guard let router else { return }
        switch router.route(status: status, data1: data1, data2: data2) {
        case .play(let m):
            switch m {
            case .noteOn: stats.notesReceived.wrappingIncrement(ordering: .relaxed)
            case .noteOff: stats.notesReleased.wrappingIncrement(ordering: .relaxed)
            default: break
            }
            add(offset: min(max(offset, 0), max(cycleFrames - 1, 0)), m)
        case .programOutOfRange: stats.programsIgnored.wrappingIncrement(ordering: .relaxed)
        case .ignore: break
        }
    }

    /// Appends an event to this cycle's list under `ReleasePolicy`.
    @inline(__always)
    private func add(offset: Int, _ message: MIDIMessage) {
        if eventCount >= Self.maxEventsPerCycle - Self.releaseReserve {
            guard message.isRelease else {
                stats.eventsDropped.wrappingIncrement(ordering: .relaxed)
                return
            }
            if eventCount == Self.maxEventsPerCycle && !makeRoom(forReleaseAt: offset, message) {
                stats.eventsDropped.wrappingIncrement(ordering: .relaxed)
                return
            }
        }
        events[eventCount] = EngineEvent(offset: offset, message: message)
        eventCount += 1
    }

    /// A full cycle and one more release (flood only): the latest non-release goes; with none
    /// left, of two releases for the same target the earlier in time goes (the later one
    /// leaves the same state behind). False: the new release is that earlier one.
    private func makeRoom(forReleaseAt offset: Int, _ message: MIDIMessage) -> Bool {
        var victim = -1
        for i in stride(from: eventCount - 1, through: 0, by: -1) where !events[i].message.isRelease { victim = i; break }
        if victim < 0 {
            // More releases than distinct targets: a duplicate exists (the list is not sorted yet).
            stamp &+= 1
            if stamp == 0 { targetStamp.update(repeating: 0, count: Self.targetSlots); stamp = 1 }
            func slot(_ m: MIDIMessage) -> Int {
                let t = m.releaseTarget
                return Int((t >> 16) & 1) << 11 | Int((t >> 8) & 0x0F) << 7 | Int(t & 0x7F)
            }
            for i in 0..<eventCount {
                let s = slot(events[i].message)
                if targetStamp[s] == stamp {
                    let j = Int(targetIndex[s])
                    victim = events[j].offset <= events[i].offset ? j : i
                    break
                }
                targetStamp[s] = stamp
                targetIndex[s] = Int32(i)
            }
            if victim < 0 {
                let s = slot(message)
                guard targetStamp[s] == stamp else { return false }   // cannot happen: list > distinct targets
                let j = Int(targetIndex[s])
                if offset < events[j].offset { return false }
                victim = j
            }
        }
        for i in victim..<(eventCount - 1) { events[i] = events[i + 1] }
        eventCount -= 1
        stats.eventsDropped.wrappingIncrement(ordering: .relaxed)
        return true
    }

    /// Insertion sort, stable: events come from up to three already-ordered sources.
    private func sortEvents() {
        guard eventCount > 1 else { return }
        for i in 1..<eventCount {
            let e = events[i]
            var j = i - 1
            while j >= 0 && events[j].offset > e.offset { events[j + 1] = events[j]; j -= 1 }
            events[j + 1] = e
        }
    }

    /// Takes what the control thread handed over. A handover is taken only while the outbox
    /// has room for the object it replaces, so nothing is ever released (freed) here and
    /// nothing leaks; otherwise it waits in the inbox for the next cycle.
    private func takeHandovers() {
        while outbox.freeSlots > 0, let h = inbox.pop() {
            switch h {
            case .engine(let p):
                // The old one goes out as the pointer it came in as: no reference is formed
                // (and dropped) here once the control thread may release it.
                if let old = enginePointer { _ = outbox.push(.engine(old)) }
                enginePointer = p
                let e = Unmanaged<PianoEngine>.fromOpaque(p).takeUnretainedValue()
                engine = e
                latencyAtomic.store(e.latencySamples, ordering: .relaxed)
                blockAtomic.store(e.maxBlockSize, ordering: .relaxed)
                rendered = 0
                stats.engineOrigin.store(-1, ordering: .relaxed)
                if takesOn.load(ordering: .relaxed) { noteTake(TakeEvent(sample: 0, status: 0, data1: 0, data2: 0, instrument: Int16(clamping: e.instrument))) }
            case .router(let p):
                if let old = routerPointer { _ = outbox.push(.router(old)) }
                routerPointer = p
                router = Unmanaged<MIDIRouter>.fromOpaque(p).takeUnretainedValue()
            }
        }
    }
}
