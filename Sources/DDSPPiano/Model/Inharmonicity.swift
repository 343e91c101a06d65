import Foundation

/// Inharmonicity coefficient B over the keyboard (Rigaud et al., DAFx 2011):
/// B = exp(treble asymptote) + exp(bass asymptote), each a line in pitch/128 with learned
/// modifiers; the bass line also gets the instrument's own term.
public struct Inharmonicity: Sendable {
    public var slopes: (Float, Float)    // slopes + slopes_modifier, (treble, bass)
    public var offsets: (Float, Float)   // offsets + offsets_modifier
    public var modelSpecificWeight: Float

    public init(weights w: PianoWeights) {
        slopes = (w.inharmSlopes.values[0] + w.inharmSlopesModifier.values[0],
                  w.inharmSlopes.values[1] + w.inharmSlopesModifier.values[1])
        offsets = (w.inharmOffsets.values[0] + w.inharmOffsetsModifier.values[0],
                   w.inharmOffsets.values[1] + w.inharmOffsetsModifier.values[1])
        modelSpecificWeight = w.inharmModelSpecificWeight.values[0]
    }

    /// `instrumentInharm` is the instrument's z-encoder inharmonicity scalar.
    @inline(__always)
    public func coefficient(extendedPitch: Float, instrumentInharm: Float) -> Float {
        let e = Inharmonicity.asymptotes(pitch: extendedPitch / 128, slopes: slopes, offsets: offsets,
                                         weight: modelSpecificWeight, instrumentInharm: instrumentInharm)
        return e.treble + e.bass
    }

    /// exp of the treble and bass lines at pitch/128 (B is their sum); shared with `InharmonicityTraining`.
    @inline(__always)
    static func asymptotes(pitch p: Float, slopes: (Float, Float), offsets: (Float, Float), weight: Float,
                           instrumentInharm g: Float) -> (treble: Float, bass: Float) {
        let treble = slopes.0 * (p + offsets.0)
        let bass = slopes.1 * (p + offsets.1) + weight * (g * 10)
        return (expf(treble), expf(bass))
    }
}
