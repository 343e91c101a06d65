import DDSPPiano
import Foundation
import PianoTestKit
import PianoTraining
import XCTest

/// The whole v2 model in training (networks, frozen tuning, controls, additive, noise, each
/// piano's FDN reverb, multi-scale spectral loss) against finite differences of the loss, along
/// a random direction over each trainable tensor; the method and bound of the dafx22
/// EndToEndGradientTests: |g·d − FD| < 2e-2·‖g‖₁ + δL/eps, δL = 1e-6·L (float32 audio and spectra).
/// The target is the model's own first output doubled: every STFT bin of the model is then half
/// the target's, away from the kinks of the L1 (|X| = |Y|). The loss here is the magnitude term
/// only: the log-magnitude term curves like log|X| in near-empty bins (DC, the segment's
/// silent start), beyond what finite differences follow (measured on single early reverb taps:
/// 12 % off with it, 1e-4 without; LossTests checks that term on its own).
final class V2EndToEndGradientTests: XCTestCase {
    /// A v2 parameter set addressed by name (for `directionalCheck`).
    struct Named {
        var network: V2NetworkTraining
        var reverb: V2ReverbTraining
        let name: String
        var values: [Float] {
            get {
                var out: [Float] = [], n = network, r = reverb
                n.forEachParameter { k, v, _ in if k == name { out = v } }
                r.forEachParameter { k, v, _ in if k == name { out = v } }
                return out
            }
            set {
                network.forEachParameter { k, v, _ in if k == name { v = newValue } }
                reverb.forEachParameter { k, v, _ in if k == name { v = newValue } }
            }
        }
    }

    /// Steps: 1e-4 for the networks (NetworkGradientTests') and the reverb's gains and early
    /// taps (which move the wet signal directly); the allpass delays are in samples.
    static func step(_ name: String) -> Float {
        switch name {
        case "reverb.delays_allpass": return 3e-3
        case "reverb.gain_allpass", "reverb.time_rev_0_sec", "reverb.alpha_tone": return 1e-3
        default: return 1e-4
        }
    }

    func testEndToEnd() {
        var w = StructuralV2.weights()
        // Audible noise in every band (exp_sigmoid(raw + 1) instead of exp_sigmoid(raw − 5)): every
        // STFT bin has energy, where the log-magnitude term is smooth (as the dafx22 test).
        var bias = w["mono.dense_out.bias"]
        for j in 0..<V2Weights.noiseBands { bias.values[1 + V2Weights.harmonics + j] += 6 }
        w.tensors["mono.dense_out.bias"] = bias
        let T = 24, n = T * V2ModelTraining.frameSize, B = 2, V = V2Weights.voices
        var conditioning = [Float](repeating: 0, count: B * T * V * 2)
        for b in 0..<B {
            for v in 0..<3 {
                let pitch = Float(50 + 7 * v + 3 * b)
                for t in (2 * v)..<(T - 4) {
                    conditioning[((b * T + t) * V + v) * 2] = pitch
                    conditioning[((b * T + t) * V + v) * 2 + 1] = 0.7
                }
            }
        }
        let pedal = (0..<(B * T * 4)).map { i in i % 4 == 0 ? Float(1) : 0 }
        let batch = SegmentBatch(batch: B, frames: T, voices: V, conditioning: conditioning, pedal: pedal, instruments: [5, 1])
        let model = V2ModelTraining(weights: w, lossSizes: [512, 256, 128, 64], logMagnitudeWeight: 0)
        let startNetwork = model.network, startReverb = model.reverb
        let target = model.step(batch, target: [Float](repeating: 0, count: B * n), noiseSeed: 3, gradients: false).audio.map { 2 * $0 }
        model.zeroGrad()
        let (loss, audio) = model.step(batch, target: target, noiseSeed: 3)
        XCTAssertEqual(audio.count, B * n)
        XCTAssertTrue(loss.isFinite && loss > 0)
        let peak = audio.map { abs($0) }.max() ?? 0
        print("v2 end to end: loss \(loss), audio peak \(peak)")
        XCTAssertGreaterThan(peak, 1e-3, "the notes sound")
        var grads: [(String, [Float])] = []
        model.forEachParameter { name, _, g in grads.append((name, g)) }
        XCTAssertEqual(grads.count, V2Weights.layout(instruments: w.instruments.count)
            .filter { $0.name.hasPrefix("context.") || $0.name.hasPrefix("mono.") || $0.name.hasPrefix("reverb.") }.count)
        let evaluate = { (p: Named) -> Double in
            model.network = p.network; model.reverb = p.reverb
            return model.step(batch, target: target, noiseSeed: 3, gradients: false).loss
        }
        let noise = 1e-6 * loss
        let checked: Set<String> = ["context.piano_embedding", "context.film.bias", "context.gru.kernel", "context.output.1.gamma",
                                    "mono.pitch_stack.0.kernel", "mono.context_stack.2.beta", "mono.gru.recurrent_kernel",
                                    "mono.out_stack.1.kernel", "mono.dense_out.kernel", "mono.dense_out.bias",
                                    "reverb.input_gain", "reverb.output_gain", "reverb.gain_allpass", "reverb.delays_allpass",
                                    "reverb.time_rev_0_sec", "reverb.alpha_tone", "reverb.early_ir"]
        var worst = 0.0
        for (name, g) in grads where checked.contains(name) {
            let p = Named(network: startNetwork, reverb: startReverb, name: name)
            let eps = Self.step(name)
            let l1 = g.reduce(0.0) { $0 + Double(abs($1)) }
            let err = directionalCheck(p, \.values, analytic: g, eps: eps, loss: evaluate) * l1
            let allowed = 2e-2 * l1 + noise / Double(eps)
            print(String(format: "v2 end to end %-30@ |g·d − FD| %.2e, ‖g‖₁ %.2e, relative %.2e, allowed %.2e", name as NSString, err, l1, err / max(l1, 1e-30), allowed))
            XCTAssertLessThan(err, allowed, name)
            XCTAssertGreaterThan(l1, 0, "\(name) has a gradient")
            if noise / Double(eps) < 2e-2 * l1 { worst = max(worst, err / l1) }
        }
        print(String(format: "v2 end to end: worst relative directional error among tensors above the noise bound %.2e", worst))
        // Pianos not in the batch get no reverb gradient.
        let early = grads.first { $0.0 == "reverb.early_ir" }!.1
        for p in 0..<w.instruments.count {
            let nonzero = early[(p * 200)..<((p + 1) * 200)].contains { $0 != 0 }
            XCTAssertEqual(nonzero, p == 5 || p == 1, "piano \(p)")
        }
    }
}
