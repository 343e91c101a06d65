import CBLAS

/// The DDSP-Piano networks, one frame (4 ms) at a time, for all 16 voices:
/// z-encoder → context network → per voice note release, inharmonicity, detuner and the
/// monophonic network. Normalisation statistics are passed in (see `NormalizationStatistics`).
/// All buffers are allocated in `init`; `step` does not allocate.
public struct PianoNetwork: Sendable {
    public let hyper: PianoWeights.Hyper
    public private(set) var instrument: Int

    public var context: ContextNetwork
    public var mono: MonophonicNetwork
    public var release: NoteRelease
    public let inharmonicity: Inharmonicity
    public let detuner: Detuner

    private let zTable: [Float]            // [instruments, zDim]
    private let inharmTable: [Float]       // [instruments]
    private let detuneTable: [Float]       // [instruments]
    private var z: [Float]                 // [zDim]
    private var instrumentInharm: Float = 0
    private var instrumentDetuning: Float = 0

    /// Outputs of the last `step`.
    public private(set) var contextVector: [Float]   // [32]
    public private(set) var extendedPitch: [Float]   // [voices]
    public private(set) var inharmCoefficient: [Float] // [voices]
    public private(set) var f0: [Float]              // [voices, substrings]

    public init(weights w: PianoWeights, instrument: Int) {
        // The products here are small (16 rows): OpenBLAS's threads only spin and steal the
        // core the audio needs. One thread, always.
        openblas_set_num_threads(1)
        hyper = w.hyper
        self.instrument = instrument
        context = ContextNetwork(weights: w)
        mono = MonophonicNetwork(weights: w, voices: w.hyper.voices)
        release = NoteRelease(releaseDuration: w.releaseDuration.values[0], frameRate: w.hyper.frameRate, voices: w.hyper.voices)
        inharmonicity = Inharmonicity(weights: w)
        detuner = Detuner(weights: w)
        zTable = w.zEmbedding.values
        inharmTable = w.inharmonicityEmbedding.values
        detuneTable = w.detuningEmbedding.values
        z = [Float](repeating: 0, count: w.hyper.zDim)
        contextVector = [Float](repeating: 0, count: w.hyper.contextUnits)
        extendedPitch = [Float](repeating: 0, count: w.hyper.voices)
        inharmCoefficient = [Float](repeating: 0, count: w.hyper.voices)
        f0 = [Float](repeating: 0, count: w.hyper.voices * w.hyper.substrings)
        setInstrument(instrument)
    }

    public var instrumentCount: Int { inharmTable.count }

    /// The matrix products of one `step` (the context's row, then the voices').
    public var productShapes: [ProductShape] {
        let v = hyper.voices
        return [context.dense.productShape(rows: 1)] + context.gru.productShapes + [context.out.productShape(rows: 1),
                mono.dense.productShape(rows: v)] + mono.gru.productShapes
            + [mono.hidden.productShape(rows: v), mono.out.productShape(rows: v)]
    }

    /// Takes effect from the next step; the recurrent state is kept.
    public mutating func setInstrument(_ index: Int) {
        blendInstruments(from: index, to: index, amount: 1)
    }

    /// The instrument embeddings (z and the inharmonicity and detuning scalars) interpolated
    /// from one piano to another: switching while playing glides over a few frames instead of
    /// jumping. `amount` 0 is `from`, 1 is `to`.
    public mutating func blendInstruments(from a: Int, to b: Int, amount t: Float) {
        precondition(a >= 0 && a < inharmTable.count && b >= 0 && b < inharmTable.count)
        instrument = t >= 1 ? b : a
        let d = hyper.zDim
        for i in 0..<d { z[i] = (1 - t) * zTable[a * d + i] + t * zTable[b * d + i] }
        instrumentInharm = (1 - t) * inharmTable[a] + t * inharmTable[b]
        instrumentDetuning = (1 - t) * detuneTable[a] + t * detuneTable[b]
    }

    public mutating func reset() {
        context.reset()
        mono.reset()
        release.reset()
    }

    /// Silences every voice at once (MIDI all-sound-off): the held release pitches are dropped.
    public mutating func silenceVoices() {
        release.reset()
    }

    /// Context network up to its Normalize input (`context.preNorm`): the first offline pass.
    public mutating func stepContextToNorm(conditioning: UnsafePointer<Float>, pedal: UnsafePointer<Float>) {
        z.withUnsafeBufferPointer { zp in
            context.forwardToNorm(conditioning: conditioning, voices: hyper.voices, pedal: pedal, z: zp.baseAddress!)
        }
    }

    public enum Stage: Sendable { case monoToNorm, full }

    /// One frame. `conditioning` is [voices, 2] (pitch, onset velocity), `pedal` [4].
    /// `.monoToNorm` stops at the monophonic Normalize input (`mono.preNorm`, the second
    /// offline pass); `.full` also computes `mono.raw`.
    /// A two-thread render splits a frame: `rows` limits the monophonic network to those voices
    /// (the others' outputs are left as they were), and `context` [32], when given, is this
    /// frame's context vector from the other engine (the context network is not run).
    public mutating func step(conditioning: UnsafePointer<Float>, pedal: UnsafePointer<Float>,
                              statistics s: NormalizationStatistics, stage: Stage = .full,
                              rows: Range<Int>? = nil, context given: UnsafePointer<Float>? = nil) {
        if let given {
            contextVector.withUnsafeMutableBufferPointer { $0.baseAddress!.update(from: given, count: $0.count) }
        } else {
            stepContextToNorm(conditioning: conditioning, pedal: pedal)
            contextVector.withUnsafeMutableBufferPointer { c in
                context.finish(mean: s.contextMean, variance: s.contextVariance, into: c.baseAddress!)
            }
        }
        let voices = hyper.voices, substrings = hyper.substrings, monoIn = mono.dense.inputs, cu = hyper.contextUnits
        let instInharm = instrumentInharm, instDetune = instrumentDetuning
        for v in 0..<voices {
            let pitch = conditioning[2 * v], velocity = conditioning[2 * v + 1]
            let ext = release.forward(pitch: pitch, voice: v)
            extendedPitch[v] = ext
            inharmCoefficient[v] = inharmonicity.coefficient(extendedPitch: ext, instrumentInharm: instInharm)
            for s in 0..<substrings {
                f0[v * substrings + s] = detuner.f0(extendedPitch: ext, substring: s, instrumentDetuning: instDetune)
            }
            let row = v * monoIn
            mono.input[row] = ext / 128
            mono.input[row + 1] = pitch / 128
            mono.input[row + 2] = velocity
            for i in 0..<cu { mono.input[row + 3 + i] = contextVector[i] }
        }
        mono.forwardToNorm(rows: rows)
        if stage == .full {
            s.monoMeans.withUnsafeBufferPointer { m in
                s.monoVariances.withUnsafeBufferPointer { va in
                    mono.finish(means: m.baseAddress!, variances: va.baseAddress!, rows: rows)
                }
            }
        }
    }
}

/// The statistics of the two Normalize layers: one (mean, variance) for the context and one
/// per voice for the monophonic network. Offline `--exact` renders measure them over the
/// whole sequence like upstream; a streaming engine must estimate them.
public struct NormalizationStatistics: Sendable, Equatable {
    public var contextMean: Float
    public var contextVariance: Float
    public var monoMeans: [Float]
    public var monoVariances: [Float]

    public init(contextMean: Float, contextVariance: Float, monoMeans: [Float], monoVariances: [Float]) {
        self.contextMean = contextMean
        self.contextVariance = contextVariance
        self.monoMeans = monoMeans
        self.monoVariances = monoVariances
    }

    public init(voices: Int) {
        self.init(contextMean: 0, contextVariance: 1, monoMeans: [Float](repeating: 0, count: voices),
                  monoVariances: [Float](repeating: 1, count: voices))
    }
}
