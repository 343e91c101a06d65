import Foundation

// Training-mode forward and backward of the additive synthesiser (upstream's training path: ddsp
// harmonic_synthesis with `use_angular_cumsum=False`, whole segments): shares the engine's
// float32 cosine (`fastCos`, VectorMath.vcos); the phase paths differ by design (the engine
// follows upstream's streaming float32 sums bit for bit, training accumulates in Double).

/// Inharmonic cosine oscillator bank over whole segments. For partial k of substring s of voice q:
/// frequency linearly interpolated between frames (tf.image.resize, last frame held), amplitude
/// cross-faded with half-overlapping periodic Hann windows (ddsp upsample_with_windows, last frame
/// repeated), zeroed on samples where the frequency reaches Nyquist; phase φ(n) = Σ_{m≤n} 2π f(m)/sr
/// from 0 at the segment start (tf.cumsum; accumulated here in Double, modulo 2π). Voices of one
/// batch element are summed into its audio.
///
/// How the cosines are evaluated (both passes alike, so backward stays the exact derivative of
/// forward): over a frame whose frequency is constant (f at both ends: a held note, nearly every
/// frame), φ(F·N + r) = φ_F + (r + 1)·θ with θ = 2πf/sr, so cos and sin come from the rotation
/// e^{iφ_F} times a per-frequency table e^{i(r+1)θ} (built once per run of equal frequencies by
/// Double complex products; e^{iφ_F} carried from frame to frame by e^{iNθ}, and taken afresh
/// from φ_F in Double at the start of every run): float32 products, errors ~2e-7 against the
/// engine's `fastCos` 1e-6. Over a frame whose frequency changes the phase is accumulated sample
/// by sample in Double and its cosine taken with the engine's float32 `fastCos` (VectorMath.vcos).
public struct AdditiveSynthTraining: Sendable {
    public let frameSize: Int
    public let sampleRate: Int
    let window: [Float]   // periodic Hann, 2·frameSize
    /// Per sample of a frame, padded with zeros to a multiple of 8 (`padded`):
    let fadeOut: [Float]  // window[N + r]: the weight of the frame's own amplitude
    let fadeIn: [Float]   // window[r]: the weight of the next frame's amplitude
    let cumOuter: [Float] // Σ_{j≤r} (1 − j/N): the frame's weights in its frequency gradient
    let cumInner: [Float] // Σ_{j≤r} j/N: the next frame's
    let padded: Int

    public init(frameSize: Int, sampleRate: Int) {
        self.frameSize = frameSize; self.sampleRate = sampleRate
        let wl = 2 * frameSize
        let hann = (0..<wl).map { Float(0.5 - 0.5 * cos(2 * Double.pi * Double($0) / Double(wl))) }
        window = hann
        let N = frameSize, P = (N + 7) / 8 * 8
        padded = P
        fadeOut = (0..<P).map { $0 < N ? hann[N + $0] : 0 }
        fadeIn = (0..<P).map { $0 < N ? hann[$0] : 0 }
        var o = [Float](repeating: 0, count: P), i = o
        var so = 0.0, si = 0.0
        for r in 0..<N {
            let t = Double(Float(r) / Float(N))
            so += 1 - t; si += t
            o[r] = Float(so); i[r] = Float(si)
        }
        cumOuter = o; cumInner = i
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

    /// x modulo 2π in [0, 2π) for |x| < 2⁶²·2π (a truncating conversion, no libm call).
    @inline(__always) static func reduce(_ x: Double) -> Double {
        var r = x - Double(Int(x * (1 / twoPi))) * twoPi
        if r < 0 { r += twoPi }
        if r >= twoPi { r -= twoPi }
        return r
    }

    /// The phase advance over a whole frame whose frequency goes linearly from fa to fb:
    /// Σ_r w·(fa + (fb − fa)·r/N) in closed form (silent frames need no per-sample work).
    @inline(__always) func frameAdvance(_ phase: Double, _ fa: Float, _ fb: Float, _ w: Double) -> Double {
        let N = Double(frameSize)
        return Self.reduce(phase + w * (N * Double(fa) + Double(fb - fa) * (N - 1) / 2))
    }

    typealias V8 = SIMD8<Float>

    /// One partial's oscillator over a segment: walks its frames and, for every frame that sounds
    /// (amplitude not 0 at both ends), fills cos φ (and, with `wantSin`, sin φ) for its samples,
    /// 0 where the frequency reaches Nyquist and on the padding, then calls `body(F)`.
    /// `f(F)` is the partial's frequency, `a(F)` its amplitude.
    struct Oscillator {
        let N: Int, P: Int, T: Int
        let w: Double, nyquist: Float
        // Scratch, `P` floats each (owned by the caller's call, never shared).
        let cosBuf: UnsafeMutablePointer<Float>, sinBuf: UnsafeMutablePointer<Float>
        let tableRe: UnsafeMutablePointer<Float>, tableIm: UnsafeMutablePointer<Float>
        let argC: UnsafeMutablePointer<Float>, argS: UnsafeMutablePointer<Float>, mask: UnsafeMutablePointer<Float>

        @inline(__always)
        func run(wantSin: Bool, synth: AdditiveSynthTraining, f: (Int) -> Float, a: (Int) -> Float, body: (Int) -> Void) {
            var phase = 0.0
            var tableFreq: Float = .nan
            var rotC = 0.0, rotS = 0.0       // e^{iNθ} of the table's frequency
            var zC = 0.0, zS = 0.0, zValid = false
            for F in 0..<T {
                let G = min(F + 1, T - 1)
                let fa = f(F), fb = f(G), aa = a(F), ab = a(G)
                if aa == 0 && ab == 0 { phase = synth.frameAdvance(phase, fa, fb, w); zValid = false; continue }
                if fa == fb {
                    if !(fa < nyquist) { phase = synth.frameAdvance(phase, fa, fb, w); zValid = false; continue }
                    if fa != tableFreq {
                        // e^{i(r+1)θ}, r < N, by repeated Double complex products (error ~N·1e-16).
                        let theta = w * Double(fa)
                        let eC = cos(theta), eS = sin(theta)
                        var c = eC, s = eS
                        for r in 0..<N {
                            tableRe[r] = Float(c); tableIm[r] = Float(s)
                            if r == N - 1 { rotC = c; rotS = s }
                            let nc = c * eC - s * eS
                            s = c * eS + s * eC; c = nc
                        }
                        tableFreq = fa; zValid = false
                    }
                    if !zValid { zC = cos(phase); zS = sin(phase); zValid = true }
                    let C = V8(repeating: Float(zC)), S = V8(repeating: Float(zS))
                    let tr = UnsafeRawPointer(tableRe), ti = UnsafeRawPointer(tableIm)
                    let cr = UnsafeMutableRawPointer(cosBuf), sr = UnsafeMutableRawPointer(sinBuf)
                    var j = 0
                    while j < P {
                        let re = tr.loadUnaligned(fromByteOffset: 4 * j, as: V8.self)
                        let im = ti.loadUnaligned(fromByteOffset: 4 * j, as: V8.self)
                        cr.storeBytes(of: C * re - S * im, toByteOffset: 4 * j, as: V8.self)
                        if wantSin { sr.storeBytes(of: S * re + C * im, toByteOffset: 4 * j, as: V8.self) }
                        j += 8
                    }
                    body(F)
                    phase = synth.frameAdvance(phase, fa, fb, w)
                    let nc = zC * rotC - zS * rotS
                    zS = zC * rotS + zS * rotC; zC = nc
                } else {
                    zValid = false
                    for r in 0..<N {
                        let t = Float(r) / Float(N)
                        let fr = fa + (fb - fa) * t
                        phase = AdditiveSynthTraining.advance(phase, w * Double(fr))
                        if fr < nyquist {
                            argC[r] = Float(phase); argS[r] = Float(phase - Double.pi / 2); mask[r] = 1
                        } else {
                            argC[r] = 0; argS[r] = 0; mask[r] = 0
                        }
                    }
                    let ac = UnsafeRawPointer(argC), asn = UnsafeRawPointer(argS), mk = UnsafeRawPointer(mask)
                    let cr = UnsafeMutableRawPointer(cosBuf), sr = UnsafeMutableRawPointer(sinBuf)
                    var j = 0
                    while j < P {
                        let m = mk.loadUnaligned(fromByteOffset: 4 * j, as: V8.self)
                        cr.storeBytes(of: fastCos(ac.loadUnaligned(fromByteOffset: 4 * j, as: V8.self)) * m, toByteOffset: 4 * j, as: V8.self)
                        if wantSin { sr.storeBytes(of: fastCos(asn.loadUnaligned(fromByteOffset: 4 * j, as: V8.self)) * m, toByteOffset: 4 * j, as: V8.self) }
                        j += 8
                    }
                    body(F)
                }
            }
        }
    }

    /// Scratch for one call: 7 vectors of `padded` floats.
    @inline(__always)
    func withOscillator<R>(frames T: Int, _ body: (Oscillator) -> R) -> R {
        let P = padded
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: 7 * P)
        scratch.initialize(repeating: 0, count: 7 * P)
        defer { scratch.deallocate() }
        let osc = Oscillator(N: frameSize, P: P, T: T, w: Self.twoPi / Double(sampleRate), nyquist: Float(sampleRate) / 2,
                             cosBuf: scratch, sinBuf: scratch + P, tableRe: scratch + 2 * P, tableIm: scratch + 3 * P,
                             argC: scratch + 4 * P, argS: scratch + 5 * P, mask: scratch + 6 * P)
        return body(osc)
    }

    /// `harmonicAmplitude` [batch·voices, frames, harmonics], `harmonicFrequency`
    /// [batch·voices, frames, substrings, harmonics] → audio [batch, frames·frameSize].
    public func forward(harmonicAmplitude A: [Float], harmonicFrequency Fq: [Float], batch B: Int, voices V: Int,
                        frames T: Int, substrings S: Int, harmonics H: Int) -> [Float] {
        precondition(A.count == B * V * T * H && Fq.count == B * V * T * S * H)
        let N = frameSize, n = T * N, P = padded
        var audio = [Float](repeating: 0, count: B * n)
        var acc = [Double](repeating: 0, count: n)
        // One voice's sum over its partials, float32 (padded: a frame's padding lanes add zeros past its end).
        var voice = [Float](repeating: 0, count: n + P)
        withOscillator(frames: T) { osc in
        A.withUnsafeBufferPointer { Ab in Fq.withUnsafeBufferPointer { Fb in
        voice.withUnsafeMutableBufferPointer { vb in
            let Ap = Ab.baseAddress!, Fp = Fb.baseAddress!, out = vb.baseAddress!
            let outR = UnsafeMutableRawPointer(out)
            let cr = UnsafeRawPointer(osc.cosBuf)
            let foR = UnsafeRawPointer(fadeOut.withUnsafeBufferPointer { $0.baseAddress! })
            let fiR = UnsafeRawPointer(fadeIn.withUnsafeBufferPointer { $0.baseAddress! })
            for b in 0..<B {
                for i in 0..<n { acc[i] = 0 }
                for v in 0..<V {
                    let q = b * V + v
                    out.update(repeating: 0, count: n + P)
                    var any = false
                    for k in 0..<H {
                        let a = { (F: Int) in Ap[(q * T + F) * H + k] }
                        if !(0..<T).contains(where: { a($0) != 0 }) { continue }   // silent: contributes nothing
                        any = true
                        for s in 0..<S {
                            let f = { (F: Int) in Fp[((q * T + F) * S + s) * H + k] }
                            osc.run(wantSin: false, synth: self, f: f, a: a) { F in
                                let G = min(F + 1, T - 1)
                                let aa = V8(repeating: a(F)), ab = V8(repeating: a(G))
                                var j = 0
                                while j < P {
                                    let amp = aa * foR.loadUnaligned(fromByteOffset: 4 * j, as: V8.self) + ab * fiR.loadUnaligned(fromByteOffset: 4 * j, as: V8.self)
                                    let o = 4 * (F * N + j)
                                    let y = outR.loadUnaligned(fromByteOffset: o, as: V8.self) + amp * cr.loadUnaligned(fromByteOffset: 4 * j, as: V8.self)
                                    outR.storeBytes(of: y, toByteOffset: o, as: V8.self)
                                    j += 8
                                }
                            }
                        }
                    }
                    if any { for i in 0..<n { acc[i] += Double(out[i]) } }
                }
                for i in 0..<n { audio[b * n + i] = Float(acc[i]) }
            }
        }}}}
        return audio
    }

    /// From dL/daudio [batch, frames·frameSize]: dL/d harmonic amplitude and dL/d partial
    /// frequency (same layouts as `forward`). Phases are recomputed (caching them would take
    /// voices·substrings·harmonics·samples floats). The frequency gradient is a suffix sum:
    /// f(m) moves every later phase, dL/df(m) = 2π/sr · Σ_{n≥m} −g(n)·a(n)·sin φ(n); per frame
    /// it needs only Σ d(r), Σ d(r)·Σ_{j≤r}(1 − j/N) and Σ d(r)·Σ_{j≤r} j/N of d = −g·a·sin φ,
    /// the suffix running over frames (over a silent frame d = 0).
    /// Silent frames (amplitude exactly 0 at both ends) are skipped, so their amplitudes get no
    /// gradient: the controls only make exact zeros through the f0 gate and the Nyquist mask,
    /// which pass no gradient to the network anyway.
    public func backward(_ dAudio: [Float], harmonicAmplitude A: [Float], harmonicFrequency Fq: [Float], batch B: Int, voices V: Int,
                         frames T: Int, substrings S: Int, harmonics H: Int) -> (dAmplitude: [Float], dFrequency: [Float]) {
        let N = frameSize, n = T * N, P = padded, w = Self.twoPi / Double(sampleRate)
        precondition(dAudio.count == B * n)
        var dA = [Float](repeating: 0, count: A.count), dF = [Float](repeating: 0, count: Fq.count)
        var dAa = [Double](repeating: 0, count: T)
        var frameD = [Double](repeating: 0, count: T), frameO = frameD, frameI = frameD
        var g = [Float](repeating: 0, count: n + P)   // one batch element's dL/daudio, padded with zeros
        let inner = Double(N - 1) / 2, outer = Double(N + 1) / 2   // Σ t and Σ (1 − t) over a frame
        withOscillator(frames: T) { osc in
        A.withUnsafeBufferPointer { Ab in Fq.withUnsafeBufferPointer { Fb in
        g.withUnsafeMutableBufferPointer { gb in
            let Ap = Ab.baseAddress!, Fp = Fb.baseAddress!
            let gR = UnsafeRawPointer(gb.baseAddress!)
            let cr = UnsafeRawPointer(osc.cosBuf), sr = UnsafeRawPointer(osc.sinBuf)
            let foR = UnsafeRawPointer(fadeOut.withUnsafeBufferPointer { $0.baseAddress! })
            let fiR = UnsafeRawPointer(fadeIn.withUnsafeBufferPointer { $0.baseAddress! })
            let coR = UnsafeRawPointer(cumOuter.withUnsafeBufferPointer { $0.baseAddress! })
            let ciR = UnsafeRawPointer(cumInner.withUnsafeBufferPointer { $0.baseAddress! })
            for b in 0..<B {
                for i in 0..<n { gb[i] = dAudio[b * n + i] }
                for v in 0..<V {
                    let q = b * V + v
                    for k in 0..<H {
                        let a = { (F: Int) in Ap[(q * T + F) * H + k] }
                        if !(0..<T).contains(where: { a($0) != 0 }) { continue }
                        for i in 0..<T { dAa[i] = 0 }
                        for s in 0..<S {
                            let f = { (F: Int) in Fp[((q * T + F) * S + s) * H + k] }
                            for i in 0..<T { frameD[i] = 0; frameO[i] = 0; frameI[i] = 0 }
                            osc.run(wantSin: true, synth: self, f: f, a: a) { F in
                                let G = min(F + 1, T - 1)
                                let aa = V8(repeating: a(F)), ab = V8(repeating: a(G))
                                var sumOut = V8(), sumIn = V8(), sD = V8(), sO = V8(), sI = V8()
                                var j = 0
                                while j < P {
                                    let fo = foR.loadUnaligned(fromByteOffset: 4 * j, as: V8.self)
                                    let fi = fiR.loadUnaligned(fromByteOffset: 4 * j, as: V8.self)
                                    let gi = gR.loadUnaligned(fromByteOffset: 4 * (F * N + j), as: V8.self)
                                    let gc = gi * cr.loadUnaligned(fromByteOffset: 4 * j, as: V8.self)
                                    // amp(n) = a_F·w[N+r] + a_{F+1}·w[r] (a_T is a_{T−1}).
                                    sumOut += gc * fo
                                    sumIn += gc * fi
                                    let amp = aa * fo + ab * fi
                                    let d = -(gi * amp * sr.loadUnaligned(fromByteOffset: 4 * j, as: V8.self))
                                    sD += d
                                    sO += d * coR.loadUnaligned(fromByteOffset: 4 * j, as: V8.self)
                                    sI += d * ciR.loadUnaligned(fromByteOffset: 4 * j, as: V8.self)
                                    j += 8
                                }
                                dAa[F] += Double(sumOut.sum())
                                dAa[G] += Double(sumIn.sum())
                                frameD[F] = Double(sD.sum()); frameO[F] = Double(sO.sum()); frameI[F] = Double(sI.sum())
                            }
                            // Suffix over frames: within frame F, Σ_r (1 − t_r)·Σ_{j≥r} d_j = Σ_j d_j·cumOuter_j.
                            // frameO[F] becomes frame F's share of dL/df_F, frameI[F] its share of dL/df_{F+1}.
                            var suffix = 0.0
                            for F in stride(from: T - 1, through: 0, by: -1) {
                                let d = frameD[F]
                                frameO[F] = w * (suffix * outer + frameO[F])
                                frameI[F] = w * (suffix * inner + frameI[F])
                                suffix += d
                            }
                            for F in 0..<T {
                                var x = frameO[F]
                                if F > 0 { x += frameI[F - 1] }
                                if F == T - 1 { x += frameI[F] }   // G = min(F + 1, T − 1)
                                dF[((q * T + F) * S + s) * H + k] = Float(x)
                            }
                        }
                        for F in 0..<T { dA[(q * T + F) * H + k] = Float(dAa[F]) }
                    }
                }
            }
        }}}}
        return (dA, dF)
    }
}
