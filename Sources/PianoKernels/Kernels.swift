#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import PianoKernelTypes

// The engine's hot block kernels. This one file (with VectorMath.swift) is compiled three times,
// by the targets PianoKernelsSSE (plain x86-64), PianoKernelsAVX2 (`-target-cpu haswell
// -DDDSP_FMA`) and PianoKernelsAVX512 (`-target-cpu skylake-avx512 -DDDSP_FMA`), whose folders
// hold symbolic links to it (Package.swift); DDSPPiano chooses one table at run time
// (`PianoKernels`). Each module inlines its own copy of VectorMath, so nothing here calls code
// compiled for another instruction set. The bodies are the engine's code as it was before the
// split (GRU.gates, SynthControls, AdditiveSynth.render, FilteredNoise), moved, not rewritten.

#if DDSP_KERNELS_AVX512
let variantName = "avx512"
#elseif DDSP_KERNELS_AVX2
let variantName = "avx2"
#else
let variantName = "sse"
#endif

/// This variant's table.
public let kernelSet = PianoKernelSet(name: variantName, gruGates: gruGates, expSigmoid: expSigmoid,
                                      additiveFrame: additiveFrame, convolveAdd: convolveAdd,
                                      packedProduct: packedProduct, spectralAccumulate: spectralAccumulate)

// MARK: GRU gates

/// Eight units at a time (AVX-512: sixteen, `VectorMath.GV`) with bit-exact vector ports of
/// libm's expf and tanhf (VectorMath expfLibm / tanhfLibm); a tail uses libm.
func gruGates(_ rows: Int, _ u: Int, _ xs0: UnsafePointer<Float>, _ hq0: UnsafePointer<Float>,
              _ previous0: UnsafePointer<Float>, _ output0: UnsafeMutablePointer<Float>,
              _ state0: UnsafeMutablePointer<Float>?, _ gates0: UnsafeMutablePointer<Float>?,
              _ candidate0: UnsafeMutablePointer<Float>?) {
    typealias V = VectorMath.GV
    let n = V.scalarCount
    VectorMath.expTable.withUnsafeBufferPointer { tableBuffer in
    let table = tableBuffer.baseAddress!
    let u8 = u / n * n, u3 = 3 * u
    for row in 0..<rows {
        let xs = xs0 + row * u3, hq = hq0 + row * u3, previous = previous0 + row * u, output = output0 + row * u
        let state = state0.map { $0 + row * u }, gates = gates0.map { $0 + row * u3 }
        let candidate = candidate0.map { $0 + row * u }
        let xr = UnsafeRawPointer(xs), hr = UnsafeRawPointer(hq), pr = UnsafeRawPointer(previous)
        let o = UnsafeMutableRawPointer(output)
        for j in stride(from: 0, to: u8, by: n) {
            let jz = 4 * j, jr = 4 * (u + j), jh = 4 * (2 * u + j)
            let zIn = xr.loadUnaligned(fromByteOffset: jz, as: V.self) + hr.loadUnaligned(fromByteOffset: jz, as: V.self)
            let rIn = xr.loadUnaligned(fromByteOffset: jr, as: V.self) + hr.loadUnaligned(fromByteOffset: jr, as: V.self)
            let z = 1 / (1 + VectorMath.expfLibm(-zIn, table: table))
            let rg = 1 / (1 + VectorMath.expfLibm(-rIn, table: table))
            let rh = hr.loadUnaligned(fromByteOffset: jh, as: V.self)
            let c = VectorMath.tanhfLibm(xr.loadUnaligned(fromByteOffset: jh, as: V.self) + rg * rh)
            let new = z * pr.loadUnaligned(fromByteOffset: 4 * j, as: V.self) + (1 - z) * c
            if let state { UnsafeMutableRawPointer(state).storeBytes(of: new, toByteOffset: 4 * j, as: V.self) }
            o.storeBytes(of: new, toByteOffset: 4 * j, as: V.self)
            if let gates {
                let g = UnsafeMutableRawPointer(gates)
                g.storeBytes(of: z, toByteOffset: jz, as: V.self)
                g.storeBytes(of: rg, toByteOffset: jr, as: V.self)
                g.storeBytes(of: c, toByteOffset: jh, as: V.self)
            }
            if let candidate { UnsafeMutableRawPointer(candidate).storeBytes(of: rh, toByteOffset: 4 * j, as: V.self) }
        }
        for j in u8..<u {
            let z = 1 / (1 + expf(-(xs[j] + hq[j])))
            let rg = 1 / (1 + expf(-(xs[u + j] + hq[u + j])))
            let rh = hq[2 * u + j]
            let c = tanhf(xs[2 * u + j] + rg * rh)
            let new = z * previous[j] + (1 - z) * c
            state?[j] = new
            output[j] = new
            if let gates { gates[j] = z; gates[u + j] = rg; gates[2 * u + j] = c }
            candidate?[j] = rh
        }
    }
    }
}

// MARK: exp_sigmoid

func expSigmoid(_ x: UnsafePointer<Float>, _ shift: Float, _ out: UnsafeMutablePointer<Float>, _ count: Int) {
    typealias V = SIMD8<Float>
    let xr = UnsafeRawPointer(x), o = UnsafeMutableRawPointer(out)
    let s = V(repeating: shift)
    var i = 0
    while i + 8 <= count {
        o.storeBytes(of: VectorMath.vexpSigmoid(xr.loadUnaligned(fromByteOffset: 4 * i, as: V.self) + s),
                     toByteOffset: 4 * i, as: V.self)
        i += 8
    }
    if i < count {
        var v = V()
        for l in 0..<(count - i) { v[l] = x[i + l] + shift }
        let r = VectorMath.vexpSigmoid(v)
        for l in 0..<(count - i) { out[i + l] = r[l] }
    }
}

// MARK: Filtered noise

/// Tiles of four vectors of outputs (64 lanes on AVX-512, 32 below) accumulated in registers
/// over every i that reaches them: a load of h and a multiply and an add per term, where the
/// plain loop also loaded and stored each output per term. Lanes outside the filter read the
/// zero padding (a zero product leaves the sum's value as it was). Four sums per i: independent
/// chains for the adders.
func convolveAdd(_ x: UnsafePointer<Float>, _ count: Int, _ h: UnsafePointer<Float>, _ taps: Int,
                 _ out: UnsafeMutablePointer<Float>) {
    typealias V = VectorMath.GV
    let w = V.scalarCount, tile = 4 * w
    let total = count + taps - 1
    let hr = UnsafeRawPointer(h), o = UnsafeMutableRawPointer(out)
    var n0 = 0
    while n0 < total {
        let b0 = 4 * n0
        var a0 = o.loadUnaligned(fromByteOffset: b0, as: V.self)
        var a1 = o.loadUnaligned(fromByteOffset: b0 + 4 * w, as: V.self)
        var a2 = o.loadUnaligned(fromByteOffset: b0 + 8 * w, as: V.self)
        var a3 = o.loadUnaligned(fromByteOffset: b0 + 12 * w, as: V.self)
        var i = max(0, n0 - taps + 1)
        let last = min(count - 1, n0 + tile - 1)
        while i <= last {
            let xi = V(repeating: x[i])
            let b = 4 * (n0 - i)     // h[n0 − i] for lane 0: from −(tile − 1) to taps − 1
            a0 = a0 + xi * hr.loadUnaligned(fromByteOffset: b, as: V.self)
            a1 = a1 + xi * hr.loadUnaligned(fromByteOffset: b + 4 * w, as: V.self)
            a2 = a2 + xi * hr.loadUnaligned(fromByteOffset: b + 8 * w, as: V.self)
            a3 = a3 + xi * hr.loadUnaligned(fromByteOffset: b + 12 * w, as: V.self)
            i += 1
        }
        o.storeBytes(of: a0, toByteOffset: b0, as: V.self)
        o.storeBytes(of: a1, toByteOffset: b0 + 4 * w, as: V.self)
        o.storeBytes(of: a2, toByteOffset: b0 + 8 * w, as: V.self)
        o.storeBytes(of: a3, toByteOffset: b0 + 12 * w, as: V.self)
        n0 += tile
    }
}

// MARK: Additive oscillators

let twoPi32: Float = Float(2 * Double.pi)   // ddsp's 2·np.pi as a float32 constant

func additiveFrame(_ f: AdditiveFrame) {
    let H = f.harmonics, S = f.substrings, N = f.frameSize, voices = f.voices
    let nyquist = SIMD8<Float>(repeating: Float(f.sampleRate) / 2)
    let sr = SIMD8<Float>(repeating: Float(f.sampleRate))
    let twoPi = SIMD8<Float>(repeating: twoPi32)
    let lp = UnsafeBufferPointer(start: f.lerp, count: N)
    let w = UnsafeBufferPointer(start: f.window, count: 2 * N)
    let acc = UnsafeMutableBufferPointer(start: f.partialSums, count: N)
    let pending = f.pending, out = f.out
    var silentCount = 0
    let cpR = UnsafeMutableRawPointer(f.chunkPhase), osR = UnsafeMutableRawPointer(f.offsetSum)
    let offR = UnsafeMutableRawPointer(f.offset)
    let fcR = UnsafeRawPointer(f.frequencyCurrent), fnR = UnsafeRawPointer(f.frequencyNext)
    let acR = UnsafeRawPointer(f.amplitudeCurrent), anR = UnsafeRawPointer(f.amplitudeNext)
    let folds = f.folds, chunk = f.chunk
    for v in 0..<voices {
        let audible = !(f.silentCurrent[v] && f.silentNext[v])
        for s in 0..<S {
            if audible { for r in 0..<N { acc[r] = .zero } }
            for kb in stride(from: 0, to: H, by: 8) {
                let o = ((v * S + s) * H + kb) * 4, ao = (v * H + kb) * 4
                let f0 = fcR.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self)
                let f1 = fnR.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self)
                // Radians per sample at both ends of the frame; interpolating these is
                // interpolating the frequency (to float rounding), without a division per sample.
                let w0 = (f0 * twoPi) / sr
                let dw = (f1 * twoPi) / sr - w0
                var phase = cpR.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self)
                var ofs = offR.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self)
                let a0 = acR.loadUnaligned(fromByteOffset: ao, as: SIMD8<Float>.self)
                let a1 = anR.loadUnaligned(fromByteOffset: ao, as: SIMD8<Float>.self)
                // Silent partials (no amplitude at either end, or above Nyquist for the whole
                // frame) only advance their phase.
                let df = f1 - f0
                let fEnd = f0 + df * lp[N - 1]
                let aboveNyquist = (f0 .>= nyquist) .& (fEnd .>= nyquist)
                let silent = (a0 .== 0) .& (a1 .== 0)
                let p = Partials(w0: w0, dw: dw, a0: a0, a1: a1, f0: f0, df: df, nyquist: nyquist,
                                 twoPi: twoPi, sr: sr, changing: any(df .!= 0))
                if audible && !all(aboveNyquist .| silent) {
                    // The frequency is monotonic within the frame: a lane below Nyquist at both
                    // ends is below throughout, and most blocks need no mask.
                    if any((f0 .>= nyquist) .| (fEnd .>= nyquist)) {
                        p.oscillate(masked: true, 0, chunk, &phase, ofs, lp, w, acc, N)
                        if folds {
                            foldChunk(&phase, &ofs, osR, o)
                            p.oscillate(masked: true, chunk, N, &phase, ofs, lp, w, acc, N)
                        }
                    } else {
                        p.oscillate(masked: false, 0, chunk, &phase, ofs, lp, w, acc, N)
                        if folds {
                            foldChunk(&phase, &ofs, osR, o)
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
            if audible {
                if let side = f.side, let pan = f.pan, let panNext = f.panNext {
                    // The voice's share of the side signal, its pan glided across the frame.
                    let p0 = pan[v], dp = (panNext[v] - pan[v]) / Float(N)
                    for r in 0..<N {
                        let x = acc[r].sum()
                        out[r] += x
                        side[r] += (p0 + dp * Float(r)) * x
                    }
                } else {
                    for r in 0..<N { out[r] += acc[r].sum() }
                }
            }
        }
    }
    // Silent blocks only advance their phases: a running sum whose add latency, not the
    // arithmetic, bounds one block (most of the 384 blocks are silent), so they advance four at
    // a time as independent chains.
    let phases = Phases(cp: cpR, off: offR, sums: osR, fc: fcR, fn: fnR, twoPi: twoPi, sr: sr,
                        lp: lp, chunk: chunk, folds: folds, N: N)
    var i = 0
    while i + 4 <= silentCount {
        phases.advance4(pending[i], pending[i + 1], pending[i + 2], pending[i + 3])
        i += 4
    }
    while i < silentCount { phases.advance1(pending[i]); i += 1 }
}

/// ddsp angular_cumsum at a chunk end: the next chunk starts from 0, offset by the float32
/// running sum of previous chunk ends (each mod 2π), mod 2π.
@inline(__always)
func foldChunk(_ phase: inout SIMD8<Float>, _ ofs: inout SIMD8<Float>, _ sums: UnsafeMutableRawPointer, _ o: Int) {
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
/// representable); the truncated quotient is at most one too large, when x/2π rounds up to an
/// integer.
@inline(__always)
func fmod2Pi(_ x: Float) -> Float {
    let c = Double(twoPi32), xd = Double(x)
    var r = xd - (xd / c).rounded(.towardZero) * c
    if xd >= 0 { if r < 0 { r += c } } else if r > 0 { r -= c }
    return Float(r)
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
            foldChunk(&p, &ofs, sums, o)
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
            foldChunk(&p, &ofs, sums, o)
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
            foldChunk(&p0, &q0, sums, o0); foldChunk(&p1, &q1, sums, o1)
            foldChunk(&p2, &q2, sums, o2); foldChunk(&p3, &q3, sums, o3)
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

    /// Advances `phase` (ddsp's float32 running sum of radians per sample, interpolated linearly
    /// over the frame) and adds a·cos(phase + ofs) to acc[r]. `masked` zeroes lanes at or above
    /// Nyquist sample by sample (only needed when a lane crosses it in the frame).
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
