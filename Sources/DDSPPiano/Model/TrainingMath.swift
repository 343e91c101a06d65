import CBLAS
import Foundation

/// Small numerical helpers of the training passes (the `…+Training.swift` files beside the layers,
/// and PianoTraining's losses and assembly): whole-segment matrix products, column sums.
package enum TrainingMath {
    /// C[m, n] (+)= op(A)·op(B), row-major, float32 (OpenBLAS). `beta` 1 accumulates into C
    /// (gradients of a weight summed over a batch of rows).
    @inline(__always)
    package static func gemm(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
                             a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                             beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        guard m > 0, n > 0 else { return }
        if k == 0 {
            if beta == 0 { for i in 0..<m { for j in 0..<n { c[i * ldc + j] = 0 } } }
            return
        }
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), 1, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// Column sums of a [rows, cols] matrix added to `into` [cols], accumulated in Double
    /// (bias gradients sum tens of thousands of rows).
    package static func addColumnSums(_ x: UnsafePointer<Float>, rows: Int, cols: Int, into: UnsafeMutablePointer<Float>) {
        var acc = [Double](repeating: 0, count: cols)
        for r in 0..<rows {
            let row = x + r * cols
            for c in 0..<cols { acc[c] += Double(row[c]) }
        }
        for c in 0..<cols { into[c] += Float(acc[c]) }
    }

    /// The backward pass of an affine map y = x·K + b over `rows` rows (Dense, GRU's input
    /// projection): dK += xᵀ·dy, db += Σ_rows dy; returns dx = dy·Kᵀ.
    package static func affineBackward(_ dy: [Float], input: [Float], kernel: [Float], rows: Int, inputs: Int, outputs: Int,
                                       kernelGrad: inout [Float], biasGrad: inout [Float]) -> [Float] {
        var dx = [Float](repeating: 0, count: rows * inputs)
        dy.withUnsafeBufferPointer { d in
            input.withUnsafeBufferPointer { x in kernelGrad.withUnsafeMutableBufferPointer { g in
                gemm(transA: true, m: inputs, n: outputs, k: rows, a: x.baseAddress!, lda: inputs,
                     b: d.baseAddress!, ldb: outputs, beta: 1, c: g.baseAddress!, ldc: outputs)
            }}
            biasGrad.withUnsafeMutableBufferPointer { addColumnSums(d.baseAddress!, rows: rows, cols: outputs, into: $0.baseAddress!) }
            kernel.withUnsafeBufferPointer { k in dx.withUnsafeMutableBufferPointer { dxp in
                gemm(transB: true, m: rows, n: inputs, k: outputs, a: d.baseAddress!, lda: outputs,
                     b: k.baseAddress!, ldb: outputs, beta: 0, c: dxp.baseAddress!, ldc: inputs)
            }}
        }
        return dx
    }
}

extension Array where Element == Float {
    /// A zero array of the same count (gradient buffers).
    package var zeroed: [Float] { [Float](repeating: 0, count: count) }
    package mutating func setZero() { for i in indices { self[i] = 0 } }
}
