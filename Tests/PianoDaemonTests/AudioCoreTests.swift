import Atomics
import CMallocCounter
import DDSPPiano
import Foundation
import PianoDaemon
import PianoTestKit
import XCTest

/// The daemon's real-time side without a sound server: `AudioCore.process` driven through the
/// null driver on the test thread (the audio thread here), producers on another thread.
/// Runs in every clone on the bundled model.
final class AudioCoreTests: XCTestCase {
    static func engine(_ weights: PianoWeights, instrument: Int = 0, warmUp: Bool = true, block: Int = 256) throws -> PianoEngine {
        var options = Daemon.engineOptions(instrument: instrument, noise: true)
        if !warmUp { options.warmUpFrames = 0 }
        let e = PianoEngine(weights: weights, options: options)
        try e.prepare(sampleRate: 48_000, maxBlockSize: block)
        return e
    }

    static func midi(_ status: UInt8, _ d1: UInt8, _ d2: UInt8) -> TimedMIDI {
        TimedMIDI(time: monotonicNanoseconds(), status: status, data1: d1, data2: d2)
    }

    /// Every allocator call (malloc, calloc, realloc, posix_memalign, aligned_alloc, free…) of
    /// the audio thread over thousands of cycles while another thread plays notes and pedals,
    /// switches pianos (program changes and commands), panics, floods the queues far past
    /// their capacity, and hands over new routers and a new engine: zero.
    func testProcessDoesNotAllocateUnderEverythingAtOnce() throws {
        let (_, weights) = try DaemonSupport.bundledWeights()
        let pianos = weights.instruments.count
        let core = AudioCore()
        let engine = try Self.engine(weights)
        core.install(engine: engine)
        core.install(router: MIDIRouter(instruments: pianos))
        let driver = NullDriver(core: core, sampleRate: 48_000, blockSize: 256)
        driver.warmUp(engine: engine)
        let spare = try Self.engine(weights, instrument: 1)
        let spareDriver = NullDriver(core: AudioCore(), sampleRate: 48_000, blockSize: 256)
        spareDriver.warmUp(engine: spare)   // the engine handed over mid-run is warmed as the daemon's are

        let done = ManagedAtomic<Bool>(false)
        let floods = ManagedAtomic<Int>(0)
        let producer = Thread {
            var rng = SplitMix64(seed: 7)
            for step in 0..<1500 {
                let p = UInt8(30 + rng.below(60))
                core.alsaQueue.push(Self.midi(0x90, p, UInt8(20 + rng.below(100))))
                if step % 3 == 0 { core.alsaQueue.push(Self.midi(0x80, UInt8(30 + rng.below(60)), 0)) }
                if step % 50 == 0 { core.controlMIDIQueue.push(Self.midi(0xB0, 64, step % 100 == 0 ? 127 : 0)) }
                if step % 170 == 0 { core.alsaQueue.push(Self.midi(0xC0, UInt8(step / 170 % pianos), 0)) }
                if step % 230 == 0 { _ = core.commands.push(.instrument(rng.below(pianos))) }
                if step % 400 == 399 { _ = core.commands.push(.panic) }
                if step % 300 == 150 {
                    // A flood: far more than the ring and the cycle can carry, then releases.
                    for i in 0..<6000 { core.alsaQueue.push(Self.midi(0x90 | UInt8(i % 16), UInt8(21 + i % 88), 64)) }
                    for i in 0..<2000 { core.alsaQueue.push(Self.midi(0x80 | UInt8(i % 16), UInt8(21 + i % 88), 0)) }
                    for ch: UInt8 in 0..<16 { core.alsaQueue.push(Self.midi(0xB0 | ch, 123, 0)) }
                    floods.wrappingIncrement(ordering: .relaxed)
                }
                if step % 500 == 250 { core.install(router: MIDIRouter(velocityGamma: 0.7, instruments: pianos)) }
                if step == 700 { core.install(engine: spare) }
                core.collectGarbage()
                core.alsaQueue.flush()
                core.controlMIDIQueue.flush()
                usleep(300)
            }
            // Everything off at the end.
            for ch: UInt8 in 0..<16 { core.alsaQueue.push(Self.midi(0xB0 | ch, 64, 0)); core.alsaQueue.push(Self.midi(0xB0 | ch, 123, 0)) }
            while core.alsaQueue.pending > 0 { core.alsaQueue.flush(); usleep(1000) }
            done.store(true, ordering: .releasing)
        }

        var cycles = 0
        producer.start()   // (creating a thread allocates: before counting starts)
        malloc_counter_start()
        var tail = 0
        while tail < 400 {
            driver.cycle(at: monotonicNanoseconds())
            cycles += 1
            if done.load(ordering: .acquiring) { tail += 1 }
            if cycles % 8 == 0 { usleep(100) }   // let the producer run on a two-core machine
        }
        let calls = malloc_counter_stop()
        let allocations = malloc_counter_allocations(), frees = malloc_counter_frees()
        core.collectGarbage()
        let st = core.stats
        print("AudioCore.process through the null driver: \(cycles) cycles of 256 at 48 kHz, notes received \(st.notesReceived.load(ordering: .relaxed)), " +
              "released \(st.notesReleased.load(ordering: .relaxed)), floods \(floods.load(ordering: .relaxed)), dropped in the queues \(core.alsaQueue.dropped), " +
              "dropped by full cycles \(st.eventsDropped.load(ordering: .relaxed)), piano now \(st.instrument.load(ordering: .relaxed)): " +
              "allocator calls \(calls) (allocations \(allocations), frees \(frees))")
        XCTAssertEqual(calls, 0, "the audio thread called the allocator")
        XCTAssertEqual(floods.load(ordering: .relaxed), 5)
        XCTAssertGreaterThan(st.notesReceived.load(ordering: .relaxed), 1500)
        XCTAssertEqual(spare.soundingNotes, 0, "nothing left sounding on the engine handed over mid-run")
        XCTAssertEqual(st.voices.load(ordering: .relaxed), 0)
    }

    /// One cycle carrying far more events than it can hold (JACK MIDI of a flooded port):
    /// the note-offs, pedal-ups and all-notes-off are never the ones lost.
    func testFullCycleNeverLosesAReleaseAndNothingSticks() throws {
        let (_, weights) = try DaemonSupport.bundledWeights()
        let core = AudioCore()
        let engine = try Self.engine(weights, warmUp: false)
        core.install(engine: engine)
        core.install(router: MIDIRouter(instruments: weights.instruments.count))
        let out = UnsafeMutablePointer<Float>.allocate(capacity: 256)
        defer { out.deallocate() }
        var position = 0
        func cycle(_ raw: [Raw] = []) {
            core.process(frames: 256, cycleStart: monotonicNanoseconds(), period: 5_333_333, position: position, left: out, right: nil) { c in
                for (i, m) in raw.enumerated() { c.addRaw(offset: i * 256 / max(1, raw.count), status: m.status, data1: m.data1, data2: m.data2) }
            }
            position += 256
        }
        func settle() { for _ in 0..<100 { cycle() } }

        // 1. Pedal down, ten notes, then one cycle: 6000 note-ons over every channel and key,
        //    their note-offs, the pedal up, all-notes-off.
        var start: [Raw] = [Raw(0xB0, 64, 127)]
        for k in 0..<10 { start.append(Raw(0x90, 50 + k, 90)) }
        cycle(start)
        settle()
        XCTAssertEqual(engine.soundingNotes, 10)
        var flood: [Raw] = []
        for i in 0..<6000 { flood.append(Raw(0x90 | i % 16, 21 + i % 88, 70)) }
        for i in 0..<6000 { flood.append(Raw(0x80 | i % 16, 21 + i % 88, 0)) }
        for k in 0..<10 { flood.append(Raw(0x80, 50 + k, 0)) }
        flood.append(Raw(0xB0, 64, 0))
        flood.append(Raw(0xB0, 123, 0))
        let before = core.stats.eventsDropped.load(ordering: .relaxed)
        cycle(flood)
        settle()
        let dropped1 = core.stats.eventsDropped.load(ordering: .relaxed) - before
        print("flood 1: \(flood.count) events in one cycle (capacity \(AudioCore.maxEventsPerCycle), \(AudioCore.releaseReserve) kept for releases): \(dropped1) dropped, sounding after \(engine.soundingNotes)")
        XCTAssertGreaterThan(dropped1, 0, "the flood exceeded the cycle")
        XCTAssertEqual(engine.soundingNotes, 0, "a release was lost")

        // 2. Only releases, more than the cycle holds (duplicates): the pedal-up at the very end
        //    still arrives.
        var chord: [Raw] = [Raw(0xB0, 64, 127)]
        for k in 0..<12 { chord.append(Raw(0x90 | k % 3, 60 + k, 90)) }
        cycle(chord)
        settle()
        XCTAssertEqual(engine.soundingNotes, 12)
        var releases: [Raw] = []
        for k in 0..<12 { releases.append(Raw(0x80 | k % 3, 60 + k, 0)) }
        for i in 0..<5000 { releases.append(Raw(0x80 | i % 16, i % 128, 0)) }
        releases.append(Raw(0xB0, 64, 0))
        let before2 = core.stats.eventsDropped.load(ordering: .relaxed)
        cycle(releases)
        settle()
        let dropped2 = core.stats.eventsDropped.load(ordering: .relaxed) - before2
        print("flood 2: \(releases.count) releases in one cycle: \(dropped2) redundant duplicates dropped, sounding after \(engine.soundingNotes)")
        XCTAssertGreaterThan(dropped2, 0)
        XCTAssertEqual(engine.soundingNotes, 0, "the pedal-up or a note-off was lost")

        // 3. The same key struck and released thousands of times in one cycle, ending released.
        var repeats: [Raw] = []
        for _ in 0..<3000 { repeats.append(Raw(0x90, 64, 80)); repeats.append(Raw(0x80, 64, 0)) }
        cycle(repeats)
        settle()
        print("flood 3: 6000 alternating note-on/off of one key in one cycle: sounding after \(engine.soundingNotes)")
        XCTAssertEqual(engine.soundingNotes, 0)
    }

    /// Handovers (new engines and routers) when the inbox is full, when the audio thread is
    /// not running, and when the audio thread cannot give back what it replaces (outbox full):
    /// nothing leaks, nothing is freed on the audio thread, the newest one plays.
    func testHandoversNeverLeakAndTheNewestPlays() throws {
        let (_, weights) = try DaemonSupport.bundledWeights()
        let core = AudioCore()
        final class Weak { weak var engine: PianoEngine?; init(_ e: PianoEngine) { engine = e } }
        var made: [Weak] = []
        func make() throws -> PianoEngine { let e = try Self.engine(weights, warmUp: false); made.append(Weak(e)); return e }
        func alive() -> Int { made.filter { $0.engine != nil }.count }
        let out = UnsafeMutablePointer<Float>.allocate(capacity: 256)
        defer { out.deallocate() }
        var position = 0
        func cycle(_ raw: [Raw] = []) {
            core.process(frames: 256, cycleStart: monotonicNanoseconds(), period: 5_333_333, position: position, left: out, right: nil) { c in
                for m in raw { c.addRaw(offset: 0, status: m.status, data1: m.data1, data2: m.data2) }
            }
            position += 256
        }
        core.install(router: MIDIRouter(instruments: weights.instruments.count))

        // No audio thread yet: 40 engines. The inbox takes 16; of the rest only the newest waits.
        var accepted = 0
        for _ in 0..<40 { if core.install(engine: try make()) { accepted += 1 } }
        print("40 engines installed with no audio thread: \(accepted) in the inbox (which also holds the router), \(core.waitingHandovers) waiting, \(alive()) alive")
        XCTAssertEqual(core.waitingHandovers, 1)
        XCTAssertEqual(alive(), accepted + 1, "superseded engines that never reached the inbox are released at once")
        for _ in 0..<3 { cycle(); core.collectGarbage() }
        XCTAssertEqual(alive(), 1, "every replaced engine released")
        XCTAssertNotNil(made.last?.engine, "the newest engine is the one kept")

        // The control thread does not collect for a while: the outbox fills, the audio thread
        // leaves handovers in the inbox rather than freeing anything itself.
        for _ in 0..<8 {
            for _ in 0..<16 { core.install(engine: try make()) }
            cycle()
        }
        XCTAssertGreaterThan(alive(), 60, "replaced engines wait in the outbox (nothing freed on the audio thread)")
        print("8 rounds of 16 installs without collecting: \(alive()) engines alive, \(core.waitingHandovers) waiting")
        for _ in 0..<4 { core.collectGarbage(); cycle() }
        core.collectGarbage()
        print("after collecting: \(alive()) alive of \(made.count) made")
        XCTAssertEqual(alive(), 1, "every replaced engine released, none leaked")
        let newest = try XCTUnwrap(made.last?.engine, "the newest engine is the one kept")
        cycle([Raw(0x90, 60, 100)])
        for _ in 0..<10 { cycle() }
        XCTAssertEqual(newest.soundingNotes, 1, "the newest engine plays")
        cycle([Raw(0x80, 60, 0)])
        for _ in 0..<10 { cycle() }
        XCTAssertEqual(newest.soundingNotes, 0)

        // Routers, the same way.
        for g in 0..<100 { core.install(router: MIDIRouter(velocityGamma: 1 + Double(g) / 100, instruments: weights.instruments.count)) }
        for _ in 0..<4 { cycle(); core.collectGarbage() }
        XCTAssertEqual(core.waitingHandovers, 0)
    }
}

/// Three MIDI bytes.
struct Raw {
    var status: UInt8, data1: UInt8, data2: UInt8
    init(_ status: Int, _ data1: Int, _ data2: Int) { self.status = UInt8(status); self.data1 = UInt8(data1); self.data2 = UInt8(data2) }
}
