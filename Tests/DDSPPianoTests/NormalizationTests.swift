import Foundation
import XCTest
import DDSPPiano
import PianoIO
import PianoFormats
import PianoStudy

/// The causal replacement for upstream's whole-sequence Normalize: calibration tensors in the
/// weight file, the running estimator, and the distance of causal renders to `--exact`.
/// The full study behind docs/NORMALIZATION.md runs only with DDSP_PIANO_NORM_STUDY set (see
/// `testStudy`); everything else is quick.
final class NormalizationTests: XCTestCase {
    // MARK: - Weight file

    /// Small valid weights (zero networks) for file-format tests without fixtures.
    static func tinyWeights() -> PianoWeights {
        var w = PianoWeights(instruments: ["a", "b", "c"])
        w.releaseDuration = Tensor(shape: [1], values: [1])
        return w
    }

    static func sampleCalibration(instruments: Int, voices: Int) -> NormalizationCalibration {
        NormalizationCalibration(perInstrument: (0..<instruments).map { i in
            NormalizationStatistics(contextMean: -0.1 * Float(i), contextVariance: 0.8 + 0.01 * Float(i),
                                    monoMeans: (0..<voices).map { 0.1 * Float($0) - Float(i) },
                                    monoVariances: (0..<voices).map { 100 + Float($0 + i) })
        })
    }

    func testCalibrationRoundTripThroughWeightFile() throws {
        var w = Self.tinyWeights()
        XCTAssertNil(w.calibration)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("norm-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("w.safetensors")

        // Without calibration: loads, no calibration, the generic prior.
        try WeightStore.install(w, at: url)
        let plain = try WeightStore.load(url)
        XCTAssertNil(plain.calibration)
        XCTAssertEqual(plain.normalizationPrior(instrument: 1), Calibration.genericPrior(voices: 16))

        let c = Self.sampleCalibration(instruments: 3, voices: 16)
        w.calibration = c
        try WeightStore.install(w, at: url)
        let back = try WeightStore.load(url)
        XCTAssertEqual(back.calibration, c)
        XCTAssertEqual(back.normalizationPrior(instrument: 2), c.statistics(instrument: 2))
        XCTAssertEqual(back.normalizationPrior(instrument: 2).monoMeans[3], 0.3 - 2, accuracy: 1e-6)
        // The existing layout is untouched: the same tensors plus the four calibration ones.
        let file = try Safetensors(bytes: try WeightStore.readBytes(url))
        XCTAssertEqual(Set(file.tensors.keys), Set(PianoWeights.tensorNames + NormalizationCalibration.tensorNames))
        XCTAssertEqual(file.tensors[NormalizationCalibration.monoMeanName]?.shape, [3, 16])
        XCTAssertEqual(NormalizationEstimator(weights: back, instrument: 2).statistics, c.statistics(instrument: 2))
    }

    func testBadCalibrationTensorsAreRejected() throws {
        var w = Self.tinyWeights()
        w.calibration = Self.sampleCalibration(instruments: 3, voices: 16)
        let good = w.safetensors()
        var partial = good
        partial.tensors[NormalizationCalibration.monoVarianceName] = nil
        XCTAssertThrowsError(try PianoWeights(safetensors: partial)) { XCTAssertTrue("\($0)".contains("incomplete calibration"), "\($0)") }
        var shape = good
        shape.tensors[NormalizationCalibration.contextMeanName] = Tensor(shape: [2], values: [0, 0])
        XCTAssertThrowsError(try PianoWeights(safetensors: shape)) { XCTAssertTrue("\($0)".contains("shape"), "\($0)") }
        var negative = good
        negative.tensors[NormalizationCalibration.contextVarianceName] = Tensor(shape: [3], values: [1, 0, 1])
        XCTAssertThrowsError(try PianoWeights(safetensors: negative)) { XCTAssertTrue("\($0)".contains("invalid value"), "\($0)") }
        var nan = good
        nan.tensors[NormalizationCalibration.monoMeanName]!.values[5] = .nan
        XCTAssertThrowsError(try PianoWeights(safetensors: nan))
    }

    // MARK: - Estimator

    /// On a long stationary input the running moments forget the (wrong) prior and land on
    /// the statistics of the whole sequence.
    func testRunningEstimatorConvergesOnStationaryInput() throws {
        let V = 16, width = 192, contextWidth = 64, frames = 10_000
        var state: UInt64 = 0x2545_F491_4F6C_DD1D
        // Per slot a different mean and spread; frames drawn independently (stationary).
        let slotMean = (0..<V).map { Float($0) * 0.05 - 0.3 }, slotScale = (0..<V).map { 9 + Float($0) * 0.1 }
        var whole = [MomentAccumulator](repeating: MomentAccumulator(), count: V)
        var wholeContext = MomentAccumulator()
        let prior = NormalizationStatistics(contextMean: 3, contextVariance: 10, monoMeans: [Float](repeating: 5, count: V),
                                            monoVariances: [Float](repeating: 1, count: V))
        var running = NormalizationEstimator(prior: prior, mode: .running(timeConstantFrames: 1000))
        var cumulative = NormalizationEstimator(prior: prior, mode: .cumulative(priorFrames: 250, timeConstantFrames: .infinity))
        var fixed = NormalizationEstimator(prior: prior, mode: .fixed)
        var context = [Float](repeating: 0, count: contextWidth), mono = [Float](repeating: 0, count: V * width)
        // Uniform with unit variance from xorshift64 (cheap and reproducible).
        let unit = Float(12).squareRoot() / Float(1 << 24)
        func gaussian() -> Float {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            return Float(state >> 40) * unit - 0.5 * Float(12).squareRoot()
        }
        for _ in 0..<frames {
            for i in 0..<contextWidth { context[i] = -0.2 + 0.9 * gaussian() }
            for v in 0..<V { for i in 0..<width { mono[v * width + i] = slotMean[v] + slotScale[v] * gaussian() } }
            context.withUnsafeBufferPointer { c in
                mono.withUnsafeBufferPointer { m in
                    wholeContext.add(c.baseAddress!, count: contextWidth)
                    for v in 0..<V { whole[v].add(m.baseAddress! + v * width, count: width) }
                    running.observe(context: c.baseAddress!, contextWidth: contextWidth, mono: m.baseAddress!, monoWidth: width)
                    cumulative.observe(context: c.baseAddress!, contextWidth: contextWidth, mono: m.baseAddress!, monoWidth: width)
                    fixed.observe(context: c.baseAddress!, contextWidth: contextWidth, mono: m.baseAddress!, monoWidth: width)
                }
            }
        }
        XCTAssertEqual(fixed.statistics, prior)
        XCTAssertEqual(running.framesObserved, frames)
        do {
            let s = running.statistics
            XCTAssertEqual(s.contextMean, wholeContext.mean, accuracy: 0.01)
            XCTAssertEqual(s.contextVariance / wholeContext.variance, 1, accuracy: 0.02)
            for v in 0..<V {
                XCTAssertEqual(s.monoMeans[v], whole[v].mean, accuracy: 0.05)
                XCTAssertEqual(s.monoVariances[v] / whole[v].variance, 1, accuracy: 0.02)
            }
        }
        // Without a cap the cumulative moments are exactly (250·prior + sum of frames) / (250 + n).
        let w = 250 / Double(250 + frames)
        for v in 0..<V {
            let mean = w * 5 + (1 - w) * Double(whole[v].mean)
            let second = w * (1 + 25) + (1 - w) * (Double(whole[v].variance) + Double(whole[v].mean) * Double(whole[v].mean))
            XCTAssertEqual(Double(cumulative.statistics.monoMeans[v]), mean, accuracy: 1e-4)
            XCTAssertEqual(Double(cumulative.statistics.monoVariances[v]), second - mean * mean, accuracy: 1e-3)
        }
        XCTAssertEqual(Double(cumulative.statistics.contextMean), w * 3 + (1 - w) * Double(wholeContext.mean), accuracy: 1e-5)
    }

    /// The same through the real networks: a 2-second pattern repeated for 40 s, normalised
    /// causally frame by frame; at the end the estimates are those of the whole sequence.
    func testEstimatorsConvergeThroughTheNetworks() throws {
        let weights = try Fixtures.dafx22Weights()
        var notes: [NoteSequence.Note] = []
        var pedal: [NoteSequence.ControlChange] = []
        for bar in 0..<20 {
            let t = Double(bar) * 2
            pedal.append(.init(time: t, controller: 64, value: 100))
            pedal.append(.init(time: t + 1.9, controller: 64, value: 0))
            for (k, p) in [48, 55, 60, 64, 67, 72, 76, 79].enumerated() {
                notes.append(.init(pitch: p, velocity: 50 + 8 * k, start: t + 0.2 * Double(k), end: t + 0.2 * Double(k) + 0.15))
            }
        }
        let c = UpstreamConditioning.make(sequence: NoteSequence(notes: notes, controlChanges: pedal).applyingSustain())
        let instrument = 3
        var network = PianoNetwork(weights: weights, instrument: instrument)
        let whole = OfflineRenderer.wholeSequenceStatistics(conditioning: c, network: &network)
        let prior = Calibration.genericPrior(voices: 16)
        var estimators = [NormalizationEstimator(weights: weights, instrument: instrument),
                          NormalizationEstimator(prior: prior, mode: .running(timeConstantFrames: 2500))]
        for k in estimators.indices {
            network.reset()
            c.conditioning.withUnsafeBufferPointer { cond in
                c.pedal.withUnsafeBufferPointer { ped in
                    for t in 0..<c.frames {
                        network.step(conditioning: cond.baseAddress! + t * 32, pedal: ped.baseAddress! + t * 4, statistics: estimators[k].statistics)
                        estimators[k].observe(network)
                    }
                }
            }
            let s = estimators[k].statistics
            print(String(format: "estimator %d after %d frames: context %.4f/%.4f (whole %.4f/%.4f), voice 0 %.3f/%.2f (whole %.3f/%.2f)", k, c.frames,
                         s.contextMean, s.contextVariance, whole.contextMean, whole.contextVariance,
                         s.monoMeans[0], s.monoVariances[0], whole.monoMeans[0], whole.monoVariances[0]))
            XCTAssertEqual(s.contextMean, whole.contextMean, accuracy: 0.02)
            XCTAssertEqual(s.contextVariance / whole.contextVariance, 1, accuracy: 0.03)
            for v in 0..<16 {
                XCTAssertEqual(s.monoMeans[v], whole.monoMeans[v], accuracy: 0.3)
                XCTAssertEqual(s.monoVariances[v] / whole.monoVariances[v], 1, accuracy: 0.03)
            }
        }
    }

    /// A piano switch moves the estimate by the difference of the priors and keeps the rest.
    func testRebaseKeepsWhatWasLearned() {
        let a = NormalizationStatistics(contextMean: -0.2, contextVariance: 0.8, monoMeans: [Float](repeating: 0.5, count: 16),
                                        monoVariances: [Float](repeating: 100, count: 16))
        let b = NormalizationStatistics(contextMean: 0.05, contextVariance: 0.7, monoMeans: [Float](repeating: 0.2, count: 16),
                                        monoVariances: [Float](repeating: 110, count: 16))
        var fresh = NormalizationEstimator.standard(prior: a)
        fresh.rebase(from: a, to: b)
        XCTAssertEqual(fresh.statistics.contextMean, b.contextMean, accuracy: 1e-6)
        XCTAssertEqual(fresh.statistics.contextVariance, b.contextVariance, accuracy: 1e-5)
        XCTAssertEqual(fresh.statistics.monoVariances[3], 110, accuracy: 1e-3)

        var e = NormalizationEstimator.standard(prior: a)
        let context = [Float](repeating: 1, count: 64)
        var mono = [Float](repeating: 0, count: 16 * 192)
        for i in mono.indices { mono[i] = i % 2 == 0 ? 12 : -12 }
        for _ in 0..<100 {
            context.withUnsafeBufferPointer { c in mono.withUnsafeBufferPointer { m in
                e.observe(context: c.baseAddress!, contextWidth: 64, mono: m.baseAddress!, monoWidth: 192)
            }}
        }
        let before = e.statistics
        // Gliding in steps composes to one move.
        var glided = e
        var previous = a
        for step in 1...10 {
            let t = Float(step) / 10
            var mid = a
            mid.contextMean = (1 - t) * a.contextMean + t * b.contextMean
            mid.contextVariance = (1 - t) * a.contextVariance + t * b.contextVariance
            for v in 0..<16 {
                mid.monoMeans[v] = (1 - t) * a.monoMeans[v] + t * b.monoMeans[v]
                mid.monoVariances[v] = (1 - t) * a.monoVariances[v] + t * b.monoVariances[v]
            }
            glided.rebase(from: previous, to: mid)
            previous = mid
        }
        e.rebase(from: a, to: b)
        XCTAssertEqual(e.statistics.contextMean, before.contextMean + 0.25, accuracy: 1e-5)
        XCTAssertEqual(e.statistics.contextVariance, before.contextVariance * 0.7 / 0.8, accuracy: 1e-5)
        XCTAssertEqual(e.statistics.monoMeans[5], before.monoMeans[5] - 0.3, accuracy: 1e-4)
        XCTAssertEqual(e.statistics.monoVariances[5], before.monoVariances[5] * 1.1, accuracy: 1e-2)
        XCTAssertEqual(glided.statistics.contextMean, e.statistics.contextMean, accuracy: 1e-5)
        XCTAssertEqual(glided.statistics.monoVariances[5], e.statistics.monoVariances[5], accuracy: 1e-2)
        XCTAssertEqual(e.framesObserved, 100)
    }

    // MARK: - Against --exact

    /// The standard estimator (default prior: these weights have no calibration) comes much
    /// closer to the exact render than per-frame statistics. Margins from the measured numbers
    /// (docs/NORMALIZATION.md) with room for platform differences.
    func testStandardEstimatorBeatsPerFrameStatisticsOnReferenceCases() throws {
        let weights = try Fixtures.dafx22Weights()
        let dir = try Fixtures.requireReference().appendingPathComponent("cases")
        for (name, maxRatio) in [("scale_velocities_p9", 0.6), ("sustain_pedal_chords_p4", 0.6)] {
            let caseDir = dir.appendingPathComponent(name)
            let piano = (try Fixtures.meta(caseDir)["piano_type"] as? Int) ?? 9
            let c = UpstreamConditioning.make(midi: try MIDIFile(bytes: [UInt8](try Data(contentsOf: caseDir.appendingPathComponent("input.mid")))))
            var settings = RenderSettings()
            settings.instrument = piano
            settings.noise = false
            settings.exact = true
            let exact = try OfflineRenderer.render(conditioning: c, weights: weights, settings: settings).wet
            let estimator = NormalizationEstimator(weights: weights, instrument: piano)
            let causal = try CausalRender.render(conditioning: c, weights: weights, settings: settings, normalization: .estimator(estimator)).wet
            let perFrame = try CausalRender.render(conditioning: c, weights: weights, settings: settings, normalization: .perFrame).wet
            XCTAssertEqual(causal.count, exact.count)
            let d = SpectralMetrics.multiScaleDistance(causal, exact), dPerFrame = SpectralMetrics.multiScaleDistance(perFrame, exact)
            print(String(format: "%@: distance to --exact: standard estimator %.3f, per-frame statistics %.3f", name, d, dPerFrame))
            XCTAssertLessThan(d, maxRatio * dPerFrame, name)
        }
    }

    // MARK: - weights calibrate

    func testCalibrateCommandWritesTheCalibration() throws {
        let ref = try Fixtures.requireReference()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("norm-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let source = dir.appendingPathComponent("w.safetensors"), out = dir.appendingPathComponent("calibrated.safetensors")
        let weights = try Fixtures.dafx22Weights()
        try WeightStore.install(weights, at: source)
        let before = try Data(contentsOf: source)
        let midiDir = dir.appendingPathComponent("music")
        try FileManager.default.createDirectory(at: midiDir, withIntermediateDirectories: true)
        let mid = ref.appendingPathComponent("cases/sustain_pedal_chords_p4/input.mid")
        try FileManager.default.copyItem(at: mid, to: midiDir.appendingPathComponent("a.mid"))
        try Data("not midi".utf8).write(to: midiDir.appendingPathComponent("broken.mid"))

        let r = try run(["weights", "calibrate", source.path, "--midi", midiDir.path, "--seconds", "3", "-o", out.path])
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.output.contains("broken.mid: not a readable MIDI file; skipped"), r.output)
        XCTAssertTrue(r.output.contains("calibration of 10 instruments from 1 MIDI files"), r.output)
        XCTAssertEqual(try Data(contentsOf: source), before, "the source must stay untouched with -o")
        let calibrated = try WeightStore.load(out)
        let c = try XCTUnwrap(calibrated.calibration)
        XCTAssertNotNil(calibrated.provenance["calibration"])
        // One piece: the calibration is that piece's exact statistics.
        let m = try MIDIFile(bytes: [UInt8](try Data(contentsOf: mid)))
        let exact = Calibration.measure(conditioning: Calibration.conditioning(midi: m, cropSeconds: 3), weights: weights, instruments: [4])[0]
        XCTAssertEqual(c.statistics(instrument: 4), exact)
        XCTAssertEqual(calibrated.zEmbedding, weights.zEmbedding)
        let info = try run(["weights", "info", out.path]), plainInfo = try run(["weights", "info", source.path])
        XCTAssertTrue(info.output.contains("normalisation calibration: 10 instruments x 16 voices"), info.output)
        XCTAssertTrue(plainInfo.output.contains("normalisation calibration: none"), plainInfo.output)

        let missing = try run(["weights", "calibrate", source.path, "--midi", dir.appendingPathComponent("nope").path])
        XCTAssertEqual(missing.status, 1)
        XCTAssertTrue(missing.output.contains("nope: no such file or folder"), missing.output)
        let none = try run(["weights", "calibrate", source.path])
        XCTAssertNotEqual(none.status, 0)
        XCTAssertTrue(none.output.contains("--midi"), none.output)
    }

    func run(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let p = Process()
        p.executableURL = try WeightsCommandTests.executable()
        p.arguments = arguments
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    // MARK: - The study (docs/NORMALIZATION.md)

    /// DDSP_PIANO_NORM_STUDY=calibrate,tune,table (any subset) runs the measurement; results and
    /// caches go to $DDSP_PIANO_NORM_STUDY_DIR (default /tmp/norm-study). Optional:
    /// DDSP_PIANO_NORM_ESTIMATORS (comma-separated specs, see `StudyEstimator`),
    /// DDSP_PIANO_NORM_PIECES (reference, heldout, tuning).
    func testStudy() throws {
        let env = ProcessInfo.processInfo.environment
        guard let stages = env["DDSP_PIANO_NORM_STUDY"], !stages.isEmpty else {
            throw XCTSkip("set DDSP_PIANO_NORM_STUDY=calibrate,tune,table to run the normalisation study")
        }
        let study = try Study(directory: URL(fileURLWithPath: env["DDSP_PIANO_NORM_STUDY_DIR"] ?? "/tmp/norm-study"))
        let stageList = stages.split(separator: ",").map(String.init)
        if stageList.contains("speed") { try study.speed() }
        if stageList.contains("calibrate") { try study.calibrationSummary() }
        if stageList.contains("default") { try study.defaultPriorCost() }
        if stageList.contains("tune") {
            let specs = env["DDSP_PIANO_NORM_ESTIMATORS"].map { $0.split(separator: ",").map(String.init) } ?? Study.tuningEstimators
            try study.table(pieces: try study.pieces(env["DDSP_PIANO_NORM_PIECES"] ?? "tuning"), estimators: specs, name: "tune")
        }
        if stageList.contains("table") {
            let specs = env["DDSP_PIANO_NORM_ESTIMATORS"].map { $0.split(separator: ",").map(String.init) } ?? Study.tableEstimators
            try study.table(pieces: try study.pieces(env["DDSP_PIANO_NORM_PIECES"] ?? "reference,heldout"), estimators: specs, name: "table")
        }
    }
}

/// The measurement behind docs/NORMALIZATION.md, with caches so that stages can be rerun.
struct Study {
    struct Piece {
        var name: String
        var conditioning: FrameConditioning
        var instrument: Int
        var seconds: Double { Double(conditioning.frames) / 250 - 0.5 }
    }

    let directory: URL
    let weights: PianoWeights
    let midi: URL

    /// Held out for evaluation (never calibrated on): MIDI file, piano.
    static let heldOut: [(String, Int)] = [
        ("performance/miditok__Maestro_3.mid", 1),
        ("performance/miditok__POP909_022.mid", 5),
        ("score/music21corpus__chopin_mazurka06-2.mid", 7),
        ("score/symusic__testcases_1.mid", 3),
    ]
    /// For tuning the running estimators (not calibrated on, not in the table).
    static let tuning: [(String, Int)] = [
        ("performance/miditok__Maestro_1.mid", 2),
        ("performance/miditok__POP909_008.mid", 6),
        ("score/music21corpus__joplin_maple_leaf_rag.mid", 8),
    ]
    /// The calibration set: real performances and scores, none of the above and not the
    /// sources of the reference cases (parangonar__mozart_k265_var1, neuralpiano__seed_midi_6).
    static let calibrationFiles: [String] = [
        "performance/miditok__Maestro_2.mid",
        "performance/miditok__Maestro_4.mid",
        "performance/miditok__Maestro_5.mid",
        "performance/miditok__Maestro_6.mid",
        "performance/miditok__Maestro_7.mid",
        "performance/miditok__POP909_191.mid",
        "performance/mpteval__pred.mid",
        "performance/mma__midi-inc_rec1.mid",
        "score/music21corpus__bach_bwv846.mid",
        "score/music21corpus__schubert_Lindenbaum_pianopart.mid",
        "score/pianoplayer__mozart_sonfacile.mid",
        "score/musescore3-common__Reunion.mid",
        "score/symusic__testcases_2.mid",
        "score/openttd-openmsx__moo_redfarn_pianoonly.mid",
    ]
    static let tuningEstimators = ["perframe", "mean-of-means/fixed", "mean-of-means/run:250:gate", "mean-of-means/run:500:gate",
                                   "mean-of-means/run:1250", "mean-of-means/cum:0:inf:gate", "mean-of-means/cum:25:inf:gate",
                                   "mean-of-means/cum:100:inf", "mean-of-means/cum:100:inf:gate", "mean-of-means/cum:100:inf:pool",
                                   "mean-of-means/cum:250:inf:gate", "mean-of-means/cum:1000:inf:gate"]
    static let tableEstimators = ["perframe", "generic/fixed", "generated/fixed", "mean-of-means/fixed", "pooled/fixed", "median/fixed",
                                  "mean-of-means/run:500:gate", "mean-of-means/cum:25:45000", "mean-of-means/cum:25:45000:gate",
                                  "generic/cum:25:45000:gate", "generated/cum:25:45000:gate"]

    init(directory: URL) throws {
        self.directory = directory
        try FileManager.default.createDirectory(at: directory.appendingPathComponent("cache"), withIntermediateDirectories: true)
        weights = try Fixtures.dafx22Weights()
        midi = Fixtures.shared.appendingPathComponent("midi")
        guard FileManager.default.fileExists(atPath: midi.path) else { throw XCTSkip("no MIDI corpus at \(midi.path)") }
    }

    func log(_ text: String) {
        print(text)
        let url = directory.appendingPathComponent("log.txt")
        if let h = try? FileHandle(forWritingTo: url) {
            h.seekToEndOfFile(); h.write(Data((text + "\n").utf8)); try? h.close()
        } else {
            try? Data((text + "\n").utf8).write(to: url)
        }
    }

    func midiPiece(_ file: String, instrument: Int, crop: Double = Calibration.standardCropSeconds) throws -> Piece {
        let m = try MIDIFile(bytes: [UInt8](try Data(contentsOf: midi.appendingPathComponent(file))))
        var name = URL(fileURLWithPath: file).deletingPathExtension().lastPathComponent + "_p\(instrument)"
        if crop != Calibration.standardCropSeconds { name += "_\(Int(crop))s" }
        return Piece(name: name, conditioning: Calibration.conditioning(midi: m, cropSeconds: crop), instrument: instrument)
    }

    func referencePieces() throws -> [Piece] {
        try Fixtures.cases(withTensors: false).map { dir in
            let meta = try Fixtures.meta(dir)
            let m = try MIDIFile(bytes: [UInt8](try Data(contentsOf: dir.appendingPathComponent("input.mid"))))
            return Piece(name: dir.lastPathComponent, conditioning: UpstreamConditioning.make(midi: m), instrument: (meta["piano_type"] as? Int) ?? 9)
        }
    }

    func pieces(_ spec: String) throws -> [Piece] {
        var out: [Piece] = []
        for part in spec.split(separator: ",") {
            switch part {
            case "reference": out += try referencePieces()
            case "heldout": out += try Self.heldOut.map { try midiPiece($0.0, instrument: $0.1) }
            case "tuning": out += try Self.tuning.map { try midiPiece($0.0, instrument: $0.1) }
            case "tuning-long": out += try Self.tuning.prefix(2).map { try midiPiece($0.0, instrument: $0.1, crop: 180) }
            default: XCTFail("unknown piece set \(part)")
            }
        }
        return out
    }

    // MARK: Caches

    func cacheURL(_ name: String) -> URL { directory.appendingPathComponent("cache/\(name)") }

    static func encode(_ s: NormalizationStatistics, frames: Int) -> [Double] {
        [Double(frames), Double(s.contextMean), Double(s.contextVariance)] + s.monoMeans.map(Double.init) + s.monoVariances.map(Double.init)
    }

    static func decode(_ x: [Double]) -> (NormalizationStatistics, Int) {
        let V = (x.count - 3) / 2
        return (NormalizationStatistics(contextMean: Float(x[1]), contextVariance: Float(x[2]),
                                        monoMeans: x[3..<(3 + V)].map(Float.init), monoVariances: x[(3 + V)...].map(Float.init)), Int(x[0]))
    }

    /// Whole-sequence statistics of one conditioning on one instrument, cached by name.
    func exactStatistics(_ name: String, _ c: FrameConditioning, instrument: Int) throws -> (statistics: NormalizationStatistics, frames: Int) {
        let url = cacheURL("stats_\(name)_i\(instrument).json")
        if let data = try? Data(contentsOf: url), let x = try? JSONSerialization.jsonObject(with: data) as? [Double] {
            return Self.decode(x)
        }
        let s = Calibration.measure(conditioning: c, weights: weights, instruments: [instrument])[0]
        try JSONSerialization.data(withJSONObject: Self.encode(s, frames: c.frames)).write(to: url)
        return (s, c.frames)
    }

    func calibrationConditionings() throws -> [(String, FrameConditioning)] {
        try Self.calibrationFiles.map { file in
            let m = try MIDIFile(bytes: [UInt8](try Data(contentsOf: midi.appendingPathComponent(file))))
            return ("cal_" + URL(fileURLWithPath: file).deletingPathExtension().lastPathComponent, Calibration.conditioning(midi: m))
        }
    }

    /// The calibration set's per-piece statistics for one instrument.
    func calibrationStatistics(instrument: Int) throws -> [(statistics: NormalizationStatistics, frames: Int)] {
        try calibrationConditionings().map { try exactStatistics($0.0, $0.1, instrument: instrument) }
    }

    func prior(_ kind: String, piece: Piece) throws -> NormalizationStatistics {
        switch kind {
        case "generic": return Calibration.genericPrior(voices: 16)
        case "generated": return try exactStatistics("generated", Calibration.generatedPerformance(), instrument: piece.instrument).statistics
        case "exact": return try exactStatistics("eval_" + piece.name, piece.conditioning, instrument: piece.instrument).statistics
        default:
            guard let averaging = Calibration.Averaging(rawValue: kind) else { throw StudyError("unknown prior \(kind)") }
            return Calibration.combine(try calibrationStatistics(instrument: piece.instrument), averaging: averaging)
        }
    }

    struct StudyError: Error, CustomStringConvertible {
        var description: String
        init(_ d: String) { description = d }
    }

    /// "perframe", or PRIOR/MODE with PRIOR generic | generated | exact (oracle) |
    /// mean-of-means | pooled | median and MODE fixed | run:TAU | cum:N0:CAP (frames; inf allowed),
    /// optionally followed by :pool (voices share moments) and :gate (silent frames skipped).
    func normalization(_ spec: String, piece: Piece) throws -> CausalRender.Normalization {
        if spec == "perframe" { return .perFrame }
        let parts = spec.split(separator: "/").map(String.init)
        guard parts.count == 2 else { throw StudyError("bad estimator spec \(spec)") }
        let prior = try prior(parts[0], piece: piece)
        var m = parts[1].split(separator: ":").map(String.init)
        let pool = m.contains("pool"), gate = m.contains("gate")
        m.removeAll { $0 == "pool" || $0 == "gate" }
        func number(_ s: String) -> Double { s == "inf" ? .infinity : Double(s)! }
        let mode: NormalizationEstimator.Mode
        switch m[0] {
        case "fixed": mode = .fixed
        case "run": mode = .running(timeConstantFrames: number(m[1]))
        case "cum": mode = .cumulative(priorFrames: number(m[1]), timeConstantFrames: number(m[2]))
        default: throw StudyError("bad mode \(parts[1])")
        }
        return .estimator(NormalizationEstimator(prior: prior, mode: mode, poolsVoices: pool, skipsSilence: gate))
    }

    func settings(_ piece: Piece) -> RenderSettings {
        var s = RenderSettings()
        s.instrument = piece.instrument
        s.noise = false
        s.exact = true
        return s
    }

    func exactRender(_ piece: Piece) throws -> [Float] {
        let url = cacheURL("exact_\(piece.name).f32")
        if let data = try? Data(contentsOf: url), data.count == (piece.conditioning.frames - 125) * 64 * 4 {
            return data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        }
        let wet = try OfflineRenderer.render(conditioning: piece.conditioning, weights: weights, settings: settings(piece)).wet
        try wet.withUnsafeBufferPointer { Data(buffer: $0) }.write(to: url)
        return wet
    }

    // MARK: Stages

    func speed() throws {
        let piece = try referencePieces().first { $0.name == "scale_velocities_p9" }!
        var t = Date()
        let exact = try OfflineRenderer.render(conditioning: piece.conditioning, weights: weights, settings: settings(piece)).wet
        let exactTime = Date().timeIntervalSince(t)
        t = Date()
        let causal = try CausalRender.render(conditioning: piece.conditioning, weights: weights, settings: settings(piece),
                                             normalization: .estimator(NormalizationEstimator(prior: Calibration.genericPrior(voices: 16), mode: .running(timeConstantFrames: 1000)))).wet
        let causalTime = Date().timeIntervalSince(t)
        t = Date()
        var network = PianoNetwork(weights: weights, instrument: 9)
        _ = OfflineRenderer.wholeSequenceStatistics(conditioning: piece.conditioning, network: &network)
        let statsTime = Date().timeIntervalSince(t)
        t = Date()
        let d = SpectralMetrics.multiScaleDistance(causal, exact)
        let metricTime = Date().timeIntervalSince(t)
        log(String(format: "speed (%.1f s of audio): exact render %.2f s, causal render %.2f s, statistics %.2f s, metric %.2f s (distance %.3f)",
                   piece.seconds, exactTime, causalTime, statsTime, metricTime, d))
    }

    /// How far apart the pieces' statistics are, per instrument, and the combined priors.
    func calibrationSummary() throws {
        let instruments = (ProcessInfo.processInfo.environment["DDSP_PIANO_NORM_INSTRUMENTS"] ?? "0,1,2,3,4,5,6,7,8,9")
            .split(separator: ",").map { Int($0)! }
        for i in instruments {
            let t = Date()
            let stats = try calibrationStatistics(instrument: i)
            var line = String(format: "instrument %d (%.0f s): context mean", i, Date().timeIntervalSince(t))
            for s in stats { line += String(format: " %.3f", s.statistics.contextMean) }
            line += " var"
            for s in stats { line += String(format: " %.3f", s.statistics.contextVariance) }
            log(line)
            for a in Calibration.Averaging.allCases {
                let c = Calibration.combine(stats, averaging: a)
                let mm = c.monoMeans.reduce(0, +) / 16, mv = c.monoVariances.reduce(0, +) / 16
                log(String(format: "  %@: context %.4f / %.4f, mono mean %.3f (%.3f..%.3f) variance %.2f (%.2f..%.2f)", a.rawValue,
                           c.contextMean, c.contextVariance, mm, c.monoMeans.min()!, c.monoMeans.max()!, mv, c.monoVariances.min()!, c.monoVariances.max()!))
            }
        }
    }

    func defaultPriorCost() throws {
        for seconds in [10.0, 20.0, 30.0] {
            var t = Date()
            let c = Calibration.generatedPerformance(seconds: seconds)
            let makeTime = Date().timeIntervalSince(t)
            t = Date()
            let s = Calibration.measure(conditioning: c, weights: weights, instruments: [9])[0]
            log(String(format: "generated %.0f s (%d frames): conditioning %.3f s, statistics of one instrument %.2f s; context %.4f/%.4f mono mean %.3f var %.2f",
                       seconds, c.frames, makeTime, Date().timeIntervalSince(t), s.contextMean, s.contextVariance,
                       s.monoMeans.reduce(0, +) / 16, s.monoVariances.reduce(0, +) / 16))
        }
    }

    /// Mean absolute difference in dB of 16-band energies (2048-sample frames) over the bands
    /// within 60 dB of the exact render's loudest band: a check that the spectral distance's
    /// verdict holds where one can hear it.
    static func audibleBandDifference(_ x: [Float], _ exact: [Float]) -> Double {
        let n = min(x.count, exact.count)
        let a = SpectralMetrics.bandEnergies(Array(x[..<n])).db, b = SpectralMetrics.bandEnergies(Array(exact[..<n])).db
        let floor = (b.max() ?? 0) - 60
        var sum = 0.0, count = 0
        for i in b.indices where max(a[i], b[i]) > floor {
            sum += abs(max(a[i], floor) - max(b[i], floor))
            count += 1
        }
        return count > 0 ? sum / Double(count) : 0
    }

    /// Distances of each estimator's causal render to the exact render, per piece; a markdown table.
    func table(pieces: [Piece], estimators: [String], name: String) throws {
        var rows: [[Double]] = []
        var bandRows: [[Double]] = []
        var header = "| piece | piano | s |"
        for e in estimators { header += " \(e) |" }
        log("\n" + header + "\n|" + String(repeating: "---|", count: estimators.count + 3))
        for piece in pieces {
            let exact = try exactRender(piece)
            var row: [Double] = [], bandRow: [Double] = []
            for spec in estimators {
                let causal = try CausalRender.render(conditioning: piece.conditioning, weights: weights, settings: settings(piece),
                                                     normalization: try normalization(spec, piece: piece)).wet
                row.append(SpectralMetrics.multiScaleDistance(causal, exact))
                bandRow.append(Self.audibleBandDifference(causal, exact))
            }
            rows.append(row)
            bandRows.append(bandRow)
            log("| \(piece.name) | \(piece.instrument) | \(String(format: "%.1f", piece.seconds)) |"
                + zip(row, bandRow).map { String(format: " %.3f (%.2f dB) |", $0, $1) }.joined())
        }
        let mean = (0..<estimators.count).map { j in rows.map { $0[j] }.reduce(0, +) / Double(rows.count) }
        let bandMean = (0..<estimators.count).map { j in bandRows.map { $0[j] }.reduce(0, +) / Double(rows.count) }
        log("| **mean** | | |" + zip(mean, bandMean).map { String(format: " **%.3f** (%.2f dB) |", $0, $1) }.joined())
        let json: [String: Any] = ["estimators": estimators, "pieces": pieces.map(\.name), "distances": rows, "band_db": bandRows]
        try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted]).write(to: directory.appendingPathComponent("\(name).json"))
    }
}
