import DDSPPiano
import Foundation

// Training-mode composition of `V2MonophonicNetwork` (mirrors Sources/DDSPPiano/Model/V2MonophonicNetwork.swift).

/// v2's monophonic network over whole segments; sequences s = (batch element b, voice v),
/// s = b·voices + v, each a row per frame:
///   a = FcStack(64, 3)(extended pitch / 128); b = FcStack(64, 3)(pitch / 128, velocity)
///   c = FcStack(64, 3)(context of the element) — computed once per element and frame
///   g = GRU(192)(a | b | c);  raw = Dense(225)(FcStack(64, 3)(a | b | c | g)).
public struct V2MonophonicNetworkTraining: Sendable {
    public var pitchStack: FcStackTraining
    public var conditioningStack: FcStackTraining
    public var contextStack: FcStackTraining
    public var gru: GRUTraining                // 192 → 192: the whole kernel [192, 576]
    public var outStack: FcStackTraining
    public var denseOut: DenseTraining

    public init(weights w: V2Weights) {
        pitchStack = FcStackTraining(weights: w, name: "mono.pitch_stack", layers: 3)
        conditioningStack = FcStackTraining(weights: w, name: "mono.conditioning_stack", layers: 3)
        contextStack = FcStackTraining(weights: w, name: "mono.context_stack", layers: 3)
        gru = GRUTraining(kernel: w["mono.gru.kernel"].values, recurrentKernel: w["mono.gru.recurrent_kernel"].values,
                          inputBias: w["mono.gru.input_bias"].values, recurrentBias: w["mono.gru.recurrent_bias"].values)
        outStack = FcStackTraining(weights: w, name: "mono.out_stack", layers: 3)
        denseOut = DenseTraining(kernel: w["mono.dense_out.kernel"].values, bias: w["mono.dense_out.bias"].values, activation: .linear)
    }

    public var outputs: Int { denseOut.outputs }

    public struct Cache: Sendable {
        public var batch: Int, voices: Int, time: Int
        public var pitch: FcStackTraining.Cache
        public var conditioning: FcStackTraining.Cache
        public var context: FcStackTraining.Cache
        public var gru: GRUTraining.Cache
        public var outStack: FcStackTraining.Cache
        public var denseOut: DenseTraining.Cache
    }

    /// raw [S, T, 225] from `pitch` [S, T] (extended pitch / 128), `conditioning` [S, T, 2]
    /// (pitch / 128, velocity) and `context` [b, T, 32], S = b·voices.
    public func forward(pitch: [Float], conditioning: [Float], context: [Float], batch: Int, voices: Int, time: Int) -> (output: [Float], cache: Cache) {
        let S = batch * voices, rows = S * time
        let (a, ac) = pitchStack.forward(pitch, rows: rows)
        let (b, bc) = conditioningStack.forward(conditioning, rows: rows)
        let (c, cc) = contextStack.forward(context, rows: batch * time)
        let wa = pitchStack.width, wb = conditioningStack.width, wc = contextStack.width, gi = wa + wb + wc
        var x = [Float](repeating: 0, count: rows * gi)
        for s in 0..<S {
            let e = s / voices
            for t in 0..<time {
                let r = s * time + t, cr = e * time + t
                for j in 0..<wa { x[r * gi + j] = a[r * wa + j] }
                for j in 0..<wb { x[r * gi + wa + j] = b[r * wb + j] }
                for j in 0..<wc { x[r * gi + wa + wb + j] = c[cr * wc + j] }
            }
        }
        let g = gru.forward(x, batch: S, time: time)
        let u = gru.units, oi = gi + u
        var o = [Float](repeating: 0, count: rows * oi)
        for r in 0..<rows {
            for j in 0..<gi { o[r * oi + j] = x[r * gi + j] }
            for j in 0..<u { o[r * oi + gi + j] = g.output[r * u + j] }
        }
        let (os, osc) = outStack.forward(o, rows: rows)
        let out = denseOut.forward(os, rows: rows)
        return (out.output, Cache(batch: batch, voices: voices, time: time, pitch: ac, conditioning: bc, context: cc,
                                  gru: g, outStack: osc, denseOut: out))
    }

    /// Accumulates every gradient from dL/draw [S, T, 225]; returns dL/dcontext [b, T, 32]
    /// (summed over the element's voices).
    public mutating func backward(_ dy: [Float], cache k: Cache) -> [Float] {
        let S = k.batch * k.voices, time = k.time, rows = S * time
        let wa = pitchStack.width, wb = conditioningStack.width, wc = contextStack.width, gi = wa + wb + wc
        let u = gru.units, oi = gi + u
        let dos = denseOut.backward(dy, cache: k.denseOut)
        let dO = outStack.backward(dos, cache: k.outStack)
        var dg = [Float](repeating: 0, count: rows * u)
        for r in 0..<rows { for j in 0..<u { dg[r * u + j] = dO[r * oi + gi + j] } }
        let dx = gru.backward(dg, cache: k.gru)
        var da = [Float](repeating: 0, count: rows * wa), db = [Float](repeating: 0, count: rows * wb)
        var dc = [Float](repeating: 0, count: k.batch * time * wc)
        for s in 0..<S {
            let e = s / k.voices
            for t in 0..<time {
                let r = s * time + t, cr = e * time + t
                for j in 0..<wa { da[r * wa + j] = dO[r * oi + j] + dx[r * gi + j] }
                for j in 0..<wb { db[r * wb + j] = dO[r * oi + wa + j] + dx[r * gi + wa + j] }
                for j in 0..<wc { dc[cr * wc + j] += dO[r * oi + wa + wb + j] + dx[r * gi + wa + wb + j] }
            }
        }
        _ = pitchStack.backward(da, cache: k.pitch)
        _ = conditioningStack.backward(db, cache: k.conditioning)
        return contextStack.backward(dc, cache: k.context)
    }

    public mutating func zeroGrad() {
        pitchStack.zeroGrad(); conditioningStack.zeroGrad(); contextStack.zeroGrad(); gru.zeroGrad(); outStack.zeroGrad(); denseOut.zeroGrad()
    }

    public mutating func forEachParameter(_ body: (_ name: String, _ value: inout [Float], _ grad: inout [Float]) -> Void) {
        pitchStack.forEachParameter("mono.pitch_stack", body)
        conditioningStack.forEachParameter("mono.conditioning_stack", body)
        contextStack.forEachParameter("mono.context_stack", body)
        body("mono.gru.kernel", &gru.kernel, &gru.kernelGrad)
        body("mono.gru.recurrent_kernel", &gru.recurrentKernel, &gru.recurrentKernelGrad)
        body("mono.gru.input_bias", &gru.inputBias, &gru.inputBiasGrad)
        body("mono.gru.recurrent_bias", &gru.recurrentBias, &gru.recurrentBiasGrad)
        outStack.forEachParameter("mono.out_stack", body)
        body("mono.dense_out.kernel", &denseOut.kernel, &denseOut.kernelGrad)
        body("mono.dense_out.bias", &denseOut.bias, &denseOut.biasGrad)
    }
}
