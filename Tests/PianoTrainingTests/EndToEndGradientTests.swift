import DDSPPiano
import Foundation
import PianoTestKit
import PianoTraining
import XCTest

/// The whole model (networks, controls, additive, noise, reverb, spectral loss and regularisers)
/// against finite differences of the total loss, for every trainable tensor.
final class EndToEndGradientTests: XCTestCase {
    /// Steps: the network's (NetworkGradientTests.step), except the frequency parameters: the
    /// loss moves with the oscillators' phases (2π·Δf·t over the segment), so their steps must
    /// keep Δf far below 1 Hz.
    static func step(_ name: String) -> Float {
        switch name {
        case "reverb.impulse_responses": return 1e-4
        case "detuner.kernel", "detuner.bias", "z_encoder.detuning": return 1e-4
        case "inharmonicity.slopes_modifier", "inharmonicity.offsets_modifier", "inharmonicity.model_specific_weight",
             "z_encoder.inharmonicity": return 1e-4
        default: return NetworkGradientTests.step(name)
        }
    }

    func testEndToEnd() {
        var h = PianoWeights.Hyper()
        h.voices = 2; h.zDim = 3; h.contextUnits = 4; h.contextGRUUnits = 5; h.monoDenseUnits = 6
        h.monoGRUUnits = 5; h.monoHiddenUnits = 4; h.harmonics = 4; h.noiseBands = 5; h.reverbLength = 32
        var weights = randomWeights(h, instruments: 3, seed: 71)
        // Audible noise (exp_sigmoid(raw + 1) ~ 1 instead of exp_sigmoid(raw − 5) ~ 1e-3): every STFT bin has energy,
        // where the log-magnitude term is smooth; near-empty bins make it curve like log|X|
        // around 0, beyond what finite differences can follow (LossTests covers that term).
        for j in 0..<h.noiseBands { weights.monoOutBias.values[1 + h.harmonics + j] += 6 }
        // Impulse responses away from 0, where the regulariser's |ir| has its kink.
        weights.reverbImpulseResponses.values = weights.reverbImpulseResponses.values.map { $0 < 0 ? $0 - 2e-3 : $0 + 2e-3 }
        let T = 6, B = 2, n = T * h.samplesPerFrame
        let batch = testBatch(h, batch: B, frames: T, instruments: [1, 0], seed: 72)
        var rng = SplitMix64(seed: 73)
        let target = rng.array(B * n, 0.3)
        let model = PianoModelTraining(weights: weights, lossSizes: [64, 32, 16])
        let start = model.network
        let (losses, audio) = model.step(batch, target: target, noiseSeed: 5)
        XCTAssertEqual(audio.count, B * n)
        XCTAssertTrue(losses.total.isFinite && losses.spectral > 0 && losses.reverb > 0 && losses.inharmonicityL1 > 0)
        print("end to end losses: \(losses)")
        var grads: [(String, [Float])] = []
        model.network.forEachParameter { name, _, _, g in grads.append((name, g)) }
        let loss = { (p: NamedParameter) -> Double in
            model.network = p.model
            return model.step(batch, target: target, noiseSeed: 5, gradients: false).losses.total
        }
        // The loss is float32 audio and spectra summed in Double: its rounding noise δL is taken
        // as 1e-6·L, so a central difference is good to δL/eps on top of the truncation error.
        // The check along a random direction must agree to 2e-2·‖g‖₁ + δL/eps. Tensors whose
        // whole effect is below that (the inharmonicity scalars move partials by millihertz here)
        // are held to the noise bound only; their layers are checked tightly in isolation.
        let noise = 1e-6 * losses.total
        var worst = 0.0
        for (name, g) in grads {
            let p = NamedParameter(model: start, name: name)
            let eps = Self.step(name)
            let l1 = g.reduce(0.0) { $0 + Double(abs($1)) }
            let err = directionalCheck(p, \.values, analytic: g, eps: eps, loss: loss) * l1
            let allowed = 2e-2 * l1 + noise / Double(eps)
            print(String(format: "end to end %-38@ |g·d − FD| %.2e, ‖g‖₁ %.2e, relative %.2e, allowed %.2e", name as NSString, err, l1, err / max(l1, 1e-30), allowed))
            XCTAssertLessThan(err, allowed, name)
            if noise / Double(eps) < 2e-2 * l1 { worst = max(worst, err / l1) }
        }
        print(String(format: "end to end: worst relative directional error among tensors above the noise bound %.2e", worst))
    }
}
