import Foundation

// Training-mode forward and backward of `Detuner`: the substring detuning and midi_to_hz are
// Detuner.swift's kernels (`Detuner.substringDetune`, `Detuner.midiToHz`).

/// f0 of substring s = midi_to_hz(p + tanh(p/128·k_s + b_s) + tanh(d)), d the instrument's
/// detuning scalar. Upstream's phase 1 switches the detuning off (`use_detune = False`): then
/// there is one "substring" at midi_to_hz(p) and nothing here is trained.
public struct DetunerTraining: Sendable {
    public var kernel: [Float]       // [1, substrings]
    public var bias: [Float]         // [substrings]
    public var kernelGrad: [Float]
    public var biasGrad: [Float]
    public var useDetune = true

    public init(kernel: [Float], bias: [Float]) {
        precondition(kernel.count == bias.count && !bias.isEmpty)
        self.kernel = kernel; self.bias = bias
        kernelGrad = kernel.zeroed; biasGrad = bias.zeroed
    }

    /// Substrings in the output: 1 when the detuning is off.
    public var outputSubstrings: Int { useDetune ? bias.count : 1 }

    static let semitone = Float(log(2.0) / 12)

    /// f0 [pitches, outputSubstrings]; `instrumentDetuning[i]` is d for pitch i.
    public func forward(extendedPitch p: [Float], instrumentDetuning d: [Float]) -> [Float] {
        let S = outputSubstrings
        var f = [Float](repeating: 0, count: p.count * S)
        for i in p.indices {
            if !useDetune { f[i] = Detuner.midiToHz(p[i]); continue }
            let global = tanhf(d[i])
            for s in 0..<S {
                f[i * S + s] = Detuner.midiToHz(p[i] + Detuner.substringDetune(extendedPitch: p[i], kernel: kernel[s], bias: bias[s]) + global)
            }
        }
        return f
    }

    /// Accumulates kernel/bias gradients from dL/df0 [pitches, substrings]; returns dL/dd per pitch.
    public mutating func backward(_ df: [Float], f0 f: [Float], extendedPitch p: [Float], instrumentDetuning d: [Float]) -> [Float] {
        var dd = [Float](repeating: 0, count: p.count)
        guard useDetune else { return dd }
        let S = bias.count
        var dk = [Double](repeating: 0, count: S), db = dk
        for i in p.indices {
            let tg = tanhf(d[i])
            var acc = 0.0
            for s in 0..<S {
                // df/d(semitones) = f·ln2/12
                let dm = Double(df[i * S + s]) * Double(f[i * S + s]) * Double(Self.semitone)
                let th = Detuner.substringDetune(extendedPitch: p[i], kernel: kernel[s], bias: bias[s])
                let da = dm * Double(1 - th * th)
                dk[s] += da * Double(p[i] / 128)
                db[s] += da
                acc += dm
            }
            dd[i] = Float(acc * Double(1 - tg * tg))
        }
        for s in 0..<S { kernelGrad[s] += Float(dk[s]); biasGrad[s] += Float(db[s]) }
        return dd
    }

    public mutating func zeroGrad() { kernelGrad.setZero(); biasGrad.setZero() }
}
