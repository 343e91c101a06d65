import CBLAS

/// The v2 networks (`maestro-v2.gin`), one frame (4 ms) at a time, for all 16 voices:
/// FiLM context network → per voice note release, parametric tuning (f0, inharmonicity) and
/// the monophonic network. Everything is causal and normalised per frame, so frame-by-frame
/// evaluation is upstream's whole-sequence evaluation (to float rounding).
/// All buffers are allocated in `init`; `step` and the instrument changes do not allocate.
public struct V2Network: Sendable {
    public static let voices = V2Weights.voices

    public private(set) var instrument: Int
    public var context: V2ContextNetwork
    public var mono: V2MonophonicNetwork
    public var release: NoteRelease
    /// The tuning of the current (possibly blended) piano.
    public private(set) var tuning: ParametricTuning

    private let embeddingTable: [Float]   // [instruments, 32]
    private let tuningTables: [[Float]]   // 7 × [instruments], V2Weights.tuningParameters order
    private var embedding: [Float]        // [32]: the current (possibly blended) embedding
    /// The blend the FiLM parameters were computed for: (from, to, amount).
    private var blendKey: (Int, Int, Float) = (-1, -1, -1)

    /// Outputs of the last `step`.
    public private(set) var f0: [Float]                // [16] Hz
    public private(set) var inharmCoefficient: [Float] // [16] B (not clamped; the synth clamps at 0)
    public private(set) var extendedPitch: [Float]     // [16]
    /// [16, 225]: dense_out per voice (amplitude, 128 harmonic, 96 noise), raw.
    public var raw: [Float] { mono.raw }
    /// [32]
    public var contextVector: [Float] { context.context }

    public init(weights w: V2Weights, instrument: Int) {
        // Small products (16 rows): OpenBLAS's threads would only spin on the audio core.
        openblas_set_num_threads(1)
        context = V2ContextNetwork(weights: w)
        mono = V2MonophonicNetwork(weights: w, voices: Self.voices)
        release = NoteRelease(releaseDuration: w.releaseDuration, frameRate: V2Weights.frameRate, voices: Self.voices)
        embeddingTable = w["context.piano_embedding"].values
        tuningTables = V2Weights.tuningParameters.map { w["tuning.\($0)"].values }
        precondition(embeddingTable.count == w.instruments.count * context.embeddingSize
                     && tuningTables.allSatisfy { $0.count == w.instruments.count })
        embedding = [Float](repeating: 0, count: context.embeddingSize)
        f0 = [Float](repeating: 0, count: Self.voices)
        inharmCoefficient = [Float](repeating: 0, count: Self.voices)
        extendedPitch = [Float](repeating: 0, count: Self.voices)
        self.instrument = instrument
        tuning = ParametricTuning(weights: w, instrument: instrument)
        setInstrument(instrument)
    }

    public var instrumentCount: Int { tuningTables[0].count }

    /// The matrix products of one `step` (the context's row, then the voices').
    public var productShapes: [ProductShape] {
        let c = context, m = mono, v = Self.voices
        let contextShapes = c.conditioningHead.productShapes(rows: 1) + c.pedalHead.productShapes(rows: 1)
            + [c.denseIn.productShape(rows: 1)] + c.gru.productShapes + [c.denseOut.productShape(rows: 1)]
            + c.output.productShapes(rows: 1)
        let monoShapes = m.pitchStack.productShapes(rows: v) + m.conditioningStack.productShapes(rows: v)
            + m.contextStack.productShapes(rows: 1)
            + [ProductShape(rows: 1, inputs: m.contextStack.width, columns: 3 * m.gru.units)] + m.gru.productShapes
            + m.outStack.productShapes(rows: v) + [m.denseOut.productShape(rows: v)]
        return contextShapes + monoShapes
    }

    /// Zero GRU states and note-release state (the piano stays).
    public mutating func reset() {
        context.reset()
        mono.reset()
        release.reset()
    }

    /// Takes effect at the next step; the recurrent state is kept.
    public mutating func setInstrument(_ index: Int) {
        blendInstruments(from: index, to: index, amount: 1)
    }

    /// Linear glide between two pianos' per-piano values: the piano embedding (then the FiLM
    /// parameters from it) and the seven tuning values. `amount` 0 is `a`, 1 is `b`; the ends
    /// give the pianos' own values exactly. Recomputes only when the blend changes.
    public mutating func blendInstruments(from a: Int, to b: Int, amount t: Float) {
        precondition(a >= 0 && a < instrumentCount && b >= 0 && b < instrumentCount)
        instrument = t >= 1 ? b : a
        if blendKey.0 == a && blendKey.1 == b && blendKey.2 == t { return }
        blendKey = (a, b, t)
        let d = embedding.count
        embeddingTable.withUnsafeBufferPointer { e in
            for i in 0..<d { embedding[i] = (1 - t) * e[a * d + i] + t * e[b * d + i] }
        }
        embedding.withUnsafeBufferPointer { context.setEmbedding($0.baseAddress!) }
        let tt = tuningTables
        tuning = ParametricTuning(alphaB: Self.mix(tt[0], a, b, t), betaB: Self.mix(tt[1], a, b, t),
                                  alphaT: Self.mix(tt[2], a, b, t), betaT: Self.mix(tt[3], a, b, t),
                                  pitchRef: Self.mix(tt[4], a, b, t), k: Self.mix(tt[5], a, b, t),
                                  alpha: Self.mix(tt[6], a, b, t))
    }

    @inline(__always)
    private static func mix(_ table: [Float], _ a: Int, _ b: Int, _ t: Float) -> Float {
        (1 - t) * table[a] + t * table[b]
    }

    /// MIDI all-sound-off: drop the held release pitches.
    public mutating func silenceVoices() {
        release.reset()
    }

    /// One frame. `conditioning` [16, 2] = active MIDI pitch (0 silent), onset velocity, as
    /// upstream's conditioning tensor; `pedal` [4].
    /// A two-thread render splits a frame (see PianoNetwork.step): `rows` limits the monophonic
    /// network to those voices, `context` [32] is this frame's context from the other engine.
    public mutating func step(conditioning: UnsafePointer<Float>, pedal: UnsafePointer<Float>,
                              rows: Range<Int>? = nil, context given: UnsafePointer<Float>? = nil) {
        if given == nil { context.step(conditioning: conditioning, pedal: pedal) }
        let tuning = self.tuning
        for v in 0..<Self.voices {
            let pitch = conditioning[2 * v]
            let ext = release.forward(pitch: pitch, voice: v)
            let b = tuning.inharmonicity(ext)
            extendedPitch[v] = ext
            inharmCoefficient[v] = b
            f0[v] = tuning.f0(ext, inharm: b)
            mono.pitchInput[v] = ext / 128
            mono.conditioningInput[2 * v] = pitch / 128
            mono.conditioningInput[2 * v + 1] = conditioning[2 * v + 1]
        }
        if let given {
            mono.forward(context: given, rows: rows)
        } else {
            context.context.withUnsafeBufferPointer { mono.forward(context: $0.baseAddress!, rows: rows) }
        }
    }
}
