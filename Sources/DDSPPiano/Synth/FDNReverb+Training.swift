import Foundation

// Training-mode backward of `FDNReverb` (the forward is FDNReverb.swift's `impulseResponse`,
// same per-line and per-bin quantities): from dL/dIR to every reverb parameter of one piano.

extension FDNReverb {
    /// dL/d(parameters) of one piano from dL/dIR [48000] (`Parameters`, same names; relu and
    /// sigmoid included: a T60 at or below 0 passes no gradient).
    ///
    /// IR = irfft(H) + early, so dL/dH_k = (c_k/N)·Σ_n g[n] e^{−2πikn/N} (c = 2, or 1 at DC and
    /// Nyquist, whose imaginary parts irfft ignores) and dL/dθ = Σ_k Re(conj(dL/dH_k)·∂H_k/∂θ).
    /// Per bin, with x = (I − A)⁻¹ in, uᵀ = outᵀ Z (I − A)⁻¹ and A = F M AP Z:
    /// ∂H/∂out_i = Z_i x_i, ∂H/∂in_i = u_i, ∂H/∂F_i = u_i (M·AP Z x)_i, ∂H/∂AP_j = Z_j x_j (Mᵀ·(u F))_j.
    public static func parameterGradient(_ q: Parameters, dIR: [Float]) -> Parameters {
        let L = lines, A = allpassesPerLine, n = V2Weights.reverbLength, bins = n / 2 + 1
        precondition(dIR.count == n)
        let c = Lines(q)
        let dH = spectrumGradient(dIR)
        var dIn = [Double](repeating: 0, count: L), dOut = dIn
        var dG = [Double](repeating: 0, count: L * A), dD = dG
        var dGain = [Double](repeating: 0, count: L), dPole = dGain
        var x = [Complex](repeating: Complex(0, 0), count: L), u = x
        var mt = [Complex](repeating: Complex(0, 0), count: L * L)
        for kb in 0..<bins {
            let gk = dH[kb].conjugate
            if gk.re == 0 && gk.im == 0 { continue }
            var bin = Bin(kb, c)
            for i in 0..<L {
                for j in 0..<L { mt[j * L + i] = bin.m[i * L + j] }
                x[i] = Complex(Double(q.inputGain[i]), 0)
                u[i] = Complex(Double(q.outputGain[i]), 0) * bin.z[i]
            }
            solve(&bin.m, &x, size: L)
            solve(&mt, &u, size: L)
            // Re(conj(dL/dH)·∂H/∂θ) for each parameter θ.
            @inline(__always) func acc(_ d: Complex) -> Double { (gk * d).re }
            var y = [Complex](repeating: Complex(0, 0), count: L), v = y
            var sy = Complex(0, 0), sv = Complex(0, 0)
            for i in 0..<L {
                dOut[i] += acc(bin.z[i] * x[i])
                dIn[i] += acc(u[i])
                y[i] = bin.ap[i] * bin.z[i] * x[i]; sy = sy + y[i]
                v[i] = u[i] * bin.f[i]; sv = sv + v[i]
            }
            let half = Complex(0.5, 0)
            for i in 0..<L {
                // (M y)_i = −y_i + ½Σy; M is symmetric, so (Mᵀ v)_j = −v_j + ½Σv.
                let dF = u[i] * (half * sy - y[i])
                let dAP = bin.z[i] * x[i] * (half * sv - v[i])
                // F = g / (1 + 1e-8 − p e^{−jw}).
                let den = Complex(1 + 1e-8, 0) - Complex(c.pole[i], 0) * bin.zInv
                dGain[i] += acc(dF / den)
                dPole[i] += acc(dF * Complex(c.g[i], 0) * bin.zInv / (den * den))
                // AP_i = Π_j φ_ij, φ = (1 + G e)/(G + e), e = e^{jwD}: ∂φ/∂G = (e² − 1)/(G + e)²,
                // ∂φ/∂D = (G² − 1)/(G + e)² · j w e.
                for j in 0..<A {
                    var others = Complex(1, 0)
                    for l in 0..<A where l != j { others = others * bin.factors[i * A + l] }
                    let e = bin.e[i * A + j], gj = c.G[i * A + j]
                    let s = Complex(gj, 0) + e, s2 = s * s
                    let dPhiG = (e * e - Complex(1, 0)) / s2
                    let dPhiD = Complex(gj * gj - 1, 0) / s2 * Complex(0, Double(bin.w32)) * e
                    dG[i * A + j] += acc(dAP * others * dPhiG)
                    dD[i * A + j] += acc(dAP * others * dPhiD)
                }
            }
        }
        // g = 2 k kπ/(k + kπ), p = (k − kπ)/(k + kπ); k = 10^(−3 s/T60), kπ = 10^(−3 s/(α T60)).
        let ln10x3 = 3 * log(10.0)
        var dT60 = 0.0, dAlpha = 0.0
        for i in 0..<L {
            let k = c.k[i], kp = c.kpi[i], sum = k + kp
            guard sum > 0, c.t60 > 0 else { continue }
            let s2 = sum * sum
            let dk = dGain[i] * 2 * kp * kp / s2 + dPole[i] * 2 * kp / s2
            let dkp = dGain[i] * 2 * k * k / s2 - dPole[i] * 2 * k / s2
            let s = c.seconds[i], t = c.t60, a = c.alpha
            let dSeconds = dk * k * (-ln10x3 / t) + dkp * kp * (-ln10x3 / (a * t))
            dT60 += dk * k * (ln10x3 * s / (t * t)) + dkp * kp * (ln10x3 * s / (a * t * t))
            dAlpha += dkp * kp * (ln10x3 * s / (a * a * t))
            for j in 0..<A { dD[i * A + j] += dSeconds / sampleRate }
        }
        var out = q
        out.inputGain = dIn.map { Float($0) }
        out.outputGain = dOut.map { Float($0) }
        for i in 0..<L {
            for j in 0..<A {
                out.gainAllpass[L * j + i] = Float(dG[i * A + j])
                out.delaysAllpass[L * j + i] = Float(dD[i * A + j])
            }
        }
        out.timeRev = q.timeRev > 0 ? Float(dT60) : 0
        out.alphaTone = Float(dAlpha * c.alpha * (1 - c.alpha))
        out.earlyIR = Array(dIR.prefix(q.earlyIR.count))
        return out
    }

    /// dL/dH [N/2 + 1] from dL/dIR through numpy's irfft (see `parameterGradient`).
    static func spectrumGradient(_ g: [Float]) -> [Complex] {
        let n = g.count, bins = n / 2 + 1
        // The forward transform Σ g[m] e^{−2πikm/N}.
        let out = transform(g.map { Complex(Double($0), 0) }, inverse: false)
        var dH = [Complex](repeating: Complex(0, 0), count: bins)
        for k in 0..<bins {
            let edge = k == 0 || (n % 2 == 0 && k == n / 2)
            let scale = (edge ? 1.0 : 2.0) / Double(n)
            dH[k] = Complex(out[k].re * scale, edge ? 0 : out[k].im * scale)
        }
        return dH
    }
}
