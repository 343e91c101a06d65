import DDSPPiano
import Foundation
import PianoFormats
import PianoTestKit
import PianoTraining
import XCTest

final class CheckpointTests: XCTestCase {
    /// Two steps, a checkpoint written to disk and read back, one more step: bit for bit the
    /// parameters of three uninterrupted steps (dafx22 sizes, 5-frame segments).
    func testResumeMatchesUninterruptedRun() throws {
        let h = PianoWeights.Hyper()
        let start = randomWeights(h, instruments: 2, seed: 101, gain: 1)
        let T = 5, n = T * h.samplesPerFrame
        let batch = testBatch(h, batch: 1, frames: T, instruments: [1], seed: 102)
        var rng = SplitMix64(seed: 103)
        let target = rng.array(n, 0.2)
        let phase = TrainingPhase.upstream[0]

        func train(_ model: PianoModelTraining, _ adam: inout Adam, steps: Range<Int>) -> [Double] {
            var losses: [Double] = []
            for s in steps {
                model.network.zeroGrad()
                losses.append(model.step(batch, target: target, noiseSeed: UInt64(s)).losses.total)
                adam.update(&model.network) { _, g in phase.trains(g) }
            }
            return losses
        }

        let a = PianoModelTraining(weights: start)
        phase.configure(&a.network)
        var adamA = Adam(learningRate: phase.learningRate)
        let curveA = train(a, &adamA, steps: 0..<3)

        let b = PianoModelTraining(weights: start)
        phase.configure(&b.network)
        var adamB = Adam(learningRate: phase.learningRate)
        var curveB = train(b, &adamB, steps: 0..<2)
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("ddsp-train-ckpt-\(getpid()).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        try TrainingCheckpoint(weights: try b.network.weights(updating: start), adam: adamB, phase: 1, state: ["next_step": "2"]).save(to: url)

        let loaded = try TrainingCheckpoint.load(url)
        XCTAssertEqual(loaded.phase, 1); XCTAssertEqual(loaded.state, ["next_step": "2"]); XCTAssertEqual(loaded.adam.step, 2)
        let c = PianoModelTraining(weights: loaded.weights!)
        phase.configure(&c.network)
        var adamC = loaded.adam
        curveB += train(c, &adamC, steps: 2..<3)

        XCTAssertEqual(curveA, curveB)
        var pa: [String: [Float]] = [:], pc: [String: [Float]] = [:]
        a.network.forEachParameter { name, _, v, _ in pa[name] = v }
        c.network.forEachParameter { name, _, v, _ in pc[name] = v }
        XCTAssertEqual(pa, pc)
        XCTAssertEqual(adamA.m, adamC.m); XCTAssertEqual(adamA.v, adamC.v)
        XCTAssertNotEqual(pa["mono.dense_out.bias"], start.monoOutBias.values)   // it did train
        XCTAssertEqual(pa["detuner.bias"], start.detunerBias.values)             // frozen in phase 1
    }

    func testRejectsAWeightFile() throws {
        let bytes = randomWeights(PianoWeights.Hyper(), instruments: 1, seed: 1).safetensors().serialized()
        XCTAssertThrowsError(try TrainingCheckpoint(bytes: bytes)) { XCTAssertTrue("\($0)".contains("not a ddsp-piano-train checkpoint")) }
    }
}
