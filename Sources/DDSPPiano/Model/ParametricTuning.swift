import Foundation

/// Upstream's JointParametricInharmTuning (Rigaud et al., "A parametric model of piano tuning",
/// DAFx-11): per piano, seven values give the inharmonicity B and the stretched tuning of every
/// key from the extended pitch m (MIDI, fractional allowed):
///   B(m)   = exp(αb·m + βb) + exp(αt·m + βt)
///   ratio  = hz(m) / hz(m_ref),  ρ = 1 + K·(1 − tanh((m − m_ref)/α))/2
///   f0     = hz(m) · √((1 + B(m_ref)·(ratio·ρ)²) / (1 + B(m)·ρ²))
/// in float32, in upstream's order of operations (hz(m) = 440·2^((m − 69)/12), no case for m = 0),
/// with TensorFlow's exp, tanh and 2^x to the bit (`TFMath`: the oscillator phases depend on it).
public struct ParametricTuning: Sendable, Equatable {
    public var alphaB: Float
    public var betaB: Float
    public var alphaT: Float
    public var betaT: Float
    public var pitchRef: Float
    public var k: Float
    public var alpha: Float
    /// Per-piano constants of the formula, computed once (upstream recomputes them every frame
    /// with the same float32 operations, hence the same values).
    public private(set) var referenceHz: Float
    public private(set) var referenceInharm: Float

    public init(alphaB: Float, betaB: Float, alphaT: Float, betaT: Float, pitchRef: Float, k: Float, alpha: Float) {
        self.alphaB = alphaB
        self.betaB = betaB
        self.alphaT = alphaT
        self.betaT = betaT
        self.pitchRef = pitchRef
        self.k = k
        self.alpha = alpha
        referenceHz = 0
        referenceInharm = 0
        referenceHz = Self.midiToHz(pitchRef)
        referenceInharm = inharmonicity(pitchRef)
    }

    /// Piano `instrument` of the weights.
    public init(weights w: V2Weights, instrument p: Int) {
        func v(_ name: String) -> Float { w["tuning.\(name)"].values[p] }
        self.init(alphaB: v("alpha_b"), betaB: v("beta_b"), alphaT: v("alpha_t"), betaT: v("beta_t"),
                  pitchRef: v("pitch_ref"), k: v("K"), alpha: v("alpha"))
    }

    /// ddsp core.midi_to_hz in float32.
    @inline(__always)
    public static func midiToHz(_ m: Float) -> Float {
        440 * TFMath.exp2((m - 69) / 12)
    }

    @inline(__always)
    public func inharmonicity(_ m: Float) -> Float {
        TFMath.exp(alphaB * m + betaB) + TFMath.exp(alphaT * m + betaT)
    }

    /// f0 (Hz) of extended pitch `m`, given `inharm` = `inharmonicity(m)`.
    @inline(__always)
    public func f0(_ m: Float, inharm: Float) -> Float {
        let hz = Self.midiToHz(m)
        let ratio = hz / referenceHz
        let rho = 1 + k * ((1 - TFMath.tanh((m - pitchRef) / alpha)) / 2)
        let rr = ratio * rho
        var detuning = 1 + referenceInharm * (rr * rr)
        detuning /= 1 + inharm * (rho * rho)
        return hz * detuning.squareRoot()
    }
}
