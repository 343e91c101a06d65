import Foundation
import XCTest
import DDSPPiano
import PianoIO
import PianoStudy
import PianoTestKit

/// The Swift model against upstream's recorded tensors and audio, case by case.
/// Input: upstream's own `conditioning` and `pedal` tensors (the MIDI front end is tested
/// separately), so these tests isolate the networks and the synthesis.
///
/// Float32 sensitivity (reference README, "Numerical notes"): in `sustain_pedal_chords_p4` the
/// mono GRU passes through a state that amplifies float32 rounding, so there even upstream's
/// own runs differ by percents of the range, and our result moves by as much with OpenBLAS's
/// kernel choice (OPENBLAS_CORETYPE: a different summation order; docs/PARITY_KERNELS.md).
/// No fixed tolerance there is both tight and machine-independent, so that case is checked so:
/// * the amplifying region: the (voice, frame) cells where our own model, re-run with every
///   mono-network weight moved by ±1 ulp (seeded; a perturbation the size of a change of
///   summation order), moves by more than `amplifiedAbove` of the range, widened by
///   `regionMargin` frames. It is found from our model alone, never from the reference, so a
///   regression cannot widen it.
/// * everywhere else the tight 1e-3-of-range tolerances of the other cases hold.
/// * inside, the tolerance is `spreadFactor` × the spread measured in the same run (the
///   largest range-error between a perturbed run and the unperturbed one), never below the
///   tight tolerance. Why 3: our error against TF is at most ours-vs-exact plus TF-vs-exact
///   (triangle inequality), each of which a float32 run of the same network makes about as
///   large as one of our perturbed runs (2×), and the spread is the maximum of a few samples
///   only, which a new kernel can exceed (1.5× margin). Measured over six kernels: inside
///   error ≤ 1.29 × spread, outside ≤ 1.3e-5 (docs/PARITY_KERNELS.md).
final class ModelParityTests: XCTestCase {
    struct CaseResult {
        var name: String
        var report: [String: Double] = [:]
        /// Range metrics split at the amplifying region (sensitive cases only).
        var region: RegionSummary? = nil
    }

    struct RegionSummary {
        var runs: Int
        var cells: Int               // (voice, frame) cells inside
        var voices: [Int: ClosedRange<Int>]  // per voice, the frames inside
        /// Per range metric: error outside, error inside, measured spread, tolerance inside.
        var metrics: [String: (outside: Double, inside: Double, spread: Double, tolerance: Double)] = [:]
    }

    /// Cases whose mono network passes through the amplifying state (reference README).
    static let sensitiveCases: Set<String> = ["sustain_pedal_chords_p4"]
    static let tight = 1e-3
    static let spreadFactor = 3.0
    static let perturbationRuns = 6
    /// A cell is in the amplifying region where a ±1-ulp run moves a raw output by more than
    /// this fraction of its range (a tenth of the tight tolerance; elsewhere runs differ by
    /// at most 5e-5) ...
    static let amplifiedAbove = 1e-4
    /// ... widened by this many frames on each side.
    static let regionMargin = 8

    /// The range metrics: report key, upstream tensor, and whether it is per frame ([V, T]) or
    /// stored for the window only ([V, W, channels]).
    static let rangeMetrics: [(key: String, tensor: String, windowed: Bool)] = [
        ("amplitudes_raw_range", "amplitudes_raw", false),
        ("amplitudes_range", "amplitudes", false),
        ("mono_norm_in_range", "mono_norm_in", true),
        ("harmonic_raw_range", "harmonic_distribution_raw", true),
        ("harmonic_dist_range", "harmonic_distribution", true),
        ("harmonic_shift_range", "harmonic_shifts", true),
        ("magnitudes_raw_range", "magnitudes_raw", true),
        ("magnitudes_range", "magnitudes", true),
    ]

    /// Relative error of a against b, scaled by b's range (max − min, at least `floor`).
    static func rangeError(_ a: [Float], _ b: [Float], floor: Float = 1e-6) -> Double {
        rangeError(a, b, scale: b, floor: floor)
    }

    /// max |a − b| over the indices `include` accepts, scaled by the range of `scale`.
    static func rangeError(_ a: [Float], _ b: [Float], scale: [Float], floor: Float = 1e-6,
                           where include: ((Int) -> Bool)? = nil) -> Double {
        precondition(a.count == b.count, "\(a.count) vs \(b.count)")
        guard let lo = scale.min(), let hi = scale.max() else { return 0 }
        let range = max(hi - lo, floor)
        var m: Float = 0
        for i in a.indices where include?(i) ?? true { m = max(m, abs(a[i] - b[i])) }
        return Double(m / range)
    }

    static func maxRelative(_ a: [Float], _ b: [Float]) -> Double {
        var m = 0.0
        for i in a.indices {
            let d = Double(abs(a[i] - b[i])) / max(1e-12, Double(abs(b[i])))
            m = max(m, d)
        }
        return m
    }

    static func snr(_ x: ArraySlice<Float>, reference r: ArraySlice<Float>) -> Double {
        var signal = 0.0, noise = 0.0
        for (a, b) in zip(x, r) { signal += Double(b) * Double(b); noise += Double(a - b) * Double(a - b) }
        return 10 * log10(signal / max(noise, 1e-30))
    }

    /// Every mono-network weight moved by one ulp up or down (seeded coin per value).
    static func perturbedMonoWeights(_ w: PianoWeights, seed: UInt64) -> PianoWeights {
        var rng = SplitMix64(seed: seed)
        var p = w
        let paths: [WritableKeyPath<PianoWeights, Tensor>] = [
            \.monoDenseKernel, \.monoDenseBias, \.monoGRUKernel, \.monoGRURecurrentKernel, \.monoGRUInputBias,
            \.monoGRURecurrentBias, \.monoHiddenKernel, \.monoHiddenBias, \.monoNormScale, \.monoNormShift,
            \.monoOutKernel, \.monoOutBias,
        ]
        for path in paths {
            p[keyPath: path].values = p[keyPath: path].values.map { rng.next() & 1 == 0 ? $0.nextUp : $0.nextDown }
        }
        return p
    }

    /// One pass of our model over a case (noise off), laid out like upstream's tensors.
    struct Captured {
        var frames: Int, voices: Int, window: Range<Int>
        var stats: NormalizationStatistics
        var tensors: [String: [Float]] = [:]
        var rawAll: [Float]          // [T, V, 161]: the mono raw outputs of every frame
        var additive: [Float], wet: [Float]
    }

    static func capture(_ cond: FrameConditioning, weights: PianoWeights, piano: Int, window: Range<Int>) -> Captured {
        let T = cond.frames, V = cond.voices
        let (w0, W) = (window.lowerBound, window.count)
        let H = weights.hyper.harmonics, R = weights.hyper.monoOutputs
        var network = PianoNetwork(weights: weights, instrument: piano)
        let stats = OfflineRenderer.wholeSequenceStatistics(conditioning: cond, network: &network)
        var extended = [Float](repeating: 0, count: V * T), inharm = extended, amps = extended, ampsRaw = extended
        var f0 = [Float](repeating: 0, count: V * T * 2)
        var context = [Float](repeating: 0, count: T * 32)
        var hd = [Float](repeating: 0, count: V * W * H), hdRaw = hd, shifts = hd
        var mags = [Float](repeating: 0, count: V * W * 64), magsRaw = mags
        var monoNormIn = [Float](repeating: 0, count: V * W * 192)
        var rawAll = [Float](repeating: 0, count: T * V * R)

        let synth = PianoSynth(weights: weights, instrument: piano, seed: 1, noise: false)
        let N = weights.hyper.samplesPerFrame
        var dry = [Float](repeating: 0, count: T * N), wet = dry, additive = dry
        additive.withUnsafeMutableBufferPointer { add in
            OfflineRenderer.renderFrames(conditioning: cond, network: &network, statistics: stats, synth: synth,
                                         dry: &dry, wet: &wet, additive: add.baseAddress!, observe: { t, net, c in
                for i in 0..<32 { context[t * 32 + i] = net.contextVector[i] }
                for i in 0..<(V * R) { rawAll[t * V * R + i] = net.mono.raw[i] }
                for v in 0..<V {
                    extended[v * T + t] = net.extendedPitch[v]
                    inharm[v * T + t] = net.inharmCoefficient[v]
                    f0[(v * T + t) * 2] = net.f0[v * 2]; f0[(v * T + t) * 2 + 1] = net.f0[v * 2 + 1]
                    ampsRaw[v * T + t] = net.mono.raw[v * R]
                    amps[v * T + t] = c.amplitude[v]
                    if window.contains(t) {
                        let o = (v * W + (t - w0))
                        for k in 0..<H {
                            hd[o * H + k] = c.harmonicDistribution[v * H + k]
                            hdRaw[o * H + k] = net.mono.raw[v * R + 1 + k]
                            shifts[o * H + k] = c.harmonicShift[v * H + k]
                        }
                        for j in 0..<64 {
                            mags[o * 64 + j] = c.magnitudes[v * 64 + j]
                            magsRaw[o * 64 + j] = net.mono.raw[v * R + 97 + j]
                        }
                        for j in 0..<192 { monoNormIn[o * 192 + j] = net.mono.preNorm[v * 192 + j] }
                    }
                }
            })
        }
        var c = Captured(frames: T, voices: V, window: window, stats: stats, rawAll: rawAll, additive: additive, wet: wet)
        c.tensors = ["extended_pitch": extended, "inharm_coef": inharm, "f0_hz": f0, "context": context,
                     "amplitudes_raw": ampsRaw, "amplitudes": amps, "harmonic_distribution": hd,
                     "harmonic_distribution_raw": hdRaw, "harmonic_shifts": shifts, "magnitudes": mags,
                     "magnitudes_raw": magsRaw, "mono_norm_in": monoNormIn]
        return c
    }

    /// The (voice, frame) cells of an element of a range-metric tensor.
    static func cell(_ i: Int, count: Int, frames T: Int, window: Range<Int>, voices V: Int, windowed: Bool) -> (voice: Int, frame: Int) {
        if !windowed { return (i / T, i % T) }
        let W = window.count, channels = count / (V * W)
        let row = i / channels
        return (row / W, window.lowerBound + row % W)
    }

    func runCase(_ dir: URL, weights: PianoWeights) throws -> CaseResult {
        let tensors = try Fixtures.safetensors(dir.appendingPathComponent("tensors.safetensors")).tensors
        let meta = try Fixtures.meta(dir)
        let piano = (meta["piano_type"] as? Int) ?? 9
        let condT = tensors["conditioning"]!
        let T = condT.shape[0], V = condT.shape[1]
        var cond = FrameConditioning(frames: T, voices: V)
        cond.conditioning = condT.values
        cond.pedal = tensors["pedal"]!.values
        var result = CaseResult(name: dir.lastPathComponent)
        let windowFrames = tensors["window_frames"]!.values.map { Int($0) }
        let window = windowFrames[0]..<windowFrames[1]

        let ours = Self.capture(cond, weights: weights, piano: piano, window: window)
        let stats = ours.stats
        result.report["context_mean_err"] = Double(abs(stats.contextMean - tensors["context_norm_mean"]!.values[0]))
        result.report["context_var_rel"] = Self.maxRelative([stats.contextVariance], tensors["context_norm_var"]!.values)
        result.report["mono_mean_err"] = zip(stats.monoMeans, tensors["mono_norm_mean"]!.values).map { Double(abs($0 - $1)) }.max()!
        result.report["mono_var_rel"] = Self.maxRelative(stats.monoVariances, tensors["mono_norm_var"]!.values)
        result.report["extended_pitch_maxabs"] = zip(ours.tensors["extended_pitch"]!, tensors["extended_pitch"]!.values).map { Double(abs($0 - $1)) }.max()!
        result.report["f0_rel"] = Self.maxRelative(ours.tensors["f0_hz"]!, tensors["f0_hz"]!.values)
        result.report["inharm_rel"] = Self.maxRelative(ours.tensors["inharm_coef"]!, tensors["inharm_coef"]!.values)
        result.report["context_range"] = Self.rangeError(ours.tensors["context"]!, tensors["context"]!.values)
        for m in Self.rangeMetrics {
            result.report[m.key] = Self.rangeError(ours.tensors[m.tensor]!, tensors[m.tensor]!.values)
        }
        if Self.sensitiveCases.contains(result.name) {
            result.region = Self.splitAtAmplifyingRegion(ours, cond: cond, weights: weights, piano: piano,
                                                         reference: tensors.mapValues(\.values))
        }

        let warm = (meta["warm_up_samples"] as? Int) ?? 8000
        let refAdditive = try AudioFile.read(dir.appendingPathComponent("additive.wav")).mono()
        let refWet = try AudioFile.read(dir.appendingPathComponent("wet_no_noise.wav")).mono()
        XCTAssertEqual(refAdditive.count, ours.additive.count)
        result.report["additive_snr_db"] = Self.snr(ours.additive[warm...], reference: refAdditive[warm...])
        result.report["wet_no_noise_snr_db"] = Self.snr(ours.wet[warm...], reference: refWet[warm...])

        // The noise is random (upstream: TF's generator), so compare its spectral envelope over
        // time: band energies (16 bands of 500 Hz, 2048-sample Hann frames, hop 1024) in dB.
        // Metrics: mean |ΔdB| over (frame, band) — compared with the same figure between two of
        // our own seeds, which is what chance alone gives — and the per-band bias (signed ΔdB
        // averaged over time), which a wrong filter or level would show.
        let N = weights.hyper.samplesPerFrame
        var network = PianoNetwork(weights: weights, instrument: piano)
        func noisePart(seed: UInt64) -> [Float] {
            let noisy = PianoSynth(weights: weights, instrument: piano, seed: seed, noise: true)
            var noisyDry = [Float](repeating: 0, count: T * N), noisyWet = noisyDry, noisyAdd = noisyDry
            noisyAdd.withUnsafeMutableBufferPointer { add in
                OfflineRenderer.renderFrames(conditioning: cond, network: &network, statistics: stats, synth: noisy,
                                             dry: &noisyDry, wet: &noisyWet, additive: add.baseAddress!)
            }
            return Array(zip(noisyDry, noisyAdd).map { $0 - $1 }[warm...])
        }
        let noiseA = SpectralMetrics.bandEnergies(noisePart(seed: 7))
        let noiseB = SpectralMetrics.bandEnergies(noisePart(seed: 8))
        let refNoise = SpectralMetrics.bandEnergies(Array(try AudioFile.read(dir.appendingPathComponent("noise.wav")).mono()[warm...]))
        func meanAbs(_ a: [Double], _ b: [Double]) -> Double { zip(a, b).map { abs($0 - $1) }.reduce(0, +) / Double(a.count) }
        result.report["noise_band_db_mean"] = meanAbs(noiseA.db, refNoise.db)
        result.report["noise_band_db_mean_seeds"] = meanAbs(noiseA.db, noiseB.db)
        var worstBias = 0.0
        for band in 0..<16 {
            var bias = 0.0
            for f in 0..<refNoise.frames { bias += noiseA.db[f * 16 + band] - refNoise.db[f * 16 + band] }
            worstBias = max(worstBias, abs(bias / Double(refNoise.frames)))
        }
        result.report["noise_band_bias_db_max"] = worstBias
        return result
    }

    /// Re-runs the case with ±1-ulp mono weights, finds the amplifying region from those runs
    /// alone, and splits every range metric there (see the class comment).
    static func splitAtAmplifyingRegion(_ ours: Captured, cond: FrameConditioning, weights: PianoWeights, piano: Int,
                                        reference: [String: [Float]]) -> RegionSummary {
        let T = ours.frames, V = ours.voices
        let runs = perturbationRuns
        let perturbed = (1...runs).map {
            capture(cond, weights: perturbedMonoWeights(weights, seed: UInt64($0)), piano: piano, window: ours.window)
        }
        // Per cell, how far the perturbed runs move the raw outputs (amplitude, harmonic weights,
        // noise magnitudes), each group scaled by its range in our unperturbed run.
        let R = ours.rawAll.count / (T * V), H = (R - 1 - 64)
        let groups = [0..<1, 1..<(1 + H), (1 + H)..<R]
        var groupRange = [Float](repeating: 0, count: groups.count)
        for (g, channels) in groups.enumerated() {
            var lo = Float.infinity, hi = -Float.infinity
            for row in 0..<(T * V) { for k in channels { let x = ours.rawAll[row * R + k]; lo = min(lo, x); hi = max(hi, x) } }
            groupRange[g] = max(hi - lo, 1e-6)
        }
        var moved = [Double](repeating: 0, count: V * T)   // [V, T]
        for p in perturbed {
            for t in 0..<T {
                for v in 0..<V {
                    let row = (t * V + v) * R
                    for (g, channels) in groups.enumerated() {
                        for k in channels {
                            let d = Double(abs(p.rawAll[row + k] - ours.rawAll[row + k]) / groupRange[g])
                            moved[v * T + t] = max(moved[v * T + t], d)
                        }
                    }
                }
            }
        }
        var inside = [Bool](repeating: false, count: V * T)
        var spans: [Int: ClosedRange<Int>] = [:]
        for v in 0..<V {
            for t in 0..<T where moved[v * T + t] > amplifiedAbove {
                for u in max(0, t - regionMargin)...min(T - 1, t + regionMargin) { inside[v * T + u] = true }
            }
            let frames = (0..<T).filter { inside[v * T + $0] }
            if let a = frames.first, let b = frames.last { spans[v] = a...b }
        }
        var summary = RegionSummary(runs: runs, cells: inside.filter { $0 }.count, voices: spans)
        for m in rangeMetrics {
            let mine = ours.tensors[m.tensor]!, ref = reference[m.tensor]!
            func isInside(_ i: Int) -> Bool {
                let c = cell(i, count: ref.count, frames: T, window: ours.window, voices: V, windowed: m.windowed)
                return inside[c.voice * T + c.frame]
            }
            let outside = rangeError(mine, ref, scale: ref, where: { !isInside($0) })
            let insideError = rangeError(mine, ref, scale: ref, where: isInside)
            let spread = perturbed.map { rangeError($0.tensors[m.tensor]!, mine, scale: ref, where: isInside) }.max() ?? 0
            summary.metrics[m.key] = (outside, insideError, spread, max(tight, spreadFactor * spread))
        }
        return summary
    }

    /// Every check the parity test makes; returns the violated ones (empty: the case passes).
    static func violations(_ r: CaseResult) -> [String] {
        var failed: [String] = []
        func value(_ key: String) -> Double {
            guard let v = r.report[key] else { failed.append("\(key) missing"); return .nan }
            return v
        }
        func below(_ name: String, _ v: Double, _ limit: Double) {
            if !(v < limit) { failed.append("\(name) \(String(format: "%.3g", v)) ≥ \(String(format: "%.3g", limit))") }
        }
        func atMost(_ name: String, _ v: Double, _ limit: Double) {
            if !(v <= limit) { failed.append("\(name) \(String(format: "%.3g", v)) > \(String(format: "%.3g", limit))") }
        }
        below("extended_pitch_maxabs", value("extended_pitch_maxabs"), 1e-4)
        below("f0_rel", value("f0_rel"), 1e-4)
        below("inharm_rel", value("inharm_rel"), 1e-4)
        below("context_range", value("context_range"), tight)
        for m in rangeMetrics {
            if let region = r.region {
                let s = region.metrics[m.key]!
                below("\(m.key) outside the amplifying region", s.outside, tight)
                atMost("\(m.key) inside the amplifying region", s.inside, s.tolerance)
            } else {
                below(m.key, value(m.key), tight)
            }
        }
        let wet = value("wet_no_noise_snr_db")
        if !(wet > 40) { failed.append("wet_no_noise_snr_db \(String(format: "%.3g", wet)) ≤ 40") }
        below("noise_band_db_mean", value("noise_band_db_mean"), 1.2 * value("noise_band_db_mean_seeds") + 0.1)
        below("noise_band_bias_db_max", value("noise_band_bias_db_max"), 0.75)
        return failed
    }

    static func describe(_ r: CaseResult, seconds: Double) -> String {
        let line = r.report.keys.sorted().map { "\($0)=\(String(format: "%.3g", r.report[$0]!))" }.joined(separator: " ")
        var text = "parity \(r.name): \(line) (\(String(format: "%.1f", seconds)) s)"
        if let region = r.region {
            let spans = region.voices.keys.sorted().map { "voice \($0) frames \(region.voices[$0]!)" }.joined(separator: ", ")
            text += "\nparity \(r.name): amplifying region (cells where \(region.runs) runs with ±1-ulp mono weights move a raw output"
                + " by > \(amplifiedAbove) of its range, ±\(regionMargin) frames): \(region.cells) cells, \(spans.isEmpty ? "none" : spans)"
            for m in rangeMetrics {
                let s = region.metrics[m.key]!
                text += "\nparity \(r.name):   \(m.key): outside \(String(format: "%.3g", s.outside)) (limit \(tight)),"
                    + " inside \(String(format: "%.3g", s.inside)), measured spread \(String(format: "%.3g", s.spread))"
                    + " -> limit max(\(tight), \(spreadFactor) x spread) = \(String(format: "%.3g", s.tolerance))"
            }
        }
        return text
    }

    func testEveryReferenceCaseMatchesUpstream() throws {
        let weights = try Fixtures.dafx22Weights()
        for dir in try Fixtures.cases() {
            let start = Date()
            let r = try runCase(dir, weights: weights)
            print(Self.describe(r, seconds: Date().timeIntervalSince(start)))
            for failure in Self.violations(r) { XCTFail("\(r.name): \(failure)") }
        }
    }

    /// The checker is not blind: a small but real bug (the amplitude bias of the monophonic
    /// network's output layer 1 % too large, i.e. every amplitude about 1 % off) must make it
    /// report failures, in an ordinary case and in the sensitive one (whose amplifying region
    /// must not hide it).
    func testParityCheckCatchesASmallError() throws {
        var weights = try Fixtures.dafx22Weights()
        weights.monoOutBias.values[0] *= 1.01
        let root = try Fixtures.requireReference().appendingPathComponent("cases")
        for name in ["scale_velocities_p9", "sustain_pedal_chords_p4"] {
            let start = Date()
            let r = try runCase(root.appendingPathComponent(name), weights: weights)
            let caught = Self.violations(r)
            print("deliberate error (mono dense_out bias[0] x 1.01) in \(name), \(String(format: "%.1f", Date().timeIntervalSince(start))) s: "
                  + "\(caught.count) checks fail: \(caught.joined(separator: "; "))")
            XCTAssertFalse(caught.isEmpty, "\(name): a 1 % amplitude-bias error went unnoticed")
        }
    }
}
