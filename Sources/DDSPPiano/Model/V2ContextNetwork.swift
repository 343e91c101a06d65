/// v2's FiLM context network (upstream FiLMContextNetwork), one frame:
///   conditioning [16, 2] / [128, 1], flattened voice-major to 32 → FcStack(32, 2)
///   pedal [4] → FcStack(16, 2)
///   concat (48) → Dense(64, leaky) → GRU(64) → Dense(64) → LayerNorm → leaky
///   → · coef + bias (FiLM; coef, bias = halves of Dense(128)(piano embedding))
///   → FcStack(32, 2) = context [32].
/// The FiLM parameters depend only on the piano: `setEmbedding` computes them, `step` uses them.
public struct V2ContextNetwork: Sendable {
    public static let voices = V2Weights.voices

    public var conditioningHead: FcStack   // 32 → 32, 2 layers
    public var pedalHead: FcStack          // 4 → 16, 2 layers
    public var denseIn: Dense              // [48, 64], leaky
    public var gru: GRU                    // 64 → 64, batch 1
    public var denseOut: Dense             // [64, 64], linear
    public var norm: LayerNorm             // 64
    public var output: FcStack             // 64 → 32, 2 layers
    public let filmKernel: [Float]         // [32, 128]
    public let filmBias: [Float]           // [128]

    /// FiLM parameters of the current embedding: coefficients [0, 64), biases [64, 128).
    public private(set) var film: [Float]            // [128]
    /// Taps of the last step (for tests and inspection).
    public private(set) var input: [Float]           // [32]: pitch/128, velocity per voice
    public private(set) var features: [Float]        // [48]: conditioning head [0, 32), pedal head [32, 48)
    public private(set) var dense0: [Float]          // [64]
    public private(set) var gruOutput: [Float]       // [64]
    public private(set) var dense1: [Float]          // [64]
    public private(set) var normalized: [Float]      // [64]: LayerNorm output, before leaky
    public private(set) var filmOutput: [Float]      // [64]
    public private(set) var context: [Float]         // [32]

    public init(weights w: V2Weights) {
        conditioningHead = FcStack(weights: w, name: "context.conditioning_head", layers: 2, maxRows: 1)
        pedalHead = FcStack(weights: w, name: "context.pedal_head", layers: 2, maxRows: 1)
        denseIn = Dense(kernel: w["context.dense_in.kernel"], bias: w["context.dense_in.bias"], activation: .leakyReLU, maxRows: 1)
        gru = GRU(kernel: w["context.gru.kernel"], recurrentKernel: w["context.gru.recurrent_kernel"],
                  inputBias: w["context.gru.input_bias"], recurrentBias: w["context.gru.recurrent_bias"], batch: 1)
        denseOut = Dense(kernel: w["context.dense_out.kernel"], bias: w["context.dense_out.bias"], activation: .linear, maxRows: 1)
        norm = LayerNorm(gamma: w["context.norm.gamma"], beta: w["context.norm.beta"])
        output = FcStack(weights: w, name: "context.output", layers: 2, maxRows: 1)
        filmKernel = w["context.film.kernel"].values
        filmBias = w["context.film.bias"].values
        func zeros(_ n: Int) -> [Float] { [Float](repeating: 0, count: n) }
        film = zeros(filmBias.count)
        input = zeros(conditioningHead.inputs)
        features = zeros(denseIn.inputs)
        dense0 = zeros(denseIn.outputs)
        gruOutput = zeros(gru.units)
        dense1 = zeros(denseOut.outputs)
        normalized = zeros(norm.channels)
        filmOutput = zeros(norm.channels)
        context = zeros(output.width)
        precondition(conditioningHead.inputs == 2 * Self.voices && pedalHead.inputs == 4
                     && denseIn.inputs == conditioningHead.width + pedalHead.width
                     && filmBias.count == 2 * norm.channels && filmKernel.count % filmBias.count == 0)
    }

    /// Size of the piano embedding (32).
    public var embeddingSize: Int { filmBias.isEmpty ? 0 : filmKernel.count / filmBias.count }

    public mutating func reset() { gru.reset() }

    /// FiLM parameters from a piano embedding [32]: film = e · K + b (upstream's Dense on the
    /// embedding row, float32 result; accumulated in Double, so within half an ulp of exact).
    public mutating func setEmbedding(_ e: UnsafePointer<Float>) {
        let n = filmBias.count, d = embeddingSize
        filmKernel.withUnsafeBufferPointer { k in
            for j in 0..<n {
                var s = 0.0
                for i in 0..<d { s += Double(e[i]) * Double(k[i * n + j]) }
                film[j] = Float(s) + filmBias[j]
            }
        }
    }

    /// One frame: `conditioning` [16, 2] (active pitch, onset velocity), `pedal` [4]; writes `context`.
    public mutating func step(conditioning: UnsafePointer<Float>, pedal: UnsafePointer<Float>) {
        let half = norm.channels
        input.withUnsafeMutableBufferPointer { x in
            for v in 0..<Self.voices {
                x[2 * v] = conditioning[2 * v] / 128
                x[2 * v + 1] = conditioning[2 * v + 1]
            }
        }
        input.withUnsafeBufferPointer { x in
        features.withUnsafeMutableBufferPointer { f in
        dense0.withUnsafeMutableBufferPointer { d0 in
        gruOutput.withUnsafeMutableBufferPointer { g in
        dense1.withUnsafeMutableBufferPointer { d1 in
        normalized.withUnsafeMutableBufferPointer { ln in
        filmOutput.withUnsafeMutableBufferPointer { fo in
        film.withUnsafeBufferPointer { fp in
        context.withUnsafeMutableBufferPointer { c in
            let fb = f.baseAddress!
            conditioningHead.forward(x.baseAddress!, rows: 1, into: fb)
            pedalHead.forward(pedal, rows: 1, into: fb + conditioningHead.width)
            denseIn.forward(fb, rows: 1, into: d0.baseAddress!)
            gru.forward(d0.baseAddress!, into: g.baseAddress!)
            denseOut.forward(g.baseAddress!, rows: 1, into: d1.baseAddress!)
            norm.forward(d1.baseAddress!, rows: 1, into: ln.baseAddress!, leaky: false)
            // leaky, then FiLM as two float32 operations (multiply, add), like upstream.
            for i in 0..<half {
                let v = ln[i]
                let a = v < 0 ? v * Dense.leakySlope : v
                let scaled = a * fp[i]
                fo[i] = scaled + fp[half + i]
            }
            output.forward(fo.baseAddress!, rows: 1, into: c.baseAddress!)
        }}}}}}}}}
    }
}
