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

/// Measuring Normalize statistics on performances and combining them into a calibration.
public enum Calibration {
    /// How per-piece statistics are combined.
    public enum Averaging: String, Sendable, CaseIterable {
        /// The mean of the pieces' means and the mean of their variances: a typical piece.
        case meanOfMeans = "mean-of-means"
        /// Moments over all frames of all pieces together (the variance includes the spread of
        /// the pieces' means).
        case pooled
        /// Per statistic, the median over pieces.
        case median
    }

    /// The averaging `calibrate` uses by default, chosen by measurement (docs/NORMALIZATION.md):
    /// a few loud, dense pieces pull the mean of the monophonic variance up; the median is the
    /// better prior, fixed or as the start of the standard estimator.
    public static let standardAveraging: Averaging = .median

    /// Seconds of each piece used by default (long pieces are cropped to their beginning).
    public static let standardCropSeconds = 60.0

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

    /// Upstream conditioning of a MIDI file, cropped to its first `cropSeconds` (nil: whole).
    /// A piece shorter than the crop keeps its own length, so no silence is added.
    public static func conditioning(midi: MIDIFile, cropSeconds: Double? = standardCropSeconds, warmUp: Double = 0.5) -> FrameConditioning {
        let sequence = NoteSequence(midi: midi).applyingSustain()
        var duration: Double? = nil
        if let crop = cropSeconds, sequence.totalTime > crop { duration = crop }
        return UpstreamConditioning.make(sequence: sequence, warmUp: warmUp, duration: duration)
    }

    /// The exact (whole-sequence) statistics of one performance on each of `instruments`.
    public static func measure(conditioning c: FrameConditioning, weights: PianoWeights, instruments: [Int]) -> [NormalizationStatistics] {
        instruments.map { i in
            var network = PianoNetwork(weights: weights, instrument: i)
            return OfflineRenderer.wholeSequenceStatistics(conditioning: c, network: &network)
        }
    }

    /// Combines one piece's statistics per element of `pieces` (with its frame count, used by
    /// `.pooled`).
    public static func combine(_ pieces: [(statistics: NormalizationStatistics, frames: Int)], averaging: Averaging) -> NormalizationStatistics {
        precondition(!pieces.isEmpty)
        let voices = pieces[0].statistics.monoMeans.count
        func combined(_ means: [Float], _ variances: [Float]) -> (Float, Float) {
            switch averaging {
            case .meanOfMeans:
                let n = Double(means.count)
                return (Float(means.reduce(0.0) { $0 + Double($1) } / n), Float(variances.reduce(0.0) { $0 + Double($1) } / n))
            case .pooled:
                var w = 0.0, m = 0.0, m2 = 0.0
                for (k, p) in pieces.enumerated() {
                    let f = Double(p.frames), mu = Double(means[k])
                    w += f; m += f * mu; m2 += f * (Double(variances[k]) + mu * mu)
                }
                m /= w
                return (Float(m), Float(max(1e-6, m2 / w - m * m)))
            case .median:
                func median(_ x: [Float]) -> Float {
                    let s = x.sorted(), n = s.count
                    return n % 2 == 1 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2
                }
                return (median(means), median(variances))
            }
        }
        var out = NormalizationStatistics(voices: voices)
        (out.contextMean, out.contextVariance) = combined(pieces.map(\.statistics.contextMean), pieces.map(\.statistics.contextVariance))
        for v in 0..<voices {
            (out.monoMeans[v], out.monoVariances[v]) = combined(pieces.map { $0.statistics.monoMeans[v] }, pieces.map { $0.statistics.monoVariances[v] })
        }
        return out
    }

    /// The calibration of every instrument of `weights` from a set of performances (each
    /// already cropped). `progress` gets the fraction done.
    public static func calibrate(performances: [FrameConditioning], weights: PianoWeights,
                                 averaging: Averaging = standardAveraging,
                                 progress: ((Double) -> Void)? = nil) -> NormalizationCalibration {
        precondition(!performances.isEmpty)
        let n = weights.instruments.count
        var perInstrument: [[(statistics: NormalizationStatistics, frames: Int)]] = Array(repeating: [], count: n)
        let total = Double(performances.reduce(0) { $0 + $1.frames } * n)
        var done = 0.0
        for c in performances {
            for i in 0..<n {
                var network = PianoNetwork(weights: weights, instrument: i)
                perInstrument[i].append((OfflineRenderer.wholeSequenceStatistics(conditioning: c, network: &network), c.frames))
                done += Double(c.frames)
                progress?(done / total)
            }
        }
        return NormalizationCalibration(perInstrument: perInstrument.map { combine($0, averaging: averaging) })
    }

    /// A built-in practice piece made in code (scales, a melody over chords, arpeggios and
    /// repeated notes, with sustain pedal and a range of velocities), for weights without a
    /// calibration and for tests.
    public static func generatedPerformance(seconds: Double = 30, seed: UInt64 = 1) -> FrameConditioning {
        var rng = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        func random() -> Double {   // xorshift64*: reproducible on every platform
            rng ^= rng >> 12; rng ^= rng << 25; rng ^= rng >> 27
            return Double((rng &* 2_685_821_657_736_338_717) >> 11) / Double(1 << 53)
        }
        var notes: [NoteSequence.Note] = []
        var pedal: [NoteSequence.ControlChange] = []
        let major = [0, 2, 4, 5, 7, 9, 11]
        var t = 0.25
        var section = 0
        while t < seconds - 1 {
            let tonic = 48 + Int(random() * 12)
            switch section % 4 {
            case 0:   // a two-octave scale up and down, crescendo then diminuendo
                let steps = Array(0...14) + Array((0..<14).reversed())
                for (k, s) in steps.enumerated() {
                    let pitch = tonic + 12 * (s / 7) + major[s % 7]
                    let loud = 1 - abs(Double(k) / Double(steps.count - 1) * 2 - 1)
                    notes.append(.init(pitch: pitch + 12, velocity: 35 + Int(70 * loud), start: t, end: t + 0.16))
                    t += 0.125
                }
            case 1:   // melody over pedalled chords in the left hand
                for bar in 0..<4 {
                    let root = tonic - 12 + [0, 5, 7, 0][bar]
                    pedal.append(.init(time: t + 0.02, controller: 64, value: 100))
                    for p in [root, root + 7, root + 12 + (bar == 2 ? 4 : 3)] {
                        notes.append(.init(pitch: p, velocity: 45 + Int(random() * 25), start: t, end: t + 0.4))
                    }
                    var m = t
                    while m < t + 1.9 {
                        let d = [0.25, 0.25, 0.5, 0.125][Int(random() * 4)]
                        let pitch = tonic + 12 + major[Int(random() * 7)] + (random() < 0.3 ? 12 : 0)
                        notes.append(.init(pitch: pitch, velocity: 50 + Int(random() * 60), start: m, end: m + d * 0.9))
                        m += d
                    }
                    t += 2
                    pedal.append(.init(time: t - 0.05, controller: 64, value: 0))
                }
            case 2:   // wide arpeggios under the pedal, high and low registers
                pedal.append(.init(time: t, controller: 64, value: 127))
                for k in 0..<24 {
                    let pitch = 24 + (k * 7 + tonic) % 84
                    notes.append(.init(pitch: pitch, velocity: 30 + Int(random() * 90), start: t, end: t + 0.1))
                    t += 0.1
                }
                t += 0.4
                pedal.append(.init(time: t, controller: 64, value: 0))
                t += 0.3   // a short silence
            default:  // repeated notes and full chords, staccato and loud
                for k in 0..<8 {
                    notes.append(.init(pitch: tonic + 12, velocity: 40 + 10 * k, start: t, end: t + 0.08))
                    t += 0.15
                }
                for k in 0..<4 {
                    let chord = [tonic - 12, tonic, tonic + 4, tonic + 7, tonic + 12, tonic + 16]
                    for p in chord { notes.append(.init(pitch: p + k, velocity: 70 + Int(random() * 50), start: t, end: t + 0.3)) }
                    t += 0.5
                }
            }
            section += 1
        }
        let sequence = NoteSequence(notes: notes.filter { $0.start < seconds }, controlChanges: pedal).applyingSustain()
        return UpstreamConditioning.make(sequence: sequence, duration: min(seconds, max(1, sequence.totalTime.rounded(.up))))
    }
}

/// Offline renders with causal normalisation: the same network and synthesiser as
/// `OfflineRenderer`, one frame at a time, normalising each frame with the estimator's
/// statistics from before it and then showing it the frame. Used to measure what streaming
/// costs against `--exact` (docs/NORMALIZATION.md).
public enum CausalRender {
    public enum Normalization: Sendable {
        case estimator(NormalizationEstimator)
        /// Statistics of the current frame alone (over channels only): the naive baseline.
        case perFrame
    }

    public static func render(conditioning c: FrameConditioning, weights: PianoWeights, settings: RenderSettings,
                              normalization: Normalization) throws -> RenderOutput {
        guard settings.instrument >= 0 && settings.instrument < weights.instruments.count else {
            throw WeightsError("instrument \(settings.instrument) is out of range 0..<\(weights.instruments.count)")
        }
        let h = weights.hyper, V = c.voices, N = h.samplesPerFrame
        let warmUpFrames = Int((settings.warmUp * Double(h.frameRate)).rounded())
        var network = PianoNetwork(weights: weights, instrument: settings.instrument)
        let synth = PianoSynth(weights: weights, instrument: settings.instrument, seed: settings.seed, noise: settings.noise)
        var dry = [Float](repeating: 0, count: c.frames * N)
        var wet = dry
        guard c.frames > 0 else { return RenderOutput(sampleRate: h.sampleRate, wet: [], dry: []) }
        var estimator: NormalizationEstimator? = nil
        if case .estimator(let e) = normalization { estimator = e }
        var perFrame = NormalizationStatistics(voices: V)
        let width = network.mono.hidden.outputs
        var current = SynthControls(hyper: h)
        var next = SynthControls(hyper: h)
        func moments(_ p: UnsafePointer<Float>, _ n: Int) -> (Float, Float) {
            var acc = MomentAccumulator()
            acc.add(p, count: n)
            return (acc.mean, acc.variance)
        }
        c.conditioning.withUnsafeBufferPointer { cond in
        c.pedal.withUnsafeBufferPointer { ped in
        dry.withUnsafeMutableBufferPointer { d in
        wet.withUnsafeMutableBufferPointer { w in
            func compute(_ t: Int, into controls: inout SynthControls) {
                let x = cond.baseAddress! + t * V * 2, p = ped.baseAddress! + t * 4
                if estimator != nil {
                    network.step(conditioning: x, pedal: p, statistics: estimator!.statistics)
                    estimator!.observe(network)
                } else {
                    // The context statistics of this frame need its GRU output before the
                    // network steps: a throw-away copy computes it (study code, allocates).
                    var probe = network
                    probe.stepContextToNorm(conditioning: x, pedal: p)
                    (perFrame.contextMean, perFrame.contextVariance) = probe.context.preNorm.withUnsafeBufferPointer { moments($0.baseAddress!, $0.count) }
                    network.step(conditioning: x, pedal: p, statistics: perFrame, stage: .monoToNorm)
                    network.mono.preNorm.withUnsafeBufferPointer { m in
                        for v in 0..<V { (perFrame.monoMeans[v], perFrame.monoVariances[v]) = moments(m.baseAddress! + v * width, width) }
                    }
                    perFrame.monoMeans.withUnsafeBufferPointer { m in
                        perFrame.monoVariances.withUnsafeBufferPointer { va in
                            network.mono.finish(means: m.baseAddress!, variances: va.baseAddress!)
                        }
                    }
                }
                network.mono.raw.withUnsafeBufferPointer { raw in
                network.f0.withUnsafeBufferPointer { f0 in
                network.inharmCoefficient.withUnsafeBufferPointer { b in
                    controls.update(raw: raw.baseAddress!, f0: f0.baseAddress!, inharm: b.baseAddress!, sampleRate: h.sampleRate)
                }}}
            }
            compute(0, into: &current)
            for t in 0..<c.frames {
                if t + 1 < c.frames { compute(t + 1, into: &next) } else { next = current }
                synth.render(current: current, next: next, dry: d.baseAddress! + t * N, wet: w.baseAddress! + t * N)
                swap(&current, &next)
            }
        }}}}
        let crop = min(dry.count, warmUpFrames * N)
        return RenderOutput(sampleRate: h.sampleRate, wet: Array(wet[crop...]), dry: Array(dry[crop...]))
    }
}
