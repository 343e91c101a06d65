/// Causal stand-ins for upstream's whole-sequence Normalize statistics.
///
/// Upstream normalises each sequence with one mean and variance measured over the whole piece
/// (warm-up, silence and future included), which a live instrument cannot know. Estimators:
/// - `.fixed`: statistics calibrated beforehand (per instrument, per voice slot) on real music;
/// - `.running`: exponentially weighted running moments of what the networks have produced so
///   far, starting from a prior (the calibrated statistics) so that the first notes are sane;
/// - `.cumulative`: the mean of everything produced so far with the prior counted as
///   `priorFrames` frames of it, turning into a running average of `timeConstantFrames` once
///   that many frames have been seen.
/// The choice and its measured cost are in docs/NORMALIZATION.md.
///
/// `observe` does not allocate (the real-time path calls it once per frame).
public struct NormalizationEstimator: Sendable {
    public enum Mode: Sendable, Equatable {
        case fixed
        /// Time constant in frames (250 per second) of the running moments.
        case running(timeConstantFrames: Double)
        /// Growing average weighted `priorFrames : frames seen`, capped at `timeConstantFrames`.
        case cumulative(priorFrames: Double, timeConstantFrames: Double)
    }

    /// The estimator the streaming engine uses, chosen by measurement (docs/NORMALIZATION.md):
    /// the running mean of the piece so far, per voice, silent frames skipped, the prior
    /// worth 0.1 s, forgetting beyond 3 minutes of playing. Fixed priors, however calibrated,
    /// missed by far more: the whole-piece statistics vary with the music (the monophonic
    /// variance from 91 to 134 between pieces), and the output is very sensitive to them.
    public static let standardMode: Mode = .cumulative(priorFrames: 25, timeConstantFrames: 45_000)

    /// The standard estimator from a prior (`standardMode`, per-voice moments, silence skipped).
    public static func standard(prior: NormalizationStatistics) -> NormalizationEstimator {
        NormalizationEstimator(prior: prior, mode: standardMode, poolsVoices: false, skipsSilence: true)
    }

    public var mode: Mode
    /// One set of monophonic moments shared by all voices (they run the same network, and
    /// within a piece their statistics differ little) instead of one per voice.
    public var poolsVoices: Bool
    /// `observe(_ network:)` ignores frames where no voice sounds (no pitch, no release tail),
    /// so that a live instrument left idle does not drift towards the statistics of silence.
    public var skipsSilence: Bool
    public private(set) var statistics: NormalizationStatistics
    /// Frames observed since the last reset.
    public private(set) var framesObserved: Int = 0
    private var contextMoments: (mean: Double, meanSquare: Double)
    private var monoMoments: [(mean: Double, meanSquare: Double)]
    private var pooledMoments: (mean: Double, meanSquare: Double)

    public init(prior: NormalizationStatistics, mode: Mode, poolsVoices: Bool = false, skipsSilence: Bool = false) {
        self.mode = mode
        self.poolsVoices = poolsVoices
        self.skipsSilence = skipsSilence
        statistics = prior
        contextMoments = (Double(prior.contextMean), Double(prior.contextVariance) + Double(prior.contextMean) * Double(prior.contextMean))
        monoMoments = zip(prior.monoMeans, prior.monoVariances).map { (Double($0), Double($1) + Double($0) * Double($0)) }
        let n = Double(max(1, monoMoments.count))
        pooledMoments = (monoMoments.reduce(0) { $0 + $1.mean } / n, monoMoments.reduce(0) { $0 + $1.meanSquare } / n)
    }

    /// The standard estimator for one instrument of a weight file, from its calibration when
    /// the file has one, otherwise the built-in default (`PianoWeights.normalizationPrior`).
    public init(weights: PianoWeights, instrument: Int) {
        self = .standard(prior: weights.normalizationPrior(instrument: instrument))
    }

    /// Replaces the prior (e.g. after an instrument change) and restarts the running moments from it.
    public mutating func reset(prior: NormalizationStatistics) {
        self = NormalizationEstimator(prior: prior, mode: mode, poolsVoices: poolsVoices, skipsSilence: skipsSilence)
    }

    /// Moves the estimate from one prior to another while keeping what was learned about the
    /// music: each mean moves by the difference of the priors, each variance scales by their
    /// ratio (e.g. a piano switch: the context statistics depend on the piano, the piece's
    /// deviation from the prior carries over). Applied frame by frame with the priors of a
    /// glide (from the previous blend to the next) it follows the glide. Does not allocate.
    public mutating func rebase(from old: NormalizationStatistics, to new: NormalizationStatistics) {
        func moved(_ m: inout (mean: Double, meanSquare: Double), _ om: Float, _ ov: Float, _ nm: Float, _ nv: Float) {
            let variance = max(1e-6, m.meanSquare - m.mean * m.mean) * Double(nv) / max(1e-12, Double(ov))
            m.mean += Double(nm) - Double(om)
            m.meanSquare = variance + m.mean * m.mean
        }
        moved(&contextMoments, old.contextMean, old.contextVariance, new.contextMean, new.contextVariance)
        statistics.contextMean = Float(contextMoments.mean)
        statistics.contextVariance = Float(max(1e-6, contextMoments.meanSquare - contextMoments.mean * contextMoments.mean))
        var oldMean = 0.0, oldVariance = 0.0, newMean = 0.0, newVariance = 0.0
        for v in monoMoments.indices {
            moved(&monoMoments[v], old.monoMeans[v], old.monoVariances[v], new.monoMeans[v], new.monoVariances[v])
            oldMean += Double(old.monoMeans[v]); oldVariance += Double(old.monoVariances[v])
            newMean += Double(new.monoMeans[v]); newVariance += Double(new.monoVariances[v])
            if !poolsVoices {
                statistics.monoMeans[v] = Float(monoMoments[v].mean)
                statistics.monoVariances[v] = Float(max(1e-6, monoMoments[v].meanSquare - monoMoments[v].mean * monoMoments[v].mean))
            }
        }
        if poolsVoices {
            let n = Float(max(1, monoMoments.count))
            moved(&pooledMoments, Float(oldMean) / n, Float(oldVariance) / n, Float(newMean) / n, Float(newVariance) / n)
            for v in monoMoments.indices {
                statistics.monoMeans[v] = Float(pooledMoments.mean)
                statistics.monoVariances[v] = Float(max(1e-6, pooledMoments.meanSquare - pooledMoments.mean * pooledMoments.mean))
            }
        }
    }

    /// Weight of the next frame in the moments (0 for `.fixed`).
    private var nextWeight: Double {
        switch mode {
        case .fixed: return 0
        case .running(let tau): return 1 / max(1, tau)
        case .cumulative(let n0, let tau): return 1 / max(1, min(max(0, n0) + Double(framesObserved) + 1, tau))
        }
    }

    /// Feeds one frame of Normalize inputs: context [contextWidth], mono [voices, monoWidth].
    /// The statistics used for a frame are those from before it (strictly causal).
    /// `sounding`: whether any voice sounds in this frame (see `skipsSilence`).
    public mutating func observe(context: UnsafePointer<Float>, contextWidth: Int, mono: UnsafePointer<Float>, monoWidth: Int,
                                 sounding: Bool = true) {
        if case .fixed = mode { return }
        if skipsSilence && !sounding { return }
        let alpha = nextWeight
        framesObserved += 1
        func frameMoments(_ p: UnsafePointer<Float>, _ n: Int) -> (Double, Double) {
            var s = 0.0, s2 = 0.0
            for i in 0..<n { let v = Double(p[i]); s += v; s2 += v * v }
            return (s / Double(n), s2 / Double(n))
        }
        let (cm, cm2) = frameMoments(context, contextWidth)
        contextMoments.mean += alpha * (cm - contextMoments.mean)
        contextMoments.meanSquare += alpha * (cm2 - contextMoments.meanSquare)
        statistics.contextMean = Float(contextMoments.mean)
        statistics.contextVariance = Float(max(1e-6, contextMoments.meanSquare - contextMoments.mean * contextMoments.mean))
        if poolsVoices {
            let (m, m2) = frameMoments(mono, monoWidth * monoMoments.count)
            pooledMoments.mean += alpha * (m - pooledMoments.mean)
            pooledMoments.meanSquare += alpha * (m2 - pooledMoments.meanSquare)
            let mean = Float(pooledMoments.mean)
            let variance = Float(max(1e-6, pooledMoments.meanSquare - pooledMoments.mean * pooledMoments.mean))
            for v in monoMoments.indices {
                statistics.monoMeans[v] = mean
                statistics.monoVariances[v] = variance
            }
            return
        }
        for v in monoMoments.indices {
            let (m, m2) = frameMoments(mono + v * monoWidth, monoWidth)
            monoMoments[v].mean += alpha * (m - monoMoments[v].mean)
            monoMoments[v].meanSquare += alpha * (m2 - monoMoments[v].meanSquare)
            statistics.monoMeans[v] = Float(monoMoments[v].mean)
            statistics.monoVariances[v] = Float(max(1e-6, monoMoments[v].meanSquare - monoMoments[v].mean * monoMoments[v].mean))
        }
    }

    /// Feeds the Normalize inputs of the network's last `step` (`context.preNorm`, `mono.preNorm`);
    /// a frame sounds when a voice has a pitch or a release tail (`extendedPitch` > 0).
    public mutating func observe(_ network: PianoNetwork) {
        if case .fixed = mode { return }
        let sounding = network.extendedPitch.contains { $0 > 0 }
        let monoWidth = network.mono.hidden.outputs
        network.context.preNorm.withUnsafeBufferPointer { c in
            network.mono.preNorm.withUnsafeBufferPointer { m in
                observe(context: c.baseAddress!, contextWidth: c.count, mono: m.baseAddress!, monoWidth: monoWidth, sounding: sounding)
            }
        }
    }
}
