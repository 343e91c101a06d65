/// Global context, once per frame: [16 × (pitch, velocity), 4 pedals, z] (52; pitch is the raw
/// MIDI number: dafx22 leaves the context net's pitch normalisation off)
/// → Dense(32, leaky ReLU) → GRU(64) → Normalize → Dense(32) = context.
public struct ContextNetwork: Sendable {
    public var dense: Dense          // [52, 32]
    public var gru: GRU              // 32 → 64, batch 1
    public var norm: Normalize       // 64
    public var out: Dense            // [64, 32]

    private var input: [Float]       // [52]
    private var hidden: [Float]      // [32]
    /// The GRU output of the last step, before Normalize: [64].
    public private(set) var preNorm: [Float]
    private var normed: [Float]      // [64] scratch

    public init(weights w: PianoWeights) {
        dense = Dense(kernel: w.contextDenseKernel, bias: w.contextDenseBias, activation: .leakyReLU)
        gru = GRU(kernel: w.contextGRUKernel, recurrentKernel: w.contextGRURecurrentKernel,
                  inputBias: w.contextGRUInputBias, recurrentBias: w.contextGRURecurrentBias, batch: 1)
        norm = Normalize(scale: w.contextNormScale, shift: w.contextNormShift)
        out = Dense(kernel: w.contextOutKernel, bias: w.contextOutBias, activation: .linear)
        input = [Float](repeating: 0, count: dense.inputs)
        hidden = [Float](repeating: 0, count: dense.outputs)
        preNorm = [Float](repeating: 0, count: gru.units)
        normed = preNorm
    }

    public mutating func reset() { gru.reset() }

    /// One frame up to the Normalize input. `conditioning` is [voices, 2], `pedal` [4], `z` [zDim].
    public mutating func forwardToNorm(conditioning: UnsafePointer<Float>, voices: Int, pedal: UnsafePointer<Float>, z: UnsafePointer<Float>) {
        let nc = 2 * voices, zDim = dense.inputs - nc - 4
        input.withUnsafeMutableBufferPointer { x in
            x.baseAddress!.update(from: conditioning, count: nc)
            (x.baseAddress! + nc).update(from: pedal, count: 4)
            (x.baseAddress! + nc + 4).update(from: z, count: zDim)
            hidden.withUnsafeMutableBufferPointer { h in
                dense.forward(x.baseAddress!, rows: 1, into: h.baseAddress!)
                preNorm.withUnsafeMutableBufferPointer { p in gru.forward(h.baseAddress!, into: p.baseAddress!) }
            }
        }
    }

    /// Normalises the last `preNorm` with the given statistics and writes the context [32].
    public mutating func finish(mean: Float, variance: Float, into context: UnsafeMutablePointer<Float>) {
        normed.withUnsafeMutableBufferPointer { n in
            preNorm.withUnsafeBufferPointer { n.baseAddress!.update(from: $0.baseAddress!, count: $0.count) }
            norm.apply(n.baseAddress!, mean: mean, variance: variance)
            out.forward(n.baseAddress!, rows: 1, into: context)
        }
    }
}
