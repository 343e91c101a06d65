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
/// from 0 at the segment start (tf.cumsum; accumulated here in Double, modulo 2π, and its cosine
/// taken with the engine's float32 `fastCos`, 1e-6 absolute). Voices of one batch element are
/// summed into its audio.
public struct AdditiveSynthTraining: Sendable {
    public let frameSize: Int
    public let sampleRate: Int
    let window: [Float]   // periodic Hann, 2·frameSize

    public init(frameSize: Int, sampleRate: Int) {
        self.frameSize = frameSize; self.sampleRate = sampleRate
        let wl = 2 * frameSize
        window = (0..<wl).map { Float(0.5 - 0.5 * cos(2 * Double.pi * Double($0) / Double(wl))) }
    }

    static let twoPi = 2 * Double.pi

    /// The running phase in Double, kept in [0, 2π) (an increment is below 2π: f < sample rate)
    /// so the float32 cosine sees a small argument.
    @inline(__always) static func advance(_ phase: Double, _ step: Double) -> Double {
        var p = phase + step
        while p >= twoPi { p -= twoPi }
        while p < 0 { p += twoPi }
        return p
    }

    /// The phase advance over a whole frame whose frequency goes linearly from fa to fb:
    /// Σ_r w·(fa + (fb − fa)·r/N) in closed form (silent frames need no per-sample work).
    @inline(__always) func frameAdvance(_ phase: Double, _ fa: Float, _ fb: Float, _ w: Double) -> Double {
        let N = Double(frameSize)
        let p = phase + w * (N * Double(fa) + Double(fb - fa) * (N - 1) / 2)
        let r = p.truncatingRemainder(dividingBy: Self.twoPi)
        return r < 0 ? r + Self.twoPi : r
    }

    /// `harmonicAmplitude` [batch·voices, frames, harmonics], `harmonicFrequency`
    /// [batch·voices, frames, substrings, harmonics] → audio [batch, frames·frameSize].
    public func forward(harmonicAmplitude A: [Float], harmonicFrequency Fq: [Float], batch B: Int, voices V: Int,
                        frames T: Int, substrings S: Int, harmonics H: Int) -> [Float] {
        precondition(A.count == B * V * T * H && Fq.count == B * V * T * S * H)
        let N = frameSize, n = T * N, nyquist = Float(sampleRate) / 2, w = Self.twoPi / Double(sampleRate)
        var audio = [Float](repeating: 0, count: B * n)
        var acc = [Double](repeating: 0, count: n)
        for b in 0..<B {
            for i in 0..<n { acc[i] = 0 }
            for v in 0..<V {
                let q = b * V + v
                for k in 0..<H {
                    let a = { (F: Int) in A[(q * T + F) * H + k] }
                    if !(0..<T).contains(where: { a($0) != 0 }) { continue }   // silent: contributes nothing
                    for s in 0..<S {
                        let f = { (F: Int) in Fq[((q * T + F) * S + s) * H + k] }
                        var phase = 0.0
                        for F in 0..<T {
                            let G = min(F + 1, T - 1)
                            let fa = f(F), fb = f(G), aa = a(F), ab = a(G)
                            if aa == 0 && ab == 0 { phase = frameAdvance(phase, fa, fb, w); continue }
                            for r in 0..<N {
                                let t = Float(r) / Float(N)
                                let fr = fa + (fb - fa) * t
                                phase = Self.advance(phase, w * Double(fr))
                                if fr < nyquist { acc[F * N + r] += Double((aa * window[N + r] + ab * window[r]) * fastCos(Float(phase))) }
                            }
                        }
                    }
                }
            }
            for i in 0..<n { audio[b * n + i] = Float(acc[i]) }
        }
        return audio
    }

    /// From dL/daudio [batch, frames·frameSize]: dL/d harmonic amplitude and dL/d partial
    /// frequency (same layouts as `forward`). Phases are recomputed (caching them would take
    /// voices·substrings·harmonics·samples floats). The frequency gradient is a suffix sum:
    /// f(m) moves every later phase, dL/df(m) = 2π/sr · Σ_{n≥m} −g(n)·a(n)·sin φ(n); over a
    /// silent frame that sum is constant and the frame's share has a closed form.
    /// Silent frames (amplitude exactly 0 at both ends) are skipped, so their amplitudes get no
    /// gradient: the controls only make exact zeros through the f0 gate and the Nyquist mask,
    /// which pass no gradient to the network anyway.
    public func backward(_ dAudio: [Float], harmonicAmplitude A: [Float], harmonicFrequency Fq: [Float], batch B: Int, voices V: Int,
                         frames T: Int, substrings S: Int, harmonics H: Int) -> (dAmplitude: [Float], dFrequency: [Float]) {
        let N = frameSize, n = T * N, nyquist = Float(sampleRate) / 2, w = Self.twoPi / Double(sampleRate)
        precondition(dAudio.count == B * n)
        var dA = [Float](repeating: 0, count: A.count), dF = [Float](repeating: 0, count: Fq.count)
        var dPhase = [Double](repeating: 0, count: n)
        var silent = [Bool](repeating: false, count: T)
        var dAa = [Double](repeating: 0, count: T), dFf = dAa
        let inner = Double(N - 1) / 2, outer = Double(N + 1) / 2   // Σ t and Σ (1 − t) over a frame
        for b in 0..<B {
            for v in 0..<V {
                let q = b * V + v
                for k in 0..<H {
                    let a = { (F: Int) in A[(q * T + F) * H + k] }
                    if !(0..<T).contains(where: { a($0) != 0 }) { continue }
                    for i in 0..<T { dAa[i] = 0 }
                    for s in 0..<S {
                        let f = { (F: Int) in Fq[((q * T + F) * S + s) * H + k] }
                        for i in 0..<T { dFf[i] = 0 }
                        var phase = 0.0
                        for F in 0..<T {
                            let G = min(F + 1, T - 1)
                            let fa = f(F), fb = f(G), aa = a(F), ab = a(G)
                            silent[F] = aa == 0 && ab == 0
                            if silent[F] { phase = frameAdvance(phase, fa, fb, w); continue }
                            for r in 0..<N {
                                let i = F * N + r, t = Float(r) / Float(N)
                                let fr = fa + (fb - fa) * t
                                phase = Self.advance(phase, w * Double(fr))
                                guard fr < nyquist else { dPhase[i] = 0; continue }
                                let gi = Double(dAudio[b * n + i])
                                let c = Double(fastCos(Float(phase)))
                                // amp(n) = a_F·w[N+r] + a_{F+1}·w[r] (a_T is a_{T−1}).
                                dAa[F] += gi * c * Double(window[N + r])
                                dAa[G] += gi * c * Double(window[r])
                                let amp = aa * window[N + r] + ab * window[r]
                                dPhase[i] = -gi * Double(amp) * Double(fastCos(Float(phase - Double.pi / 2)))
                            }
                        }
                        var suffix = 0.0
                        for F in stride(from: T - 1, through: 0, by: -1) {
                            let G = min(F + 1, T - 1)
                            if silent[F] {
                                dFf[F] += suffix * w * outer
                                dFf[G] += suffix * w * inner
                                continue
                            }
                            for r in stride(from: N - 1, through: 0, by: -1) {
                                suffix += dPhase[F * N + r]
                                let df = suffix * w, t = Double(Float(r) / Float(N))
                                dFf[F] += df * (1 - t)
                                dFf[G] += df * t
                            }
                        }
                        for F in 0..<T { dF[((q * T + F) * S + s) * H + k] = Float(dFf[F]) }
                    }
                    for F in 0..<T { dA[(q * T + F) * H + k] = Float(dAa[F]) }
                }
            }
        }
        return (dA, dF)
    }
}
