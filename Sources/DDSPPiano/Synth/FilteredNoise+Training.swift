import Foundation

// Training-mode forward and backward of the filtered noise synthesiser (ddsp FilteredNoise /
// frequency_filter, window_size 257, over whole segments): the filter design and the
// magnitudes → IR product are FilteredNoise.swift's (`designMatrix`, `impulseResponses`); the
// convolution is batched as matrix products here, a direct overlap-add there.

/// Per voice and frame, the `bands` magnitudes define a 2·(bands − 1)-tap linear-phase FIR (the
/// frequency-sampling design is linear in the magnitudes: IR = M·D); the frame's white noise is
/// convolved with it, frames are overlap-added and the output read `delay` = (taps − 1)/2 − 1
/// samples late (ddsp fft_convolve, padding 'same'), over a whole segment. The noise is an input
/// (the caller draws it, e.g. with the engine's `NoiseGenerator`) and is needed again by backward.
public struct FilteredNoiseTraining: Sendable {
    public let bands: Int
    public let frameSize: Int
    public let taps: Int
    public let delay: Int
    let design: [Float]   // [bands, taps]: the same frequency-sampling design as FilteredNoise

    public init(bands: Int, frameSize: Int) {
        self.bands = bands; self.frameSize = frameSize
        let n = 2 * (bands - 1)
        taps = n
        delay = (n - 1) / 2 - 1
        design = FilteredNoise.designMatrix(bands: bands)
    }

    /// `magnitudes` [batch·voices, frames, bands], `noise` [batch·voices, frames·frameSize] → audio [batch, frames·frameSize].
    /// As matrix products: IR = M·D for every (voice, frame) at once; per frame of a batch element,
    /// Y = Xᵀ·IR over its voices (Y[r, i] = Σ_q x_q[r]·ir_q[i]), whose anti-diagonals are the
    /// frame's output (out[F·N + r − delay + i] += Y[r, i]).
    public func forward(magnitudes M: [Float], noise: [Float], batch B: Int, voices V: Int, frames T: Int) -> [Float] {
        let N = frameSize, n = T * N, K = bands, L = taps, rows = B * V * T
        precondition(M.count == rows * K && noise.count == B * V * n)
        var out = [Double](repeating: 0, count: B * n)
        var ir = [Float](repeating: 0, count: rows * L)
        var y = [Float](repeating: 0, count: N * L)
        M.withUnsafeBufferPointer { m in design.withUnsafeBufferPointer { d in ir.withUnsafeMutableBufferPointer { irp in
            if rows > 0 { FilteredNoise.impulseResponses(m.baseAddress!, rows: rows, bands: K, design: d.baseAddress!, into: irp.baseAddress!) }
        }}}
        noise.withUnsafeBufferPointer { xb in ir.withUnsafeBufferPointer { irp in y.withUnsafeMutableBufferPointer { yb in
        out.withUnsafeMutableBufferPointer { ob in
            for b in 0..<B {
                for F in 0..<T {
                    // X_F: [V, N] rows q at noise[(b·V + q)·n + F·N]; IR_F: [V, L] rows at ((b·V + q)·T + F)·L.
                    TrainingMath.gemm(transA: true, m: N, n: L, k: V, a: xb.baseAddress! + b * V * n + F * N, lda: n,
                                      b: irp.baseAddress! + (b * V * T + F) * L, ldb: T * L, beta: 0, c: yb.baseAddress!, ldc: L)
                    for r in 0..<N {
                        let base = F * N + r - delay
                        let o = ob.baseAddress! + b * n + base, row = yb.baseAddress! + r * L
                        for i in max(0, -base)..<min(L, n - base) { o[i] += Double(row[i]) }
                    }
                }
            }
        }}}}
        return out.map { Float($0) }
    }

    /// dL/dmagnitudes [batch·voices, frames, bands] from dL/daudio [batch, frames·frameSize]:
    /// per frame dIR_F = X_F·G_F (G_F[r, i] = g[F·N + r − delay + i], 0 outside the segment),
    /// then dM = dIR·Dᵀ for every (voice, frame) at once.
    public func backward(_ dAudio: [Float], noise: [Float], batch B: Int, voices V: Int, frames T: Int) -> [Float] {
        let N = frameSize, n = T * N, K = bands, L = taps, rows = B * V * T
        precondition(dAudio.count == B * n && noise.count == B * V * n)
        var dM = [Float](repeating: 0, count: rows * K)
        var dIR = [Float](repeating: 0, count: rows * L)
        var gh = [Float](repeating: 0, count: N * L)
        // One batch element's gradient, zero-padded: g[j] at gp[lead + j], G_F[r, i] = gp[F·N + r + i + shift].
        let lead = max(delay, 0), shift = lead - delay
        var gp = [Float](repeating: 0, count: lead + n + L + N + shift)
        noise.withUnsafeBufferPointer { xb in dIR.withUnsafeMutableBufferPointer { dirp in gh.withUnsafeMutableBufferPointer { ghb in
        gp.withUnsafeMutableBufferPointer { gpb in
            for b in 0..<B {
                for j in 0..<n { gpb[lead + j] = dAudio[b * n + j] }
                for F in 0..<T {
                    for r in 0..<N { (ghb.baseAddress! + r * L).update(from: gpb.baseAddress! + F * N + r + shift, count: L) }
                    TrainingMath.gemm(m: V, n: L, k: N, a: xb.baseAddress! + b * V * n + F * N, lda: n,
                                      b: ghb.baseAddress!, ldb: L, beta: 0, c: dirp.baseAddress! + (b * V * T + F) * L, ldc: T * L)
                }
            }
        }}}}
        dIR.withUnsafeBufferPointer { g in design.withUnsafeBufferPointer { d in dM.withUnsafeMutableBufferPointer { dm in
            TrainingMath.gemm(transB: true, m: rows, n: K, k: L, a: g.baseAddress!, lda: L, b: d.baseAddress!, ldb: L, beta: 0, c: dm.baseAddress!, ldc: K)
        }}}
        return dM
    }
}
