import DDSPPiano
import Foundation
import PianoTestKit
import PianoTraining
import XCTest

/// v2's per-piano FDN reverb parameters through the frequency-sampled impulse response (issue 16
/// item 1): `FDNReverb.parameterGradient` against central finite differences of
/// Σ w[n]·IR[n] over the whole 2-s response (the IR is computed in Double and rounded to float32;
/// steps sized to each parameter's scale). Per entry within 2e-2 and along a random direction
/// within 1e-3 (LayerGradientTests' tolerances). StructuralV2's pianos: a stable FDN.
final class FDNReverbGradientTests: XCTestCase {
    func testEveryReverbParameter() {
        let w = StructuralV2.weights()
        for piano in [2, 8] {
            let q = FDNReverb.Parameters(weights: w, instrument: piano)
            var rng = SplitMix64(seed: UInt64(30 + piano))
            let g = rng.array(V2Weights.reverbLength)
            let d = FDNReverb.parameterGradient(q, dIR: g)
            let loss = { (p: FDNReverb.Parameters) in weightedSum(FDNReverb.impulseResponse(p), g) }
            let checks: [(String, WritableKeyPath<FDNReverb.Parameters, [Float]>, [Float], Float)] = [
                ("reverb.input_gain", \.inputGain, d.inputGain, 1e-3),
                ("reverb.output_gain", \.outputGain, d.outputGain, 1e-3),
                ("reverb.gain_allpass", \.gainAllpass, d.gainAllpass, 1e-3),
                ("reverb.delays_allpass", \.delaysAllpass, d.delaysAllpass, 1e-2),
                ("reverb.early_ir", \.earlyIR, d.earlyIR, 1e-2),
            ]
            for (name, path, analytic, eps) in checks {
                let entry = gradientCheck(q, path, analytic: analytic, eps: eps, samples: 8, loss: loss)
                let directional = directionalCheck(q, path, analytic: analytic, eps: eps, loss: loss)
                print(String(format: "piano %d %-22@ entries max rel err %.2e, directional %.2e", piano, name as NSString, entry, directional))
                XCTAssertLessThan(entry, 2e-2, "\(name), piano \(piano)")
                XCTAssertLessThan(directional, 1e-3, "\(name), piano \(piano)")
            }
            // The two scalars (T60 through relu, the tone ratio through sigmoid).
            for (name, path, analytic) in [("reverb.time_rev_0_sec", \FDNReverb.Parameters.timeRev, d.timeRev),
                                           ("reverb.alpha_tone", \FDNReverb.Parameters.alphaTone, d.alphaTone)] {
                var plus = q, minus = q
                plus[keyPath: path] += 1e-3; minus[keyPath: path] -= 1e-3
                let numeric = (loss(plus) - loss(minus)) / (Double(plus[keyPath: path]) - Double(minus[keyPath: path]))
                let err = abs(numeric - Double(analytic)) / max(abs(numeric), 1e-12)
                print(String(format: "piano %d %-22@ analytic %.6e, numeric %.6e, rel err %.2e", piano, name as NSString, analytic, numeric, err))
                XCTAssertLessThan(err, 2e-2, "\(name), piano \(piano)")
            }
        }
        // relu: a T60 at or below 0 passes no gradient.
        var dead = FDNReverb.Parameters(weights: w, instrument: 0)
        dead.timeRev = -0.1
        XCTAssertEqual(FDNReverb.parameterGradient(dead, dIR: [Float](repeating: 1, count: V2Weights.reverbLength)).timeRev, 0)
    }
}
