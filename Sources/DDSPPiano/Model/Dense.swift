import CBLAS

/// A fully connected layer, Keras layout: y = act(x · kernel + bias).
public struct Dense: Sendable {
    public enum Activation: Sendable { case linear, leakyReLU }

    public let inputs: Int
    public let outputs: Int
    public var kernel: [Float]   // [inputs, outputs]
    public var bias: [Float]     // [outputs]
    public var activation: Activation

    /// tf.nn.leaky_relu's default slope.
    public static let leakySlope: Float = 0.2

    public init(kernel: Tensor, bias: Tensor, activation: Activation) {
        precondition(kernel.shape.count == 2 && bias.shape == [kernel.shape[1]])
        inputs = kernel.shape[0]
        outputs = kernel.shape[1]
        self.kernel = kernel.values
        self.bias = bias.values
        self.activation = activation
    }

    /// y[rows, outputs] = act(x[rows, inputs] · kernel + bias). `x` rows are `xStride` apart.
    public func forward(_ x: UnsafePointer<Float>, xStride: Int? = nil, rows: Int, into y: UnsafeMutablePointer<Float>) {
        for r in 0..<rows {
            (y + r * outputs).update(from: bias, count: outputs)
        }
        kernel.withUnsafeBufferPointer { k in
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(rows), Int32(outputs), Int32(inputs),
                        1, x, Int32(xStride ?? inputs), k.baseAddress, Int32(outputs), 1, y, Int32(outputs))
        }
        if activation == .leakyReLU {
            let n = rows * outputs
            for i in 0..<n { let v = y[i]; y[i] = v < 0 ? v * Dense.leakySlope : v }
        }
    }
}
