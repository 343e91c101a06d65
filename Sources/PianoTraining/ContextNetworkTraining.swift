import DDSPPiano
import Foundation

// Training-mode composition of `ContextNetwork` (mirrors Sources/DDSPPiano/Model/ContextNetwork.swift).

/// [batch, time, 2·voices + 4 + zDim] → Dense(leaky ReLU) → GRU → Normalize → Dense = context
/// [batch, time, contextUnits], over whole segments.
public struct ContextNetworkTraining: Sendable {
    public var dense: DenseTraining
    public var gru: GRUTraining
    public var norm: NormalizeTraining
    public var out: DenseTraining

    public init(weights w: PianoWeights) {
        dense = DenseTraining(kernel: w.contextDenseKernel.values, bias: w.contextDenseBias.values, activation: .leakyReLU)
        gru = GRUTraining(kernel: w.contextGRUKernel.values, recurrentKernel: w.contextGRURecurrentKernel.values,
                          inputBias: w.contextGRUInputBias.values, recurrentBias: w.contextGRURecurrentBias.values)
        norm = NormalizeTraining(scale: w.contextNormScale.values, shift: w.contextNormShift.values)
        out = DenseTraining(kernel: w.contextOutKernel.values, bias: w.contextOutBias.values, activation: .linear)
    }

    public struct Cache: Sendable {
        public var dense: DenseTraining.Cache
        public var gru: GRUTraining.Cache
        public var norm: NormalizeTraining.Cache
        public var out: DenseTraining.Cache
    }

    public func forward(_ x: [Float], batch: Int, time: Int) -> (output: [Float], cache: Cache) {
        let d = dense.forward(x, rows: batch * time)
        let g = gru.forward(d.output, batch: batch, time: time)
        let (n, nc) = norm.forward(g.output, batch: batch, time: time)
        let o = out.forward(n, rows: batch * time)
        return (o.output, Cache(dense: d, gru: g, norm: nc, out: o))
    }

    /// Returns dL/dx [batch, time, inputs].
    public mutating func backward(_ dy: [Float], cache: Cache) -> [Float] {
        let dn = out.backward(dy, cache: cache.out)
        let dg = norm.backward(dn, cache: cache.norm)
        let dd = gru.backward(dg, cache: cache.gru)
        return dense.backward(dd, cache: cache.dense)
    }

    public mutating func zeroGrad() { dense.zeroGrad(); gru.zeroGrad(); norm.zeroGrad(); out.zeroGrad() }
}
