import DDSPPiano
import Foundation

/// Keras' Adam as used by ddsp's Trainer: β₁ 0.9, β₂ 0.999, ε 1e-7 (added to √v, the "ε̂" form),
/// bias correction folded into the step size, learning rate lr₀·rate^(step/decaySteps)
/// (ExponentialDecay, not staircase: 0.98 every 10 000 steps) and gradients clipped to a global
/// norm of 3 before the update (tf.clip_by_global_norm).
public struct Adam: Sendable {
    public var learningRate: Double = 1e-3
    public var beta1: Double = 0.9
    public var beta2: Double = 0.999
    public var epsilon: Double = 1e-7
    public var decaySteps: Double = 10_000
    public var decayRate: Double = 0.98
    public var clipNorm: Double? = 3

    /// Completed updates (Keras' `iterations`).
    public var step: Int = 0
    /// First and second moments per tensor name.
    public var m: [String: [Float]] = [:]
    public var v: [String: [Float]] = [:]

    public init(learningRate: Double = 1e-3) { self.learningRate = learningRate }

    public var currentLearningRate: Double { learningRate * pow(decayRate, Double(step) / decaySteps) }

    /// √(Σ g²) over every gradient given, in Double.
    public static func globalNorm(_ grads: [[Float]]) -> Double {
        var s = 0.0
        for g in grads { for x in g { s += Double(x) * Double(x) } }
        return s.squareRoot()
    }

    /// One update of the tensors `trainable` accepts. Returns the global gradient norm before
    /// clipping (over those tensors only, like upstream's frozen modules).
    @discardableResult
    public mutating func update(_ model: inout PianoNetworkTraining, trainable: (String, PianoNetworkTraining.Group) -> Bool) -> Double {
        update { body in model.forEachParameter { name, group, value, grad in if trainable(name, group) { body(name, &value, &grad) } } }
    }

    /// One update of the tensors `parameters` visits (name, value, gradient): any model's.
    /// Returns the global gradient norm before clipping.
    @discardableResult
    public mutating func update(_ parameters: ((_ name: String, _ value: inout [Float], _ grad: inout [Float]) -> Void) -> Void) -> Double {
        var grads: [[Float]] = []
        parameters { _, _, grad in grads.append(grad) }
        let norm = Self.globalNorm(grads)
        let clip: Float = (clipNorm.map { norm > $0 ? Float($0 / norm) : 1 }) ?? 1
        let t = Double(step + 1)
        let lrT = Float(currentLearningRate * (1 - pow(beta2, t)).squareRoot() / (1 - pow(beta1, t)))
        let b1 = Float(beta1), b2 = Float(beta2), eps = Float(epsilon)
        var m = self.m, v = self.v
        parameters { name, value, grad in
            var mt = m[name] ?? value.zeroed, vt = v[name] ?? value.zeroed
            for i in value.indices {
                let g = grad[i] * clip
                mt[i] = b1 * mt[i] + (1 - b1) * g
                vt[i] = b2 * vt[i] + (1 - b2) * g * g
                value[i] -= lrT * mt[i] / (vt[i].squareRoot() + eps)
            }
            m[name] = mt; v[name] = vt
        }
        self.m = m; self.v = v
        step += 1
        return norm
    }
}
