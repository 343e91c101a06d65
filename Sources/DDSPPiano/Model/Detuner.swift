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
        let detune = tanhf((extendedPitch / 128) * kernel[s] + bias[s]) + tanhf(instrumentDetuning)
        return 440 * powf(2, ((extendedPitch + detune) - 69) / 12)
    }
}
