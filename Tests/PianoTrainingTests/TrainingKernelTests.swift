import DDSPPiano
import Foundation
import PianoTestKit
import PianoTraining
import XCTest

/// The vectorised training kernels against their straightforward scalar versions, and the
/// additive synthesiser's constant-frequency path (held notes: cos/sin by rotations) against
/// finite differences (SynthGradientTests' frequencies change every frame).
final class TrainingKernelTests: XCTestCase {
    /// Held partials (constant frequency over runs of frames), a pitch change, a silent gap, a
    /// partial held above Nyquist on one substring only, a partial silent throughout.
    func heldInputs(V: Int, T: Int, S: Int, H: Int, seed: UInt64) -> (amplitude: [Float], frequency: [Float]) {
        var rng = SplitMix64(seed: seed)
        var amp = rng.array(V * T * H).map { abs($0) }
        var freq = [Float](repeating: 0, count: V * T * S * H)
        for q in 0..<V {
            for t in 0..<T {
                let f0: Float = t < T / 2 ? 110 * Float(q + 1) : 147 * Float(q + 1) + 0.3
                for s in 0..<S { for k in 0..<H { freq[((q * T + t) * S + s) * H + k] = f0 * Float(k + 1) * (1 + 1e-4 * Float(k * k)) + Float(s) * 0.9 } }
            }
        }
        for k in 0..<H { amp[(0 * T + 3) * H + k] = 0; amp[(0 * T + 4) * H + k] = 0 }   // silent gap
        for t in 0..<T { amp[(1 * T + t) * H + (H - 1)] = 0 }                       // silent partial
        for t in 0..<T { freq[((1 * T + t) * S + 1) * H + 1] = 8000.5 }             // held above Nyquist
        return (amp, freq)
    }

    func testAdditiveMatchesScalarReference() {
        let V = 3, T = 12, S = 2, H = 5, N = 64
        let (amp, freq) = heldInputs(V: V, T: T, S: S, H: H, seed: 91)
        var varying = freq
        var rng = SplitMix64(seed: 92)
        for i in varying.indices where i % 3 == 0 { varying[i] += rng.uniform(2) }   // some frames change frequency
        let fast = AdditiveSynthTraining(frameSize: N, sampleRate: 16000)
        let ref = ReferenceAdditiveSynth(frameSize: N, sampleRate: 16000)
        for f in [freq, varying] {
            let a = fast.forward(harmonicAmplitude: amp, harmonicFrequency: f, batch: 1, voices: V, frames: T, substrings: S, harmonics: H)
            let r = ref.forward(harmonicAmplitude: amp, harmonicFrequency: f, batch: 1, voices: V, frames: T, substrings: S, harmonics: H)
            let g = rng.array(a.count)
            let ga = fast.backward(g, harmonicAmplitude: amp, harmonicFrequency: f, batch: 1, voices: V, frames: T, substrings: S, harmonics: H)
            let gr = ref.backward(g, harmonicAmplitude: amp, harmonicFrequency: f, batch: 1, voices: V, frames: T, substrings: S, harmonics: H)
            let da = relativeL2(a, r), dA = relativeL2(ga.dAmplitude, gr.dAmplitude), dF = relativeL2(ga.dFrequency, gr.dFrequency)
            print(String(format: "additive vs scalar reference: audio %.2e, dAmplitude %.2e, dFrequency %.2e", da, dA, dF))
            XCTAssertLessThan(da, 1e-5); XCTAssertLessThan(dA, 1e-5); XCTAssertLessThan(dF, 1e-4)
            for i in gr.dFrequency.indices where gr.dFrequency[i] == 0 { XCTAssertEqual(ga.dFrequency[i], 0) }
            for i in gr.dAmplitude.indices where gr.dAmplitude[i] == 0 { XCTAssertEqual(ga.dAmplitude[i], 0) }
        }
    }

    struct OscillatorInputs { var amplitude: [Float]; var frequency: [Float] }

    func testAdditiveHeldGradient() {
        let V = 2, T = 8, S = 2, H = 3, N = 64
        let (amp, freq) = heldInputs(V: V, T: T, S: S, H: H, seed: 93)
        let synth = AdditiveSynthTraining(frameSize: N, sampleRate: 16000)
        var rng = SplitMix64(seed: 94)
        let w = rng.array(T * N)
        let input = OscillatorInputs(amplitude: amp, frequency: freq)
        func loss(_ x: OscillatorInputs) -> Double {
            weightedSum(synth.forward(harmonicAmplitude: x.amplitude, harmonicFrequency: x.frequency, batch: 1, voices: V, frames: T, substrings: S, harmonics: H), w)
        }
        let g = synth.backward(w, harmonicAmplitude: amp, harmonicFrequency: freq, batch: 1, voices: V, frames: T, substrings: S, harmonics: H)
        // Amplitudes exactly 0 get no gradient (documented in `backward`): check them all positive.
        var sounding = input
        sounding.amplitude = sounding.amplitude.map { max($0, 0.05) }
        let gs = synth.backward(w, harmonicAmplitude: sounding.amplitude, harmonicFrequency: freq, batch: 1, voices: V, frames: T, substrings: S, harmonics: H)
        let ea = gradientCheck(sounding, \.amplitude, analytic: gs.dAmplitude, eps: 1e-2, samples: 40, loss: loss)
        let da = directionalCheck(sounding, \.amplitude, analytic: gs.dAmplitude, eps: 1e-2, loss: loss)
        // A step of one entry breaks the run of equal frequencies (the general path), the analytic
        // gradient comes from the constant path: the check compares the two paths' derivatives too.
        let ef = gradientCheck(input, \.frequency, analytic: g.dFrequency, eps: 0.2, samples: 40, loss: loss)
        let df = directionalCheck(input, \.frequency, analytic: g.dFrequency, eps: 0.2, loss: loss)
        print(String(format: "held partials: amplitude entries %.2e directional %.2e; frequency entries %.2e directional %.2e", ea, da, ef, df))
        XCTAssertLessThan(ea, 2e-2); XCTAssertLessThan(da, 1e-3)
        XCTAssertLessThan(ef, 2e-2); XCTAssertLessThan(df, 1e-3)
    }
    func testFilteredNoiseMatchesScalarReference() {
        var rng = SplitMix64(seed: 95)
        for (K, N) in [(2, 16), (9, 16), (64, 64)] {
            let B = 2, V = 3, T = 5
            let mags = rng.array(B * V * T * K).map { abs($0) }
            let x = rng.array(B * V * T * N), g = rng.array(B * T * N)
            let fast = FilteredNoiseTraining(bands: K, frameSize: N), ref = ReferenceFilteredNoise(bands: K, frameSize: N)
            let da = relativeL2(fast.forward(magnitudes: mags, noise: x, batch: B, voices: V, frames: T),
                                ref.forward(magnitudes: mags, noise: x, batch: B, voices: V, frames: T))
            let dg = relativeL2(fast.backward(g, noise: x, batch: B, voices: V, frames: T), ref.backward(g, noise: x, batch: B, voices: V, frames: T))
            print(String(format: "filtered noise vs scalar reference (bands %d, frame %d): audio %.2e, dMagnitudes %.2e", K, N, da, dg))
            XCTAssertLessThan(da, 1e-5); XCTAssertLessThan(dg, 1e-5)
        }
    }
}

func relativeL2(_ a: [Float], _ b: [Float]) -> Double {
    precondition(a.count == b.count)
    var num = 0.0, den = 0.0
    for i in a.indices { let d = Double(a[i]) - Double(b[i]); num += d * d; den += Double(b[i]) * Double(b[i]) }
    return den > 0 ? (num / den).squareRoot() : num.squareRoot()
}

/// The previous scalar implementation (sample by sample, Double phase, `fastCos`), as the reference.
struct ReferenceAdditiveSynth {
    let frameSize: Int
    let sampleRate: Int
    let window: [Float]   // periodic Hann, 2·frameSize

    init(frameSize: Int, sampleRate: Int) {
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
    func forward(harmonicAmplitude A: [Float], harmonicFrequency Fq: [Float], batch B: Int, voices V: Int,
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
    func backward(_ dAudio: [Float], harmonicAmplitude A: [Float], harmonicFrequency Fq: [Float], batch B: Int, voices V: Int,
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

/// The previous scalar filtered noise (direct convolution, Double sums), as the reference.
struct ReferenceFilteredNoise {
    let bands: Int
    let frameSize: Int
    let taps: Int
    let delay: Int
    let design: [Float]   // [bands, taps]: the same frequency-sampling design as FilteredNoise

    init(bands: Int, frameSize: Int) {
        self.bands = bands; self.frameSize = frameSize
        let n = 2 * (bands - 1)
        taps = n
        delay = (n - 1) / 2 - 1
        design = FilteredNoise.designMatrix(bands: bands)
    }

    /// `magnitudes` [batch·voices, frames, bands], `noise` [batch·voices, frames·frameSize] → audio [batch, frames·frameSize].
    func forward(magnitudes M: [Float], noise: [Float], batch B: Int, voices V: Int, frames T: Int) -> [Float] {
        let N = frameSize, n = T * N, K = bands, L = taps
        precondition(M.count == B * V * T * K && noise.count == B * V * n)
        var out = [Double](repeating: 0, count: B * n)
        var ir = [Float](repeating: 0, count: L)
        for q in 0..<(B * V) {
            let b = q / V
            for F in 0..<T {
                for i in 0..<L {
                    var s: Float = 0
                    for k in 0..<K { s += M[(q * T + F) * K + k] * design[k * L + i] }
                    ir[i] = s
                }
                for r in 0..<N {
                    let x = Double(noise[q * n + F * N + r])
                    let base = F * N + r - delay
                    for i in max(0, -base)..<min(L, n - base) { out[b * n + base + i] += x * Double(ir[i]) }
                }
            }
        }
        return out.map { Float($0) }
    }

    /// dL/dmagnitudes [batch·voices, frames, bands] from dL/daudio [batch, frames·frameSize].
    func backward(_ dAudio: [Float], noise: [Float], batch B: Int, voices V: Int, frames T: Int) -> [Float] {
        let N = frameSize, n = T * N, K = bands, L = taps
        precondition(dAudio.count == B * n && noise.count == B * V * n)
        var dM = [Float](repeating: 0, count: B * V * T * K)
        var dIR = [Double](repeating: 0, count: L)
        for q in 0..<(B * V) {
            let b = q / V
            for F in 0..<T {
                for i in 0..<L { dIR[i] = 0 }
                for r in 0..<N {
                    let x = Double(noise[q * n + F * N + r])
                    let base = F * N + r - delay
                    for i in max(0, -base)..<min(L, n - base) { dIR[i] += x * Double(dAudio[b * n + base + i]) }
                }
                for k in 0..<K {
                    var s = 0.0
                    for i in 0..<L { s += Double(design[k * L + i]) * dIR[i] }
                    dM[(q * T + F) * K + k] = Float(s)
                }
            }
        }
        return dM
    }
}
