import DDSPPiano
import Foundation

// Training-mode composition of `V2ContextNetwork` (mirrors Sources/DDSPPiano/Model/V2ContextNetwork.swift).

/// v2's FiLM context network over whole segments, rows = (batch element, frame):
///   conditioning [b, T, 16, 2] / [128, 1] → FcStack(32, 2); pedal [b, T, 4] → FcStack(16, 2)
///   concat → Dense(64, leaky) → GRU(64) → Dense(64) → LayerNorm → leaky
///   → · coef + bias (halves of Dense(128)(piano embedding)) → FcStack(32, 2) = context [b, T, 32].
public struct V2ContextNetworkTraining: Sendable {
    public var conditioningHead: FcStackTraining
    public var pedalHead: FcStackTraining
    public var denseIn: DenseTraining
    public var gru: GRUTraining
    public var denseOut: DenseTraining
    public var norm: LayerNormTraining
    public var film: DenseTraining            // [32, 128] on the piano embedding
    public var output: FcStackTraining
    public var embedding: [Float]             // [instruments, 32]
    public var embeddingGrad: [Float]

    public init(weights w: V2Weights) {
        conditioningHead = FcStackTraining(weights: w, name: "context.conditioning_head", layers: 2)
        pedalHead = FcStackTraining(weights: w, name: "context.pedal_head", layers: 2)
        denseIn = DenseTraining(kernel: w["context.dense_in.kernel"].values, bias: w["context.dense_in.bias"].values, activation: .leakyReLU)
        gru = GRUTraining(kernel: w["context.gru.kernel"].values, recurrentKernel: w["context.gru.recurrent_kernel"].values,
                          inputBias: w["context.gru.input_bias"].values, recurrentBias: w["context.gru.recurrent_bias"].values)
        denseOut = DenseTraining(kernel: w["context.dense_out.kernel"].values, bias: w["context.dense_out.bias"].values, activation: .linear)
        norm = LayerNormTraining(gamma: w["context.norm.gamma"].values, beta: w["context.norm.beta"].values, leaky: false)
        film = DenseTraining(kernel: w["context.film.kernel"].values, bias: w["context.film.bias"].values, activation: .linear)
        output = FcStackTraining(weights: w, name: "context.output", layers: 2)
        embedding = w["context.piano_embedding"].values
        embeddingGrad = embedding.zeroed
    }

    public var width: Int { output.width }
    var half: Int { norm.channels }
    var embeddingSize: Int { film.inputs }

    public struct Cache: Sendable {
        public var batch: Int, time: Int
        public var instruments: [Int]
        public var conditioning: FcStackTraining.Cache
        public var pedal: FcStackTraining.Cache
        public var denseIn: DenseTraining.Cache
        public var gru: GRUTraining.Cache
        public var denseOut: DenseTraining.Cache
        public var norm: LayerNormTraining.Cache
        public var film: DenseTraining.Cache      // rows = batch
        public var activated: [Float]            // [b·T, 64]: leaky(LayerNorm), what FiLM scales
        public var output: FcStackTraining.Cache
    }

    /// context [b·T, 32] from `conditioning` [b, T, 16, 2] (active pitch, onset velocity),
    /// `pedal` [b, T, 4] and each element's piano.
    public func forward(conditioning: [Float], pedal: [Float], instruments: [Int], batch: Int, time: Int) -> (output: [Float], cache: Cache) {
        let rows = batch * time, h = half, d = embeddingSize
        var x = conditioning
        for i in stride(from: 0, to: x.count, by: 2) { x[i] /= 128 }
        let (cf, cc) = conditioningHead.forward(x, rows: rows)
        let (pf, pc) = pedalHead.forward(pedal, rows: rows)
        var features = [Float](repeating: 0, count: rows * denseIn.inputs)
        let wc = conditioningHead.width, wp = pedalHead.width
        for r in 0..<rows {
            for j in 0..<wc { features[r * (wc + wp) + j] = cf[r * wc + j] }
            for j in 0..<wp { features[r * (wc + wp) + wc + j] = pf[r * wp + j] }
        }
        let d0 = denseIn.forward(features, rows: rows)
        let g = gru.forward(d0.output, batch: batch, time: time)
        let d1 = denseOut.forward(g.output, rows: rows)
        let (ln, nc) = norm.forward(d1.output, rows: rows)
        var e = [Float](repeating: 0, count: batch * d)
        for b in 0..<batch { for i in 0..<d { e[b * d + i] = embedding[instruments[b] * d + i] } }
        let f = film.forward(e, rows: batch)
        var a = ln, filmed = ln
        for r in 0..<rows {
            let b = r / time
            for i in 0..<h {
                let v = ln[r * h + i]
                a[r * h + i] = v < 0 ? v * Dense.leakySlope : v
                filmed[r * h + i] = a[r * h + i] * f.output[b * 2 * h + i] + f.output[b * 2 * h + h + i]
            }
        }
        let (out, oc) = output.forward(filmed, rows: rows)
        return (out, Cache(batch: batch, time: time, instruments: instruments, conditioning: cc, pedal: pc, denseIn: d0, gru: g,
                           denseOut: d1, norm: nc, film: f, activated: a, output: oc))
    }

    /// Accumulates every gradient from dL/dcontext [b·T, 32] (the inputs are data: no gradient).
    public mutating func backward(_ dy: [Float], cache c: Cache) {
        let rows = c.batch * c.time, h = half, d = embeddingSize
        let dFilmed = output.backward(dy, cache: c.output)
        var dFilm = [Float](repeating: 0, count: c.batch * 2 * h)
        var dln = [Float](repeating: 0, count: rows * h)
        for r in 0..<rows {
            let b = r / c.time
            for i in 0..<h {
                let g = dFilmed[r * h + i]
                dFilm[b * 2 * h + i] += g * c.activated[r * h + i]
                dFilm[b * 2 * h + h + i] += g
                let da = g * c.film.output[b * 2 * h + i]
                dln[r * h + i] = c.norm.output[r * h + i] < 0 ? da * Dense.leakySlope : da
            }
        }
        let de = film.backward(dFilm, cache: c.film)
        for b in 0..<c.batch { for i in 0..<d { embeddingGrad[c.instruments[b] * d + i] += de[b * d + i] } }
        let dd1 = norm.backward(dln, cache: c.norm)
        let dg = denseOut.backward(dd1, cache: c.denseOut)
        let dd0 = gru.backward(dg, cache: c.gru)
        let dFeatures = denseIn.backward(dd0, cache: c.denseIn)
        let wc = conditioningHead.width, wp = pedalHead.width
        var dcf = [Float](repeating: 0, count: rows * wc), dpf = [Float](repeating: 0, count: rows * wp)
        for r in 0..<rows {
            for j in 0..<wc { dcf[r * wc + j] = dFeatures[r * (wc + wp) + j] }
            for j in 0..<wp { dpf[r * wp + j] = dFeatures[r * (wc + wp) + wc + j] }
        }
        _ = conditioningHead.backward(dcf, cache: c.conditioning)
        _ = pedalHead.backward(dpf, cache: c.pedal)
    }

    public mutating func zeroGrad() {
        conditioningHead.zeroGrad(); pedalHead.zeroGrad(); denseIn.zeroGrad(); gru.zeroGrad(); denseOut.zeroGrad()
        norm.zeroGrad(); film.zeroGrad(); output.zeroGrad(); embeddingGrad.setZero()
    }

    /// The trainable tensors under their weight-file names (`V2Weights.layout`).
    public mutating func forEachParameter(_ body: (_ name: String, _ value: inout [Float], _ grad: inout [Float]) -> Void) {
        conditioningHead.forEachParameter("context.conditioning_head", body)
        pedalHead.forEachParameter("context.pedal_head", body)
        body("context.piano_embedding", &embedding, &embeddingGrad)
        body("context.dense_in.kernel", &denseIn.kernel, &denseIn.kernelGrad)
        body("context.dense_in.bias", &denseIn.bias, &denseIn.biasGrad)
        body("context.gru.kernel", &gru.kernel, &gru.kernelGrad)
        body("context.gru.recurrent_kernel", &gru.recurrentKernel, &gru.recurrentKernelGrad)
        body("context.gru.input_bias", &gru.inputBias, &gru.inputBiasGrad)
        body("context.gru.recurrent_bias", &gru.recurrentBias, &gru.recurrentBiasGrad)
        body("context.dense_out.kernel", &denseOut.kernel, &denseOut.kernelGrad)
        body("context.dense_out.bias", &denseOut.bias, &denseOut.biasGrad)
        body("context.norm.gamma", &norm.gamma, &norm.gammaGrad)
        body("context.norm.beta", &norm.beta, &norm.betaGrad)
        body("context.film.kernel", &film.kernel, &film.kernelGrad)
        body("context.film.bias", &film.bias, &film.biasGrad)
        output.forEachParameter("context.output", body)
    }
}
