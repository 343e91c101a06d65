import Foundation

// Training-mode forward and backward of `FcStack`: the layers' own training passes
// (`DenseTraining`, linear; `LayerNormTraining` with the leaky ReLU), as FcStack.swift composes them.

/// ddsp `nn.FcStack` for training: `layers` × leaky(LayerNorm(Dense(x))) over any number of rows.
public struct FcStackTraining: Sendable {
    public var dense: [DenseTraining]
    public var norms: [LayerNormTraining]

    public init(weights w: V2Weights, name: String, layers: Int) {
        precondition(layers >= 1)
        dense = (0..<layers).map { DenseTraining(kernel: w["\(name).\($0).kernel"].values, bias: w["\(name).\($0).bias"].values, activation: .linear) }
        norms = (0..<layers).map { LayerNormTraining(gamma: w["\(name).\($0).gamma"].values, beta: w["\(name).\($0).beta"].values, leaky: true) }
    }

    public var inputs: Int { dense[0].inputs }
    public var width: Int { dense[dense.count - 1].outputs }

    public struct Cache: Sendable {
        public var dense: [DenseTraining.Cache]
        public var norms: [LayerNormTraining.Cache]
    }

    /// y [rows, width] from x [rows, inputs].
    public func forward(_ x: [Float], rows: Int) -> (output: [Float], cache: Cache) {
        var h = x
        var dc: [DenseTraining.Cache] = [], nc: [LayerNormTraining.Cache] = []
        for i in dense.indices {
            let d = dense[i].forward(h, rows: rows)
            let (y, c) = norms[i].forward(d.output, rows: rows)
            dc.append(d); nc.append(c)
            h = y
        }
        return (h, Cache(dense: dc, norms: nc))
    }

    /// Accumulates every layer's gradients from dL/dy; returns dL/dx.
    public mutating func backward(_ dy: [Float], cache: Cache) -> [Float] {
        var d = dy
        for i in dense.indices.reversed() {
            d = norms[i].backward(d, cache: cache.norms[i])
            d = dense[i].backward(d, cache: cache.dense[i])
        }
        return d
    }

    public mutating func zeroGrad() {
        for i in dense.indices { dense[i].zeroGrad(); norms[i].zeroGrad() }
    }

    /// The trainable tensors under their weight-file names (`<name>.<i>.{kernel,bias,gamma,beta}`).
    public mutating func forEachParameter(_ name: String, _ body: (_ name: String, _ value: inout [Float], _ grad: inout [Float]) -> Void) {
        for i in dense.indices {
            var d = dense[i], n = norms[i]
            body("\(name).\(i).kernel", &d.kernel, &d.kernelGrad)
            body("\(name).\(i).bias", &d.bias, &d.biasGrad)
            body("\(name).\(i).gamma", &n.gamma, &n.gammaGrad)
            body("\(name).\(i).beta", &n.beta, &n.betaGrad)
            dense[i] = d; norms[i] = n
        }
    }
}
