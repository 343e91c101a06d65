import DDSPPiano
import Foundation

// Training-mode composition of `MonophonicNetwork` (mirrors Sources/DDSPPiano/Model/MonophonicNetwork.swift).

/// Per voice sequence: [extended pitch/128, pitch/128, velocity, context] → Dense(leaky ReLU)
/// → GRU → Dense(leaky ReLU) → Normalize → Dense = raw [amplitude, harmonics, noise bands].
/// Sequences are (batch element, voice) pairs, each normalised with its own statistics.
public struct MonophonicNetworkTraining: Sendable {
    public var dense: DenseTraining
    public var gru: GRUTraining
    public var hidden: DenseTraining
    public var norm: NormalizeTraining
    public var out: DenseTraining

    public init(weights w: PianoWeights) {
        dense = DenseTraining(kernel: w.monoDenseKernel.values, bias: w.monoDenseBias.values, activation: .leakyReLU)
        gru = GRUTraining(kernel: w.monoGRUKernel.values, recurrentKernel: w.monoGRURecurrentKernel.values,
                          inputBias: w.monoGRUInputBias.values, recurrentBias: w.monoGRURecurrentBias.values)
        hidden = DenseTraining(kernel: w.monoHiddenKernel.values, bias: w.monoHiddenBias.values, activation: .leakyReLU)
        norm = NormalizeTraining(scale: w.monoNormScale.values, shift: w.monoNormShift.values)
        out = DenseTraining(kernel: w.monoOutKernel.values, bias: w.monoOutBias.values, activation: .linear)
    }

    public struct Cache: Sendable {
        public var dense: DenseTraining.Cache
        public var gru: GRUTraining.Cache
        public var hidden: DenseTraining.Cache
        public var norm: NormalizeTraining.Cache
        public var out: DenseTraining.Cache
    }

    /// x [sequences, time, inputs] → raw [sequences, time, outputs].
    public func forward(_ x: [Float], sequences: Int, time: Int) -> (output: [Float], cache: Cache) {
        let rows = sequences * time
        let d = dense.forward(x, rows: rows)
        let g = gru.forward(d.output, batch: sequences, time: time)
        let h = hidden.forward(g.output, rows: rows)
        let (n, nc) = norm.forward(h.output, batch: sequences, time: time)
        let o = out.forward(n, rows: rows)
        return (o.output, Cache(dense: d, gru: g, hidden: h, norm: nc, out: o))
    }

    public mutating func backward(_ dy: [Float], cache: Cache) -> [Float] {
        let dn = out.backward(dy, cache: cache.out)
        let dh = norm.backward(dn, cache: cache.norm)
        let dg = hidden.backward(dh, cache: cache.hidden)
        let dd = gru.backward(dg, cache: cache.gru)
        return dense.backward(dd, cache: cache.dense)
    }

    public mutating func zeroGrad() { dense.zeroGrad(); gru.zeroGrad(); hidden.zeroGrad(); norm.zeroGrad(); out.zeroGrad() }
}
