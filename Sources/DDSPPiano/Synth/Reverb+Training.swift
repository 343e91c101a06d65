import CKissFFT
import Foundation

// Training-mode forward and backward of the reverb (ddsp Reverb with add_dry, the IR's first
// sample zeroed, fft_convolve padding 'same' without delay compensation): the same maths as
// Reverb.swift, no shared kernel (one FFT per whole segment here, uniformly partitioned
// block by block there); both use KissFFT.

/// wet[n] = dry[n] + Σ_{m=1}^{L−1} ir[m]·dry[n − m] for n < samples, per batch element, by FFT
/// (segments of 48 000 samples against 24 000-sample responses: direct sums would take 10⁹ MACs).
// @unchecked Sendable: holds FFT plans and scratch: one thread at a time (each trainer worker has its own).
public final class ReverbTraining: @unchecked Sendable {
    public let samples: Int
    public let irLength: Int
    public let fftSize: Int
    private let forwardCfg: kiss_fftr_cfg
    private let inverseCfg: kiss_fftr_cfg

    public init(samples: Int, irLength: Int) {
        precondition(samples > 0 && irLength > 0)
        self.samples = samples; self.irLength = irLength
        var size = 2
        while size < samples + irLength - 1 { size *= 2 }
        fftSize = size
        forwardCfg = kiss_fftr_alloc(Int32(size), 0, nil, nil)
        inverseCfg = kiss_fftr_alloc(Int32(size), 1, nil, nil)
    }

    deinit { ckiss_fftr_free(forwardCfg); ckiss_fftr_free(inverseCfg) }

    private func spectrum(_ x: UnsafePointer<Float>, count: Int, zeroFirst: Bool = false) -> [kiss_fft_cpx] {
        var buf = [Float](repeating: 0, count: fftSize)
        for i in 0..<count { buf[i] = x[i] }
        if zeroFirst { buf[0] = 0 }
        var out = [kiss_fft_cpx](repeating: kiss_fft_cpx(r: 0, i: 0), count: fftSize / 2 + 1)
        buf.withUnsafeBufferPointer { b in out.withUnsafeMutableBufferPointer { kiss_fftr(forwardCfg, b.baseAddress, $0.baseAddress) } }
        return out
    }

    /// Inverse of a product a·b (or a·conj(b)), scaled by 1/fftSize.
    private func inverseProduct(_ a: [kiss_fft_cpx], _ b: [kiss_fft_cpx], conjugateB: Bool) -> [Float] {
        var p = [kiss_fft_cpx](repeating: kiss_fft_cpx(r: 0, i: 0), count: a.count)
        for k in a.indices {
            let bi = conjugateB ? -b[k].i : b[k].i
            p[k] = kiss_fft_cpx(r: a[k].r * b[k].r - a[k].i * bi, i: a[k].r * bi + a[k].i * b[k].r)
        }
        var out = [Float](repeating: 0, count: fftSize)
        p.withUnsafeBufferPointer { s in out.withUnsafeMutableBufferPointer { kiss_fftri(inverseCfg, s.baseAddress, $0.baseAddress) } }
        let scale = 1 / Float(fftSize)
        for i in out.indices { out[i] *= scale }
        return out
    }

    /// `dry` [batch, samples], `ir` [batch, irLength] (each segment's instrument response) → wet [batch, samples].
    public func forward(dry: [Float], ir: [Float], batch B: Int) -> [Float] {
        precondition(dry.count == B * samples && ir.count == B * irLength)
        var wet = dry
        for b in 0..<B {
            let d = dry.withUnsafeBufferPointer { spectrum($0.baseAddress! + b * samples, count: samples) }
            let h = ir.withUnsafeBufferPointer { spectrum($0.baseAddress! + b * irLength, count: irLength, zeroFirst: true) }
            let conv = inverseProduct(d, h, conjugateB: false)
            for n in 0..<samples { wet[b * samples + n] += conv[n] }
        }
        return wet
    }

    /// dL/ddry [batch, samples] and dL/dir [batch, irLength] (0 at index 0) from dL/dwet.
    public func backward(_ dWet: [Float], dry: [Float], ir: [Float], batch B: Int) -> (dDry: [Float], dIR: [Float]) {
        var dDry = dWet
        var dIR = [Float](repeating: 0, count: B * irLength)
        for b in 0..<B {
            let g = dWet.withUnsafeBufferPointer { spectrum($0.baseAddress! + b * samples, count: samples) }
            let h = ir.withUnsafeBufferPointer { spectrum($0.baseAddress! + b * irLength, count: irLength, zeroFirst: true) }
            let d = dry.withUnsafeBufferPointer { spectrum($0.baseAddress! + b * samples, count: samples) }
            // Correlations: Σ_m ir[m]·g[j + m] and Σ_n g[n]·dry[n − m] (no wrap-around: fftSize ≥ samples + irLength − 1).
            let cg = inverseProduct(g, h, conjugateB: true)
            let cd = inverseProduct(g, d, conjugateB: true)
            for j in 0..<samples { dDry[b * samples + j] += cg[j] }
            for m in 1..<irLength { dIR[b * irLength + m] = cd[m] }
        }
        return (dDry, dIR)
    }
}
