import Foundation

/// Normalize statistics measured beforehand on real music, per instrument (context) and per
/// instrument and voice slot (monophonic network): the prior of `NormalizationEstimator`.
/// Stored in weight files as the optional tensors `calibration.*` (see `tensorNames`).
public struct NormalizationCalibration: Sendable, Equatable {
    public var instruments: Int
    public var voices: Int
    public var contextMean: [Float]       // [instruments]
    public var contextVariance: [Float]   // [instruments]
    public var monoMean: [Float]          // [instruments, voices]
    public var monoVariance: [Float]      // [instruments, voices]

    public static let contextMeanName = "calibration.context_mean"
    public static let contextVarianceName = "calibration.context_variance"
    public static let monoMeanName = "calibration.mono_mean"
    public static let monoVarianceName = "calibration.mono_variance"
    public static let tensorNames = [contextMeanName, contextVarianceName, monoMeanName, monoVarianceName]

    /// One `NormalizationStatistics` per instrument, in instrument order.
    public init(perInstrument stats: [NormalizationStatistics]) {
        precondition(!stats.isEmpty)
        let v = stats[0].monoMeans.count
        precondition(stats.allSatisfy { $0.monoMeans.count == v && $0.monoVariances.count == v })
        instruments = stats.count
        voices = v
        contextMean = stats.map(\.contextMean)
        contextVariance = stats.map(\.contextVariance)
        monoMean = stats.flatMap(\.monoMeans)
        monoVariance = stats.flatMap(\.monoVariances)
    }

    public func statistics(instrument i: Int) -> NormalizationStatistics {
        precondition(i >= 0 && i < instruments)
        return NormalizationStatistics(contextMean: contextMean[i], contextVariance: contextVariance[i],
                                       monoMeans: Array(monoMean[(i * voices)..<((i + 1) * voices)]),
                                       monoVariances: Array(monoVariance[(i * voices)..<((i + 1) * voices)]))
    }

    public var tensors: [String: Tensor] {
        [
            Self.contextMeanName: Tensor(shape: [instruments], values: contextMean),
            Self.contextVarianceName: Tensor(shape: [instruments], values: contextVariance),
            Self.monoMeanName: Tensor(shape: [instruments, voices], values: monoMean),
            Self.monoVarianceName: Tensor(shape: [instruments, voices], values: monoVariance),
        ]
    }

    /// Reads the calibration tensors of a weight file: nil when it has none; an error when only
    /// some are present, or one has the wrong shape, a non-finite value or a variance <= 0.
    public init?(tensors: [String: Tensor], instruments: Int, voices: Int) throws {
        let present = Self.tensorNames.filter { tensors[$0] != nil }
        if present.isEmpty { return nil }
        guard present.count == Self.tensorNames.count else {
            let missing = Self.tensorNames.filter { tensors[$0] == nil }
            throw WeightsError("incomplete calibration: missing tensor '\(missing[0])'")
        }
        func read(_ name: String, _ shape: [Int], positive: Bool) throws -> [Float] {
            let t = tensors[name]!
            guard t.shape == shape else { throw WeightsError("tensor '\(name)' has shape \(t.shape), expected \(shape)") }
            if let bad = t.values.firstIndex(where: { !$0.isFinite || (positive && $0 <= 0) }) {
                throw WeightsError("tensor '\(name)' has an invalid value (\(t.values[bad])) at index \(bad)")
            }
            return t.values
        }
        self.instruments = instruments
        self.voices = voices
        contextMean = try read(Self.contextMeanName, [instruments], positive: false)
        contextVariance = try read(Self.contextVarianceName, [instruments], positive: true)
        monoMean = try read(Self.monoMeanName, [instruments, voices], positive: false)
        monoVariance = try read(Self.monoVarianceName, [instruments, voices], positive: true)
    }
}

extension PianoWeights {
    /// The prior of the streaming Normalize estimator for one instrument: the file's
    /// calibration, or, without one, `Calibration.genericPrior`.
    public func normalizationPrior(instrument: Int) -> NormalizationStatistics {
        if let c = calibration, instrument >= 0, instrument < c.instruments, c.voices == hyper.voices {
            return c.statistics(instrument: instrument)
        }
        return Calibration.genericPrior(voices: hyper.voices)
    }
}

/// The calibration namespace. Here, what the engine needs: the generic prior of weight files
/// without a calibration. Measuring Normalize statistics on performances and combining them into
/// a calibration (`calibrate`, `measure`, `combine`, ...) is study code, in PianoStudy.
public enum Calibration {
    /// A weight file without calibration: constants for every instrument and voice, the means
    /// over the ten instruments of the dafx22 calibration (docs/NORMALIZATION.md). With the
    /// standard estimator the prior only matters for the first notes.
    public static let genericContextMean: Float = -0.14
    public static let genericContextVariance: Float = 0.83
    public static let genericMonoMean: Float = 0.44
    public static let genericMonoVariance: Float = 106

    public static func genericPrior(voices: Int) -> NormalizationStatistics {
        NormalizationStatistics(contextMean: genericContextMean, contextVariance: genericContextVariance,
                                monoMeans: [Float](repeating: genericMonoMean, count: voices),
                                monoVariances: [Float](repeating: genericMonoVariance, count: voices))
    }
}
