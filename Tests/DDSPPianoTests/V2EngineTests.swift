import Foundation
import XCTest
import DDSPPiano
import PianoIO
import PianoFormats
import PianoStudy
import PianoTestKit

/// The v2 model through the one engine, against upstream's TensorFlow renders of every v2
/// reference case: v2 is causal, so the streaming engine must compute upstream's output.
/// Structural guarantees (block sizes, allocations, latency) run on v2 in EngineTests and
/// StreamingTests (`Fixtures.structuralWeights`); the switch test here runs in every clone.
final class V2EngineTests: XCTestCase {
    static var workDir: URL = FileManager.default.temporaryDirectory.appendingPathComponent("v2e2e-\(UUID().uuidString)")

    override class func tearDown() {
        try? FileManager.default.removeItem(at: workDir)
    }

    static func referenceModel() throws -> PianoModel {
        guard let m = try Fixtures.v2ReferenceModel() else {
            print("skipped: no reference fixtures (\(Fixtures.reference.path)/v2)")
            throw XCTSkip("skipped: no reference fixtures")
        }
        return m
    }

    /// v2 case folders with tensors (the 8 rendered cases; the audio-only performance case has none).
    static func cases() throws -> [URL] {
        let dir = Fixtures.reference.appendingPathComponent("v2/cases")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()) ?? []
        return names.map { dir.appendingPathComponent($0) }.filter {
            FileManager.default.fileExists(atPath: $0.appendingPathComponent("tensors.safetensors").path)
        }
    }

    static func midi(_ dir: URL) throws -> MIDIFile {
        try MIDIFile(bytes: [UInt8](try Data(contentsOf: dir.appendingPathComponent("input.mid"))))
    }

    static func piano(_ dir: URL) throws -> Int { (try Fixtures.meta(dir)["piano_type"] as? Int) ?? 9 }

    /// Upstream's warm-up: 0.5 s at 24 kHz.
    static let warm = 12_000

    static func snr(_ x: ArraySlice<Float>, reference r: ArraySlice<Float>) -> Double {
        EndToEndParityTests.snr(x, reference: r)
    }

    // The issue's bar. Measured (printed below): 90–93 dB on every case at 24 and 48 kHz, stable
    // over the 10.5-s case; a frequency one ulp off upstream's loses 20–40 dB within seconds
    // (TFMath), so the margin says the oscillator arithmetic is TensorFlow's to the bit.
    static let minimumSNR = 50.0

    /// The reference at 48 kHz through the engine's own streaming resampler (whole file, warm-up
    /// included, then its constant delay and the warm-up cut): what a 48 kHz upstream stream is.
    static func streamResampled(_ full: [Float], to rate: Double, length: Int, warm: Int = V2EngineTests.warm) throws -> [Float] {
        let r = try StreamingResampler(inputRate: 24_000, outputRate: rate, maxInputFrames: 4096)
        let input = full + [Float](repeating: 0, count: 64)
        var out = [Float](repeating: 0, count: StreamingResampler.maxOutputFrames(forInput: input.count, inputRate: 24_000, outputRate: rate) + 16)
        let n = input.withUnsafeBufferPointer { i in
            out.withUnsafeMutableBufferPointer { o in r.process(i.baseAddress!, count: i.count, into: o.baseAddress!, capacity: o.count) }
        }
        let start = Int((Double(warm) * rate / 24_000 + r.delay).rounded())
        return Array(out[start..<min(n, start + length)])
    }

    /// The default streaming render (upstream's conditioning, --no-noise) against
    /// wet_no_noise.wav after the warm-up: ≥ 50 dB at 24 kHz; at 48 kHz ≥ 50 dB against the
    /// reference through the same streaming resampler (and, for information, against a soxr
    /// VHQ resampling: that measures the resampler's band edge, see StreamingResampler).
    /// The same MIDI as live events is reported alongside (a live player cannot know a legato
    /// re-strike one frame ahead, nor which voice upstream's file-wide allocation picks).
    func testFileRenderEqualsUpstreamOnEveryCase() throws {
        let model = try Self.referenceModel()
        var rows: [String] = []
        for dir in try Self.cases() {
            let midi = try Self.midi(dir)
            var settings = RenderSettings()
            settings.instrument = try Self.piano(dir)
            settings.noise = false
            let reference = Array(try AudioFile.read(dir.appendingPathComponent("wet_no_noise.wav")).mono()[Self.warm...])
            let file = try OfflineRenderer.render(midi: midi, model: model, settings: settings).wet
            XCTAssertEqual(file.count, reference.count, dir.lastPathComponent)
            let n = min(file.count, reference.count)
            let snr24 = Self.snr(file[..<n], reference: reference[..<n])

            var s48 = settings
            s48.sampleRate = 48_000
            let file48 = try OfflineRenderer.render(midi: midi, model: model, settings: s48).wet
            let full = try AudioFile.read(dir.appendingPathComponent("wet_no_noise.wav")).mono()
            let reference48 = try Self.streamResampled(full, to: 48_000, length: file48.count)
            XCTAssertEqual(file48.count, 2 * reference.count, dir.lastPathComponent)
            // The last 2·16 host samples need input past the reference's end, where the engine
            // goes on playing and the reference has nothing: left out.
            let n48 = min(file48.count, reference48.count) - 2 * StreamingResampler.delayInputFrames
            let snr48 = Self.snr(file48[..<n48], reference: reference48[..<n48])
            let soxr48 = try OfflineResampler.resample(reference, from: 24_000, to: 48_000)
            let edge = 96, m48 = min(file48.count, soxr48.count) - edge
            let snrSoxr = Self.snr(file48[edge..<m48], reference: soxr48[edge..<m48])

            var live = settings
            live.conditioning = .events
            let events = try OfflineRenderer.render(midi: midi, model: model, settings: live).wet
            let nl = min(events.count, reference.count)
            let snrLive = Self.snr(events[..<nl], reference: reference[..<nl])

            rows.append(String(format: "| %@ | %.1f | %.1f | %.1f | %.1f |", dir.lastPathComponent, snr24, snr48, snrSoxr, snrLive))
            XCTAssertGreaterThanOrEqual(snr24, Self.minimumSNR, dir.lastPathComponent)
            XCTAssertGreaterThanOrEqual(snr48, Self.minimumSNR, dir.lastPathComponent)
        }
        print("v2 render vs upstream wet_no_noise.wav (SNR dB, warm-up cut):")
        print("| case | file render 24 kHz | file render 48 kHz | 48 kHz vs soxr VHQ | live events 24 kHz |\n|---|---|---|---|---|")
        for r in rows { print(r) }
        XCTAssertEqual(rows.count, 8, "the 8 v2 cases")
    }

    /// The noise part (random: upstream draws from TF's generator) has upstream's spectral
    /// envelope over time: band energies against noise.wav, next to what two of our own seeds
    /// differ by (chance alone), and the worst per-band bias.
    func testNoiseBandEnergiesMatchUpstream() throws {
        let model = try Self.referenceModel()
        var rows: [String] = []
        for dir in try Self.cases() {
            let midi = try Self.midi(dir)
            var settings = RenderSettings()
            settings.instrument = try Self.piano(dir)
            settings.noise = false
            let clean = try OfflineRenderer.render(midi: midi, model: model, settings: settings).dry
            func noise(seed: UInt64) throws -> [Float] {
                var s = settings
                s.noise = true
                s.seed = seed
                let noisy = try OfflineRenderer.render(midi: midi, model: model, settings: s).dry
                return zip(noisy, clean).map { $0 - $1 }
            }
            let a = SpectralMetrics.bandEnergies(try noise(seed: 1)), b = SpectralMetrics.bandEnergies(try noise(seed: 2))
            let ref = SpectralMetrics.bandEnergies(Array(try AudioFile.read(dir.appendingPathComponent("noise.wav")).mono()[Self.warm...]))
            XCTAssertEqual(a.frames, ref.frames)
            func meanAbs(_ x: [Double], _ y: [Double]) -> Double { zip(x, y).map { abs($0 - $1) }.reduce(0, +) / Double(x.count) }
            let toUpstream = meanAbs(a.db, ref.db), seeds = meanAbs(a.db, b.db)
            func worstBias(_ x: [Double], _ y: [Double]) -> Double {
                var worst = 0.0
                for band in 0..<16 {
                    var bias = 0.0
                    for f in 0..<ref.frames { bias += x[f * 16 + band] - y[f * 16 + band] }
                    worst = max(worst, abs(bias / Double(ref.frames)))
                }
                return worst
            }
            let bias = worstBias(a.db, ref.db), seedBias = worstBias(a.db, b.db)
            rows.append(String(format: "| %@ | %.2f | %.2f | %.2f | %.2f |", dir.lastPathComponent, toUpstream, seeds, bias, seedBias))
            // Chance alone gives the seed-to-seed figures; a wrong filter, level or band layout
            // shows as a larger mean difference or a larger per-band bias (a 1-dB level error in
            // one band would be 1 dB here).
            XCTAssertLessThan(toUpstream, 1.2 * seeds + 0.1, dir.lastPathComponent)
            XCTAssertLessThan(bias, 2 * seedBias + 0.5, dir.lastPathComponent)
        }
        print("v2 noise part vs upstream noise.wav: band energies (16 bands, 2048-sample frames), dB:")
        print("| case | mean abs diff to upstream | between two of our seeds | worst band bias to upstream | between seeds |\n|---|---|---|---|---|")
        for r in rows { print(r) }
    }

    /// `--exact` on a v2 model is the streaming render (v2 has nothing to normalise over the piece).
    func testExactIsTheStreamingRender() throws {
        let model = try Self.referenceModel()
        let dir = try Self.cases()[0]
        var settings = RenderSettings()
        settings.instrument = try Self.piano(dir)
        settings.noise = false
        let streaming = try OfflineRenderer.render(midi: try Self.midi(dir), model: model, settings: settings).wet
        settings.exact = true
        let exact = try OfflineRenderer.render(midi: try Self.midi(dir), model: model, settings: settings).wet
        XCTAssertEqual(streaming, exact)
    }

    /// The command a user runs: `ddsp-piano render IN.mid OUT.wav --weights V2.safetensors
    /// --piano N --no-noise --format f32`, without --sample-rate: a 24 kHz file equal to upstream.
    func testRenderCommandPlaysAV2File() throws {
        let model = try Self.referenceModel()
        try FileManager.default.createDirectory(at: Self.workDir, withIntermediateDirectories: true)
        let weightsFile = Self.workDir.appendingPathComponent("v2.safetensors")
        try Data(model.file.safetensors().serialized()).write(to: weightsFile)
        let dir = try Self.cases().first { $0.lastPathComponent.hasPrefix("real_mozart") } ?? Self.cases()[0]
        let out = Self.workDir.appendingPathComponent("mozart.wav")
        try FileManager.default.createDirectory(at: EndToEndParityTests.workDir, withIntermediateDirectories: true)
        let r = try EndToEndParityTests.run(["render", dir.appendingPathComponent("input.mid").path, out.path,
                                              "--weights", weightsFile.path, "--piano", String(try Self.piano(dir)),
                                              "--no-noise", "--format", "f32"])
        XCTAssertEqual(r.status, 0, r.output)
        guard r.status == 0 else { return }
        XCTAssertTrue(r.output.contains("24000 Hz, v2 model"), r.output)
        let audio = try AudioFile.read(out)
        XCTAssertEqual(audio.sampleRate, 24_000)
        let mine = audio.mono()
        let reference = Array(try AudioFile.read(dir.appendingPathComponent("wet_no_noise.wav")).mono()[Self.warm...])
        XCTAssertEqual(mine.count, reference.count)
        let n = min(mine.count, reference.count)
        let snr = Self.snr(mine[..<n], reference: reference[..<n])
        print("ddsp-piano render (v2 file, \(dir.lastPathComponent)): \(String(format: "%.1f", snr)) dB SNR vs wet_no_noise.wav; \(r.output.split(separator: "\n").last ?? "")")
        XCTAssertGreaterThanOrEqual(snr, Self.minimumSNR)
    }

    /// A piano switch under a sounding chord glides (FiLM embedding, tuning values, reverb
    /// crossfade): its largest sample step is no larger than normal playing's. Every clone
    /// (structural v2 model), and the reference checkpoint when present.
    func testPianoSwitchHasNoClick() throws {
        var models = [("structural v2", StructuralV2.model())]
        if let m = try Fixtures.v2ReferenceModel() { models.append(("v2 reference checkpoint", m)) }
        func on(_ t: Double, _ p: UInt8, _ v: UInt8 = 90) -> TimedMessage { TimedMessage(time: t, message: .noteOn(channel: 0, pitch: p, velocity: v)) }
        func off(_ t: Double, _ p: UInt8) -> TimedMessage { TimedMessage(time: t, message: .noteOff(channel: 0, pitch: p, velocity: 0)) }
        var score: [TimedMessage] = [TimedMessage(time: 0.05, message: .controlChange(channel: 0, controller: 64, value: 127))]
        for (i, p) in [48, 55, 60, 64, 67, 72, 76].enumerated() { score.append(on(0.1 + 0.02 * Double(i), UInt8(p))) }
        for k in 0..<6 { score.append(on(0.6 + 0.25 * Double(k), UInt8(79 + k), 80)); score.append(off(0.8 + 0.25 * Double(k), UInt8(79 + k))) }
        score.sort { $0.time < $1.time }
        func maxStep(_ x: ArraySlice<Float>) -> Float {
            var m: Float = 0
            var prev = x.first ?? 0
            for v in x.dropFirst() { m = max(m, abs(v - prev)); prev = v }
            return m
        }
        let rate = 24_000.0
        for (name, model) in models {
            var options = PianoEngine.Options()
            options.noise = false
            let plain = try renderEngine(model, options: options, events: score, seconds: 2.5, rate: rate, block: 256)
            var worst: Float = 0
            for target in [0, 3, 5] {
                let switched = try renderEngine(model, options: options,
                                                events: (score + [TimedMessage(time: 1.01, message: .programChange(channel: 0, program: UInt8(target)))]).sorted { $0.time < $1.time },
                                                seconds: 2.5, rate: rate, block: 256)
                let atSwitch = maxStep(switched[Int(0.98 * rate)..<Int(1.25 * rate)])
                var o = options
                o.instrument = target
                let other = try renderEngine(model, options: o, events: score, seconds: 2.5, rate: rate, block: 256)
                let normal = max(maxStep(plain[Int(0.5 * rate)...]), maxStep(other[Int(0.5 * rate)...]))
                worst = max(worst, atSwitch / normal)
                print("v2 switch (\(name)) 9 → \(target) under a chord: largest step \(atSwitch) in the 270 ms around it vs \(normal) in normal playing (ratio \(atSwitch / normal))")
            }
            XCTAssertLessThanOrEqual(worst, 1.0, name)
        }
    }

    /// A model built for one piano (`PianoModel(_:pianos:)`, what a render that never switches
    /// loads: one v2 reverb computed instead of ten) plays it to the bit as the whole model does,
    /// and its engine ignores a switch to a piano it was built without. Out-of-range pianos are
    /// refused in one line.
    func testModelOfOnePianoPlaysItAsTheWholeModel() throws {
        let whole = StructuralV2.model()
        let started = Date()
        let one = try PianoModel(whole.file, pianos: [3])
        print(String(format: "v2 model of piano 3 alone built in %.3f s", Date().timeIntervalSince(started)))
        XCTAssertEqual(one.pianos, [3])
        XCTAssertTrue(one.plays(3))
        XCTAssertFalse(one.plays(4))
        XCTAssertFalse(whole.plays(whole.instruments.count))
        XCTAssertTrue(whole.plays(9))
        func on(_ t: Double, _ p: UInt8) -> TimedMessage { TimedMessage(time: t, message: .noteOn(channel: 0, pitch: p, velocity: 90)) }
        func off(_ t: Double, _ p: UInt8) -> TimedMessage { TimedMessage(time: t, message: .noteOff(channel: 0, pitch: p, velocity: 0)) }
        let score = [on(0.1, 60), on(0.3, 64), off(0.8, 60), on(0.9, 67), off(1.2, 64), off(1.4, 67)]
        var options = PianoEngine.Options()
        options.instrument = 3
        let a = try renderEngine(whole, options: options, events: score, seconds: 2, rate: 48_000, block: 128)
        let b = try renderEngine(one, options: options, events: score, seconds: 2, rate: 48_000, block: 128)
        let switched = (score + [TimedMessage(time: 0.5, message: .programChange(channel: 0, program: 7))]).sorted { $0.time < $1.time }
        let c = try renderEngine(one, options: options, events: switched, seconds: 2, rate: 48_000, block: 128)
        let d = try renderEngine(whole, options: options, events: switched, seconds: 2, rate: 48_000, block: 128)
        let peak = a.reduce(Float(0)) { max($0, abs($1)) }
        let moved = zip(a, d).reduce(Float(0)) { max($0, abs($1.0 - $1.1)) }
        print("one-piano model vs whole model: \(zip(a, b).filter { $0.0 != $0.1 }.count) of \(a.count) samples differ; "
              + "with a switch to piano 7 it lacks: \(zip(a, c).filter { $0.0 != $0.1 }.count) differ; the whole model switched: max |Δ| \(moved) (peak \(peak))")
        XCTAssertGreaterThan(peak, 1e-3, "the notes sound")
        XCTAssertEqual(a, b, "the one-piano model plays piano 3 as the whole model")
        XCTAssertEqual(a, c, "a switch to a piano the model lacks is ignored")
        XCTAssertGreaterThan(moved, 1e-4, "the whole model does switch (the test can tell)")
        XCTAssertThrowsError(try PianoModel(whole.file, pianos: [3, 10])) {
            XCTAssertEqual("\($0)", "piano 10 is out of range 0..<10")
        }
    }

    /// Without --sample-rate a render is at the model's own rate; the structural v2 model in every clone.
    func testRenderIsAtTheModelRate() throws {
        var settings = RenderSettings()
        settings.noise = false
        settings.duration = 1
        typealias M = SMF
        let midi = try MIDIFile(bytes: M.file(format: 0, tracks: [M.on(0, 60, 90) + M.off(240, 60) + M.eot()]))
        let v2 = try OfflineRenderer.render(midi: midi, model: StructuralV2.model(), settings: settings)
        XCTAssertEqual(v2.sampleRate, 24_000)
        XCTAssertEqual(v2.wet.count, 24_000)
        let peak = v2.wet.map(abs).max() ?? 0
        print("structural v2, one note, 1 s: \(v2.wet.count) samples at \(v2.sampleRate) Hz, peak \(peak)")
        XCTAssertGreaterThan(peak, 1e-3)
        XCTAssertTrue(v2.wet.allSatisfy { $0.isFinite })
    }
}
