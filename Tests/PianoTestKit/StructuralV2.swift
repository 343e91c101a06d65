import Foundation
import DDSPPiano
import PianoStudy

/// A v2 model for the real-time and structural tests in every clone (no ../shared needed):
/// the real layout with seeded values of plausible size — kernels Glorot-uniform, biases and
/// LayerNorm shifts small, tuning values of the order of maestro-v2.gin's, a stable FDN
/// (short reverb time, so 3·max k < 1) — and levels made audible as in the reference's
/// synthetic checkpoint (amplitude bias −1.5, noise bias +1.7). It does not sound like a piano.
public enum StructuralV2 {
    public static func weights(seed: UInt64 = 2026) -> V2Weights {
        var rng = SplitMix64(seed: seed)
        func uniform(_ a: Float) -> Float { Float(rng.unit() * 2 - 1) * a }
        func normal(_ sigma: Float) -> Float {
            // Box–Muller.
            let u = max(1e-12, rng.unit()), v = rng.unit()
            return Float((-2 * log(u)).squareRoot() * cos(2 * Double.pi * v)) * sigma
        }
        let instruments = V2Weights.defaultInstruments
        var w = V2Weights(instruments: instruments)
        let n = instruments.count
        for e in V2Weights.layout(instruments: n) {
            let count = e.shape.reduce(1, *)
            var v = [Float](repeating: 0, count: count)
            let name = e.name
            if name.hasSuffix("kernel") {
                let limit = (6 / Float(e.shape[0] + e.shape[1])).squareRoot()
                for i in v.indices { v[i] = uniform(limit) }
            } else if name.hasSuffix("gamma") {
                for i in v.indices { v[i] = 1 + normal(0.1) }
            } else if name.hasSuffix("bias") || name.hasSuffix("beta") {
                for i in v.indices { v[i] = normal(0.05) }
            } else if name == "context.piano_embedding" {
                for i in v.indices { v[i] = uniform(0.3) }
            }
            switch name {
            case "context.film.bias": for i in 0..<64 { v[i] += 1 }     // FiLM coefficients near 1
            case "mono.dense_out.bias":
                v[0] -= 1.5
                for i in 129..<225 { v[i] += 1.7 }
            case "note_release.duration": v = [1.1]
            case "tuning.alpha_b": v = (0..<n).map { _ in -0.11 + normal(0.003) }
            case "tuning.beta_b": v = (0..<n).map { _ in -6.87 + normal(0.01) }
            case "tuning.alpha_t": v = (0..<n).map { _ in 0.094 + normal(0.0005) }
            case "tuning.beta_t": v = (0..<n).map { _ in -13.7 + normal(0.01) }
            case "tuning.pitch_ref": v = (0..<n).map { _ in 64 + normal(4) }
            case "tuning.K": v = (0..<n).map { _ in 8 + normal(2) }
            case "tuning.alpha": v = (0..<n).map { _ in 20 + normal(4) }
            case "reverb.input_gain", "reverb.output_gain", "reverb.gain_allpass":
                v = (0..<count).map { _ in 0.25 + normal(0.1) }
            case "reverb.delays_allpass": v = (0..<count).map { _ in 400 + normal(60) }
            case "reverb.time_rev_0_sec": v = (0..<n).map { _ in 0.30 + normal(0.02) }
            case "reverb.alpha_tone": v = (0..<n).map { _ in normal(0.1) }
            case "reverb.early_ir": v = (0..<count).map { i in normal(0.1) * Float(exp(-Double(i % 200) / 60)) }
            default: break
            }
            w.tensors[name] = Tensor(shape: e.shape, values: v)
        }
        w.provenance["source"] = "StructuralV2 test weights (seeded)"
        return w
    }

    public static func model() -> PianoModel { try! PianoModel(.v2(weights())) }
}
