/// ddsp `nn.FcStack`: `layers` × Fc, where Fc(x) = leaky(LayerNorm(Dense(x))), on `rows` rows
/// at once (the 16 voices, or 1 for the context network). Weights are read from `V2Weights`
/// names `<name>.<i>.{kernel,bias,gamma,beta}`.
public struct FcStack: Sendable {
    public var dense: [Dense]          // linear; layer 0 [inputs, width], then [width, width]
    public var norms: [LayerNorm]      // [width] each
    public let inputs: Int
    public let width: Int
    public let maxRows: Int

    public func productShapes(rows: Int) -> [ProductShape] { dense.map { $0.productShape(rows: rows) } }

    private var pre: [Float]           // [maxRows, width]: Dense output
    private var act: [Float]           // [maxRows, width]: output of a layer that is not the last

    public init(weights w: V2Weights, name: String, layers: Int, maxRows: Int) {
        precondition(layers >= 1)
        var dense: [Dense] = []
        var norms: [LayerNorm] = []
        for i in 0..<layers {
            dense.append(Dense(kernel: w["\(name).\(i).kernel"], bias: w["\(name).\(i).bias"], activation: .linear, maxRows: maxRows))
            norms.append(LayerNorm(gamma: w["\(name).\(i).gamma"], beta: w["\(name).\(i).beta"]))
        }
        self.dense = dense
        self.norms = norms
        inputs = dense[0].inputs
        width = dense[layers - 1].outputs
        self.maxRows = maxRows
        pre = [Float](repeating: 0, count: maxRows * width)
        act = [Float](repeating: 0, count: maxRows * width)
    }

    /// y[rows, width] = FcStack(x[rows, inputs]); rows of `x` are `xStride` apart, rows of `y`
    /// `yStride` apart (so a stack can write its slice of a concatenation in place).
    public mutating func forward(_ x: UnsafePointer<Float>, xStride: Int? = nil, rows: Int,
                                 into y: UnsafeMutablePointer<Float>, yStride: Int? = nil) {
        precondition(rows <= maxRows)
        let last = dense.count - 1
        pre.withUnsafeMutableBufferPointer { p in
        act.withUnsafeMutableBufferPointer { a in
            let pp = p.baseAddress!, ap = a.baseAddress!
            for i in 0...last {
                if i == 0 {
                    dense[0].forward(x, xStride: xStride, rows: rows, into: pp)
                } else {
                    dense[i].forward(UnsafePointer(ap), rows: rows, into: pp)
                }
                if i == last {
                    norms[i].forward(pp, rows: rows, into: y, yStride: yStride, leaky: true)
                } else {
                    norms[i].forward(pp, rows: rows, into: ap, leaky: true)
                }
            }
        }}
    }
}
