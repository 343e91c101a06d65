import DDSPPiano
import Foundation

/// Measuring Normalize statistics on performances and combining them into a calibration.
extension Calibration {
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

    /// Upstream conditioning of a MIDI file, cropped to its first `cropSeconds` (nil: whole).
    /// A piece shorter than the crop keeps its own length, so no silence is added.
    public static func conditioning(midi: MIDIFile, cropSeconds: Double? = standardCropSeconds, warmUp: Double = UpstreamDefaults.warmUpSeconds) -> FrameConditioning {
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
