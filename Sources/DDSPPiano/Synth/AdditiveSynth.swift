import Foundation

/// Inharmonic additive synthesis with two substrings per voice (upstream MultiInharmonic with
/// ddsp's harmonic_synthesis and cosine oscillators), one 64-sample frame at a time.
///
/// Between frame F and F+1, partial frequencies are interpolated linearly and amplitudes
/// cross-faded with half-overlapping periodic Hann windows (ddsp `resample(method='window')`):
/// both need frame F+1, which is the synthesis' one frame of look-ahead. Phases follow ddsp's
/// `angular_cumsum` in float32: a running sum within chunks of 1000 samples (counted from the
/// start of the stream), and a float32 running sum of the chunk ends modulo 2π as offset; so an
/// offline render reproduces upstream's oscillator phases, which depend on the whole history
/// (idle voices keep running at about 8 Hz).
///
/// Such a running sum is chaotic in the last bit of its terms, so the radians per sample are
/// computed as TensorFlow computes them: the frequency interpolated by the legacy bilinear
/// resize (position float32(n)·float32(1/frame) of the absolute sample n, its fraction in
/// float32), then (F·2π)/rate, each step rounded to float32. Where a partial's frequency does
/// not change over the frame that is its constant rate, the fast path.
public struct AdditiveSynth: Sendable {
    public let voices: Int
    public let substrings: Int
    public let harmonics: Int
    public let frameSize: Int
    public let sampleRate: Int

    static let chunkSize = 1000
    static let twoPi: Float = Float(2 * Double.pi)   // ddsp's 2·np.pi as a float32 constant

    /// Explicit state per oscillator [voices, substrings, harmonics].
    private var chunkPhase: [Float]
    private var offsetSum: [Float]
    private var offset: [Float]
    /// Samples rendered since the stream started (for the 1000-sample phase chunks).
    public private(set) var sampleIndex: Int = 0

    private let window: [Float]        // periodic Hann, 2·frameSize
    /// Per sample of the frame being rendered, the resize's interpolation fraction (TensorFlow's
    /// float32 arithmetic on the absolute sample index).
    private var lerp: [Float]
    private let resizeScale: Float     // float32(1/frameSize) as TensorFlow's in/out size ratio
    private var partialSum: [SIMD8<Float>]    // [frameSize] scratch: per-sample lanes of partial sums
    private var silentBlocks: [Int]           // scratch: byte offsets of the frame's silent 8-partial blocks

    public init(hyper h: PianoWeights.Hyper) {
        voices = h.voices; substrings = h.substrings; harmonics = h.harmonics
        frameSize = h.samplesPerFrame; sampleRate = h.sampleRate
        let n = voices * substrings * harmonics
        chunkPhase = [Float](repeating: 0, count: n)
        offsetSum = [Float](repeating: 0, count: n)
        offset = [Float](repeating: 0, count: n)
        let wl = 2 * frameSize
        window = (0..<wl).map { Float(0.5 - 0.5 * cos(2 * Double.pi * Double($0) / Double(wl))) }
        lerp = [Float](repeating: 0, count: frameSize)
        resizeScale = Float(1) / Float(h.samplesPerFrame)
        partialSum = [SIMD8<Float>](repeating: .zero, count: frameSize)
        silentBlocks = [Int](repeating: 0, count: n / 8 + 1)
    }

    public mutating func reset() {
        for i in chunkPhase.indices { chunkPhase[i] = 0; offsetSum[i] = 0; offset[i] = 0 }
        sampleIndex = 0
    }

    /// Adds frame F of every voice to `out` [frameSize], given the controls of frame F (`current`)
    /// and F+1 (`next`; pass `current` again at the very end, which holds the last frame).
    public mutating func render(current: SynthControls, next: SynthControls, into out: UnsafeMutablePointer<Float>) {
        let H = harmonics, S = substrings, N = frameSize
        precondition(H % 8 == 0, "partials are processed 8 at a time")
        let nyquist = SIMD8<Float>(repeating: Float(sampleRate) / 2)
        let sr = SIMD8<Float>(repeating: Float(sampleRate))
        let twoPi = SIMD8<Float>(repeating: AdditiveSynth.twoPi)
        let start = sampleIndex
        for r in 0..<N {
            let position = Float(start + r) * resizeScale
            lerp[r] = position - position.rounded(.down)
        }
        // Index within the frame of the last sample of a phase chunk, if one ends in this frame.
        let chunkEnd = (AdditiveSynth.chunkSize - 1 - start % AdditiveSynth.chunkSize)
        chunkPhase.withUnsafeMutableBufferPointer { cp in
        offsetSum.withUnsafeMutableBufferPointer { os in
        offset.withUnsafeMutableBufferPointer { off in
        partialSum.withUnsafeMutableBufferPointer { acc in
        current.harmonicFrequency.withUnsafeBufferPointer { fc in
        next.harmonicFrequency.withUnsafeBufferPointer { fn in
        current.harmonicAmplitude.withUnsafeBufferPointer { ac in
        next.harmonicAmplitude.withUnsafeBufferPointer { an in
        window.withUnsafeBufferPointer { w in
        lerp.withUnsafeBufferPointer { lp in
        silentBlocks.withUnsafeMutableBufferPointer { pending in
            var silentCount = 0
            let cpR = UnsafeMutableRawPointer(cp.baseAddress!), osR = UnsafeMutableRawPointer(os.baseAddress!)
            let offR = UnsafeMutableRawPointer(off.baseAddress!)
            let fcR = UnsafeRawPointer(fc.baseAddress!), fnR = UnsafeRawPointer(fn.baseAddress!)
            let acR = UnsafeRawPointer(ac.baseAddress!), anR = UnsafeRawPointer(an.baseAddress!)
            let folds = chunkEnd < N                       // a phase chunk ends in this frame
            let chunk = folds ? chunkEnd + 1 : N            // samples up to and including its end
            for v in 0..<voices {
                let audible = !(current.silent[v] && next.silent[v])
                for s in 0..<S {
                    if audible { for r in 0..<N { acc[r] = .zero } }
                    for kb in stride(from: 0, to: H, by: 8) {
                        let o = ((v * S + s) * H + kb) * 4, ao = (v * H + kb) * 4
                        let f0 = fcR.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self)
                        let f1 = fnR.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self)
                        // Radians per sample at both ends of the frame; interpolating these is
                        // interpolating the frequency (to float rounding), without a division
                        // per sample.
                        let w0 = (f0 * twoPi) / sr
                        let dw = (f1 * twoPi) / sr - w0
                        var phase = cpR.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self)
                        var ofs = offR.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self)
                        let a0 = acR.loadUnaligned(fromByteOffset: ao, as: SIMD8<Float>.self)
                        let a1 = anR.loadUnaligned(fromByteOffset: ao, as: SIMD8<Float>.self)
                        // Silent partials (no amplitude at either end, or above Nyquist for the
                        // whole frame) only advance their phase.
                        let df = f1 - f0
                        let fEnd = f0 + df * lp[N - 1]
                        let aboveNyquist = (f0 .>= nyquist) .& (fEnd .>= nyquist)
                        let silent = (a0 .== 0) .& (a1 .== 0)
                        let p = Partials(w0: w0, dw: dw, a0: a0, a1: a1, f0: f0, df: df, nyquist: nyquist,
                                         twoPi: twoPi, sr: sr, changing: any(df .!= 0))
                        if audible && !all(aboveNyquist .| silent) {
                            // The frequency is monotonic within the frame: a lane below Nyquist at
                            // both ends is below throughout, and most blocks need no mask.
                            if any((f0 .>= nyquist) .| (fEnd .>= nyquist)) {
                                p.oscillate(masked: true, 0, chunk, &phase, ofs, lp, w, acc, N)
                                if folds {
                                    AdditiveSynth.foldChunk(&phase, &ofs, osR, o)
                                    p.oscillate(masked: true, chunk, N, &phase, ofs, lp, w, acc, N)
                                }
                            } else {
                                p.oscillate(masked: false, 0, chunk, &phase, ofs, lp, w, acc, N)
                                if folds {
                                    AdditiveSynth.foldChunk(&phase, &ofs, osR, o)
                                    p.oscillate(masked: false, chunk, N, &phase, ofs, lp, w, acc, N)
                                }
                            }
                            cpR.storeBytes(of: phase, toByteOffset: o, as: SIMD8<Float>.self)
                            offR.storeBytes(of: ofs, toByteOffset: o, as: SIMD8<Float>.self)
                        } else {
                            pending[silentCount] = o
                            silentCount += 1
                        }
                    }
                    if audible { for r in 0..<N { out[r] += acc[r].sum() } }
                }
            }
            // Silent blocks only advance their phases: a running sum whose add latency, not the
            // arithmetic, bounds one block (most of the 384 blocks are silent), so they advance
            // four at a time as independent chains.
            let phases = Phases(cp: cpR, off: offR, sums: osR, fc: fcR, fn: fnR, twoPi: twoPi, sr: sr,
                                lp: lp, chunk: chunk, folds: folds, N: N)
            var i = 0
            while i + 4 <= silentCount {
                phases.advance4(pending[i], pending[i + 1], pending[i + 2], pending[i + 3])
                i += 4
            }
            while i < silentCount { phases.advance1(pending[i]); i += 1 }
        }}}}}}}}}}}
        sampleIndex += N
    }

    /// ddsp angular_cumsum at a chunk end: the next chunk starts from 0, offset by the float32
    /// running sum of previous chunk ends (each mod 2π), mod 2π.
    @inline(__always)
    static func foldChunk(_ phase: inout SIMD8<Float>, _ ofs: inout SIMD8<Float>, _ sums: UnsafeMutableRawPointer, _ o: Int) {
        var sum = sums.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self)
        for l in 0..<8 {
            sum[l] += fmod2Pi(phase[l])
            ofs[l] = fmod2Pi(sum[l])
        }
        sums.storeBytes(of: sum, toByteOffset: o, as: SIMD8<Float>.self)
        phase = .zero
    }

    /// fmodf(x, 2π) exactly (bit for bit), without libm's bitwise long division: in double, the
    /// quotient times 2π and the difference are exact for |x| < 2²⁴ (the float32 remainder is
    /// representable); the truncated quotient is at most one too large, when x/2π rounds up to
    /// an integer.
    @inline(__always)
    static func fmod2Pi(_ x: Float) -> Float {
        let c = Double(twoPi), xd = Double(x)
        var r = xd - (xd / c).rounded(.towardZero) * c
        if xd >= 0 { if r < 0 { r += c } } else if r > 0 { r -= c }
        return Float(r)
    }
}

/// Phase-only advance of silent 8-partial blocks (same arithmetic as the audible loop).
struct Phases {
    typealias V = SIMD8<Float>
    let cp, off, sums: UnsafeMutableRawPointer
    let fc, fn: UnsafeRawPointer
    let twoPi, sr: V
    let lp: UnsafeBufferPointer<Float>
    let chunk: Int, folds: Bool, N: Int

    /// Radians per sample at the frame start, and whether any lane's frequency changes.
    @inline(__always)
    func rates(_ o: Int) -> (V, Bool) {
        let f0 = fc.loadUnaligned(fromByteOffset: o, as: V.self)
        return ((f0 * twoPi) / sr, any(fn.loadUnaligned(fromByteOffset: o, as: V.self) .!= f0))
    }

    /// A block whose frequency changes: TensorFlow's per-sample rates (see AdditiveSynth).
    @inline(__always)
    func advanceChanging(_ o: Int) {
        let f0 = fc.loadUnaligned(fromByteOffset: o, as: V.self)
        let df = fn.loadUnaligned(fromByteOffset: o, as: V.self) - f0
        var p = cp.loadUnaligned(fromByteOffset: o, as: V.self)
        for r in 0..<chunk { p += ((f0 + df * lp[r]) * twoPi) / sr }
        if folds {
            var ofs = off.loadUnaligned(fromByteOffset: o, as: V.self)
            AdditiveSynth.foldChunk(&p, &ofs, sums, o)
            off.storeBytes(of: ofs, toByteOffset: o, as: V.self)
            for r in chunk..<N { p += ((f0 + df * lp[r]) * twoPi) / sr }
        }
        cp.storeBytes(of: p, toByteOffset: o, as: V.self)
    }

    @inline(__always)
    func advance1(_ o: Int) {
        let (w0, changing) = rates(o)
        if changing { advanceChanging(o); return }
        var p = cp.loadUnaligned(fromByteOffset: o, as: V.self)
        for _ in 0..<chunk { p += w0 }
        if folds {
            var ofs = off.loadUnaligned(fromByteOffset: o, as: V.self)
            AdditiveSynth.foldChunk(&p, &ofs, sums, o)
            off.storeBytes(of: ofs, toByteOffset: o, as: V.self)
            for _ in chunk..<N { p += w0 }
        }
        cp.storeBytes(of: p, toByteOffset: o, as: V.self)
    }

    @inline(__always)
    func advance4(_ o0: Int, _ o1: Int, _ o2: Int, _ o3: Int) {
        let (w00, c0) = rates(o0), (w01, c1) = rates(o1), (w02, c2) = rates(o2), (w03, c3) = rates(o3)
        if c0 || c1 || c2 || c3 {
            advance1(o0); advance1(o1); advance1(o2); advance1(o3)
            return
        }
        var p0 = cp.loadUnaligned(fromByteOffset: o0, as: V.self), p1 = cp.loadUnaligned(fromByteOffset: o1, as: V.self)
        var p2 = cp.loadUnaligned(fromByteOffset: o2, as: V.self), p3 = cp.loadUnaligned(fromByteOffset: o3, as: V.self)
        for _ in 0..<chunk { p0 += w00; p1 += w01; p2 += w02; p3 += w03 }
        if folds {
            var q0 = off.loadUnaligned(fromByteOffset: o0, as: V.self), q1 = off.loadUnaligned(fromByteOffset: o1, as: V.self)
            var q2 = off.loadUnaligned(fromByteOffset: o2, as: V.self), q3 = off.loadUnaligned(fromByteOffset: o3, as: V.self)
            AdditiveSynth.foldChunk(&p0, &q0, sums, o0); AdditiveSynth.foldChunk(&p1, &q1, sums, o1)
            AdditiveSynth.foldChunk(&p2, &q2, sums, o2); AdditiveSynth.foldChunk(&p3, &q3, sums, o3)
            off.storeBytes(of: q0, toByteOffset: o0, as: V.self); off.storeBytes(of: q1, toByteOffset: o1, as: V.self)
            off.storeBytes(of: q2, toByteOffset: o2, as: V.self); off.storeBytes(of: q3, toByteOffset: o3, as: V.self)
            for _ in chunk..<N { p0 += w00; p1 += w01; p2 += w02; p3 += w03 }
        }
        cp.storeBytes(of: p0, toByteOffset: o0, as: V.self); cp.storeBytes(of: p1, toByteOffset: o1, as: V.self)
        cp.storeBytes(of: p2, toByteOffset: o2, as: V.self); cp.storeBytes(of: p3, toByteOffset: o3, as: V.self)
    }
}

/// The oscillator loop for eight partials of one substring over a range of samples.
struct Partials {
    typealias V = SIMD8<Float>
    let w0, dw, a0, a1, f0, df, nyquist, twoPi, sr: V
    /// Some lane's frequency changes over the frame: per-sample rates as TensorFlow computes them.
    let changing: Bool

    /// Advances `phase` (ddsp's float32 running sum of radians per sample, interpolated
    /// linearly over the frame) and adds a·cos(phase + ofs) to acc[r]. `masked` zeroes lanes
    /// at or above Nyquist sample by sample (only needed when a lane crosses it in the frame).
    @inline(__always)
    func oscillate(masked: Bool, _ r0: Int, _ r1: Int, _ phase: inout V, _ ofs: V,
                   _ lp: UnsafeBufferPointer<Float>, _ w: UnsafeBufferPointer<Float>,
                   _ acc: UnsafeMutableBufferPointer<V>, _ N: Int) {
        var ph = phase
        for r in r0..<r1 {
            let t = lp[r]
            let f = f0 + df * t
            ph += changing ? (f * twoPi) / sr : w0
            // Half-overlapping Hann windows cross-fade the frame's two amplitudes.
            var a = VectorMath.mulAdd(a0, V(repeating: w[N + r]), a1 * w[r])
            if masked { a.replace(with: 0, where: f .>= nyquist) }
            acc[r] = VectorMath.mulAdd(a, VectorMath.vcos(ph + ofs), acc[r])
        }
        phase = ph
    }
}

/// cos(x) for float32 x up to a few thousand radians (`VectorMath.vcos` on one lane).
@inline(__always)
public func fastCos(_ x: Float) -> Float {
    VectorMath.vcos(SIMD8<Float>(repeating: x))[0]
}

/// `fastCos` on eight lanes.
@inline(__always)
public func fastCos(_ x: SIMD8<Float>) -> SIMD8<Float> {
    VectorMath.vcos(x)
}
