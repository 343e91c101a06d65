import DDSPPiano
import Foundation
import PianoTestKit
import PianoTraining
import XCTest

final class AdamTests: XCTestCase {
    /// Three updates of a tiny model against a Double transcription of Keras' Adam with ddsp's
    /// global-norm clipping and exponential decay.
    func testMatchesReference() {
        var h = PianoWeights.Hyper()
        h.voices = 2; h.zDim = 3; h.contextUnits = 4; h.contextGRUUnits = 5; h.monoDenseUnits = 6
        h.monoGRUUnits = 5; h.monoHiddenUnits = 4; h.harmonics = 3; h.noiseBands = 2; h.reverbLength = 8
        var model = PianoNetworkTraining(weights: randomWeights(h, instruments: 2, seed: 41))
        var adam = Adam(learningRate: 1e-2)
        adam.decaySteps = 2   // make the decay visible within three steps
        var rng = SplitMix64(seed: 42)
        // Reference state for two tensors, one frozen (frequency group, as in phase 1).
        var ref = [Double](), m = [Double](), v = [Double]()
        model.forEachParameter { name, _, value, _ in if name == "mono.dense_out.bias" { ref = value.map(Double.init) } }
        m = ref.map { _ in 0 }; v = m
        var frozenBefore: [Float] = []
        model.forEachParameter { name, _, value, _ in if name == "detuner.bias" { frozenBefore = value } }
        for step in 1...3 {
            // Large gradients on odd steps so clipping (norm 3) is exercised.
            let scale: Float = step % 2 == 1 ? 10 : 0.01
            var sq = 0.0
            var g: [Float] = []
            model.forEachParameter { name, group, _, grad in
                for i in grad.indices { grad[i] = rng.uniform(scale) }
                if group == .other { for x in grad { sq += Double(x) * Double(x) } }
                if name == "mono.dense_out.bias" { g = grad }
            }
            let norm = sq.squareRoot(), clip = norm > 3 ? 3 / norm : 1
            let reported = adam.update(&model) { _, group in group == .other }
            XCTAssertEqual(reported, norm, accuracy: 1e-6 * norm)
            let lr = 1e-2 * pow(0.98, Double(step - 1) / 2)
            let lrT = lr * (1 - pow(0.999, Double(step))).squareRoot() / (1 - pow(0.9, Double(step)))
            for i in ref.indices {
                let gi = Double(g[i]) * clip
                m[i] = 0.9 * m[i] + 0.1 * gi
                v[i] = 0.999 * v[i] + 0.001 * gi * gi
                ref[i] -= lrT * m[i] / (v[i].squareRoot() + 1e-7)
            }
        }
        var got: [Float] = [], frozenAfter: [Float] = []
        model.forEachParameter { name, _, value, _ in
            if name == "mono.dense_out.bias" { got = value }
            if name == "detuner.bias" { frozenAfter = value }
        }
        for i in ref.indices { XCTAssertEqual(Double(got[i]), ref[i], accuracy: 1e-6) }
        XCTAssertEqual(frozenAfter, frozenBefore)
        XCTAssertEqual(adam.step, 3)
        XCTAssertNil(adam.m["detuner.bias"])
    }

    func testUpstreamDefaults() {
        let adam = Adam()
        XCTAssertEqual(adam.learningRate, 1e-3); XCTAssertEqual(adam.beta1, 0.9); XCTAssertEqual(adam.beta2, 0.999)
        XCTAssertEqual(adam.epsilon, 1e-7); XCTAssertEqual(adam.clipNorm, 3)
        var later = adam
        later.step = 10_000
        XCTAssertEqual(later.currentLearningRate, 0.98e-3, accuracy: 1e-12)
    }
}
