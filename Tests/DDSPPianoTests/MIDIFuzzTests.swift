import Foundation
import XCTest
import DDSPPiano
import PianoTestKit

/// The parser must only return or throw on any input; whatever parses must condition sanely.
/// Set MIDI_FUZZ_VERBOSE=1 to print every input's id before it is parsed (to find a crasher).
final class MIDIFuzzTests: XCTestCase {
    private let verbose = ProcessInfo.processInfo.environment["MIDI_FUZZ_VERBOSE"] == "1"

    private struct Tally {
        var parsed = 0, refused = 0, conditioned = 0
        var parseSeconds = 0.0, conditionSeconds = 0.0
        var errors: [String: Int] = [:]
    }

    /// Parses, checks the events, and conditions (bounded to a short duration for long results).
    private func exercise(_ bytes: [UInt8], id: String, tally: inout Tally) {
        if verbose { print("fuzz input \(id) (\(bytes.count) bytes)") }
        let midi: MIDIFile
        let t0 = Date()
        do {
            midi = try MIDIFile(bytes: bytes)
            tally.parseSeconds += Date().timeIntervalSince(t0)
        } catch {
            tally.parseSeconds += Date().timeIntervalSince(t0)
            let text = "\(error)"
            XCTAssertFalse(text.isEmpty || text.contains("\n"), "\(id): error text \(text)")
            // Group messages by their first words for the summary.
            tally.errors[text.split(separator: " ").prefix(2).joined(separator: " "), default: 0] += 1
            tally.refused += 1
            return
        }
        tally.parsed += 1
        let times = midi.events.map(\.time)
        XCTAssertTrue(times.allSatisfy { $0.isFinite && $0 >= 0 }, id)
        XCTAssertTrue(zip(times, times.dropFirst()).allSatisfy { $0 <= $1 }, id)
        XCTAssertTrue(midi.endTime.isFinite && midi.endTime >= (times.last ?? 0), id)

        let seq = NoteSequence(midi: midi).applyingSustain()
        XCTAssertTrue(seq.totalTime.isFinite && seq.notes.allSatisfy { $0.start >= 0 && $0.end >= $0.start }, id)
        // Whole piece when short, else the first 4 s (a corrupt file can claim hours).
        let full = UpstreamConditioning.frameCount(midi: midi)
        let duration: Double? = full <= 125 + 1000 ? nil : 4
        let t1 = Date()
        let c = UpstreamConditioning.make(midi: midi, duration: duration)
        tally.conditionSeconds += Date().timeIntervalSince(t1)
        XCTAssertEqual(c.frames, duration == nil ? full : 125 + 1000, id)
        var ok = true
        var seen = [Bool](repeating: false, count: 128)
        for t in 0..<c.frames {
            for v in 0..<c.voices {
                let p = c.pitch(frame: t, voice: v), vel = c.velocity(frame: t, voice: v)
                if !(p == 0 || (21...108).contains(p)) || !(0...1).contains(vel) || (p == 0 && vel != 0) { ok = false; break }
                // A pitch sounds in one slot at most.
                if p != 0 { if seen[Int(p)] { ok = false } else { seen[Int(p)] = true } }
            }
            for v in 0..<c.voices { seen[Int(c.pitch(frame: t, voice: v)) & 127] = false }
        }
        XCTAssertTrue(ok, "\(id): conditioning out of range")
        XCTAssertTrue(c.pedal.allSatisfy { (0...1).contains($0) }, id)
        tally.conditioned += 1
    }

    private func summary(_ name: String, _ tally: Tally, seconds: Double) {
        let errors = tally.errors.sorted { $0.value > $1.value }.map { "\($0.key)…: \($0.value)" }.joined(separator: ", ")
        print("\(name): \(tally.parsed + tally.refused) inputs in \(String(format: "%.2f", seconds)) s (parse \(String(format: "%.2f", tally.parseSeconds)) s, conditioning \(String(format: "%.2f", tally.conditionSeconds)) s), \(tally.parsed) parsed and conditioned, \(tally.refused) refused (\(errors))")
    }

    func testRandomBytes() {
        var tally = Tally()
        let start = Date()
        for i in 0..<3000 {
            var rng = SplitMix64(seed: 0xD15C_0000 &+ UInt64(i))
            let n = Int.random(in: 0...400, using: &rng)
            var bytes = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
            // Two thirds start like a real file, so the fuzzing reaches the track parser.
            if i % 3 != 0 {
                let division = i % 7 == 0 ? [UInt8(0xE7), 0x28] : [UInt8.random(in: 0...3, using: &rng), UInt8.random(in: 0...255, using: &rng)]
                var head = SMF.chunk("MThd", [0, UInt8(i % 4), 0, UInt8.random(in: 0...3, using: &rng)] + division)
                head += Array("MTrk".utf8) + SMF.be32(i % 5 == 0 ? Int.random(in: 0...0xFFFF_FFFF, using: &rng) : n)
                // Bias the body toward plausible events: small deltas, common status bytes.
                for k in stride(from: 0, to: bytes.count, by: 4) where k % 8 == 0 {
                    bytes[k] = UInt8.random(in: 0...3, using: &rng)
                    if k + 1 < bytes.count {
                        bytes[k + 1] = [0x90, 0x80, 0xB0, 0xFF, 0xF0, 0xC0, 0xE0, 0x3C].randomElement(using: &rng)!
                    }
                }
                bytes = head + bytes
            }
            exercise(bytes, id: "random #\(i)", tally: &tally)
        }
        summary("random bytes", tally, seconds: Date().timeIntervalSince(start))
    }

    func testMutatedFiles() throws {
        var files: [(String, [UInt8])] = []
        for url in corpusFiles() {
            files.append((url.lastPathComponent, [UInt8](try Data(contentsOf: url))))
        }
        if let cases = try? Fixtures.cases(withTensors: false) {
            for dir in cases {
                let url = dir.appendingPathComponent("input.mid")
                if let data = try? Data(contentsOf: url) { files.append((dir.lastPathComponent + "/input.mid", [UInt8](data))) }
            }
        }
        guard !files.isEmpty else {
            print("skipped: no MIDI corpus or reference fixtures to mutate")
            throw XCTSkip("no MIDI files")
        }
        // Big files are fuzzed through their first 24 KB (a cut last track is itself a tolerated case).
        let maxBytes = 24 * 1024
        var tally = Tally()
        let start = Date()
        let rounds = 6
        for round in 0..<rounds {
            for (f, (name, original)) in files.enumerated() {
                let seed = 0x5EED_0000 &+ UInt64(round * 1000 + f)
                var rng = SplitMix64(seed: seed)
                var bytes = Array(original.prefix(maxBytes))
                let kind = (round + f) % 5
                switch kind {
                case 0:  // flip a few random bytes (headers included)
                    for _ in 0..<Int.random(in: 1...8, using: &rng) {
                        bytes[Int.random(in: 0..<bytes.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                    }
                case 1:  // truncate
                    bytes.removeLast(Int.random(in: 1...bytes.count, using: &rng))
                case 2:  // insert random bytes
                    let at = Int.random(in: 0...bytes.count, using: &rng)
                    bytes.insert(contentsOf: (0..<Int.random(in: 1...16, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }, at: at)
                case 3:  // delete a range
                    let at = Int.random(in: 0..<bytes.count, using: &rng)
                    bytes.removeSubrange(at..<min(bytes.count, at + Int.random(in: 1...16, using: &rng)))
                default:  // flip single bits in the first 64 bytes (chunk lengths, division, first events)
                    for _ in 0..<Int.random(in: 1...3, using: &rng) {
                        let at = Int.random(in: 0..<min(64, bytes.count), using: &rng)
                        bytes[at] ^= 1 << UInt8.random(in: 0...7, using: &rng)
                    }
                }
                exercise(bytes, id: "\(name) round \(round) kind \(kind) seed \(seed)", tally: &tally)
            }
        }
        summary("mutations of \(files.count) files", tally, seconds: Date().timeIntervalSince(start))
        XCTAssertGreaterThan(tally.parsed, 0)
    }

    /// Pathological but valid input: many overlapping notes on one pitch, huge polyphony,
    /// deltas near the limit. Must stay fast and sane.
    func testPathologicalFiles() throws {
        var track: [UInt8] = []
        for i in 0..<2000 { track += SMF.on(1, UInt8(21 + i % 88), UInt8(1 + i % 127)) }
        for i in 0..<2000 { track += SMF.off(0, UInt8(21 + i % 88)) }
        for _ in 0..<500 { track += SMF.on(0, 60, 100) + SMF.on(1, 60, 50) }
        track += SMF.off(10, 60) + SMF.eot()
        var tally = Tally()
        exercise(SMF.file(format: 0, tracks: [track]), id: "dense", tally: &tally)
        XCTAssertEqual(tally.parsed, 1)

        // A note 2^28 ticks away: parses; the frame count says how long before anything is allocated.
        let far = SMF.on(0, 60, 100) + SMF.off(0x0FFF_FFFF, 60) + SMF.eot()
        let midi = try MIDIFile(bytes: SMF.file(format: 0, division: 1, tracks: [far]))
        let frames = UpstreamConditioning.frameCount(midi: midi)
        print("note ending at tick 2^28 - 1 (1 tick per quarter): \(midi.events.last!.time) s, \(frames) frames")
        XCTAssertEqual(frames, 125 + Int((Double(0x0FFF_FFFF) * 0.5).rounded(.up)) * 250)
        XCTAssertEqual(UpstreamConditioning.make(midi: midi, duration: 1).frames, 375)
    }
}
