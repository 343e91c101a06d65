import Foundation

/// v2's room per piano: upstream's MultiInstrumentFeedbackDelayReverb → FeedbackDelayNetwork
/// (8 lines, fixed integer delays, 4 fractional allpasses per line, one-pole loss filters, mixing
/// matrix −I + ½·1), evaluated in the frequency domain on 24001 bins and brought back by a
/// 48000-point inverse real FFT, plus the 200-tap early FIR:
///   H(w) = outᵀ Z (I − F M AP Z)⁻¹ in,  Z = diag(e^{−jw d}), F = diag(g/(1 − p e^{−jw} + 1e-8)),
///   AP = diag(Πⱼ (1 + G e^{jwD}) / (G + e^{jwD})),  IR = irfft(H) + early.
/// Computed once per piano at load. Upstream computes in complex64; the phase arguments w·D are
/// rounded to float32 here as TF rounds them (w = float32(2π)·k/48000 in float32): without that
/// the IR differs from upstream's by ~1e-5 of its range, with it by ~1e-8. Everything else is
/// Double. The IR returned still has its sample 0; the reverb effect zeroes it (ddsp's Reverb).
public enum FDNReverb {
    public static let delays: [Double] = [233, 311, 421, 461, 587, 613, 789, 891]
    public static let lines = 8
    public static let allpassesPerLine = 4
    public static let sampleRate = Double(V2Weights.sampleRate)

    /// One piano's reverb parameters, as the weight file holds them (before relu and sigmoid).
    public struct Parameters: Sendable, Equatable {
        public var inputGain: [Float]      // [8]
        public var outputGain: [Float]     // [8]
        public var gainAllpass: [Float]    // [32]: line i, allpass j at 8j + i (reshape_embedding)
        public var delaysAllpass: [Float]  // [32], samples, same order
        public var timeRev: Float          // T60 at DC in s, through relu
        public var alphaTone: Float        // HF/DC decay ratio, through sigmoid
        public var earlyIR: [Float]        // [200]

        public init(inputGain: [Float], outputGain: [Float], gainAllpass: [Float], delaysAllpass: [Float],
                    timeRev: Float, alphaTone: Float, earlyIR: [Float]) {
            self.inputGain = inputGain; self.outputGain = outputGain; self.gainAllpass = gainAllpass
            self.delaysAllpass = delaysAllpass; self.timeRev = timeRev; self.alphaTone = alphaTone; self.earlyIR = earlyIR
        }

        public init(weights w: V2Weights, instrument p: Int) {
            func row(_ name: String) -> [Float] {
                let t = w[name]
                let n = t.count / w.instruments.count
                return Array(t.values[(p * n)..<((p + 1) * n)])
            }
            inputGain = row("reverb.input_gain"); outputGain = row("reverb.output_gain")
            gainAllpass = row("reverb.gain_allpass"); delaysAllpass = row("reverb.delays_allpass")
            timeRev = row("reverb.time_rev_0_sec")[0]; alphaTone = row("reverb.alpha_tone")[0]
            earlyIR = row("reverb.early_ir")
        }
    }

    /// The per-line quantities every bin uses: allpass gains and delays by (line, allpass), the
    /// loss filters' gain and pole, and what they were made from.
    struct Lines {
        var G: [Double]        // [8·4]
        var D: [Float]         // [8·4]
        var seconds: [Double]  // [8]: the line's total delay in s
        var t60: Double, alpha: Double
        var k: [Double], kpi: [Double], g: [Double], pole: [Double]

        init(_ q: Parameters) {
            let L = lines, A = allpassesPerLine
            G = [Double](repeating: 0, count: L * A); D = [Float](repeating: 0, count: L * A)
            for i in 0..<L {
                for j in 0..<A {
                    G[i * A + j] = Double(q.gainAllpass[L * j + i])
                    D[i * A + j] = q.delaysAllpass[L * j + i]
                }
            }
            t60 = max(Double(q.timeRev), 0)                 // relu
            alpha = 1 / (1 + exp(-Double(q.alphaTone)))     // sigmoid
            seconds = [Double](repeating: 0, count: L); k = seconds; kpi = seconds; g = seconds; pole = seconds
            for i in 0..<L {
                var total = delays[i]
                for j in 0..<A { total += Double(D[i * A + j]) }
                seconds[i] = total / sampleRate
                // One-pole loss filter per line: DC gain k (−60 dB after T60), k_π at Nyquist.
                k[i] = pow(10, -3 * seconds[i] / t60)
                kpi[i] = pow(10, -3 * seconds[i] / (alpha * t60))
                // T60 = 0 (or so small that both underflow): upstream divides 0 by 0 (a NaN IR);
                // this is the limit, lines that lose everything at once (F = 0).
                g[i] = k[i] + kpi[i] > 0 ? 2 * k[i] * kpi[i] / (k[i] + kpi[i]) : 0
                pole[i] = k[i] + kpi[i] > 0 ? (k[i] - kpi[i]) / (k[i] + kpi[i]) : 0
            }
        }
    }

    /// One bin's network: F, AP (with its factors), Z, and I − F M AP Z.
    struct Bin {
        var w32: Float
        var zInv: Complex                 // e^{−jw}
        var f: [Complex], ap: [Complex], z: [Complex]
        var factors: [Complex]            // [8·4]: (1 + G e)/(G + e)
        var e: [Complex]                  // [8·4]: e^{jwD}
        var m: [Complex]                  // [8·8]: I − F M AP Z

        init(_ kb: Int, _ c: Lines) {
            let L = lines, A = allpassesPerLine, n = V2Weights.reverbLength
            w32 = Float(2 * Double.pi) * Float(kb) / Float(n)
            let w = Double(w32)
            zInv = Complex(cos(w), -sin(w))
            f = [Complex](repeating: Complex(0, 0), count: L); ap = f; z = f
            factors = [Complex](repeating: Complex(0, 0), count: L * A); e = factors
            m = [Complex](repeating: Complex(0, 0), count: L * L)
            for i in 0..<L {
                f[i] = Complex(c.g[i], 0) / (Complex(1 + 1e-8, 0) - Complex(c.pole[i], 0) * zInv)
                var prod = Complex(1, 0)
                for j in 0..<A {
                    let phase = Double(w32 * c.D[i * A + j])            // float32 product, as TF
                    let ej = Complex(cos(phase), sin(phase))
                    let gj = c.G[i * A + j]
                    let factor = (Complex(1, 0) + Complex(gj, 0) * ej) / (Complex(gj, 0) + ej)
                    e[i * A + j] = ej; factors[i * A + j] = factor
                    prod = prod * factor
                }
                ap[i] = prod
                let phaseD = Double(w32 * Float(delays[i]))
                z[i] = Complex(cos(phaseD), -sin(phaseD))
            }
            // M = −I + ½: (F M AP Z)[i][j] = F_i · M_ij · AP_j · Z_j.
            for i in 0..<L {
                for j in 0..<L {
                    let a = f[i] * Complex(mixing(i, j), 0) * ap[j] * z[j]
                    m[i * L + j] = Complex(i == j ? 1 : 0, 0) - a
                }
            }
        }
    }

    @inline(__always) static func mixing(_ i: Int, _ j: Int) -> Double { (i == j ? -1.0 : 0.0) + 0.5 }

    /// The `V2Weights.reverbLength` (48000) samples of piano `instrument`'s `reverb_ir`.
    public static func impulseResponse(weights w: V2Weights, instrument p: Int) -> [Float] {
        impulseResponse(Parameters(weights: w, instrument: p))
    }

    /// The 48000 samples of `reverb_ir` from one piano's parameters.
    public static func impulseResponse(_ q: Parameters) -> [Float] {
        let L = lines
        let c = Lines(q)
        let n = V2Weights.reverbLength, bins = n / 2 + 1
        var spectrum = [Complex](repeating: Complex(0, 0), count: bins)
        var x = [Complex](repeating: Complex(0, 0), count: L)
        for kb in 0..<bins {
            var bin = Bin(kb, c)
            for i in 0..<L { x[i] = Complex(Double(q.inputGain[i]), 0) }
            solve(&bin.m, &x, size: L)
            var h = Complex(0, 0)
            for i in 0..<L { h = h + Complex(Double(q.outputGain[i]), 0) * bin.z[i] * x[i] }
            spectrum[kb] = h
        }
        var ir = inverseRealFFT(spectrum, count: n)
        for i in 0..<min(q.earlyIR.count, n) { ir[i] += Double(q.earlyIR[i]) }
        return ir.map { Float($0) }
    }

    // MARK: - Complex arithmetic, 8×8 solve, inverse real FFT (Double; load time only)

    struct Complex: Sendable {
        var re: Double, im: Double
        init(_ re: Double, _ im: Double) { self.re = re; self.im = im }
        static func + (a: Complex, b: Complex) -> Complex { Complex(a.re + b.re, a.im + b.im) }
        static func - (a: Complex, b: Complex) -> Complex { Complex(a.re - b.re, a.im - b.im) }
        static func * (a: Complex, b: Complex) -> Complex {
            Complex(a.re * b.re - a.im * b.im, a.re * b.im + a.im * b.re)
        }
        static func / (a: Complex, b: Complex) -> Complex {
            let d = b.re * b.re + b.im * b.im
            return Complex((a.re * b.re + a.im * b.im) / d, (a.im * b.re - a.re * b.im) / d)
        }
        var magnitude: Double { (re * re + im * im).squareRoot() }
        var conjugate: Complex { Complex(re, -im) }
    }

    /// Solves m·x = b in place (Gaussian elimination with partial pivoting); `x` holds b on entry.
    static func solve(_ m: inout [Complex], _ x: inout [Complex], size n: Int) {
        for c in 0..<n {
            var pivot = c
            for r in (c + 1)..<n where m[r * n + c].magnitude > m[pivot * n + c].magnitude { pivot = r }
            if pivot != c {
                for k in 0..<n { m.swapAt(c * n + k, pivot * n + k) }
                x.swapAt(c, pivot)
            }
            let inv = Complex(1, 0) / m[c * n + c]
            for r in (c + 1)..<n {
                let factor = m[r * n + c] * inv
                if factor.re == 0 && factor.im == 0 { continue }
                for k in c..<n { m[r * n + k] = m[r * n + k] - factor * m[c * n + k] }
                x[r] = x[r] - factor * x[c]
            }
        }
        for c in stride(from: n - 1, through: 0, by: -1) {
            var s = x[c]
            for k in (c + 1)..<n { s = s - m[c * n + k] * x[k] }
            x[c] = s / m[c * n + c]
        }
    }

    /// numpy/TF irfft: `bins` = n/2 + 1 half-spectrum values (the imaginary parts of DC and,
    /// for even n, Nyquist ignored) → n real samples, scaled by 1/n.
    static func inverseRealFFT(_ half: [Complex], count n: Int) -> [Double] {
        precondition(half.count == n / 2 + 1)
        var full = [Complex](repeating: Complex(0, 0), count: n)
        for k in 0..<half.count { full[k] = half[k] }
        full[0].im = 0
        if n % 2 == 0 { full[n / 2].im = 0 }
        for k in 1..<((n + 1) / 2) { full[n - k] = Complex(half[k].re, -half[k].im) }
        let scale = 1 / Double(n)
        return transform(full, inverse: true).map { $0.re * scale }
    }

    /// The unscaled DFT of `x`: Σ x[j] e^{∓2πi jk/n} (− forward, + `inverse`), mixed radix.
    static func transform(_ x: [Complex], inverse: Bool) -> [Complex] {
        let n = x.count
        var out = [Complex](repeating: Complex(0, 0), count: n)
        var twiddles = [Complex](repeating: Complex(0, 0), count: n)
        for j in 0..<n {
            let a = 2 * Double.pi * Double(j) / Double(n)
            twiddles[j] = Complex(cos(a), inverse ? sin(a) : -sin(a))
        }
        var scratch = [Complex](repeating: Complex(0, 0), count: largestFactor(n))
        x.withUnsafeBufferPointer { src in
        out.withUnsafeMutableBufferPointer { dst in
        twiddles.withUnsafeBufferPointer { tw in
        scratch.withUnsafeMutableBufferPointer { s in
            fft(src.baseAddress!, stride: 1, count: n, into: dst.baseAddress!, twiddles: tw.baseAddress!,
                twiddleStride: 1, total: n, scratch: s.baseAddress!)
        }}}}
        return out
    }

    static func smallestFactor(_ n: Int) -> Int {
        if n % 4 == 0 { return 4 }
        var p = 2
        while p * p <= n { if n % p == 0 { return p }; p += 1 }
        return n
    }

    static func largestFactor(_ n: Int) -> Int {
        var n = n, largest = 1
        while n > 1 { let p = smallestFactor(n); largest = max(largest, p); n /= p }
        return largest
    }

    /// Mixed-radix decimation in time: `count` points of `input` (`stride` apart) → `output`
    /// (contiguous). Twiddle W_count^e is `twiddles[e · twiddleStride]` (of a table for `total`).
    static func fft(_ input: UnsafePointer<Complex>, stride s: Int, count n: Int, into output: UnsafeMutablePointer<Complex>,
                    twiddles tw: UnsafePointer<Complex>, twiddleStride ts: Int, total: Int, scratch: UnsafeMutablePointer<Complex>) {
        if n == 1 { output[0] = input[0]; return }
        let p = smallestFactor(n), m = n / p
        for r in 0..<p {
            fft(input + r * s, stride: s * p, count: m, into: output + r * m, twiddles: tw,
                twiddleStride: ts * p, total: total, scratch: scratch)
        }
        // X[k + q·m] = Σ_r W_n^{r k} Y_r[k] · W_p^{r q}; the p outputs of one k replace its p inputs.
        for k in 0..<m {
            for r in 0..<p { scratch[r] = output[r * m + k] * tw[r * k * ts] }
            for q in 0..<p {
                var acc = scratch[0]
                for r in 1..<p { acc = acc + scratch[r] * tw[((r * q) % p) * m * ts] }
                output[k + q * m] = acc
            }
        }
    }
}
