import Foundation

/// One frame of synthesiser controls for all voices, made from the network outputs the way
/// upstream's MultiInharmonic and FilteredNoise `get_controls` do (float32, same order):
/// amplitude = exp_sigmoid(raw₀) · [f0 > 20 Hz] / substrings; harmonic weights =
/// exp_sigmoid(raw₁…₉₆), zeroed where f0·k·√(1+Bk²) ≥ Nyquist, normalised to sum 1;
/// noise magnitudes = exp_sigmoid(raw₉₇…₁₆₀ − 5).
public struct SynthControls: Sendable {
    public let voices: Int
    public let harmonics: Int
    public let substrings: Int
    public let bands: Int

    public var amplitude: [Float]             // [voices] (per substring)
    public var harmonicDistribution: [Float]  // [voices, harmonics]
    public var harmonicShift: [Float]         // [voices, harmonics]: √(1+Bk²) − 1
    public var f0: [Float]                    // [voices, substrings]
    /// amplitude · distribution, what the oscillators are driven with: [voices, harmonics].
    public var harmonicAmplitude: [Float]
    /// Partial frequencies (f0_s · k) · (1 + shift): [voices, substrings, harmonics].
    public var harmonicFrequency: [Float]
    public var magnitudes: [Float]            // [voices, bands]
    /// Whether a voice's additive part is silent this frame (amplitude exactly 0).
    public var silent: [Bool]

    public static let minFrequency: Float = 20
    static let ln10: Float = logf(10)

    public init(hyper h: PianoWeights.Hyper) {
        voices = h.voices; harmonics = h.harmonics; substrings = h.substrings; bands = h.noiseBands
        amplitude = [Float](repeating: 0, count: voices)
        harmonicDistribution = [Float](repeating: 0, count: voices * harmonics)
        harmonicShift = [Float](repeating: 0, count: voices * harmonics)
        f0 = [Float](repeating: 0, count: voices * substrings)
        harmonicAmplitude = [Float](repeating: 0, count: voices * harmonics)
        harmonicFrequency = [Float](repeating: 0, count: voices * substrings * harmonics)
        magnitudes = [Float](repeating: 0, count: voices * bands)
        silent = [Bool](repeating: true, count: voices)
    }

    /// ddsp's exp_sigmoid: 2·σ(x)^ln 10 + 1e-7.
    @inline(__always) public static func expSigmoid(_ x: Float) -> Float {
        2 * powf(1 / (1 + expf(-x)), ln10) + 1e-7
    }

    /// `raw` is [voices, 1 + harmonics + bands]; `f0` [voices, substrings]; `inharm` [voices].
    public mutating func update(raw: UnsafePointer<Float>, f0 f0In: UnsafePointer<Float>, inharm: UnsafePointer<Float>,
                                sampleRate: Int) {
        let outputs = 1 + harmonics + bands
        let nyquist = Float(sampleRate) / 2
        let nSub = Float(substrings)
        for v in 0..<voices {
            let r = raw + v * outputs
            let f00 = f0In[v * substrings]
            let b = max(inharm[v], 0)
            var amp = SynthControls.expSigmoid(r[0])
            amp *= f00 > SynthControls.minFrequency ? 1 : 0
            amp /= nSub
            amplitude[v] = amp
            silent[v] = amp == 0
            var sum: Float = 0
            let hb = v * harmonics
            for k in 0..<harmonics {
                let kf = Float(k + 1)
                let factor = (kf * kf * b + 1).squareRoot()
                harmonicShift[hb + k] = factor - 1
                var d = SynthControls.expSigmoid(r[1 + k])
                if f00 * kf * factor >= nyquist { d = 0 }
                harmonicDistribution[hb + k] = d
                sum += d
            }
            let denominator = sum == 0 ? 1e-7 : sum
            for k in 0..<harmonics {
                let d = harmonicDistribution[hb + k] / denominator
                harmonicDistribution[hb + k] = d
                harmonicAmplitude[hb + k] = amp * d
            }
            for s in 0..<substrings {
                let fs = f0In[v * substrings + s]
                f0[v * substrings + s] = fs
                let fb = (v * substrings + s) * harmonics
                for k in 0..<harmonics {
                    harmonicFrequency[fb + k] = (fs * Float(k + 1)) * (1 + harmonicShift[hb + k])
                }
            }
            for j in 0..<bands {
                magnitudes[v * bands + j] = SynthControls.expSigmoid(r[1 + harmonics + j] - 5)
            }
        }
    }
}
