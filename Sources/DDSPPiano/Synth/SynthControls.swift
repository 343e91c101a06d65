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
    /// Each voice's key position for the stereo image, −1 … 1 before the width (`StereoImage`);
    /// set by the engine, unused in mono.
    public var pan: [Float]

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
        pan = [Float](repeating: 0, count: voices)
    }

    /// ddsp's exp_sigmoid: 2·σ(x)^ln 10 + 1e-7.
    @inline(__always) public static func expSigmoid(_ x: Float) -> Float {
        expSigmoidWithDerivative(x).value
    }

    /// exp_sigmoid and its derivative, y = 2σ(x)^ln10 + 1e-7, y' = (y − 1e-7)·ln10·(1 − σ): the
    /// kernel of `expSigmoid` and of `SynthControlsTraining` (the engine's use drops the derivative).
    @inline(__always) static func expSigmoidWithDerivative(_ x: Float) -> (value: Float, derivative: Float) {
        let s = 1 / (1 + expf(-x))
        let p = 2 * powf(s, ln10)
        return (p + 1e-7, p * ln10 * (1 - s))
    }

    /// `raw` is [voices, 1 + harmonics + bands]; `f0` [voices, substrings]; `inharm` [voices].
    /// `tuning` scales every f0 (A4 and fine tuning, 1 = the model's own tuning, exactly).
    public mutating func update(raw: UnsafePointer<Float>, f0 f0In: UnsafePointer<Float>, inharm: UnsafePointer<Float>,
                                sampleRate: Int, tuning: Float = 1) {
        typealias V = SIMD8<Float>
        let H = harmonics, B = bands, S = substrings
        precondition(H % 8 == 0 && B % 8 == 0, "controls are computed 8 at a time")
        let outputs = 1 + H + B
        let nyquist = Float(sampleRate) / 2
        let nSub = Float(substrings)
        let lane = V(0, 1, 2, 3, 4, 5, 6, 7)
        let kernels = PianoKernels.active
        amplitude.withUnsafeMutableBufferPointer { ampP in
        silent.withUnsafeMutableBufferPointer { silentP in
        harmonicShift.withUnsafeMutableBufferPointer { shP in
        harmonicDistribution.withUnsafeMutableBufferPointer { distP in
        harmonicAmplitude.withUnsafeMutableBufferPointer { haP in
        harmonicFrequency.withUnsafeMutableBufferPointer { hfP in
        f0.withUnsafeMutableBufferPointer { f0P in
        magnitudes.withUnsafeMutableBufferPointer { magP in
            let shR = UnsafeMutableRawPointer(shP.baseAddress!), distR = UnsafeMutableRawPointer(distP.baseAddress!)
            let haR = UnsafeMutableRawPointer(haP.baseAddress!), hfR = UnsafeMutableRawPointer(hfP.baseAddress!)
            for v in 0..<voices {
                let r = UnsafeRawPointer(raw + v * outputs)
                let f00 = f0In[v * S] * tuning
                let b = max(inharm[v], 0)
                var amp = SynthControls.expSigmoid(r.load(as: Float.self))
                amp *= f00 > SynthControls.minFrequency ? 1 : 0
                amp /= nSub
                ampP[v] = amp
                silentP[v] = amp == 0
                var sum = V()
                let hb = 4 * v * H
                // exp_sigmoid of the distribution and the noise magnitudes: the chosen kernels.
                kernels.expSigmoid(raw + v * outputs + 1, 0, distP.baseAddress! + v * H, H)
                kernels.expSigmoid(raw + v * outputs + 1 + H, -5, magP.baseAddress! + v * B, B)
                for k in stride(from: 0, to: H, by: 8) {
                    let kf = lane + Float(k + 1)
                    let factor = (kf * kf * b + 1).squareRoot()
                    shR.storeBytes(of: factor - 1, toByteOffset: hb + 4 * k, as: V.self)
                    var d = distR.loadUnaligned(fromByteOffset: hb + 4 * k, as: V.self)
                    d.replace(with: 0, where: f00 * kf * factor .>= nyquist)
                    distR.storeBytes(of: d, toByteOffset: hb + 4 * k, as: V.self)
                    sum += d
                }
                let total = sum.sum()
                let denominator = V(repeating: total == 0 ? 1e-7 : total)
                for k in stride(from: 0, to: H, by: 8) {
                    let d = distR.loadUnaligned(fromByteOffset: hb + 4 * k, as: V.self) / denominator
                    distR.storeBytes(of: d, toByteOffset: hb + 4 * k, as: V.self)
                    haR.storeBytes(of: amp * d, toByteOffset: hb + 4 * k, as: V.self)
                }
                for s in 0..<S {
                    let fs = f0In[v * S + s] * tuning
                    f0P[v * S + s] = fs
                    let fb = 4 * (v * S + s) * H
                    for k in stride(from: 0, to: H, by: 8) {
                        let kf = lane + Float(k + 1)
                        let shift = shR.loadUnaligned(fromByteOffset: hb + 4 * k, as: V.self)
                        hfR.storeBytes(of: (fs * kf) * (1 + shift), toByteOffset: fb + 4 * k, as: V.self)
                    }
                }
            }
        }}}}}}}}
    }
}
