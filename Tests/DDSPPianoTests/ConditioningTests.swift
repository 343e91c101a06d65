import Foundation
import XCTest
import DDSPPiano
import CMallocCounter
import PianoTestKit

/// The conditioning must equal what upstream fed its model, value for value.
final class ConditioningTests: XCTestCase {
    private func conditioning(_ caseDir: URL) throws -> (MIDIFile, FrameConditioning) {
        let bytes = [UInt8](try Data(contentsOf: caseDir.appendingPathComponent("input.mid")))
        let midi = try MIDIFile(bytes: bytes)
        return (midi, UpstreamConditioning.make(midi: midi))
    }

    func testConditioningEqualsUpstreamExactly() throws {
        let cases = try Fixtures.cases()
        XCTAssertFalse(cases.isEmpty)
        for dir in cases {
            let name = dir.lastPathComponent
            let (_, ours) = try conditioning(dir)
            let tensors = try Fixtures.safetensors(dir.appendingPathComponent("tensors.safetensors")).tensors
            let cond = try XCTUnwrap(tensors["conditioning"], name)
            let pedal = try XCTUnwrap(tensors["pedal"], name)
            XCTAssertEqual(cond.shape, [ours.frames, 16, 2], name)
            XCTAssertEqual(pedal.shape, [ours.frames, 4], name)
            var condMismatch = 0, pedalMismatch = 0, firstBad: Int? = nil
            if cond.values.count == ours.conditioning.count {
                for i in 0..<cond.values.count where cond.values[i] != ours.conditioning[i] {
                    condMismatch += 1
                    if firstBad == nil { firstBad = i }
                }
            } else { condMismatch = -1 }
            if pedal.values.count == ours.pedal.count {
                for i in 0..<pedal.values.count where pedal.values[i] != ours.pedal[i] { pedalMismatch += 1 }
            } else { pedalMismatch = -1 }
            var where_ = ""
            if let i = firstBad {
                let frame = i / 32, voice = (i % 32) / 2
                let theirs = (0..<16).map { cond.values[frame * 32 + $0 * 2] }
                let mine = (0..<16).map { ours.conditioning[frame * 32 + $0 * 2] }
                where_ = " first at frame \(frame) voice \(voice): upstream pitches \(theirs) ours \(mine)"
            }
            print("\(name): frames \(ours.frames), conditioning mismatches \(condMismatch) of \(cond.values.count), pedal mismatches \(pedalMismatch) of \(pedal.values.count)\(where_)")
            XCTAssertEqual(condMismatch, 0, name)
            XCTAssertEqual(pedalMismatch, 0, name)
        }
    }

    func testFrameCountMatchesMeta() throws {
        for dir in try Fixtures.cases(withTensors: false) {
            let meta = try Fixtures.meta(dir)
            let expected = try XCTUnwrap(meta["n_frames"] as? Int, dir.lastPathComponent)
            let (midi, ours) = try conditioning(dir)
            let counted = UpstreamConditioning.frameCount(midi: midi)
            print("\(dir.lastPathComponent): n_frames upstream \(expected), ours \(ours.frames) (frameCount \(counted))")
            XCTAssertEqual(ours.frames, expected, dir.lastPathComponent)
            XCTAssertEqual(counted, expected, dir.lastPathComponent)
        }
    }

    /// The note count after sustain and the sustained length, as meta.json records them.
    func testSustainedSequenceMatchesMeta() throws {
        for dir in try Fixtures.cases() {
            let meta = try Fixtures.meta(dir)
            guard let poly = meta["polyphony"] as? [String: Any],
                  let total = poly["note_sequence_total_time"] as? Double,
                  let count = poly["n_notes_after_sustain"] as? Int else { continue }
            let bytes = [UInt8](try Data(contentsOf: dir.appendingPathComponent("input.mid")))
            let seq = NoteSequence(midi: try MIDIFile(bytes: bytes)).applyingSustain()
            // meta.json's total time was summed from delta seconds by the fixture harness (one case
            // differs from pretty_midi's tick formula in the last bit); the tensors above are exact.
            print("\(dir.lastPathComponent): total time upstream \(total) ours \(seq.totalTime) (diff \(seq.totalTime - total)), notes upstream \(count) ours \(seq.notes.count)")
            XCTAssertEqual(seq.totalTime, total, accuracy: 1e-12, dir.lastPathComponent)
            XCTAssertEqual(seq.notes.count, count, dir.lastPathComponent)
        }
    }

    // MARK: - pretty_midi / note_seq rules on hand-built files

    private func sequence(_ tracks: [[UInt8]], format: Int = 1) throws -> NoteSequence {
        NoteSequence(midi: try MIDIFile(bytes: SMF.file(format: format, tracks: tracks)))
    }

    func testNotePairingFollowsPrettyMIDI() throws {
        // 480 ticks = 0.5 s.
        var t: [UInt8] = []
        t += SMF.on(0, 60, 10) + SMF.on(0, 60, 11) + SMF.off(480, 60)      // one note-off closes both
        t += SMF.on(0, 62, 12) + SMF.off(0, 62)                            // zero length: dropped
        t += SMF.on(0, 65, 13) + SMF.on(480, 65, 14) + SMF.off(0, 65)      // closes the older one only
        t += SMF.off(480, 65)                                              // closes the one opened at 1.0 s
        t += SMF.on(0, 67, 15) + SMF.eot(480)                              // never closed: dropped
        let seq = try sequence([t], format: 0)
        let got = seq.notes.map { "\($0.pitch)/\($0.velocity) \($0.start)-\($0.end)" }
        print("notes: \(got)")
        XCTAssertEqual(got, ["60/10 0.0-0.5", "60/11 0.0-0.5", "65/13 0.5-1.0", "65/14 1.0-1.5"])
        XCTAssertEqual(seq.totalTime, 1.5)
    }

    func testControlChangesBelongToInstruments() throws {
        // Pedal in its own track with no notes: pretty_midi keeps it in a straggler that no
        // instrument adopts, so upstream loses it.
        let pedalTrack = SMF.cc(0, 64, 127) + SMF.cc(960, 64, 0) + SMF.eot()
        let noteTrack = SMF.on(0, 60, 100) + SMF.off(480, 60) + SMF.eot()
        let lost = try sequence([pedalTrack, noteTrack])
        print("separate pedal track: \(lost.controlChanges.count) control changes kept")
        XCTAssertEqual(lost.controlChanges, [])
        // In the notes' own track (before the first note) it is adopted.
        let kept = try sequence([SMF.cc(0, 64, 127) + noteTrack.dropLast(4) + SMF.cc(480, 64, 0) + SMF.eot()])
        XCTAssertEqual(kept.controlChanges.map(\.value), [127, 0])
        XCTAssertEqual(kept.applyingSustain().notes.map(\.end), [1.0])
        // Another channel is another instrument: its pedal does not sustain channel 0.
        let other = try sequence([SMF.cc(0, 64, 127, channel: 1) + SMF.on(0, 50, 1, channel: 1) + SMF.off(10, 50, channel: 1)
                                  + noteTrack.dropLast(4) + SMF.cc(480, 64, 0, channel: 1) + SMF.eot()])
        let sustained = other.applyingSustain()
        XCTAssertEqual(sustained.notes.map(\.instrument), [0, 1])
        XCTAssertEqual(sustained.notes.first { $0.pitch == 60 }?.end, other.notes.first { $0.pitch == 60 }?.end)
        XCTAssertEqual(sustained.notes.first { $0.pitch == 50 }?.end, 970.0 / 960.0)  // held by its own pedal to the release at tick 970
    }

    func testSustainLikeNoteSeq() {
        typealias N = NoteSequence.Note
        typealias C = NoteSequence.ControlChange
        // Released under the pedal: lasts to the pedal release.
        var s = NoteSequence(notes: [N(pitch: 60, velocity: 80, start: 0, end: 0.5)],
                             controlChanges: [C(time: 0.25, controller: 64, value: 64), C(time: 1.0, controller: 64, value: 63)])
        s.applySustain()
        XCTAssertEqual(s.notes.map(\.end), [1.0])
        XCTAssertEqual(s.totalTime, 1.0)
        // Re-struck under the pedal: the first note ends at the second onset.
        s = NoteSequence(notes: [N(pitch: 60, velocity: 80, start: 0, end: 0.1), N(pitch: 60, velocity: 70, start: 0.5, end: 0.6)],
                         controlChanges: [C(time: 0, controller: 64, value: 127), C(time: 2, controller: 64, value: 0)])
        s.applySustain()
        XCTAssertEqual(s.notes.map(\.end), [0.5, 2.0])
        // A note still physically held is cut by the re-strike too.
        s = NoteSequence(notes: [N(pitch: 60, velocity: 80, start: 0, end: 3), N(pitch: 60, velocity: 70, start: 1, end: 1.5)],
                         controlChanges: [C(time: 0, controller: 64, value: 127), C(time: 2, controller: 64, value: 0)])
        s.applySustain()
        XCTAssertEqual(s.notes.map(\.end), [1.0, 2.0])
        XCTAssertEqual(s.totalTime, 3.0)
        // Same-time duplicate under the pedal: the earlier one becomes zero-length and is removed.
        s = NoteSequence(notes: [N(pitch: 60, velocity: 80, start: 1, end: 2), N(pitch: 60, velocity: 70, start: 1, end: 2)],
                         controlChanges: [C(time: 0, controller: 64, value: 127)])
        s.applySustain()
        XCTAssertEqual(s.notes.map(\.velocity), [70])
        // Pedal never released: held to the time of the very last event (here a later pedal event).
        s = NoteSequence(notes: [N(pitch: 60, velocity: 80, start: 0, end: 0.5)],
                         controlChanges: [C(time: 0.1, controller: 64, value: 127), C(time: 3, controller: 64, value: 100)])
        s.applySustain()
        XCTAssertEqual(s.notes.map(\.end), [3.0])
        XCTAssertEqual(s.totalTime, 3.0)
        // Pedal release at the exact note-off time: processed first, the note ends normally.
        s = NoteSequence(notes: [N(pitch: 60, velocity: 80, start: 0, end: 1)],
                         controlChanges: [C(time: 0.5, controller: 64, value: 127), C(time: 1, controller: 64, value: 0)])
        s.applySustain()
        XCTAssertEqual(s.notes.map(\.end), [1.0])
        // Drums are never sustained.
        s = NoteSequence(notes: [N(pitch: 38, velocity: 80, start: 0, end: 0.5, isDrum: true)],
                         controlChanges: [C(time: 0, controller: 64, value: 127, isDrum: true), C(time: 2, controller: 64, value: 0, isDrum: true)])
        s.applySustain()
        XCTAssertEqual(s.notes.map(\.end), [0.5])
    }

    // MARK: - Voice allocation

    func testVoiceAllocatorRoundRobin() {
        var a = VoiceAllocator(voices: 4)
        let steps: [([Int], [Int])] = [
            ([60], [60, 0, 0, 0]),
            ([62, 60], [60, 62, 0, 0]),
            ([62], [0, 62, 0, 0]),
            ([62, 64], [0, 62, 64, 0]),          // next slot after the last assigned, not the freed one
            ([62, 64, 65, 67], [67, 62, 64, 65]), // 65 -> slot 3, 67 wraps to slot 0; all full
            ([62, 64, 65, 67, 69], [67, 69, 64, 65]), // five notes: the lowest (62) is dropped
            ([64, 65, 67, 69], [67, 69, 64, 65]),
            ([], [0, 0, 0, 0]),
            // All slots were full before the release, so the first slot freed (0) became the cursor.
            ([70], [70, 0, 0, 0]),
        ]
        for (i, (active, expected)) in steps.enumerated() {
            let got = a.step(activePitches: active)
            print("step \(i): active \(active) -> slots \(got)")
            XCTAssertEqual(got, expected, "step \(i)")
            XCTAssertEqual(a.slotPitches, expected, "step \(i)")
        }
    }

    // MARK: - Roll, pedal and length quirks

    func testRollOnsetsPedalAndLength() {
        typealias N = NoteSequence.Note
        typealias C = NoteSequence.ControlChange
        let seq = NoteSequence(
            notes: [N(pitch: 60, velocity: 127, start: 0.1, end: 0.2),
                    N(pitch: 62, velocity: 64, start: 0.3, end: 0.5),
                    N(pitch: 62, velocity: 32, start: 0.5, end: 0.6)],
            controlChanges: [C(time: 0.2, controller: 64, value: 127), C(time: 0.21, controller: 67, value: 0),
                             C(time: 0.2109, controller: 67, value: 10), C(time: 0.3, controller: 7, value: 100),
                             C(time: 0.7, controller: 64, value: 0)])
        let c = UpstreamConditioning.make(sequence: seq, warmUp: 0)
        XCTAssertEqual(c.frames, 250)  // ceil(0.6 s) = 1 s
        let v64 = Float(Double(64) / 127), v32 = Float(Double(32) / 127)
        for t in 0..<250 {
            let p0 = c.pitch(frame: t, voice: 0), p1 = c.pitch(frame: t, voice: 1)
            XCTAssertEqual(p0, (25..<50).contains(t) ? 60 : 0, "frame \(t)")
            XCTAssertEqual(c.velocity(frame: t, voice: 0), t == 25 || t == 26 ? 1 : 0, "frame \(t)")
            XCTAssertEqual(p1, (75..<150).contains(t) ? 62 : 0, "frame \(t)")
            // The re-strike at frame 125 lights frame 124 with the previous note's velocity.
            let expected: Float = (t == 75 || t == 76 || t == 124) ? v64 : (t == 125 || t == 126 ? v32 : 0)
            XCTAssertEqual(c.velocity(frame: t, voice: 1), expected, "frame \(t)")
            for v in 2..<16 { XCTAssertEqual(c.pitch(frame: t, voice: v), 0) }
        }
        // Pedal: an event value on its own frame only; the last event of a frame wins; CC 7 and
        // the release at 0.7 s (after the roll's last frame, 150) are gone.
        var nonZero: [String] = []
        for t in 0..<250 { for k in 0..<4 where c.pedal[t * 4 + k] != 0 { nonZero.append("\(t):\(64 + k)=\(c.pedal[t * 4 + k])") } }
        print("pedal events: \(nonZero)")
        XCTAssertEqual(nonZero, ["50:64=1.0", "52:67=\(Float(11) / 128)"])

        let warm = UpstreamConditioning.make(sequence: seq)
        XCTAssertEqual(warm.frames, 375)
        XCTAssertEqual(Array(warm.conditioning[(125 * 32)...]), c.conditioning)
        XCTAssertEqual(Array(warm.pedal[(125 * 4)...]), c.pedal)
        XCTAssertTrue(warm.conditioning[..<(125 * 32)].allSatisfy { $0 == 0 })

        // --duration crops or zero-pads the MIDI part, the warm-up stays in front.
        let short = UpstreamConditioning.make(sequence: seq, warmUp: 0.5, duration: 0.4)
        XCTAssertEqual(short.frames, 125 + 100)
        XCTAssertEqual(Array(short.conditioning[(125 * 32)...]), Array(c.conditioning[..<(100 * 32)]))
        let long = UpstreamConditioning.make(sequence: seq, warmUp: 0, duration: 2)
        XCTAssertEqual(long.frames, 500)
        XCTAssertEqual(Array(long.conditioning[..<(250 * 32)]), c.conditioning)
        XCTAssertTrue(long.conditioning[(250 * 32)...].allSatisfy { $0 == 0 })
    }

    func testOutOfRangePitchesCountForLengthOnly() {
        let seq = NoteSequence(notes: [.init(pitch: 110, velocity: 50, start: 0, end: 1.2),
                                       .init(pitch: 20, velocity: 50, start: 0, end: 0.5),
                                       .init(pitch: 21, velocity: 50, start: 0, end: 0.5)])
        let c = UpstreamConditioning.make(sequence: seq, warmUp: 0)
        XCTAssertEqual(c.frames, 500)
        XCTAssertEqual(Set((0..<500).map { c.pitch(frame: $0, voice: 0) }), [21, 0])
        XCTAssertTrue((0..<500).allSatisfy { t in (1..<16).allSatisfy { c.pitch(frame: t, voice: $0) == 0 } })
    }

    func testEmptyFile() throws {
        let midi = try MIDIFile(bytes: SMF.file(format: 0, tracks: [SMF.eot()]))
        let c = UpstreamConditioning.make(midi: midi)
        XCTAssertEqual(c.frames, 125)
        XCTAssertTrue(c.conditioning.allSatisfy { $0 == 0 })
    }

    // MARK: Row by row (what a file render plays)

    /// A dense random piece: overlapping notes on every key range, re-strikes, all four pedals.
    private func randomSequence(seconds: Double, seed: UInt64) -> NoteSequence {
        var rng = SplitMix64(seed: seed)
        var notes: [NoteSequence.Note] = []
        var ccs: [NoteSequence.ControlChange] = []
        var t = 0.0
        while t < seconds {
            let length = 0.02 + Double(rng.below(1500)) / 1000
            notes.append(.init(pitch: 15 + rng.below(100), velocity: 1 + rng.below(127), start: t, end: min(seconds, t + length)))
            if rng.below(8) == 0 { ccs.append(.init(time: t, controller: 64 + rng.below(4), value: rng.below(128))) }
            t += Double(rng.below(120)) / 1000
        }
        return NoteSequence(notes: notes, controlChanges: ccs)
    }

    /// `Rows` asked for rows in order, some twice, some skipped, and again after `rewind()`,
    /// gives the rows of the table (`make`, whose rows equal upstream's on every reference case).
    func testRowsInAnyForwardOrderEqualTheTable() {
        let seq = randomSequence(seconds: 20, seed: 7)
        let table = UpstreamConditioning.make(sequence: seq, warmUp: 0.5, duration: nil)
        var rows = UpstreamConditioning.Rows(sequence: seq, warmUp: 0.5, duration: nil)
        XCTAssertEqual(rows.frames, table.frames)
        var c = [Float](repeating: -1, count: 32), p = [Float](repeating: -1, count: 4)
        var rng = SplitMix64(seed: 3)
        var mismatches = 0, compared = 0
        for pass in 0..<2 {
            var t = 0
            while t < table.frames + 10 {
                rows.row(t, conditioning: &c, pedal: &p)
                let expectedC = t < table.frames ? Array(table.conditioning[(t * 32)..<(t * 32 + 32)]) : [Float](repeating: 0, count: 32)
                let expectedP = t < table.frames ? Array(table.pedal[(t * 4)..<(t * 4 + 4)]) : [Float](repeating: 0, count: 4)
                if c != expectedC || p != expectedP { mismatches += 1 }
                compared += 1
                // Mostly the next row; sometimes the same again, sometimes a jump ahead.
                switch rng.below(10) {
                case 0: break
                case 1: t += 1 + rng.below(40)
                default: t += 1
                }
            }
            if pass == 0 { rows.rewind() }
        }
        print("rows compared \(compared), mismatching \(mismatches)")
        XCTAssertGreaterThan(compared, table.frames / 2)
        XCTAssertEqual(mismatches, 0)
    }

    /// Making a row allocates nothing (the engine makes them in its render path).
    func testRowsDoNotAllocate() {
        let seq = randomSequence(seconds: 60, seed: 11)
        var rows = UpstreamConditioning.Rows(sequence: seq)
        var c = [Float](repeating: 0, count: 32), p = [Float](repeating: 0, count: 4)
        c.withUnsafeMutableBufferPointer { cb in
            p.withUnsafeMutableBufferPointer { pb in
                for t in 0..<10 { rows.row(t, conditioning: cb.baseAddress!, pedal: pb.baseAddress!) }
                malloc_counter_start()
                for t in 10..<rows.frames { rows.row(t, conditioning: cb.baseAddress!, pedal: pb.baseAddress!) }
                let n = malloc_counter_stop()
                print("allocator calls making \(rows.frames - 10) rows: \(n)")
                XCTAssertEqual(n, 0)
            }
        }
    }

    /// A file render playing upstream's conditioning (v2's default) allocates nothing per block:
    /// its memory does not grow with the piece.
    func testScriptedRenderAllocatesNothingPerBlock() throws {
        let model = StructuralV2.model()
        let seq = randomSequence(seconds: 6, seed: 5)
        final class CountingSink: RenderSink {
            let wantsDry = false
            var blocks = 0, expected = 0, samples = 0
            var allocations: Int64 = -1
            func begin(sampleRate: Int, length: Int) { expected = length / 256 }
            func write(wet: UnsafeBufferPointer<Float>, dry: UnsafeBufferPointer<Float>?) {
                blocks += 1
                samples += wet.count
                if blocks == 20 { malloc_counter_start() }
                if blocks == expected - 1 { allocations = malloc_counter_stop() }
            }
        }
        var settings = RenderSettings()
        settings.instrument = 0
        settings.sampleRate = 48_000
        let sink = CountingSink()
        var s = sink
        try OfflineRenderer.renderStreaming(conditioning: UpstreamConditioning.Rows(sequence: seq), model: model,
                                            settings: settings, into: &s)
        print("scripted v2 render at 48 kHz: \(sink.allocations) allocator calls in \(sink.expected - 21) blocks of 256")
        XCTAssertGreaterThan(sink.samples, 5 * 48_000)
        XCTAssertEqual(sink.allocations, 0)
    }
}
