/// Vectorised float32 elementary functions on eight lanes, branch-free, for the per-frame
/// activations (GRU gates, exp_sigmoid) and the oscillator bank. libm's expf/tanhf/powf are
/// scalar calls and cost more than the matrix products around them.
///
/// Maximum errors over their stated ranges (checked by VectorMathTests against Double):
///   vexp      relative 1e-7 (|x| ≤ 87; clamps beyond: ~1.6e38 above, ~1.2e-38 below)
///   vlog      relative 1e-7 of the result, or absolute 1e-7 near x = 1 (positive normal x)
///   vsigmoid  relative 1.5e-7
///   vtanh     relative 1.5e-7
///   vexpSigmoid (ddsp exp_sigmoid: 2·σ(x)^ln 10 + 1e-7) relative 1.5e-6 (the float32 rounding of
///             the exponent ln 10·ln σ, up to ~ −12 where it matters; libm's powf path: 4.3e-7)
///   expfLibm, tanhfLibm: bit for bit glibc 2.36's expf and tanhf (for the recurrent gates)
///   vcos      absolute 1e-6 on |x| ≤ 7 (polynomial 5.9e-7), plus the float32 rounding of x/2π
///             beyond (3.5e-4 at 4000 rad: the phases themselves carry float32 rounding of that size)
public enum VectorMath {
    public typealias V = SIMD8<Float>

    /// a·b + c: fused where the target has FMA, else multiply and add (without hardware FMA a
    /// fused op is a libm call per lane). Swift cannot test target features, so the kernel
    /// variants compiled with `-target-cpu haswell` or `skylake-avx512` say so with `-DDDSP_FMA`
    /// (Package.swift). Everything here is `@inlinable`: each variant module inlines its own copy,
    /// compiled with its own flags; DDSPPiano's `VectorMath` is the baseline (SSE2) module's.
    @inlinable @inline(__always)
    public static func mulAdd(_ a: V, _ b: V, _ c: V) -> V {
        #if DDSP_FMA
        return c.addingProduct(a, b)
        #else
        return a * b + c
        #endif
    }

    @inlinable @inline(__always)
    static func bits(_ x: V) -> SIMD8<UInt32> { unsafeBitCast(x, to: SIMD8<UInt32>.self) }
    @inlinable @inline(__always)
    static func float(_ x: SIMD8<UInt32>) -> V { unsafeBitCast(x, to: V.self) }

    /// Round to nearest integer (ties to even) for |x| < 2²²: one vroundps with AVX; SSE2 has no
    /// round instruction (`rounded` becomes a libm call per lane), so there adding and removing
    /// 1.5·2²³ pushes the fraction out of the mantissa.
    @inlinable @inline(__always)
    static func roundMagic(_ x: V) -> V {
        #if DDSP_FMA
        return x.rounded(.toNearestOrEven)
        #else
        let magic = V(repeating: 12_582_912)
        return (x + magic) - magic
        #endif
    }

    /// eˣ: Cody–Waite reduction by ln 2, Cephes' degree-6 polynomial, 2ⁿ from the exponent bits.
    @inlinable @inline(__always)
    public static func vexp(_ x: V) -> V {
        // (Compare-and-select: the generic clamped/pointwiseMin are not inlined.)
        var xc = x.replacing(with: -87.3, where: x .< -87.3)
        xc.replace(with: 88.3, where: xc .> 88.3)
        // n = round(x / ln 2), kept also as its bit pattern: the magic sum holds n in its low bits.
        let magic = V(repeating: 12_582_912)
        let t = xc * 1.44269504088896341 + magic
        let n = t - magic
        var r = mulAdd(n, V(repeating: -0.693359375), xc)
        r = mulAdd(n, V(repeating: 2.12194440e-4), r)
        var p = V(repeating: 1.9875691500e-4)
        p = mulAdd(p, r, V(repeating: 1.3981999507e-3))
        p = mulAdd(p, r, V(repeating: 8.3334519073e-3))
        p = mulAdd(p, r, V(repeating: 4.1665795894e-2))
        p = mulAdd(p, r, V(repeating: 1.6666665459e-1))
        p = mulAdd(p, r, V(repeating: 5.0000001201e-1))
        let r2 = r * r
        let y = mulAdd(p, r2, r) + 1
        // 2ⁿ: (n + 127) << 23; n's bits are t's bits minus the magic's (0x4B40_0000).
        let nb = bits(t) &- 0x4B40_0000
        let scale = float((nb &+ 127) &<< 23)
        return y * scale
    }

    /// ln x for positive normal x (Cephes logf: mantissa in [√½, √2), degree-8 polynomial).
    @inlinable @inline(__always)
    public static func vlog(_ x: V) -> V {
        let b = bits(x)
        // Exponent as a float via the magic trick (e + 1.5·2²³'s bits − magic).
        let e0 = (b &>> 23) &- 126
        let m0 = float((b & 0x807F_FFFF) | 0x3F00_0000)   // mantissa in [0.5, 1)
        let small = m0 .< 0.707106781186547524
        var e = float(e0 &+ 0x4B40_0000) - 12_582_912
        e.replace(with: e - 1, where: small)
        let m = m0.replacing(with: m0 + m0, where: small) - 1
        let z = m * m
        var y = V(repeating: 7.0376836292e-2)
        y = mulAdd(y, m, V(repeating: -1.1514610310e-1))
        y = mulAdd(y, m, V(repeating: 1.1676998740e-1))
        y = mulAdd(y, m, V(repeating: -1.2420140846e-1))
        y = mulAdd(y, m, V(repeating: 1.4249322787e-1))
        y = mulAdd(y, m, V(repeating: -1.6668057665e-1))
        y = mulAdd(y, m, V(repeating: 2.0000714765e-1))
        y = mulAdd(y, m, V(repeating: -2.4999993993e-1))
        y = mulAdd(y, m, V(repeating: 3.3333331174e-1))
        y = y * m * z
        y = mulAdd(e, V(repeating: -2.12194440e-4), y)
        y = mulAdd(z, V(repeating: -0.5), y)
        return mulAdd(e, V(repeating: 0.693359375), m + y)
    }

    /// 1 / (1 + e⁻ˣ).
    @inlinable @inline(__always)
    public static func vsigmoid(_ x: V) -> V {
        1 / (1 + vexp(-x))
    }

    /// tanh: Cephes' odd polynomial below |x| = 0.625 (no cancellation near 0), else 1 − 2/(e²ˣ + 1).
    @inlinable @inline(__always)
    public static func vtanh(_ x: V) -> V {
        let a = x.replacing(with: -x, where: x .< 0)
        let z = x * x
        var p = V(repeating: -5.70498872745e-3)
        p = mulAdd(p, z, V(repeating: 2.06390887954e-2))
        p = mulAdd(p, z, V(repeating: -5.37397155531e-2))
        p = mulAdd(p, z, V(repeating: 1.33314422036e-1))
        p = mulAdd(p, z, V(repeating: -3.33332819422e-1))
        let small = mulAdd(p * z, x, x)
        var large = 1 - 2 / (vexp(a + a) + 1)
        large.replace(with: -large, where: x .< 0)
        return small.replacing(with: large, where: a .>= 0.625)
    }

    /// ddsp's exp_sigmoid(x) = 2·σ(x)^ln 10 + 1e-7, as 2·exp(−ln 10 · softplus(−x)) + 1e-7
    /// (softplus(−x) = max(−x, 0) + ln(1 + e^−|x|): no underflow of σ for very negative x).
    @inlinable @inline(__always)
    public static func vexpSigmoid(_ x: V) -> V {
        let a = x.replacing(with: -x, where: x .< 0)
        let softplus = (-x).replacing(with: 0, where: x .> 0) + vlog(1 + vexp(-a))
        return 2 * vexp(softplus * -2.302585092994045684) + 1e-7
    }

    // sin(2πu) ≈ u·(s1 + s3u² + s5u⁴ + s7u⁶) on |u| ≤ ¼: minimax, max abs error 5.9e-7.
    @inlinable static var s1: Float { 6.283164024353027 }
    @inlinable static var s3: Float { -41.33714294433594 }
    @inlinable static var s5: Float { 81.34077453613281 }
    @inlinable static var s7: Float { -70.99344635009766 }

    /// cos x for float32 x up to a few thousand radians: y = x/2π reduced to [−½, ½], then
    /// cos 2πy = sin 2π(¼ − |y|) with a degree-7 odd polynomial.
    @inlinable @inline(__always)
    public static func vcos(_ x: V) -> V {
        var y = x * 0.159154943091895335768883763372514362
        y -= roundMagic(y)
        let u = 0.25 - float(bits(y) & 0x7FFF_FFFF)      // ¼ − |y| ∈ [−¼, ¼]
        let u2 = u * u
        var p = mulAdd(V(repeating: s7), u2, V(repeating: s5))
        p = mulAdd(p, u2, V(repeating: s3))
        p = mulAdd(p, u2, V(repeating: s1))
        return p * u
    }

    /// Applies `f` to `count` floats in place, eight at a time (the tail is padded).
    @inlinable @inline(__always)
    public static func apply(_ p: UnsafeMutablePointer<Float>, count: Int, _ f: (V) -> V) {
        let raw = UnsafeMutableRawPointer(p)
        var i = 0
        while i + 8 <= count {
            let v = raw.loadUnaligned(fromByteOffset: 4 * i, as: V.self)
            raw.storeBytes(of: f(v), toByteOffset: 4 * i, as: V.self)
            i += 8
        }
        if i < count {
            var v = V()
            for l in 0..<(count - i) { v[l] = p[i + l] }
            let r = f(v)
            for l in 0..<(count - i) { p[i + l] = r[l] }
        }
    }
}

/// Bit-exact vector ports of glibc 2.36's scalar `expf` and `tanhf` (x86-64), for the GRU gates.
/// The networks' float32 trajectories are chaotic on some inputs (the sustain-pedal parity case
/// drifts to 1e-2 from upstream either way): any change of rounding in the gates moves that
/// case's error across its tolerance. These reproduce libm's results exactly (checked over
/// sweeps in VectorMathTests) at a fraction of the cost of a scalar call per lane.
extension VectorMath {
    // The gates' lane count (the noise convolution's too): 16 in the AVX-512 variant, else 8. The ports are long dependency
    // chains (tanhf ~45 dependent operations and two divisions): the core runs out of
    // independent work before it runs out of units, so 16 lanes per chain do a value in half the
    // time even where a 512-bit operation runs as two 256-bit halves (Zen 4).
    #if DDSP_KERNELS_AVX512
    public typealias GV = SIMD16<Float>
    public typealias GU = SIMD16<UInt32>
    public typealias VD = SIMD16<Double>
    public typealias VU64 = SIMD16<UInt64>
    #else
    public typealias GV = SIMD8<Float>
    public typealias GU = SIMD8<UInt32>
    public typealias VD = SIMD8<Double>
    public typealias VU64 = SIMD8<UInt64>
    #endif
    @inlinable @inline(__always)
    static func gateBits(_ x: GV) -> GU { unsafeBitCast(x, to: GU.self) }
    @inlinable @inline(__always)
    static func gateFloat(_ x: GU) -> GV { unsafeBitCast(x, to: GV.self) }
    /// roundMagic at the gates' width.
    @inlinable @inline(__always)
    static func gateRound(_ x: GV) -> GV {
        #if DDSP_FMA
        return x.rounded(.toNearestOrEven)
        #else
        let magic = GV(repeating: 12_582_912)
        return (x + magic) - magic
        #endif
    }

    /// glibc's exp2f_data: 2^(i/32) as doubles, minus i << 47 (the exponent is added back).
    public static let expTable: [UInt64] = [
        0x3ff0000000000000, 0x3fefd9b0d3158574, 0x3fefb5586cf9890f, 0x3fef9301d0125b51,
        0x3fef72b83c7d517b, 0x3fef54873168b9aa, 0x3fef387a6e756238, 0x3fef1e9df51fdee1,
        0x3fef06fe0a31b715, 0x3feef1a7373aa9cb, 0x3feedea64c123422, 0x3feece086061892d,
        0x3feebfdad5362a27, 0x3feeb42b569d4f82, 0x3feeab07dd485429, 0x3feea47eb03a5585,
        0x3feea09e667f3bcd, 0x3fee9f75e8ec5f74, 0x3feea11473eb0187, 0x3feea589994cce13,
        0x3feeace5422aa0db, 0x3feeb737b0cdc5e5, 0x3feec49182a3f090, 0x3feed503b23e255d,
        0x3feee89f995ad3ad, 0x3feeff76f2fb5e47, 0x3fef199bdd85529c, 0x3fef3720dcef9069,
        0x3fef5818dcfba487, 0x3fef7c97337b9b5f, 0x3fefa4afa2a490da, 0x3fefd0765b6e4540,
    ]

    @inlinable @inline(__always)
    static func dmulAdd(_ a: VD, _ b: VD, _ c: VD) -> VD {
        // glibc's x86-64 expf is its FMA variant on CPUs with FMA; without FMA the double
        // rounding differs in the last bits of a double, which changes the float result only
        // for arguments within ~2⁻²⁹ of a rounding boundary.
        #if DDSP_FMA
        return c.addingProduct(a, b)
        #else
        return a * b + c
        #endif
    }

    /// glibc expf (sysdeps/ieee754/flt-32/e_expf.c): x·32/ln 2 = k + r, 2^(k/32) from the table,
    /// a cubic in r, all in double, rounded once to float.
    @inlinable @inline(__always)
    public static func expfLibm(_ x: GV, table: UnsafePointer<UInt64>) -> GV {
        var xd = VD()
        for l in 0..<GV.scalarCount { xd[l] = Double(x[l]) }
        let invLn2N = VD(repeating: 0x1.71547652b82fep+0 * 32)
        let shift = VD(repeating: 0x1.8p+52)
        let z = invLn2N * xd
        let kdShifted = z + shift
        let ki = unsafeBitCast(kdShifted, to: VU64.self)
        let kd = kdShifted - shift
        let r = z - kd
        var t = VU64()
        for l in 0..<GV.scalarCount { t[l] = table[Int(ki[l] & 31)] }
        t = t &+ (ki &<< 47)
        let s = unsafeBitCast(t, to: VD.self)
        let zz = dmulAdd(VD(repeating: 0x1.c6af84b912394p-5 / 32 / 32 / 32), r, VD(repeating: 0x1.ebfce50fac4f3p-3 / 32 / 32))
        let r2 = r * r
        var y = dmulAdd(VD(repeating: 0x1.62e42ff0c52d6p-1 / 32), r, VD(repeating: 1))
        y = dmulAdd(zz, r2, y)
        y = y * s
        var out = GV()
        for l in 0..<GV.scalarCount { out[l] = Float(y[l]) }
        // Special cases: overflow to +inf above 88.72, 0 below −103.97 (as libm), NaN through.
        out.replace(with: .infinity, where: x .> 0x1.62e42ep6)
        out.replace(with: 0, where: x .< -0x1.9fe368p6)
        out.replace(with: x, where: x .!= x)
        return out
    }

    /// glibc tanhf (fdlibm s_tanhf.c on fdlibm s_expm1f.c), in float, branch-free: every path
    /// that |x| < 22 can take through expm1f is computed and the right one selected per lane.
    @inlinable @inline(__always)
    public static func tanhfLibm(_ x: GV) -> GV {
        // libm branches on bit patterns of |x|; for non-negative floats those order like the
        // values, and float compares stay vector instructions (SSE2 has no unsigned integer
        // compare: Swift lowers those lane by lane).
        func f(_ b: UInt32) -> Float { Float(bitPattern: b) }
        let ax = gateFloat(gateBits(x) & 0x7FFF_FFFF)
        let large = ax .>= 1                            // |x| ≥ 1: t = expm1f(2|x|)
        // expm1f's argument: 2|x| or −2|x| (exact).
        let aa = ax + ax
        let a = aa.replacing(with: -aa, where: .!large)
        let neg = .!large                               // the argument's sign
        // Argument reduction (|a| > ½ ln 2): k = ±1 directly below 1.5 ln 2, else rounded.
        let ln2Hi = GV(repeating: 6.9313812256e-01), ln2Lo = GV(repeating: 9.0580006145e-06)
        let reduce = aa .> f(0x3EB1_7218)
        let near = aa .< f(0x3F85_1592)
        // k = (int)(invln2·a ± 0.5), truncated toward zero; |k| ≤ 64 here.
        let kfRaw = a * 1.4426950216 + GV(repeating: 0.5).replacing(with: -0.5, where: neg)
        var kt = gateRound(kfRaw)                          // to nearest, then fix to truncation
        kt.replace(with: kt - 1, where: (kt .> kfRaw) .& (kfRaw .> 0))
        kt.replace(with: kt + 1, where: (kt .< kfRaw) .& (kfRaw .< 0))
        var k = kt
        k.replace(with: GV(repeating: 1).replacing(with: -1, where: neg), where: near)
        k.replace(with: 0, where: .!reduce)
        let hiFar = a - kt * ln2Hi, loFar = kt * ln2Lo
        let hiNear = (a - ln2Hi).replacing(with: a + ln2Hi, where: neg)
        let loNear = ln2Lo.replacing(with: -ln2Lo, where: neg)
        let hi = hiFar.replacing(with: hiNear, where: near)
        let lo = loFar.replacing(with: loNear, where: near)
        let xr0 = hi - lo
        let c0 = (hi - xr0) - lo
        let xr = xr0.replacing(with: a, where: .!reduce)
        let c = c0.replacing(with: 0, where: .!reduce)
        // Primary range.
        let hfx = 0.5 * xr
        let hxs = xr * hfx
        var q = hxs * -2.0109921195e-07 + 4.0082177293e-06
        q = hxs * q + -7.9365076090e-05
        q = hxs * q + 1.5873016091e-03
        q = hxs * q + -3.3333335072e-02
        let r1 = 1 + hxs * q
        let tt = 3 - r1 * hfx
        var e = hxs * ((r1 - tt) / (6 - xr * tt))
        let resultK0 = xr - (xr * e - hxs)
        e = xr * (e - c) - c
        e -= hxs
        let resultKm1 = 0.5 * (xr - e) - 0.5
        // k ≥ 2 (positive arguments ≥ 2, so k ≥ 3) or k ≤ −2: scale by 2^k through the exponent.
        let kb = gateBits(k + 12_582_912) &- 0x4B40_0000          // k as a two's complement integer
        let kShift = kb &<< 23
        let twoMinusK = gateFloat((127 &- kb) &<< 23)             // 2^−k
        let yA = 1 - (e - xr)                                  // k ≤ −2 or k > 56
        let resultA = gateFloat(gateBits(yA) &+ kShift) - 1
        let yB = (1 - twoMinusK) - (e - xr)                    // 2 ≤ k < 23: t = 1 − 2^−k (exact)
        let resultB = gateFloat(gateBits(yB) &+ kShift)
        let yC = (xr - (e + twoMinusK)) + 1                    // 23 ≤ k ≤ 56
        let resultC = gateFloat(gateBits(yC) &+ kShift)
        var em1 = resultC
        em1.replace(with: resultB, where: k .< 23)
        em1.replace(with: resultA, where: (k .<= -2) .| (k .> 56))
        em1.replace(with: resultKm1, where: k .== -1)
        em1.replace(with: resultK0, where: k .== 0)
        em1.replace(with: a, where: aa .< f(0x3300_0000))      // |a| < 2⁻²⁵: expm1f(a) = a
        // tanh from expm1f.
        // 1 − 2/(t+2) where |x| ≥ 1, −t/(t+2) below: one division, its numerator chosen per lane.
        let quotient = (-em1).replacing(with: 2, where: large) / (em1 + 2)
        var zv = quotient.replacing(with: 1 - quotient, where: large)
        zv.replace(with: 1, where: ax .>= 22)
        var result = zv.replacing(with: -zv, where: x .< 0)
        result.replace(with: x * (1 + x), where: ax .< f(0x2400_0000))   // |x| < 2⁻⁵⁵
        result.replace(with: x, where: ax .== 0)
        result.replace(with: x + x, where: x .!= x)             // NaN
        return result
    }
}
