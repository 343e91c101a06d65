import Foundation

/// Fundamental of each substring: midi_to_hz(pitch + tanh(Dense(pitch/128)) + tanh(instrument detuning)).
public struct Detuner: Sendable {
    public var kernel: [Float]   // [1, substrings]
    public var bias: [Float]     // [substrings]

    public init(weights w: PianoWeights) {
        kernel = w.detunerKernel.values
        bias = w.detunerBias.values
    }

    public var substrings: Int { bias.count }

    @inline(__always)
    public func f0(extendedPitch: Float, substring s: Int, instrumentDetuning: Float) -> Float {
        let detune = Detuner.substringDetune(extendedPitch: extendedPitch, kernel: kernel[s], bias: bias[s]) + tanhf(instrumentDetuning)
        return Detuner.midiToHz(extendedPitch + detune)
    }

    // The kernels `f0` shares with `DetunerTraining`.

    /// A substring's own detuning in semitones: tanh(pitch/128 · k + b).
    @inline(__always)
    static func substringDetune(extendedPitch p: Float, kernel k: Float, bias b: Float) -> Float {
        tanhf((p / 128) * k + b)
    }

    @inline(__always) static func midiToHz(_ m: Float) -> Float { 440 * powf(2, (m - 69) / 12) }
}
