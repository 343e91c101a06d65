import Foundation

// Training-mode forward and backward of `Inharmonicity`: B and its two terms come from
// Inharmonicity.swift's kernel (`Inharmonicity.asymptotes`).

/// B(p) = exp(s₀(p/128 + o₀)) + exp(s₁(p/128 + o₁) + w·10·g), s = slopes + slopes_modifier,
/// o = offsets + offsets_modifier, g the instrument's inharmonicity scalar. The Rigaud et al.
/// slopes and offsets are fixed; the modifiers carry upstream's L1(0.1) weight regulariser.
public struct InharmonicityTraining: Sendable {
    public let slopes: [Float]              // [2] (treble, bass), fixed
    public let offsets: [Float]             // [2], fixed
    public var slopesModifier: [Float]      // [2]
    public var offsetsModifier: [Float]     // [2]
    public var modelSpecificWeight: [Float] // [1]
    public var slopesModifierGrad: [Float]
    public var offsetsModifierGrad: [Float]
    public var modelSpecificWeightGrad: [Float]

    /// Upstream: tf.keras.regularizers.L1(0.1) on both modifiers, added to the total loss.
    public static let modifierL1: Float = 0.1

    public init(slopes: [Float], offsets: [Float], slopesModifier: [Float], offsetsModifier: [Float], modelSpecificWeight: [Float]) {
        precondition(slopes.count == 2 && offsets.count == 2 && slopesModifier.count == 2 && offsetsModifier.count == 2 && modelSpecificWeight.count == 1)
        self.slopes = slopes; self.offsets = offsets
        self.slopesModifier = slopesModifier; self.offsetsModifier = offsetsModifier
        self.modelSpecificWeight = modelSpecificWeight
        slopesModifierGrad = [0, 0]; offsetsModifierGrad = [0, 0]; modelSpecificWeightGrad = [0]
    }

    /// B for each extended pitch; `instrumentInharm[i]` is g for pitch i.
    public func forward(extendedPitch p: [Float], instrumentInharm g: [Float]) -> [Float] {
        precondition(p.count == g.count)
        let s0 = slopes[0] + slopesModifier[0], s1 = slopes[1] + slopesModifier[1]
        let o0 = offsets[0] + offsetsModifier[0], o1 = offsets[1] + offsetsModifier[1]
        let w = modelSpecificWeight[0]
        return p.indices.map { i in
            let e = Inharmonicity.asymptotes(pitch: p[i] / 128, slopes: (s0, s1), offsets: (o0, o1), weight: w, instrumentInharm: g[i])
            return e.treble + e.bass
        }
    }

    /// Accumulates the parameter gradients from dL/dB; returns dL/dg per pitch (the caller
    /// scatters it into the instrument table). The pitch itself is data: no gradient.
    public mutating func backward(_ dB: [Float], extendedPitch p: [Float], instrumentInharm g: [Float]) -> [Float] {
        let s0 = slopes[0] + slopesModifier[0], s1 = slopes[1] + slopesModifier[1]
        let o0 = offsets[0] + offsetsModifier[0], o1 = offsets[1] + offsetsModifier[1]
        let w = modelSpecificWeight[0]
        var ds0 = 0.0, ds1 = 0.0, do0 = 0.0, do1 = 0.0, dw = 0.0
        var dg = [Float](repeating: 0, count: p.count)
        for i in p.indices where dB[i] != 0 {
            let q = p[i] / 128, d = Double(dB[i])
            let e = Inharmonicity.asymptotes(pitch: q, slopes: (s0, s1), offsets: (o0, o1), weight: w, instrumentInharm: g[i])
            let e0 = Double(e.treble), e1 = Double(e.bass)
            ds0 += d * e0 * Double(q + o0); do0 += d * e0 * Double(s0)
            ds1 += d * e1 * Double(q + o1); do1 += d * e1 * Double(s1)
            dw += d * e1 * Double(g[i] * 10)
            dg[i] = Float(d * e1 * Double(w * 10))
        }
        slopesModifierGrad[0] += Float(ds0); slopesModifierGrad[1] += Float(ds1)
        offsetsModifierGrad[0] += Float(do0); offsetsModifierGrad[1] += Float(do1)
        modelSpecificWeightGrad[0] += Float(dw)
        return dg
    }

    /// The L1 regulariser's value; adds its (sub)gradient (0 at 0, like tf.abs).
    public mutating func regularizer(accumulateGradient: Bool = true) -> Double {
        var loss = 0.0
        for i in 0..<2 {
            loss += Double(abs(slopesModifier[i]) + abs(offsetsModifier[i])) * Double(Self.modifierL1)
            if accumulateGradient {
                slopesModifierGrad[i] += Self.modifierL1 * sign(slopesModifier[i])
                offsetsModifierGrad[i] += Self.modifierL1 * sign(offsetsModifier[i])
            }
        }
        return loss
    }

    public mutating func zeroGrad() { slopesModifierGrad = [0, 0]; offsetsModifierGrad = [0, 0]; modelSpecificWeightGrad = [0] }
}

@inline(__always) private func sign(_ x: Float) -> Float { x > 0 ? 1 : (x < 0 ? -1 : 0) }
