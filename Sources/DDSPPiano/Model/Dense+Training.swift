import Foundation

// Training-mode forward and backward of `Dense`; the forward is Dense.swift's bias fill, the same
// single-precision product (OpenBLAS sgemm) and its activation kernel (`Dense.fillBias`, `Dense.activate`).

/// A fully connected layer for training, Keras layout: y = act(x · kernel + bias), over any number
/// of rows at once (batch × time).
public struct DenseTraining: Sendable {
    public let inputs: Int
    public let outputs: Int
    public var kernel: [Float]        // [inputs, outputs]
    public var bias: [Float]          // [outputs]
    public let activation: Dense.Activation
    public var kernelGrad: [Float]    // [inputs, outputs]
    public var biasGrad: [Float]      // [outputs]

    public init(kernel: [Float], bias: [Float], activation: Dense.Activation) {
        precondition(!bias.isEmpty && kernel.count % bias.count == 0)
        inputs = kernel.count / bias.count
        outputs = bias.count
        self.kernel = kernel
        self.bias = bias
        self.activation = activation
        kernelGrad = kernel.zeroed
        biasGrad = bias.zeroed
    }

    /// What backward needs: the input and the (activated) output. The leaky ReLU's slope is
    /// positive, so the output's sign is the pre-activation's sign.
    public struct Cache: Sendable {
        public var input: [Float]    // [rows, inputs]
        public var output: [Float]   // [rows, outputs]
        public var rows: Int
    }

    /// y [rows, outputs] from x [rows, inputs].
    public func forward(_ x: [Float], rows: Int) -> Cache {
        precondition(x.count == rows * inputs)
        var y = [Float](repeating: 0, count: rows * outputs)
        y.withUnsafeMutableBufferPointer { yp in
            Dense.fillBias(bias, rows: rows, into: yp.baseAddress!)
            x.withUnsafeBufferPointer { xp in kernel.withUnsafeBufferPointer { k in
                TrainingMath.gemm(m: rows, n: outputs, k: inputs, a: xp.baseAddress!, lda: inputs,
                                  b: k.baseAddress!, ldb: outputs, beta: 1, c: yp.baseAddress!, ldc: outputs)
            }}
            Dense.activate(yp.baseAddress!, count: yp.count, activation)
        }
        return Cache(input: x, output: y, rows: rows)
    }

    /// Accumulates the kernel and bias gradients from dL/dy [rows, outputs]; returns dL/dx [rows, inputs].
    public mutating func backward(_ dy: [Float], cache: Cache) -> [Float] {
        let rows = cache.rows
        precondition(dy.count == rows * outputs)
        var da = dy
        if activation == .leakyReLU {
            for i in da.indices where cache.output[i] < 0 { da[i] *= Dense.leakySlope }
        }
        return TrainingMath.affineBackward(da, input: cache.input, kernel: kernel, rows: rows, inputs: inputs, outputs: outputs,
                                           kernelGrad: &kernelGrad, biasGrad: &biasGrad)
    }

    public mutating func zeroGrad() { kernelGrad.setZero(); biasGrad.setZero() }
}
