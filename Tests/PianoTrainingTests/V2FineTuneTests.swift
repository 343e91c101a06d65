import DDSPPiano
import Foundation
import PianoFormats
import PianoIO
import PianoTestKit
import PianoTraining
import XCTest

/// Fine-tuning a v2 weight file (../shared's synthetic checkpoint: the real layout, synthetic
/// values) on a SoundFont piano (FluidR3's Yamaha Grand through fluidsynth, at v2's 24 kHz)
/// lowers its validation loss: the whole v2 training model (`V2ModelTraining`) with Adam, as
/// upstream's first phase trains it (everything but the frozen tuning and release). Needs
/// ../shared and fluidsynth with fluid-soundfont-gm; says "skipped" otherwise.
final class V2FineTuneTests: XCTestCase {
    func testFineTuningV2OnASoundFontPianoLowersValidationLoss() throws {
        let raw = TestKit.shared.appendingPathComponent("reference/v2/checkpoint_raw.safetensors")
        guard FileManager.default.fileExists(atPath: raw.path) else { print("skipped: no reference fixtures (\(raw.path))"); throw XCTSkip("no reference fixtures") }
        guard FineTuneTests.fluidsynth() != nil, FileManager.default.fileExists(atPath: FineTuneTests.soundFont) else {
            print("skipped: no fluidsynth or no \(FineTuneTests.soundFont)"); throw XCTSkip("no fluidsynth")
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ddsp-v2-finetune-\(getpid())-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let midi = TestKit.shared.appendingPathComponent("midi")
        for name in ["score/music21corpus__mozart_k545_movement1_exposition.mid", "score/music21corpus__schoenberg_opus19_movement2.mid"] {
            try FineTuneTests.render(midi.appendingPathComponent(name), into: dir.appendingPathComponent("train/fluidr3"), rate: V2Weights.sampleRate)
        }
        try FineTuneTests.render(midi.appendingPathComponent("performance/parangonar__mozart_k265_var1.mid"), into: dir.appendingPathComponent("validation/fluidr3"),
                                 rate: V2Weights.sampleRate)

        let weights = try V2Weights(upstreamCheckpoint: try Safetensors(bytes: [UInt8](try Data(contentsOf: raw))).tensors)
        // The SoundFont piano is learnt as the 2018 Disklavier's slot (its embedding, reverb, tuning).
        let piano = try XCTUnwrap(weights.instruments.firstIndex(of: "2018"))
        var names: [String] = []
        let rate = V2Weights.sampleRate
        let train = try TrainingSet.load(folder: dir.appendingPathComponent("train"), instruments: &names, sampleRate: rate)
        let validation = try TrainingSet.load(folder: dir.appendingPathComponent("validation"), instruments: &names, sampleRate: rate)
        XCTAssertEqual(train.samplesPerSegment(), 72_000, "3-s segments at 24 kHz")
        func batch(_ set: TrainingSet, _ indices: [Int]) -> (SegmentBatch, [Float]) {
            var (b, t) = set.batch(indices)
            b.instruments = b.instruments.map { _ in piano }
            return (b, t)
        }
        let model = V2ModelTraining(weights: weights)
        let valWindows = (0..<4).map { $0 * validation.windows.count / 4 }
        func validationLoss() -> Double {
            valWindows.reduce(0.0) { s, w in
                let (b, t) = batch(validation, [w])
                return s + model.step(b, target: t, noiseSeed: 0xFA11 &+ UInt64(w), gradients: false).loss
            } / Double(valWindows.count)
        }
        let before = validationLoss()
        var adam = Adam(learningRate: 1e-3)
        var rng = TrainingRNG(seed: 1)
        let order = rng.permutation(train.windows.count)
        var losses: [Double] = []
        for step in 0..<8 {
            let (b, t) = batch(train, (0..<2).map { order[(2 * step + $0) % order.count] })
            model.zeroGrad()
            losses.append(model.step(b, target: t, noiseSeed: UInt64(step)).loss)
            adam.update { body in model.forEachParameter(body) }
        }
        let after = validationLoss()
        print(String(format: "fine-tuning v2 (synthetic checkpoint, piano 2018) on FluidR3 Yamaha Grand at 24 kHz, 8 steps of 2 segments: validation spectral loss %.4f -> %.4f (%.1f %%); training loss %@",
                     before, after, 100 * (after - before) / before, losses.map { String(format: "%.2f", $0) }.joined(separator: " ")))
        XCTAssertTrue(losses.allSatisfy(\.isFinite))
        XCTAssertLessThan(after, before, "fine-tuning must lower the validation loss")
        // The trained values export as v2 weights the engine plays.
        let trained = model.weights()
        XCTAssertNotEqual(trained["mono.dense_out.kernel"].values, weights["mono.dense_out.kernel"].values)
        XCTAssertEqual(trained["tuning.K"].values, weights["tuning.K"].values, "the tuning stays frozen")
        XCTAssertEqual(trained["note_release.duration"].values, weights["note_release.duration"].values)
        let engine = try PianoModel(.v2(trained))
        XCTAssertEqual(engine.instruments.count, weights.instruments.count)
    }
}
