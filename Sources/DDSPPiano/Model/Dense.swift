import CBLAS

/// A fully connected layer, Keras layout: y = act(x · kernel + bias).
public struct Dense: Sendable {
    public enum Activation: Sendable { case linear, leakyReLU }

    public let inputs: Int
    public let outputs: Int
    public var kernel: [Float]   // [inputs, outputs]
    public var bias: [Float]     // [outputs]
    public var activation: Activation

    /// OpenBLAS 0.3.21's small-matrix sgemm mallocs a buffer on every call when the output width
    /// is not a multiple of 16 (e.g. the mono net's 161): such layers multiply with a
    /// zero-padded kernel into a preallocated scratch instead, so `forward` never allocates.
    private let paddedOutputs: Int
    private var paddedKernel: [Float]   // [inputs, paddedOutputs] when padded
    private var scratch: [Float]        // [maxRows, paddedOutputs] when padded
    public let maxRows: Int

    /// tf.nn.leaky_relu's default slope.
    public static let leakySlope: Float = 0.2

    public init(kernel: Tensor, bias: Tensor, activation: Activation, maxRows: Int = 16) {
        precondition(kernel.shape.count == 2 && bias.shape == [kernel.shape[1]])
        inputs = kernel.shape[0]
        outputs = kernel.shape[1]
        self.kernel = kernel.values
        self.bias = bias.values
        self.activation = activation
        self.maxRows = maxRows
        paddedOutputs = (outputs + 15) / 16 * 16
        if paddedOutputs != outputs {
            var k = [Float](repeating: 0, count: inputs * paddedOutputs)
            for i in 0..<inputs { for j in 0..<outputs { k[i * paddedOutputs + j] = kernel.values[i * outputs + j] } }
            paddedKernel = k
            scratch = [Float](repeating: 0, count: maxRows * paddedOutputs)
        } else {
            paddedKernel = []
            scratch = []
        }
    }

    /// y[rows, outputs] = act(x[rows, inputs] · kernel + bias). `x` rows are `xStride` apart.
    public mutating func forward(_ x: UnsafePointer<Float>, xStride: Int? = nil, rows: Int, into y: UnsafeMutablePointer<Float>) {
        precondition(rows <= maxRows)
        let lda = Int32(xStride ?? inputs)
        if paddedOutputs == outputs {
            Dense.fillBias(bias, rows: rows, into: y)
            kernel.withUnsafeBufferPointer { k in
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(rows), Int32(outputs), Int32(inputs),
                            1, x, lda, k.baseAddress, Int32(outputs), 1, y, Int32(outputs))
            }
        } else {
            let P = paddedOutputs
            paddedKernel.withUnsafeBufferPointer { k in
                scratch.withUnsafeMutableBufferPointer { s in
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(rows), Int32(P), Int32(inputs),
                                1, x, lda, k.baseAddress, Int32(P), 0, s.baseAddress, Int32(P))
                    for r in 0..<rows {
                        for j in 0..<outputs { y[r * outputs + j] = bias[j] + s[r * P + j] }
                    }
                }
            }
        }
        Dense.activate(y, count: rows * outputs, activation)
    }

    // The kernels `forward` shares with `DenseTraining.forward`.

    /// Every one of `rows` rows of y [rows, bias.count] set to the bias (the product then adds x·kernel).
    @inline(__always)
    static func fillBias(_ bias: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>, outputs: Int) {
        for r in 0..<rows { (y + r * outputs).update(from: bias, count: outputs) }
    }

    @inline(__always)
    static func fillBias(_ bias: [Float], rows: Int, into y: UnsafeMutablePointer<Float>) {
        bias.withUnsafeBufferPointer { fillBias($0.baseAddress!, rows: rows, into: y, outputs: $0.count) }
    }

    /// The activation in place on `count` values.
    @inline(__always)
    static func activate(_ y: UnsafeMutablePointer<Float>, count n: Int, _ activation: Activation) {
        if activation == .leakyReLU {
            for i in 0..<n { let v = y[i]; y[i] = v < 0 ? v * Dense.leakySlope : v }
        }
    }
}
