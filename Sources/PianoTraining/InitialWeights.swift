import DDSPPiano
import Foundation
import PianoStudy

// Where a training run's weights come from: a fresh model initialised as upstream's Keras
// layers are, or an existing weight file with instruments added or renamed for fine-tuning.

/// A small seeded generator (SplitMix64) for initialisation and data order: the same seed gives
/// the same run on every machine.
public struct TrainingRNG: Sendable {
    private var generator: SplitMix64
    /// The seed is offset once, as it always was: the sequences of existing runs stay the same.
    public init(seed: UInt64) { generator = SplitMix64(seed: seed &+ 0x9E37_79B9_7F4A_7C15) }

    public mutating func next() -> UInt64 { generator.next() }

    /// Uniform in [0, 1).
    public mutating func uniform() -> Double { generator.unit() }

    /// Standard normal (Box–Muller).
    public mutating func normal() -> Double {
        let u = max(uniform(), 1e-300), v = uniform()
        return (-2 * Foundation.log(u)).squareRoot() * cos(2 * .pi * v)
    }

    /// Fisher–Yates shuffle of 0..<n.
    public mutating func permutation(_ n: Int) -> [Int] {
        var p = Array(0..<n)
        if n > 1 { for i in stride(from: n - 1, to: 0, by: -1) { p.swapAt(i, Int(next() % UInt64(i + 1))) } }
        return p
    }

    /// A seed derived from several integers (for per-epoch orders and per-step noise).
    public static func derive(_ parts: UInt64...) -> UInt64 {
        var g = TrainingRNG(seed: 0x5EED)
        for p in parts { g.generator.state ^= p &* 0xD6E8_FEB8_6659_FD93; _ = g.next() }
        return g.next()
    }
}


/// Where each row of an instrument list comes from in a weight file's list: its own row, an
/// alias's, or nil (a new instrument: the mean of the file's rows).
func instrumentSources(_ names: [String], in instruments: [String], aliases: [String: String]) throws -> [Int?] {
    try names.map { name in
        let existing = aliases[name] ?? name
        if let i = instruments.firstIndex(of: existing) { return i }
        if aliases[name] != nil {
            throw WeightsError("instrument '\(existing)' (for '\(name)') is not in the weights; they have \(instruments.joined(separator: ", "))")
        }
        return nil
    }
}

/// A per-instrument tensor (first dimension = instrument, `from` of them) with the rows `sources` name.
func instrumentRows(_ t: Tensor, from n: Int, _ sources: [Int?]) -> Tensor {
    let row = t.count / n
    var values = [Float](); values.reserveCapacity(sources.count * row)
    for source in sources {
        if let s = source { values += t.values[(s * row)..<((s + 1) * row)] }
        else {
            for j in 0..<row {
                var sum: Float = 0
                for i in 0..<n { sum += t.values[i * row + j] }
                values.append(sum / Float(n))
            }
        }
    }
    return Tensor(shape: [sources.count] + Array(t.shape.dropFirst()), values: values)
}

/// [rows, cols] with orthonormal rows (Gram–Schmidt on Gaussian rows), as Keras' Orthogonal
/// initializer gives for a wide matrix.
func orthogonalRows(_ rows: Int, _ cols: Int, _ rng: inout TrainingRNG) -> [Float] {
    var m = (0..<(rows * cols)).map { _ in rng.normal() }
    for r in 0..<rows {
        for q in 0..<r {
            var dot = 0.0
            for c in 0..<cols { dot += m[r * cols + c] * m[q * cols + c] }
            for c in 0..<cols { m[r * cols + c] -= dot * m[q * cols + c] }
        }
        var norm = 0.0
        for c in 0..<cols { norm += m[r * cols + c] * m[r * cols + c] }
        for c in 0..<cols { m[r * cols + c] /= norm.squareRoot() }
    }
    return m.map { Float($0) }
}

extension PianoWeights {
    /// A fresh model as upstream builds it before training (Keras defaults): dense and GRU input
    /// kernels Glorot-uniform, recurrent kernels orthogonal, biases zero, Normalize scale 1 and
    /// shift 0, embeddings uniform in ±0.05, reverb impulse responses N(0, 1e-6), the detuner and
    /// the inharmonicity modifiers zero, Rigaud's fixed inharmonicity lines and a 1.1 s release.
    ///
    /// One departure, `harmonicPrior` (0 turns it off): the output biases of the harmonic
    /// distribution start at −a·ln k (partial k's share ∝ k^(−a·ln 10), a decaying spectrum) and
    /// the global amplitude's at −a, instead of zero (a flat 96-partial spectrum at exp_sigmoid(0)
    /// = 0.4). From the flat start, the first steps on SoundFont data drove the partials' amplitude
    /// to exp_sigmoid's 1e-7 floor, where it stayed (the model learnt filtered noise only: with
    /// lr 1e-3 partials at −122 dBFS after 925 steps; with 3e-4 falling through −89 dBFS by
    /// step 225); from the prior they stay in play.
    public static func initial(hyper h: Hyper = Hyper(), instruments: [String], seed: UInt64, harmonicPrior a: Float = 1) -> PianoWeights {
        var w = PianoWeights(hyper: h, instruments: instruments)
        var rng = TrainingRNG(seed: seed)
        func uniform(_ p: WritableKeyPath<PianoWeights, Tensor>, _ limit: Double) {
            for i in 0..<w[keyPath: p].count { w[keyPath: p].values[i] = Float((2 * rng.uniform() - 1) * limit) }
        }
        func glorot(_ p: WritableKeyPath<PianoWeights, Tensor>) {
            let s = w[keyPath: p].shape
            uniform(p, (6.0 / Double(s[0] + s[1])).squareRoot())
        }
        func orthogonal(_ p: WritableKeyPath<PianoWeights, Tensor>) {
            let s = w[keyPath: p].shape
            w[keyPath: p].values = orthogonalRows(s[0], s[1], &rng)
        }
        func fill(_ p: WritableKeyPath<PianoWeights, Tensor>, _ v: Float) {
            w[keyPath: p].values = [Float](repeating: v, count: w[keyPath: p].count)
        }
        uniform(\.zEmbedding, 0.05); uniform(\.inharmonicityEmbedding, 0.05); uniform(\.detuningEmbedding, 0.05)
        glorot(\.contextDenseKernel); glorot(\.contextGRUKernel); orthogonal(\.contextGRURecurrentKernel); glorot(\.contextOutKernel)
        fill(\.contextNormScale, 1)
        glorot(\.monoDenseKernel); glorot(\.monoGRUKernel); orthogonal(\.monoGRURecurrentKernel)
        glorot(\.monoHiddenKernel); glorot(\.monoOutKernel)
        fill(\.monoNormScale, 1)
        if a > 0 {
            w.monoOutBias.values[0] = -a
            for k in 0..<h.harmonics { w.monoOutBias.values[1 + k] = -a * logf(Float(k + 1)) }
        }
        w.releaseDuration.values = [1.1]
        // Rigaud et al.'s treble and bass lines, in upstream's normalised form (sub_modules.py).
        let trebleSlope: Float = 9.26e-2, trebleIntercept: Float = -13.64, bassSlope: Float = -8.47e-2, bassIntercept: Float = -5.82
        w.inharmSlopes.values = [trebleSlope * 128, bassSlope * 128]
        w.inharmOffsets.values = [trebleIntercept / (128 * trebleSlope), bassIntercept / (128 * bassSlope)]
        for i in 0..<w.reverbImpulseResponses.count { w.reverbImpulseResponses.values[i] = Float(rng.normal() * 1e-6) }
        w.provenance["initialisation"] = "ddsp-piano-train: Keras-default initialisation, seed \(seed), harmonic prior \(a)"
        return w
    }

    /// The per-instrument tensors (first dimension = instrument).
    static let perInstrumentTensors: [WritableKeyPath<PianoWeights, Tensor>] =
        [\.zEmbedding, \.inharmonicityEmbedding, \.detuningEmbedding, \.reverbImpulseResponses]

    /// These weights with the instrument list `names`: a name the file has keeps its rows, a
    /// name in `aliases` takes the rows of the file's instrument it names (fine-tuning an existing
    /// piano under a new name), any other name is added with the mean of the file's rows. The
    /// normalisation calibration is dropped when the list changes (`export` measures a new one).
    public func withInstruments(_ names: [String], aliases: [String: String] = [:]) throws -> PianoWeights {
        if names == instruments { return self }
        let sources = try instrumentSources(names, in: instruments, aliases: aliases)
        var out = self
        out.instruments = names
        out.calibration = nil
        for p in Self.perInstrumentTensors { out[keyPath: p] = instrumentRows(self[keyPath: p], from: instruments.count, sources) }
        return out
    }
}

extension V2Weights {
    /// The per-piano tensors (first dimension = instrument): the piano embedding, the seven
    /// tuning values and the seven reverb parameters.
    static var perInstrumentNames: [String] {
        ["context.piano_embedding"] + tuningParameters.map { "tuning.\($0)" } + V2ReverbTraining.names
    }

    /// These weights with the instrument list `names`, as `PianoWeights.withInstruments`: kept
    /// rows, aliases' rows, or the mean of the file's rows for a new piano.
    public func withInstruments(_ names: [String], aliases: [String: String] = [:]) throws -> V2Weights {
        if names == instruments { return self }
        let sources = try instrumentSources(names, in: instruments, aliases: aliases)
        var out = self
        out.instruments = names
        for name in Self.perInstrumentNames { out.tensors[name] = instrumentRows(self[name], from: instruments.count, sources) }
        return out
    }
}

extension WeightFile {
    /// `withInstruments` of either architecture.
    public func withInstruments(_ names: [String], aliases: [String: String] = [:]) throws -> WeightFile {
        switch self {
        case .dafx22(let w): .dafx22(try w.withInstruments(names, aliases: aliases))
        case .v2(let w): .v2(try w.withInstruments(names, aliases: aliases))
        }
    }
}

extension V2Weights {
    /// The parametric tuning's per-piano values upstream starts every v2 model from (and keeps:
    /// they are not trained), for the ten MAESTRO pianos in `defaultInstruments` order: the
    /// `pretrained_weights` of `maestro-v2.gin`'s JointParametricInharmTuning, in
    /// `tuningParameters` order (alpha_b, beta_b, alpha_t, beta_t, pitch_ref, K, alpha).
    static let maestroTuning: [[Double]] = [
        [-0.10498029539736882, -0.103397365808098, -0.10397382934390406, -0.1027632010509, -0.11412346536287879,
         -0.11243111008749364, -0.11022918531006379, -0.11304421044489406, -0.11219238911478058, -0.1136117886037094],
        [-6.866829367443394, -6.866783669374699, -6.866856843404174, -6.866760472755433, -6.867112758686625,
         -6.8670459701993005, -6.867005412258342, -6.8671280834048325, -6.867070224363755, -6.867052838812242],
        [0.09405108370762505, 0.09428687197916932, 0.09291646217556483, 0.09378490184341534, 0.09473960700044547,
         0.0946312366279332, 0.09482173401504473, 0.09484584668584539, 0.09450426855549614, 0.09488582813469065],
        [-13.70498337594341, -13.704972884604071, -13.704819779849357, -13.704887473133587, -13.704897802616232,
         -13.704882990638756, -13.704938991009339, -13.704922186081077, -13.704935675526722, -13.705007198537064],
        [54.71379282301681, 64.33843910839924, 66.95422366370335, 59.712390413785336, 70.81419678430807,
         64.0, 57.2228467711826, 67.82028990072976, 60.680246191463425, 63.02110904860535],
        [9.302255937632737, 7.223599560962571, 12.223855769942192, 8.29737874759059, 4.558871484570812,
         4.51, 13.316667367055667, 7.368416722448197, 12.849204042784237, 11.251719911066072],
        [27.57823832089277, 23.84183259556874, 23.99969267752787, 21.115926380302316, 15.724893584533097,
         24.0, 17.339843953212842, 19.173967085386415, 10.727522068281395, 17.215322155578242],
    ]

    /// A fresh v2 model as upstream builds it before training (`maestro-v2.gin`, Keras
    /// defaults): dense and GRU input kernels Glorot-uniform, recurrent kernels orthogonal,
    /// biases zero, LayerNorm γ 1 and β 0, the piano embedding uniform in ±0.05, the release
    /// 1.1 s; the reverb's embeddings as upstream initialises them (gains N(0.25, 0.1), allpass
    /// delays N(400, 60) samples, T60 N(2, 0.5) s, tone and early taps N(0, 0.1)); the frozen
    /// tuning from `maestroTuning` (a MAESTRO year takes its row, another piano the rows' mean).
    /// `harmonicPrior` as `PianoWeights.initial` (0: Keras' flat start): the amplitude's and the
    /// 128 partials' output biases start at −a and −a·ln k.
    public static func initial(instruments: [String], seed: UInt64, harmonicPrior a: Float = 1) -> V2Weights {
        let n = instruments.count
        var w = V2Weights(instruments: instruments)
        var rng = TrainingRNG(seed: seed)
        for e in layout(instruments: n) {
            let count = e.shape.reduce(1, *)
            var v = [Float](repeating: 0, count: count)
            let name = e.name
            func normal(_ mean: Double, _ sd: Double) { for i in v.indices { v[i] = Float(mean + sd * rng.normal()) } }
            if name.hasSuffix("recurrent_kernel") {
                v = orthogonalRows(e.shape[0], e.shape[1], &rng)            } else if name.hasSuffix(".kernel") {
                let limit = (6 / Double(e.shape[0] + e.shape[1])).squareRoot()
                for i in v.indices { v[i] = Float((2 * rng.uniform() - 1) * limit) }
            } else if name.hasSuffix(".gamma") {
                v = [Float](repeating: 1, count: count)
            } else if name == "context.piano_embedding" {
                for i in v.indices { v[i] = Float((2 * rng.uniform() - 1) * 0.05) }
            } else if name == "note_release.duration" {
                v = [1.1]
            } else if name.hasPrefix("tuning.") {
                let row = maestroTuning[tuningParameters.firstIndex(of: String(name.dropFirst("tuning.".count)))!]
                let mean = row.reduce(0, +) / Double(row.count)
                v = instruments.map { Float(defaultInstruments.firstIndex(of: $0).map { row[$0] } ?? mean) }
            } else {
                switch name {
                case "reverb.input_gain", "reverb.output_gain", "reverb.gain_allpass": normal(0.25, 0.1)
                case "reverb.delays_allpass": normal(400, 60)
                case "reverb.time_rev_0_sec": normal(2, 0.5)
                case "reverb.alpha_tone", "reverb.early_ir": normal(0, 0.1)
                default: break   // biases and β: zero
                }
            }
            w.tensors[name] = Tensor(shape: e.shape, values: v)
        }
        if a > 0 {
            var b = w["mono.dense_out.bias"]
            b.values[0] = -a
            for k in 0..<harmonics { b.values[1 + k] = -a * logf(Float(k + 1)) }
            w.tensors["mono.dense_out.bias"] = b
        }
        w.provenance["initialisation"] = "ddsp-piano-train: maestro-v2.gin's initialisation, seed \(seed), harmonic prior \(a)"
        return w
    }
}
