
/// A fully connected layer, Keras layout: y = act(x · kernel + bias).
public struct Dense: Sendable {
    public enum Activation: Sendable { case linear, leakyReLU }

    public let inputs: Int
    public let outputs: Int
    public let kernel: [Float]   // [inputs, outputs]
    public let bias: [Float]     // [outputs]
    public var activation: Activation

    /// The kernel packed for the engine's own small products (PianoKernels' packedProduct):
    /// the engine's results and speed do not depend on which sgemm kernel OpenBLAS picks.
    public let packed: PackedMatrix
    public let maxRows: Int

    /// tf.nn.leaky_relu's default slope.
    public static let leakySlope: Float = 0.2

    /// This layer's product for `rows` rows (for `bench`'s accounting).
    public func productShape(rows: Int) -> ProductShape { ProductShape(rows: rows, inputs: inputs, columns: outputs) }

    public init(kernel: Tensor, bias: Tensor, activation: Activation, maxRows: Int = 16) {
        precondition(kernel.shape.count == 2 && bias.shape == [kernel.shape[1]])
        inputs = kernel.shape[0]
        outputs = kernel.shape[1]
        self.kernel = kernel.values
        self.bias = bias.values
        self.activation = activation
        self.maxRows = maxRows
        packed = PackedMatrix(kernel.values, inputs: inputs, columns: outputs)
    }

    /// y[rows, outputs] = act(x[rows, inputs] · kernel + bias). `x` rows are `xStride` apart.
    /// Each row's result depends on that row only.
    public func forward(_ x: UnsafePointer<Float>, xStride: Int? = nil, rows: Int, into y: UnsafeMutablePointer<Float>) {
        precondition(rows <= maxRows)
        Dense.fillBias(bias, rows: rows, into: y)
        packed.values.withUnsafeBufferPointer { k in
            PianoKernels.active.packedProduct(rows, x, xStride ?? inputs, k.baseAddress!, inputs, outputs, y, outputs)
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
