import CMallocCounter
import Foundation
import XCTest
import DDSPPiano
import PianoIO

/// The streaming engine: block-size independence, real-time safety, live input semantics.
final class EngineTests: XCTestCase {
    static func note(_ on: Bool, _ pitch: UInt8, _ velocity: UInt8 = 90) -> MIDIMessage {
        on ? .noteOn(channel: 0, pitch: pitch, velocity: velocity) : .noteOff(channel: 0, pitch: pitch, velocity: 0)
    }

    static func cc(_ controller: UInt8, _ value: UInt8) -> MIDIMessage {
        .controlChange(channel: 0, controller: controller, value: value)
    }

    /// A busy little passage: chords, a run, the pedal, a re-strike, a piano switch (to piano
    /// `program`).
    static func passage(program: UInt8 = 3) -> [TimedMessage] {
        var out: [TimedMessage] = []
        func at(_ t: Double, _ m: MIDIMessage) { out.append(TimedMessage(time: t, message: m)) }
        for (i, p) in [60, 64, 67, 72].enumerated() { at(0.013 * Double(i), note(true, UInt8(p), 70 + UInt8(i * 10))) }
        at(0.31, cc(64, 100))
        for p in [60, 64, 67, 72] { at(0.52, note(false, UInt8(p))) }
        for i in 0..<12 { at(0.6 + 0.07 * Double(i), note(true, UInt8(48 + i), 50 + UInt8(i * 5))); at(0.66 + 0.07 * Double(i), note(false, UInt8(48 + i))) }
        at(1.2, .programChange(channel: 0, program: program))
        at(1.45, cc(64, 0))
        at(1.5, note(true, 84, 110)); at(1.6, note(true, 84, 60)); at(1.9, note(false, 84))
        at(1.95, cc(67, 127))
        return out.sorted { $0.time < $1.time }
    }

    func render(_ weights: PianoModel, events: [TimedMessage], seconds: Double, rate: Double, block: Int,
                options: PianoEngine.Options = PianoEngine.Options()) throws -> [Float] {
        try renderEngine(weights, options: options, events: events, seconds: seconds, rate: rate, block: block)
    }

    /// Runs on the bundled model in every clone, and on dafx22 when ../shared is there.
    func testAnyBlockSizeGivesTheSameSamples() throws {
        for (name, weights) in try Fixtures.structuralWeights() {
            let passage = Self.passage(program: UInt8(min(3, weights.instruments.count - 1)))
            var options = PianoEngine.Options()
            options.instrument = min(options.instrument, weights.instruments.count - 1)
            // The model's own rate and the usual host rates (the engine resamples up, never down).
            for rate in [Double(weights.sampleRate), 44_100.0, 48_000.0, 96_000.0] {
                let reference = try render(weights, events: passage, seconds: 2.5, rate: rate, block: 64, options: options)
                let peak = reference.map(abs).max() ?? 0
                XCTAssertGreaterThan(peak, 0.01, "the passage is audible (\(name))")
                for block in [1, 7, 256, 4096] {
                    let other = try render(weights, events: passage, seconds: 2.5, rate: rate, block: block, options: options)
                    let diff = zip(reference, other).map { abs($0 - $1) }.max() ?? 0
                    print("block-size invariance (\(name)) at \(Int(rate)) Hz: block \(block) vs 64: max |diff| \(diff) (peak \(peak))")
                    XCTAssertLessThanOrEqual(diff, 1e-6, "\(name): block \(block) at \(rate)")
                }
            }
        }
    }

    /// Counts every allocator call (allocations and frees) of the rendering thread.
    /// Runs on the bundled model in every clone, and on dafx22 when ../shared is there.
    func testRenderDoesNotAllocate() throws {
        for (name, weights) in try Fixtures.structuralWeights() {
            try checkRenderDoesNotAllocate(weights, name: name)
        }
    }

    func checkRenderDoesNotAllocate(_ weights: PianoModel, name: String) throws {
        for rate in [Double(weights.sampleRate), 48_000.0] {
            // The default options: the running Normalize estimate, rebased through piano switches.
            var options = PianoEngine.Options()
            options.instrument = min(options.instrument, weights.instruments.count - 1)
            let engine = PianoEngine(model: weights, options: options)
            let block = 128
            try engine.prepare(sampleRate: rate, maxBlockSize: block)
            var out = [Float](repeating: 0, count: block)
            var events = [EngineEvent](repeating: EngineEvent(offset: 0, message: Self.cc(1, 0)), count: 8)
            // One block first: lazily created runtime state (metadata caches) is not the engine's.
            engine.render(events: [], into: &out)
            var allocations: Int64 = 0
            var blocks = 0
            var rng = SystemRandomNumberGenerator()
            out.withUnsafeMutableBufferPointer { o in
                malloc_counter_start()
                for b in 0..<3000 {
                    var count = 0
                    if b % 5 == 0 {
                        let p = UInt8(30 + (b * 7) % 70)
                        events[count] = EngineEvent(offset: Int.random(in: 0..<block, using: &rng), message: Self.note(true, p, 80)); count += 1
                        events[count] = EngineEvent(offset: block - 1, message: Self.note(false, UInt8(30 + ((b - 15) * 7 % 70 + 70) % 70))); count += 1
                    }
                    if b % 97 == 0 { events[count] = EngineEvent(offset: 3, message: Self.cc(64, b % 194 == 0 ? 127 : 0)); count += 1 }
                    if b % 401 == 0 { events[count] = EngineEvent(offset: 5, message: .programChange(channel: 0, program: UInt8(b / 401 % weights.instruments.count))); count += 1 }
                    if b == 2500 { events[count] = EngineEvent(offset: 0, message: Self.cc(123, 0)); count += 1 }
                    if b == 2900 { events[count] = EngineEvent(offset: 0, message: Self.cc(120, 0)); count += 1 }
                    events.withUnsafeBufferPointer { e in
                        engine.render(events: UnsafeBufferPointer(rebasing: e[0..<count]), into: o)
                    }
                    blocks += 1
                }
                allocations = malloc_counter_stop()
            }
            print("allocator calls (\(name)) in \(blocks) blocks of \(block) at \(Int(rate)) Hz with notes, pedals and piano switches: \(allocations) (allocations \(malloc_counter_allocations()), frees \(malloc_counter_frees()))")
            XCTAssertEqual(allocations, 0, name)
        }
    }

    /// The live conditioning (raw MIDI events, one frame at a time, pedal applied live) against
    /// upstream's conditioning of each reference case: same pitches on the same voice slots and the
    /// same pedal events. (Here frame t gets the events that fall in it; the engine runs the same
    /// conditioning one frame later, once the frame is complete.)
    func testLiveAllocatorAgreesWithUpstreamOnEveryCase() throws {
        for dir in try Fixtures.cases() {
            let tensors = try Fixtures.safetensors(dir.appendingPathComponent("tensors.safetensors")).tensors
            let cond = tensors["conditioning"]!, pedal = tensors["pedal"]!
            let T = cond.shape[0], V = cond.shape[1], W = 125
            let midi = try MIDIFile(bytes: [UInt8](try Data(contentsOf: dir.appendingPathComponent("input.mid"))))
            // Upstream drops notes outside 21…108 and CCs after the last note end; a live player
            // cannot know the end, so compare up to there.
            let events = EventSchedule.events(from: NoteSequence(midi: midi))
            var live = LiveConditioning(voices: V)
            var row = [Float](repeating: 0, count: 2 * V), ped = [Float](repeating: 0, count: 4)
            var e = 0
            var pitchMismatch = 0, slotMismatch = 0, velocityMismatch = 0, pedalMismatch = 0, frames = 0
            var restrikeFrames = 0
            // Upstream drops controller events after the last note ends (sustain included).
            let lastFrame = Int((NoteSequence(midi: midi).applyingSustain().totalTime * 250).rounded(.up))
            for t in 0..<(T - W) {
                while e < events.count, events[e].time * 250 < Double(t + 1) {
                    let x = events[e].time * 250, onGrid = x == x.rounded(.down)
                    switch events[e].message {
                    case let .noteOn(_, p, v): live.noteOn(pitch: Int(p), velocity: Int(v))
                    case let .noteOff(_, p, _): live.noteOff(pitch: Int(p), atFrameStart: onGrid)
                    case let .controlChange(_, c, v): live.controlChange(Int(c), value: Int(v), atFrameStart: onGrid)
                    default: break
                    }
                    e += 1
                }
                row.withUnsafeMutableBufferPointer { r in ped.withUnsafeMutableBufferPointer { live.nextFrame(conditioning: r.baseAddress!, pedal: $0.baseAddress!) } }
                let u = W + t
                frames += 1
                var mineSet = Set<Int>(), theirSet = Set<Int>()
                for v in 0..<V {
                    let mp = Int(row[2 * v]), tp = Int(cond.values[(u * V + v) * 2])
                    if mp > 0 { mineSet.insert(mp) }
                    if tp > 0 { theirSet.insert(tp) }
                    if mp != tp { slotMismatch += 1 }
                    if abs(row[2 * v + 1] - cond.values[(u * V + v) * 2 + 1]) > 1e-6 {
                        // The one known difference: upstream also marks the frame before a
                        // re-strike of a sounding pitch (the previous note's velocity), which is
                        // in the past for a live engine. Count those apart.
                        let next = u + 1 < T ? cond.values[((u + 1) * V + v) * 2 + 1] : 0
                        if row[2 * v + 1] == 0 && next > 0 && mp == tp { restrikeFrames += 1 } else { velocityMismatch += 1 }
                    }
                }
                if mineSet != theirSet { pitchMismatch += 1 }
                if t < lastFrame { for c in 0..<4 where abs(ped[c] - pedal.values[u * 4 + c]) > 1e-6 { pedalMismatch += 1 } }
            }
            print("live vs upstream \(dir.lastPathComponent): \(frames) frames, pitch-set mismatches \(pitchMismatch), slot mismatches \(slotMismatch), onset-velocity mismatches \(velocityMismatch) (+\(restrikeFrames) frames before re-strikes), pedal mismatches \(pedalMismatch)")
            XCTAssertEqual(pitchMismatch, 0, dir.lastPathComponent)
            XCTAssertEqual(slotMismatch, 0, dir.lastPathComponent)
            XCTAssertEqual(velocityMismatch, 0, dir.lastPathComponent)
            XCTAssertEqual(pedalMismatch, 0, dir.lastPathComponent)
        }
    }
}
