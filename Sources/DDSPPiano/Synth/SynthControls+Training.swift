import Foundation

// Training-mode forward and backward of `SynthControls` (upstream MultiInharmonic.get_controls and
// FilteredNoise.get_controls over whole segments): the exp_sigmoid kernel and the 20 Hz gate are
// SynthControls.swift's; the engine's 8-lane sums and frequency products are its own.

/// Network outputs → synthesiser controls for whole segments, per voice sequence q:
/// amplitude a = exp_sigmoid(raw₀)·[f0₀ > 20 Hz]/substrings; distribution
/// dₖ = exp_sigmoid(rawₖ)·mₖ / Σ (mₖ = [f0₀·k·√(1+Bk²) < Nyquist], B = max(inharm, 0), the sum
/// replaced by 1e-7 when 0: safe_divide); harmonic amplitude a·dₖ; partial frequency of substring
/// s: f0ₛ·k·√(1+Bk²); noise magnitudes exp_sigmoid(raw − 5). Masks and the f0 gate are steps
/// (no gradient), as in TensorFlow.
public struct SynthControlsTraining: Sendable {
    public let harmonics: Int
    public let bands: Int
    public let sampleRate: Int

    public init(harmonics: Int, bands: Int, sampleRate: Int) {
        self.harmonics = harmonics; self.bands = bands; self.sampleRate = sampleRate
    }

    public struct Output: Sendable {
        public var harmonicAmplitude: [Float]  // [sequences, frames, harmonics]
        public var harmonicFrequency: [Float]  // [sequences, frames, substrings, harmonics]
        public var magnitudes: [Float]         // [sequences, frames, bands]
    }

    public struct Cache: Sendable {
        var sequences: Int, frames: Int, substrings: Int
        var amplitude: [Float]      // [sequences·frames]: a (after gate and division)
        var gate: [Float]           // [sequences·frames]: [f0 > 20]/substrings
        var expAmplitude: [Float]   // [sequences·frames]: exp_sigmoid(raw₀)
        var distribution: [Float]   // [sequences·frames, harmonics]: normalised dₖ
        var masked: [Float]         // [sequences·frames, harmonics]: exp_sigmoid(rawₖ)·mₖ
        var denominator: [Float]    // [sequences·frames]
        var magnitudes: [Float]
        var raw: [Float]
        var derivative: [Float]     // [sequences·frames, 1 + harmonics + bands]: exp_sigmoid′ of each raw output (as used)
        var f0: [Float]
        var inharm: [Float]
    }

    @inline(__always) static func expSigmoid(_ x: Float) -> (value: Float, derivative: Float) {
        SynthControls.expSigmoidWithDerivative(x)
    }

    /// `raw` [sequences, frames, 1 + harmonics + bands], `f0` [sequences, frames, substrings], `inharm` [sequences, frames].
    public func forward(raw: [Float], f0: [Float], inharm: [Float], sequences Q: Int, frames T: Int, substrings S: Int) -> (Output, Cache) {
        let H = harmonics, O = 1 + harmonics + bands, rows = Q * T
        precondition(raw.count == rows * O && f0.count == rows * S && inharm.count == rows)
        let nyquist = Float(sampleRate) / 2
        var amp = [Float](repeating: 0, count: rows), gate = amp, expAmp = amp, den = amp
        var dist = [Float](repeating: 0, count: rows * H), masked = dist, hAmp = dist
        var hFreq = [Float](repeating: 0, count: rows * S * H)
        var mags = [Float](repeating: 0, count: rows * bands)
        var deriv = [Float](repeating: 0, count: rows * O)
        for i in 0..<rows {
            let r = i * O, f00 = f0[i * S], b = max(inharm[i], 0)
            let es = Self.expSigmoid(raw[r])
            let ea = es.value
            deriv[r] = es.derivative
            gate[i] = (f00 > SynthControls.minFrequency ? 1 : 0) / Float(S)
            expAmp[i] = ea
            amp[i] = ea * gate[i]
            var sum: Float = 0
            for k in 0..<H {
                let kf = Float(k + 1), factor = (kf * kf * b + 1).squareRoot()
                let es = Self.expSigmoid(raw[r + 1 + k])
                let e = es.value
                deriv[r + 1 + k] = es.derivative
                let m: Float = f00 * kf * factor >= nyquist ? 0 : 1
                masked[i * H + k] = e * m
                sum += e * m
                for s in 0..<S { hFreq[(i * S + s) * H + k] = (f0[i * S + s] * kf) * factor }
            }
            den[i] = sum == 0 ? 1e-7 : sum
            for k in 0..<H {
                dist[i * H + k] = masked[i * H + k] / den[i]
                hAmp[i * H + k] = amp[i] * dist[i * H + k]
            }
            for j in 0..<bands {
                let es = Self.expSigmoid(raw[r + 1 + H + j] - 5)
                mags[i * bands + j] = es.value
                deriv[r + 1 + H + j] = es.derivative
            }
        }
        let cache = Cache(sequences: Q, frames: T, substrings: S, amplitude: amp, gate: gate, expAmplitude: expAmp,
                          distribution: dist, masked: masked, denominator: den, magnitudes: mags, raw: raw, derivative: deriv, f0: f0, inharm: inharm)
        return (Output(harmonicAmplitude: hAmp, harmonicFrequency: hFreq, magnitudes: mags), cache)
    }

    /// dL/d(raw, f0, inharm) from dL/d(harmonic amplitude, partial frequency, noise magnitudes);
    /// pass an empty array for a control that gets no gradient.
    public func backward(dHarmonicAmplitude dA: [Float], dHarmonicFrequency dF: [Float], dMagnitudes dM: [Float],
                         cache c: Cache) -> (dRaw: [Float], dF0: [Float], dInharm: [Float]) {
        let H = harmonics, O = 1 + harmonics + bands, S = c.substrings, rows = c.sequences * c.frames
        var dRaw = [Float](repeating: 0, count: rows * O), dF0 = [Float](repeating: 0, count: rows * S)
        var dB = [Float](repeating: 0, count: rows)
        for i in 0..<rows {
            let r = i * O
            if !dA.isEmpty {
                // a·dₖ: da = Σ g·d, dd = g·a; then d through the normalisation and exp_sigmoid.
                var da = 0.0, gd = 0.0
                for k in 0..<H {
                    let g = Double(dA[i * H + k])
                    da += g * Double(c.distribution[i * H + k])
                    gd += g * Double(c.amplitude[i]) * Double(c.distribution[i * H + k])
                }
                dRaw[r] = Float(da) * c.gate[i] * c.derivative[r]
                for k in 0..<H where c.masked[i * H + k] != 0 {
                    let gk = Double(dA[i * H + k]) * Double(c.amplitude[i])
                    let de = (gk - gd) / Double(c.denominator[i])
                    dRaw[r + 1 + k] = Float(de) * c.derivative[r + 1 + k]
                }
            }
            if !dF.isEmpty {
                let b = max(c.inharm[i], 0)
                var db = 0.0
                for k in 0..<H {
                    let kf = Float(k + 1), factor = (kf * kf * b + 1).squareRoot()
                    for s in 0..<S {
                        let g = Double(dF[(i * S + s) * H + k])
                        dF0[i * S + s] += Float(g * Double(kf * factor))
                        // d√(1+Bk²)/dB = k²/(2√(1+Bk²)); B = max(inharm, 0) passes no gradient below 0.
                        if c.inharm[i] > 0 { db += g * Double(c.f0[i * S + s] * kf) * Double(kf * kf / (2 * factor)) }
                    }
                }
                dB[i] = Float(db)
            }
            if !dM.isEmpty {
                for j in 0..<bands { dRaw[r + 1 + H + j] = dM[i * bands + j] * c.derivative[r + 1 + H + j] }
            }
        }
        return (dRaw, dF0, dB)
    }
}
