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
            // [units, 3·units]: orthonormal rows (Gram–Schmidt on Gaussian rows), as Keras'
            // Orthogonal initializer gives for a wide matrix.
            let s = w[keyPath: p].shape, rows = s[0], cols = s[1]
            var m = (0..<(rows * cols)).map { _ in rng.normal() }
            for r in 0..<rows {
                for q in 0..<r {
                    var dot = 0.0
                    for c in 0..<cols { dot += m[r * cols + c] * m[q * cols + c] }
                    for c in 0..<cols { m[r * cols + c] -= dot * m[q * cols + c] }
                }
                var norm = 0.0
                for c in 0..<cols { norm += m[r * cols + c] * m[r * cols + c] }
                norm = norm.squareRoot()
                for c in 0..<cols { m[r * cols + c] /= norm }
            }
            w[keyPath: p].values = m.map { Float($0) }
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
        var sources: [Int?] = []
        for name in names {
            let existing = aliases[name] ?? name
            if let i = instruments.firstIndex(of: existing) { sources.append(i) }
            else if aliases[name] != nil {
                throw WeightsError("instrument '\(existing)' (for '\(name)') is not in the weights; they have \(instruments.joined(separator: ", "))")
            } else { sources.append(nil) }
        }
        var out = self
        out.instruments = names
        out.calibration = nil
        let n = instruments.count
        for p in Self.perInstrumentTensors {
            let t = self[keyPath: p]
            let row = t.count / n
            var values = [Float](); values.reserveCapacity(names.count * row)
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
            out[keyPath: p] = Tensor(shape: [names.count] + Array(t.shape.dropFirst()), values: values)
        }
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
        var sources: [Int?] = []
        for name in names {
            let existing = aliases[name] ?? name
            if let i = instruments.firstIndex(of: existing) { sources.append(i) }
            else if aliases[name] != nil {
                throw WeightsError("instrument '\(existing)' (for '\(name)') is not in the weights; they have \(instruments.joined(separator: ", "))")
            } else { sources.append(nil) }
        }
        var out = self
        out.instruments = names
        let n = instruments.count
        for name in Self.perInstrumentNames {
            let t = self[name]
            let row = t.count / n
            var values = [Float](); values.reserveCapacity(names.count * row)
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
            out.tensors[name] = Tensor(shape: [names.count] + Array(t.shape.dropFirst()), values: values)
        }
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
