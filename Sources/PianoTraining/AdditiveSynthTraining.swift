import DDSPPiano
import Foundation

// Training-mode forward and backward of the additive synthesiser (mirrors
// Sources/DDSPPiano/Synth/AdditiveSynth.swift; upstream's training path: ddsp harmonic_synthesis
// with `use_angular_cumsum=False`; the backward pass should move next to the forward pass once
// that file is free to edit).

/// Inharmonic cosine oscillator bank over whole segments. For partial k of substring s of voice q:
/// frequency linearly interpolated between frames (tf.image.resize, last frame held), amplitude
/// cross-faded with half-overlapping periodic Hann windows (ddsp upsample_with_windows, last frame
/// repeated), zeroed on samples where the frequency reaches Nyquist; phase φ(n) = Σ_{m≤n} 2π f(m)/sr
/// from 0 at the segment start (tf.cumsum; accumulated here in Double). Voices of one batch element
/// are summed into its audio.
public struct AdditiveSynthTraining: Sendable {
    public let frameSize: Int
    public let sampleRate: Int
    let window: [Float]   // periodic Hann, 2·frameSize

    public init(frameSize: Int, sampleRate: Int) {
        self.frameSize = frameSize; self.sampleRate = sampleRate
        let wl = 2 * frameSize
        window = (0..<wl).map { Float(0.5 - 0.5 * cos(2 * Double.pi * Double($0) / Double(wl))) }
    }

    /// Calls `body(n, f(n), amplitude(n) before the Nyquist cut, frame, t)` for each sample of one oscillator.
    @inline(__always)
    func walk(amplitude a: UnsafePointer<Float>, aStride: Int, frequency f: UnsafePointer<Float>, fStride: Int, frames T: Int,
              _ body: (Int, Float, Float, Int, Float) -> Void) {
        let N = frameSize
        for F in 0..<T {
            let G = min(F + 1, T - 1)
            let fa = f[F * fStride], fb = f[G * fStride], aa = a[F * aStride], ab = a[G * aStride]
            for r in 0..<N {
                let t = Float(r) / Float(N)
                body(F * N + r, fa + (fb - fa) * t, aa * window[N + r] + ab * window[r], F, t)
            }
        }
    }

    /// `harmonicAmplitude` [batch·voices, frames, harmonics], `harmonicFrequency`
    /// [batch·voices, frames, substrings, harmonics] → audio [batch, frames·frameSize].
    public func forward(harmonicAmplitude A: [Float], harmonicFrequency Fq: [Float], batch B: Int, voices V: Int,
                        frames T: Int, substrings S: Int, harmonics H: Int) -> [Float] {
        precondition(A.count == B * V * T * H && Fq.count == B * V * T * S * H)
        let n = T * frameSize, nyquist = Float(sampleRate) / 2, w = 2 * Double.pi / Double(sampleRate)
        var audio = [Float](repeating: 0, count: B * n)
        var acc = [Double](repeating: 0, count: n)
        A.withUnsafeBufferPointer { ap in Fq.withUnsafeBufferPointer { fp in
            for b in 0..<B {
                for i in 0..<n { acc[i] = 0 }
                for v in 0..<V {
                    let q = b * V + v
                    for k in 0..<H {
                        let a = ap.baseAddress! + q * T * H + k
                        if !(0..<T).contains(where: { a[$0 * H] != 0 }) { continue }   // silent: contributes nothing
                        for s in 0..<S {
                            var phase = 0.0
                            walk(amplitude: a, aStride: H, frequency: fp.baseAddress! + (q * T * S + s) * H + k, fStride: S * H, frames: T) { i, f, amp, _, _ in
                                phase += w * Double(f)
                                if f < nyquist { acc[i] += Double(amp) * cos(phase) }
                            }
                        }
                    }
                }
                for i in 0..<n { audio[b * n + i] = Float(acc[i]) }
            }
        }}
        return audio
    }

    /// From dL/daudio [batch, frames·frameSize]: dL/d harmonic amplitude and dL/d partial
    /// frequency (same layouts as `forward`). Phases are recomputed (caching them would take
    /// voices·substrings·harmonics·samples floats). The frequency gradient is a suffix sum:
    /// f(m) moves every later phase, dL/df(m) = 2π/sr · Σ_{n≥m} −g(n)·a(n)·sin φ(n).
    public func backward(_ dAudio: [Float], harmonicAmplitude A: [Float], harmonicFrequency Fq: [Float], batch B: Int, voices V: Int,
                         frames T: Int, substrings S: Int, harmonics H: Int) -> (dAmplitude: [Float], dFrequency: [Float]) {
        let n = T * frameSize, nyquist = Float(sampleRate) / 2, w = 2 * Double.pi / Double(sampleRate)
        precondition(dAudio.count == B * n)
        var dA = [Float](repeating: 0, count: A.count), dF = [Float](repeating: 0, count: Fq.count)
        var dPhase = [Double](repeating: 0, count: n)
        var tOf = [Float](repeating: 0, count: n)
        var dAa = [Double](repeating: 0, count: T), dFf = dAa
        A.withUnsafeBufferPointer { ap in Fq.withUnsafeBufferPointer { fp in
            for b in 0..<B {
                let g = dAudio.withUnsafeBufferPointer { $0.baseAddress! + b * n }
                for v in 0..<V {
                    let q = b * V + v
                    for k in 0..<H {
                        let a = ap.baseAddress! + q * T * H + k
                        if !(0..<T).contains(where: { a[$0 * H] != 0 }) { continue }
                        for i in 0..<T { dAa[i] = 0 }
                        for s in 0..<S {
                            for i in 0..<T { dFf[i] = 0 }
                            var phase = 0.0
                            walk(amplitude: a, aStride: H, frequency: fp.baseAddress! + (q * T * S + s) * H + k, fStride: S * H, frames: T) { i, f, amp, F, t in
                                phase += w * Double(f)
                                tOf[i] = t
                                guard f < nyquist else { dPhase[i] = 0; return }
                                let gi = Double(g[i])
                                let c = cos(phase)
                                // amp(n) = a_F·w[N+r] + a_{F+1}·w[r] (a_{T} is a_{T-1}).
                                dAa[F] += gi * c * Double(window[frameSize + i % frameSize])
                                dAa[min(F + 1, T - 1)] += gi * c * Double(window[i % frameSize])
                                dPhase[i] = -gi * Double(amp) * sin(phase)
                            }
                            var suffix = 0.0
                            for i in stride(from: n - 1, through: 0, by: -1) {
                                suffix += dPhase[i]
                                let df = suffix * w, F = i / frameSize, t = Double(tOf[i])
                                dFf[F] += df * (1 - t)
                                dFf[min(F + 1, T - 1)] += df * t
                            }
                            for F in 0..<T { dF[((q * T + F) * S + s) * H + k] = Float(dFf[F]) }
                        }
                        for F in 0..<T { dA[(q * T + F) * H + k] = Float(dAa[F]) }
                    }
                }
            }
        }}
        return (dA, dF)
    }
}
