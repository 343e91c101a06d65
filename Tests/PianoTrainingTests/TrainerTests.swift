import DDSPPiano
import Foundation
import PianoFormats
import PianoIO
import PianoTraining
import CZlib
import XCTest

/// The training loop: reproducible from its seed, `--resume` equal to an uninterrupted run,
/// a non-finite loss stops without touching the parameters, and the `ddsp-piano-train` tool
/// end to end (Ctrl-C saves a checkpoint, resume, export, render, evaluate).
final class TrainerTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("ddsp-trainer-\(getpid())-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(at: dir) }

    /// A format-0 MIDI file (480 ticks per beat, 120 bpm): notes as (pitch, velocity, start tick, end tick), plus a pedal press.
    static func midiBytes(_ notes: [(UInt8, UInt8, Int, Int)], pedal: (Int, Int)? = nil) -> [UInt8] {
        var events: [(Int, Int, [UInt8])] = []
        for (p, v, s, e) in notes { events.append((s, 1, [0x90, p, v])); events.append((e, 0, [0x80, p, 0])) }
        if let (on, off) = pedal { events.append((on, 1, [0xB0, 64, 127])); events.append((off, 0, [0xB0, 64, 0])) }
        events.sort { ($0.0, $0.1) < ($1.0, $1.1) }
        var track: [UInt8] = [], now = 0
        func vlq(_ v: Int) -> [UInt8] {
            var out = [UInt8(v & 0x7F)], x = v >> 7
            while x > 0 { out.insert(UInt8(x & 0x7F) | 0x80, at: 0); x >>= 7 }
            return out
        }
        for (t, _, bytes) in events { track += vlq(t - now) + bytes; now = t }
        track += [0x00, 0xFF, 0x2F, 0x00]
        let n = track.count
        return Array("MThd".utf8) + [0, 0, 0, 6, 0, 0, 0, 1, 0x01, 0xE0] + Array("MTrk".utf8)
            + [UInt8(n >> 24), UInt8((n >> 16) & 0xFF), UInt8((n >> 8) & 0xFF), UInt8(n & 0xFF)] + track
    }

    /// A piece and a decaying-partials "recording" of it (16 kHz mono), `seconds` long.
    static func writePair(folder: URL, name: String, seconds: Double, seed: UInt64) throws {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        var rng = TrainingRNG(seed: seed)
        var notes: [(UInt8, UInt8, Int, Int)] = []
        var t = 0
        while Double(t) / 960 < seconds - 1 {
            let pitch = UInt8(40 + Int(rng.next() % 40)), vel = UInt8(30 + Int(rng.next() % 90)), len = 240 + Int(rng.next() % 720)
            notes.append((pitch, vel, t, t + len))
            t += 120 + Int(rng.next() % 360)
        }
        let midi = midiBytes(notes, pedal: (960, 2400))
        try Data(midi).write(to: folder.appendingPathComponent(name + ".mid"))
        let rate = 16_000, n = Int(seconds * Double(rate))
        var audio = [Float](repeating: 0, count: n)
        for (p, v, s, e) in notes {
            let f0 = 440 * pow(2, (Double(p) - 69) / 12), start = Int(Double(s) / 960 * Double(rate)), end = min(n, Int(Double(e) / 960 * Double(rate)) + 4000)
            for i in start..<end {
                let tt = Double(i - start) / Double(rate)
                var x = 0.0
                for h in 1...6 where Double(h) * f0 < 7_000 { x += sin(2 * .pi * Double(h) * f0 * tt) / Double(h) }
                audio[i] += Float(0.05 * Double(v) / 127 * exp(-3 * tt) * x)
            }
        }
        try AudioFile.write(audio, channels: 1, sampleRate: rate, format: .f32, to: folder.appendingPathComponent(name + ".wav"))
    }

    /// A small model (every layer, narrow) so a step takes a fraction of a second.
    static func smallHyper() -> PianoWeights.Hyper {
        var h = PianoWeights.Hyper()
        h.zDim = 3; h.contextUnits = 4; h.contextGRUUnits = 8; h.monoDenseUnits = 8
        h.monoGRUUnits = 8; h.monoHiddenUnits = 8; h.harmonics = 8; h.noiseBands = 5; h.reverbLength = 256
        return h
    }

    func sets() throws -> (TrainingSet, TrainingSet) {
        try Self.writePair(folder: dir.appendingPathComponent("data/train/grand"), name: "a", seconds: 9, seed: 1)
        try Self.writePair(folder: dir.appendingPathComponent("data/train/grand"), name: "b", seconds: 7, seed: 2)
        try Self.writePair(folder: dir.appendingPathComponent("data/train/upright"), name: "c", seconds: 8, seed: 3)
        try Self.writePair(folder: dir.appendingPathComponent("data/validation/grand"), name: "d", seconds: 6, seed: 4)
        var instruments: [String] = []
        let t = try TrainingSet.load(folder: dir.appendingPathComponent("data/train"), instruments: &instruments)
        let v = try TrainingSet.load(folder: dir.appendingPathComponent("data/validation"), instruments: &instruments)
        XCTAssertEqual(instruments, ["grand", "upright"])
        return (t, v)
    }

    func config(threads: Int = 2) -> TrainerConfig {
        var c = TrainerConfig()
        c.seed = 7; c.threads = threads; c.validationSegments = 4
        c.lossSizes = [512, 256, 128, 64]
        c.phases = [PhasePlan(number: 1, batchSize: 3, learningRate: 3e-3, steps: 4), PhasePlan(number: 2, batchSize: 2, learningRate: 1e-3, steps: 2)]
        return c
    }

    func testSegmentsFollowUpstreamSplit() throws {
        let (t, v) = try sets()
        // 3-s windows every 1.5 s that fit in both the audio and the MIDI's frames.
        func expected(_ s: TrainingSet) -> Int {
            s.performances.map { p in
                func count(_ length: Int, _ size: Int, _ hop: Int) -> Int { length < size ? 0 : (length - size) / hop + 1 }
                return min(count(p.audio.count, 48_000, 24_000), count(p.conditioning.frames, 750, 375))
            }.reduce(0, +)
        }
        print("windows: train \(t.windows.count), validation \(v.windows.count)")
        XCTAssertEqual(t.windows.count, expected(t))
        XCTAssertEqual(v.windows.count, expected(v))
        XCTAssertGreaterThanOrEqual(t.windows.count, 9)
        XCTAssertEqual(t.performanceInstrument, [0, 0, 1])
        let (batch, target) = t.batch([0, 5, t.windows.count - 1])
        XCTAssertEqual(batch.instruments, [0, 0, 1])
        XCTAssertEqual(target.count, 3 * 48_000)
        XCTAssertEqual(batch.conditioning.count, 3 * 750 * 16 * 2)
    }

    func testMaestroLayoutGivesSplitsAndYearInstruments() throws {
        let root = dir.appendingPathComponent("maestro")
        try Self.writePair(folder: root.appendingPathComponent("2018"), name: "a", seconds: 6, seed: 1)
        try Self.writePair(folder: root.appendingPathComponent("2004"), name: "b", seconds: 5, seed: 2)
        try Self.writePair(folder: root.appendingPathComponent("2018"), name: "c", seconds: 5, seed: 3)
        for f in ["2018/a", "2004/b", "2018/c"] {   // MAESTRO's MIDI files end in .midi
            try FileManager.default.moveItem(at: root.appendingPathComponent(f + ".mid"), to: root.appendingPathComponent(f + ".midi"))
        }
        let csv = """
        canonical_composer,canonical_title,split,year,midi_filename,audio_filename,duration
        A,"Piece, one",train,2018,2018/a.midi,2018/a.wav,6.0
        B,Two,train,2004,2004/b.midi,2004/b.wav,5.0
        C,Three,validation,2018,2018/c.midi,2018/c.wav,5.0
        D,Four,test,2011,2011/d.midi,2011/d.wav,5.0

        """
        try csv.write(to: root.appendingPathComponent("maestro-v3.0.0.csv"), atomically: true, encoding: .utf8)
        var instruments: [String] = []
        let t = try TrainingSet.loadMaestro(root: root, split: "train", instruments: &instruments)
        let v = try TrainingSet.loadMaestro(root: root, split: "validation", instruments: &instruments)
        XCTAssertEqual(instruments, ["2004", "2018"], "years of the training rows, sorted (upstream's instrument order)")
        XCTAssertEqual(t.performanceInstrument, [1, 0])
        XCTAssertEqual(v.performanceInstrument, [1])
        XCTAssertTrue(t.skipped.isEmpty && v.skipped.isEmpty, "\(t.skipped) \(v.skipped)")
        XCTAssertGreaterThan(t.windows.count, 0)
    }

    func testSameSeedGivesTheSameLossCurve() throws {
        let (t, v) = try sets()
        func curve() throws -> [Double] {
            let w = PianoWeights.initial(hyper: Self.smallHyper(), instruments: t.instruments, seed: 3)
            let trainer = try Trainer(weights: w, config: config(), train: t, validation: v)
            var out: [Double] = [trainer.validationLoss()!]
            while !trainer.isFinished { out.append(try trainer.step().losses.total) }
            out.append(trainer.validationLoss()!)
            return out
        }
        let a = try curve(), b = try curve()
        print("loss curve: \(a.map { String(format: "%.5f", $0) }.joined(separator: " "))")
        XCTAssertEqual(a.count, 8)
        XCTAssertEqual(a, b, "the same seed and data must give the same curve, bit for bit")
        XCTAssertLessThan(a[7], a[0], "six steps lower the validation loss")
    }

    func testResumeMatchesAnUninterruptedRun() throws {
        let (t, v) = try sets()
        let w = PianoWeights.initial(instruments: t.instruments, seed: 3)   // weight files hold the dafx22 widths
        let straight = try Trainer(weights: w, config: config(), train: t, validation: v)
        var full: [Double] = []
        while !straight.isFinished { full.append(try straight.step().losses.total) }

        let first = try Trainer(weights: w, config: config(), train: t, validation: v)
        var resumed: [Double] = []
        for _ in 0..<3 { resumed.append(try first.step().losses.total) }
        let bytes = try first.checkpoint(state: ["note": "test"]).serialized()
        let second = try Trainer(checkpoint: try TrainingCheckpoint(bytes: bytes), train: t, validation: v)
        XCTAssertEqual(second.completedSteps, 3)
        while !second.isFinished { resumed.append(try second.step().losses.total) }
        print("uninterrupted: \(full.map { String(format: "%.6f", $0) })\nresumed:       \(resumed.map { String(format: "%.6f", $0) })")
        XCTAssertEqual(full, resumed, "resuming from the checkpoint after step 3 must repeat steps 4-6 exactly (across the phase change)")
        let a = try straight.weights().safetensors().tensors, b = try second.weights().safetensors().tensors
        var maxDiff: Float = 0
        for (name, ta) in a { for (x, y) in zip(ta.values, b[name]!.values) { maxDiff = max(maxDiff, abs(x - y)) } }
        print("final weights max |difference|: \(maxDiff)")
        XCTAssertEqual(maxDiff, 0)
    }

    /// `--resume --steps`: finished phases stay, the current one may grow or end where it
    /// stands (the run moves to the next phase), nothing already run is taken back.
    func testReplanOnResume() throws {
        let plan = [PhasePlan(number: 1, batchSize: 6, learningRate: 1e-3, steps: 100),
                    PhasePlan(number: 3, batchSize: 6, learningRate: 1e-3, steps: 100)]
        let longer = try Trainer.replan(plan, phaseIndex: 0, stepInPhase: 40, steps: [300, 50])
        XCTAssertEqual(longer.phases.map(\.steps), [300, 50]); XCTAssertEqual(longer.phaseIndex, 0); XCTAssertEqual(longer.stepInPhase, 40)
        let cut = try Trainer.replan(plan, phaseIndex: 0, stepInPhase: 40, steps: [40, 20])
        XCTAssertEqual(cut.phases.map(\.steps), [40, 20]); XCTAssertEqual(cut.phaseIndex, 1); XCTAssertEqual(cut.stepInPhase, 0)
        let later = try Trainer.replan(plan, phaseIndex: 1, stepInPhase: 10, steps: [100, 10])
        XCTAssertEqual(later.phaseIndex, 2, "the last phase cut where it stands finishes the run")
        XCTAssertThrowsError(try Trainer.replan(plan, phaseIndex: 0, stepInPhase: 40, steps: [39, 20])) {
            XCTAssertTrue("\($0)".contains("already run 40 steps"), "\($0)")
        }
        XCTAssertThrowsError(try Trainer.replan(plan, phaseIndex: 1, stepInPhase: 0, steps: [90, 20])) {
            XCTAssertTrue("\($0)".contains("phase 1 is finished after 100 steps"), "\($0)")
        }
        XCTAssertThrowsError(try Trainer.replan(plan, phaseIndex: 0, stepInPhase: 0, steps: [90])) {
            XCTAssertTrue("\($0)".contains("one per phase of the run (1,3)"), "\($0)")
        }
        XCTAssertThrowsError(try Trainer.replan(plan, phaseIndex: 0, stepInPhase: 0, steps: [90, 0]))

        // Resumed with phase 1 cut after its 3 steps: phase 2 begins at its own learning rate.
        let (t, v) = try sets()
        let first = try Trainer(weights: PianoWeights.initial(instruments: t.instruments, seed: 3), config: config(), train: t, validation: v)
        for _ in 0..<3 { _ = try first.step() }
        let resumed = try Trainer(checkpoint: try TrainingCheckpoint(bytes: try first.checkpoint().serialized()), train: t, validation: v, steps: [3, 2])
        XCTAssertEqual(resumed.phaseIndex, 1); XCTAssertEqual(resumed.completedSteps, 3); XCTAssertEqual(resumed.totalSteps, 5)
        XCTAssertEqual(resumed.adam.learningRate, 1e-3)
        let report = try resumed.step()
        XCTAssertEqual(report.phase, 2); XCTAssertEqual(report.globalStep, 4)
    }

    func testNonFiniteLossStopsWithoutUpdating() throws {
        let (t, v) = try sets()
        let w = PianoWeights.initial(hyper: Self.smallHyper(), instruments: t.instruments, seed: 3)
        let trainer = try Trainer(weights: w, config: config(), train: t, validation: v)
        _ = try trainer.step()
        trainer.replicas.forEach { ($0 as! PianoModelTraining).network.mono.out.bias[0] = .nan }
        let before = (trainer.replicas[0] as! PianoModelTraining).network.mono.gru.kernel
        XCTAssertThrowsError(try trainer.step()) { e in
            XCTAssertTrue(e is TrainingDiverged, "\(e)")
            print("diverged: \(e)")
        }
        XCTAssertEqual((trainer.replicas[0] as! PianoModelTraining).network.mono.gru.kernel, before, "no update after a non-finite loss")
        XCTAssertEqual(trainer.completedSteps, 1)
    }

    func testFineTuningWeightsKeepOrAddInstruments() throws {
        let w = PianoWeights.initial(instruments: ["2004", "2018"], seed: 5)
        let x = try w.withInstruments(["2004", "2018", "mine", "new"], aliases: ["mine": "2018"])
        XCTAssertEqual(x.instruments.count, 4)
        let z = w.hyper.zDim
        XCTAssertEqual(Array(x.zEmbedding.values[(2 * z)..<(3 * z)]), Array(w.zEmbedding.values[z..<(2 * z)]), "an alias starts as its instrument")
        for j in 0..<z { XCTAssertEqual(x.zEmbedding.values[3 * z + j], (w.zEmbedding.values[j] + w.zEmbedding.values[z + j]) / 2, accuracy: 1e-7) }
        XCTAssertThrowsError(try w.withInstruments(["a"], aliases: ["a": "1999"]))
        // Fresh weights load back through the validating reader.
        XCTAssertNoThrow(try PianoWeights(safetensors: x.safetensors()))
    }

    /// The comparison picture puts each signal's energy at its frequency, on one scale: a
    /// 440-Hz and a 3-kHz sine show their brightest rows there, and the same 3 kHz 30 dB
    /// quieter draws darker.
    func testComparisonSpectrogramsShowEachSignalAtItsFrequency() throws {
        let rate = 16_000.0
        func sine(_ f: Double, _ a: Float) -> [Float] { (0..<16_000).map { a * Float(sin(2 * .pi * f * Double($0) / rate)) } }
        let img = TrainingPlots.comparison([("a", sine(440, 0.5)), ("b", sine(3000, 0.5)), ("c", sine(3000, 0.5 * 0.0316))], title: "t")
        let rows = TrainingPlots.panelRows, label = 22
        XCTAssertEqual(img.height, label + 3 * (label + rows))
        for (p, (f, _)) in [(440.0, 0), (3000.0, 1), (3000.0, 2)].enumerated() {
            let y0 = label + p * (label + rows) + label
            // Brightness of each row, summed over the columns.
            let bright = (0..<rows).map { r -> Int in
                let y = y0 + rows - 1 - r
                return (0..<img.width).reduce(0) { $0 + Int(img.pixels[3 * (y * img.width + $1)]) + Int(img.pixels[3 * (y * img.width + $1) + 1]) }
            }
            let top = bright.indices.max { bright[$0] < bright[$1] }!
            let hz = (Double(2 * top) + 0.5) * rate / 1024
            print("panel \(p): brightest row \(top) ≈ \(Int(hz)) Hz (sine at \(Int(f)) Hz), brightness \(bright[top])")
            XCTAssertEqual(hz, f, accuracy: 2 * rate / 1024, "panel \(p) shows its sine at its frequency (one row is two bins)")
        }
        func rowBrightness(_ panel: Int, _ hz: Double) -> Int {
            let r = Int(hz * 1024 / rate) / 2, y = label + panel * (label + rows) + label + rows - 1 - r
            return (0..<img.width).reduce(0) { $0 + Int(img.pixels[3 * (y * img.width + $1)]) }
        }
        XCTAssertLessThan(rowBrightness(2, 3000), rowBrightness(1, 3000), "30 dB quieter draws darker on the shared scale")
    }

    func testPNGPicturesAreValid() throws {
        let img = TrainingPlots.lossCurve(train: (1...50).map { ($0, 10 / Double($0)) }, validation: [(10, 2), (50, 0.5)])
        let png = img.png()
        XCTAssertEqual(Array(png.prefix(8)), [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        print("loss curve PNG: \(png.count) bytes")
        XCTAssertLessThan(png.count, 100_000, "deflated")
        // zlib reads it back: every chunk's CRC is right, IHDR says the size, IDAT inflates to
        // one filter byte plus RGB per row.
        var chunks: [(type: String, data: [UInt8])] = []
        var i = 8
        func be32(_ at: Int) -> Int { png[at..<(at + 4)].reduce(0) { $0 << 8 | Int($1) } }
        while i + 12 <= png.count {
            let length = be32(i)
            XCTAssertLessThanOrEqual(i + 12 + length, png.count, "chunk runs past the end")
            guard i + 12 + length <= png.count else { break }
            let typeAndData = Array(png[(i + 4)..<(i + 8 + length)])
            let crc = typeAndData.withUnsafeBufferPointer { UInt32(crc32(0, $0.baseAddress, UInt32($0.count))) }
            XCTAssertEqual(crc, UInt32(be32(i + 8 + length)), "CRC of chunk at \(i)")
            chunks.append((String(decoding: typeAndData[0..<4], as: UTF8.self), Array(typeAndData[4...])))
            i += 12 + length
        }
        XCTAssertEqual(chunks.map(\.type), ["IHDR", "IDAT", "IEND"])
        guard chunks.count == 3 else { return }
        let ihdr = chunks[0].data
        XCTAssertEqual(ihdr[0..<4].reduce(0) { $0 << 8 | Int($1) }, img.width)
        XCTAssertEqual(ihdr[4..<8].reduce(0) { $0 << 8 | Int($1) }, img.height)
        let expected = img.height * (img.width * 3 + 1)
        var raw = [UInt8](repeating: 0, count: expected + 16)
        var rawLength = uLongf(raw.count)
        let status = chunks[1].data.withUnsafeBufferPointer { src in
            raw.withUnsafeMutableBufferPointer { dst in uncompress(dst.baseAddress, &rawLength, src.baseAddress, uLong(src.count)) }
        }
        print("loss curve PNG: IDAT inflates to \(rawLength) bytes (zlib status \(status)), expected \(expected)")
        XCTAssertEqual(status, Z_OK)
        XCTAssertEqual(Int(rawLength), expected)
    }
}
