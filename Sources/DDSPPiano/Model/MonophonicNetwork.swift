/// Per voice, batched over the 16 voices: [extended pitch/128, pitch/128, velocity, context]
/// (35) → Dense(128, leaky ReLU) → GRU(192) → Dense(192, leaky ReLU) → Normalize
/// → Dense(161) = [amplitude, 96 harmonic weights, 64 noise magnitudes] (raw).
public struct MonophonicNetwork: Sendable {
    public var dense: Dense          // [35, 128]
    public var gru: GRU              // 128 → 192, batch = voices
    public var hidden: Dense         // [192, 192]
    public var norm: Normalize       // 192
    public var out: Dense            // [192, 161]
    public let voices: Int

    /// [voices, 35]: filled by the caller before `forwardToNorm`.
    public var input: [Float]
    private var denseOut: [Float]    // [voices, 128]
    private var gruOut: [Float]      // [voices, 192]
    /// Per voice, the Normalize input of the last step: [voices, 192].
    public private(set) var preNorm: [Float]
    private var normed: [Float]      // [voices, 192] scratch
    /// Per voice, the raw outputs after `finish`: [voices, 161].
    public private(set) var raw: [Float]

    public init(weights w: PianoWeights, voices: Int) {
        self.voices = voices
        dense = Dense(kernel: w.monoDenseKernel, bias: w.monoDenseBias, activation: .leakyReLU)
        gru = GRU(kernel: w.monoGRUKernel, recurrentKernel: w.monoGRURecurrentKernel,
                  inputBias: w.monoGRUInputBias, recurrentBias: w.monoGRURecurrentBias, batch: voices)
        hidden = Dense(kernel: w.monoHiddenKernel, bias: w.monoHiddenBias, activation: .leakyReLU)
        norm = Normalize(scale: w.monoNormScale, shift: w.monoNormShift)
        out = Dense(kernel: w.monoOutKernel, bias: w.monoOutBias, activation: .linear)
        input = [Float](repeating: 0, count: voices * dense.inputs)
        denseOut = [Float](repeating: 0, count: voices * dense.outputs)
        gruOut = [Float](repeating: 0, count: voices * gru.units)
        preNorm = [Float](repeating: 0, count: voices * hidden.outputs)
        raw = [Float](repeating: 0, count: voices * out.outputs)
        normed = preNorm
    }

    public mutating func reset() { gru.reset() }

    public mutating func forwardToNorm() {
        let v = voices
        input.withUnsafeBufferPointer { x in
        denseOut.withUnsafeMutableBufferPointer { d in
        gruOut.withUnsafeMutableBufferPointer { g in
        preNorm.withUnsafeMutableBufferPointer { p in
            dense.forward(x.baseAddress!, rows: v, into: d.baseAddress!)
            gru.forward(d.baseAddress!, into: g.baseAddress!)
            hidden.forward(g.baseAddress!, rows: v, into: p.baseAddress!)
        }}}}
    }

    /// Normalises each voice with its own statistics and computes `raw`.
    public mutating func finish(means: UnsafePointer<Float>, variances: UnsafePointer<Float>) {
        let c = hidden.outputs
        normed.withUnsafeMutableBufferPointer { p in
            preNorm.withUnsafeBufferPointer { p.baseAddress!.update(from: $0.baseAddress!, count: $0.count) }
            for v in 0..<voices { norm.apply(p.baseAddress! + v * c, mean: means[v], variance: variances[v]) }
            raw.withUnsafeMutableBufferPointer { r in out.forward(p.baseAddress!, rows: voices, into: r.baseAddress!) }
        }
    }
}
