import Foundation
import XCTest
import DDSPPiano
import PianoIO
import PianoStudy

/// The whole chain as a user runs it: `ddsp-piano weights import` on the upstream checkpoint,
/// then `ddsp-piano render --exact` on each reference case's input.mid, compared with the
/// audio the upstream TensorFlow code wrote.
final class EndToEndParityTests: XCTestCase {
    static var workDir: URL = FileManager.default.temporaryDirectory.appendingPathComponent("e2e-\(UUID().uuidString)")
    static var weightsFile: URL { workDir.appendingPathComponent("dafx22.safetensors") }

    override class func tearDown() {
        try? FileManager.default.removeItem(at: workDir)
    }

    @discardableResult
    static func run(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let p = Process()
        p.executableURL = try RenderCommandTests.executable()
        p.arguments = arguments
        let log = workDir.appendingPathComponent("log-\(UUID().uuidString).txt")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        p.standardOutput = handle
        p.standardError = handle
        try p.run()
        p.waitUntilExit()
        try handle.close()
        return (p.terminationStatus, String(decoding: try Data(contentsOf: log), as: UTF8.self))
    }

    func importedWeights() throws -> URL {
        let ref = try Fixtures.requireReference()
        if !FileManager.default.fileExists(atPath: Self.weightsFile.path) {
            try FileManager.default.createDirectory(at: Self.workDir, withIntermediateDirectories: true)
            let r = try Self.run(["weights", "import", ref.appendingPathComponent("dafx22/upstream_ckpt").path, "-o", Self.weightsFile.path])
            XCTAssertEqual(r.status, 0, r.output)
        }
        return Self.weightsFile
    }

    static func snr(_ x: ArraySlice<Float>, reference r: ArraySlice<Float>) -> Double {
        var signal = 0.0, noise = 0.0
        for (a, b) in zip(x, r) { signal += Double(b) * Double(b); noise += Double(a - b) * Double(a - b) }
        return 10 * log10(signal / max(noise, 1e-30))
    }

    /// `--exact --no-noise` against upstream's wet_no_noise.wav (warm-up cut): SNR ≥ 40 dB.
    func testExactRenderOfEveryCaseMatchesUpstreamAudio() throws {
        let weights = try importedWeights()
        for dir in try Fixtures.cases() {
            let meta = try Fixtures.meta(dir)
            let piano = (meta["piano_type"] as? Int) ?? 9
            let warm = (meta["warm_up_samples"] as? Int) ?? 8000
            let out = Self.workDir.appendingPathComponent("\(dir.lastPathComponent).wav")
            let start = Date()
            let r = try Self.run(["render", "--weights", weights.path, "--piano", String(piano), "--exact", "--no-noise",
                                  dir.appendingPathComponent("input.mid").path, out.path])
            let seconds = Date().timeIntervalSince(start)
            XCTAssertEqual(r.status, 0, r.output)
            guard r.status == 0 else { continue }
            let mine = try AudioFile.read(out).mono()
            let reference = try AudioFile.read(dir.appendingPathComponent("wet_no_noise.wav")).mono()
            XCTAssertEqual(mine.count, reference.count - warm, dir.lastPathComponent)
            let n = min(mine.count, reference.count - warm)
            let snr = Self.snr(mine[0..<n], reference: reference[warm..<(warm + n)])
            let audio = Double(n) / 16000
            print("e2e \(dir.lastPathComponent): SNR \(String(format: "%.1f", snr)) dB vs wet_no_noise.wav, "
                  + "\(String(format: "%.1f", audio)) s of audio in \(String(format: "%.2f", seconds)) s "
                  + "(\(String(format: "%.3f", seconds / audio)) s/s incl. process start; upstream 1.48 s/s)")
            XCTAssertGreaterThan(snr, 40, dir.lastPathComponent)
        }
    }

    /// Cases with upstream's final.wav (noise included, 16-bit): our `--exact` render with noise
    /// has the same spectral envelope over time (band energies, mean |ΔdB|), and the deterministic
    /// part dominates so the waveform SNR is bounded only by the random noise.
    func testExactRenderWithNoiseMatchesUpstreamFinalWav() throws {
        let weights = try importedWeights()
        let dirs = try Fixtures.cases(withTensors: false).filter {
            FileManager.default.fileExists(atPath: $0.appendingPathComponent("final.wav").path)
        }
        for dir in dirs {
            let meta = try Fixtures.meta(dir)
            let piano = (meta["piano_type"] as? Int) ?? 9
            let out = Self.workDir.appendingPathComponent("\(dir.lastPathComponent)-noise.wav")
            let start = Date()
            let r = try Self.run(["render", "--weights", weights.path, "--piano", String(piano), "--exact", "--format", "s16",
                                  dir.appendingPathComponent("input.mid").path, out.path])
            let seconds = Date().timeIntervalSince(start)
            XCTAssertEqual(r.status, 0, r.output)
            guard r.status == 0 else { continue }
            let mine = try AudioFile.read(out).mono()
            let reference = try AudioFile.read(dir.appendingPathComponent("final.wav")).mono()
            XCTAssertEqual(mine.count, reference.count, dir.lastPathComponent)
            let n = min(mine.count, reference.count)
            let a = SpectralMetrics.bandEnergies(Array(mine[..<n])), b = SpectralMetrics.bandEnergies(Array(reference[..<n]))
            // Only bands with energy well above the 16-bit floor say something.
            var diffs: [Double] = []
            for i in a.db.indices where b.db[i] > -60 { diffs.append(abs(a.db[i] - b.db[i])) }
            let meanDiff = diffs.reduce(0, +) / Double(max(1, diffs.count))
            let snr = Self.snr(mine[..<n], reference: reference[..<n])
            let msd = SpectralMetrics.multiScaleDistance(Array(mine[..<n]), Array(reference[..<n]))
            print("e2e-noise \(dir.lastPathComponent): band energy mean |ΔdB| \(String(format: "%.2f", meanDiff)) over \(diffs.count) bins, "
                  + "waveform SNR \(String(format: "%.1f", snr)) dB (noise differs by design), multi-scale spectral distance "
                  + "\(String(format: "%.3f", msd)); \(String(format: "%.1f", Double(n) / 16000)) s in \(String(format: "%.2f", seconds)) s")
            XCTAssertLessThan(meanDiff, 1.0, dir.lastPathComponent)
        }
    }

    /// The default render (streaming engine, causal normalisation) lines up with upstream in
    /// time: the best-matching lag against wet_no_noise.wav is 0, at 16 and 48 kHz.
    func testStreamingRenderIsAlignedWithUpstream() throws {
        let weights = try importedWeights()
        let dir = try Fixtures.requireReference().appendingPathComponent("cases/real_mozart_k265_var1_p9")
        let meta = try Fixtures.meta(dir)
        let warm = (meta["warm_up_samples"] as? Int) ?? 8000
        let reference = Array(try AudioFile.read(dir.appendingPathComponent("wet_no_noise.wav")).mono()[warm...])
        for rate in [16_000, 48_000] {
            let out = Self.workDir.appendingPathComponent("stream-\(rate).wav")
            let r = try Self.run(["render", "--weights", weights.path, "--no-noise", "--sample-rate", String(rate),
                                  dir.appendingPathComponent("input.mid").path, out.path])
            XCTAssertEqual(r.status, 0, r.output)
            guard r.status == 0 else { continue }
            var mine = try AudioFile.read(out).mono()
            XCTAssertEqual(mine.count, reference.count * rate / 16_000)
            if rate != 16_000 {
                // Back to 16 kHz (offline, no delay) to compare with upstream.
                mine = try OfflineResampler.resample(mine, from: Double(rate), to: 16_000)
            }
            let n = min(mine.count, reference.count)
            var best = (lag: 0, score: -Double.infinity)
            for lag in -200...200 {
                var dot = 0.0
                for i in 1000..<(n - 1000) { dot += Double(mine[i + lag]) * Double(reference[i]) }
                if dot > best.score { best = (lag, dot) }
            }
            let snr = Self.snr(mine[0..<n], reference: reference[0..<n])
            let distance = SpectralMetrics.multiScaleDistance(Array(mine[0..<n]), Array(reference[0..<n]))
            print("streaming render at \(rate) Hz vs upstream (mozart case): best lag \(best.lag) samples, SNR \(String(format: "%.1f", snr)) dB, multi-scale spectral distance \(String(format: "%.3f", distance))")
            XCTAssertEqual(best.lag, 0)
        }
    }

    /// The streaming engine (what `render` does by default and what plays live) against
    /// `--exact` on every reference case: multi-scale spectral distance of the wet output,
    /// noise off, and the same figure for per-frame statistics (the naive causal choice).
    func testStreamingDistanceToExactForEveryCase() throws {
        let weights = try Fixtures.dafx22Weights()
        var rows: [String] = []
        var total = 0.0, totalBaseline = 0.0
        for dir in try Fixtures.cases(withTensors: false) {
            let meta = try Fixtures.meta(dir)
            let midi = try MIDIFile(bytes: [UInt8](try Data(contentsOf: dir.appendingPathComponent("input.mid"))))
            var settings = RenderSettings()
            settings.instrument = (meta["piano_type"] as? Int) ?? 9
            settings.noise = false
            var exactSettings = settings
            exactSettings.exact = true
            let exact = try OfflineRenderer.render(midi: midi, weights: weights, settings: exactSettings).wet
            let streaming = try OfflineRenderer.render(midi: midi, weights: weights, settings: settings).wet
            let conditioning = UpstreamConditioning.make(midi: midi)
            let perFrame = try CausalRender.render(conditioning: conditioning, weights: weights, settings: settings, normalization: .perFrame).wet
            XCTAssertEqual(streaming.count, exact.count)
            let d = SpectralMetrics.multiScaleDistance(streaming, exact)
            let b = SpectralMetrics.multiScaleDistance(perFrame, exact)
            total += d; totalBaseline += b
            rows.append(String(format: "| %@ | %.3f | %.3f |", dir.lastPathComponent, d, b))
            XCTAssertLessThan(d, b, dir.lastPathComponent)
        }
        print("streaming engine vs --exact, multi-scale spectral distance (wet, no noise):")
        print("| case | streaming engine | per-frame statistics |\n|---|---|---|")
        for r in rows { print(r) }
        print(String(format: "| mean | %.3f | %.3f |", total / Double(rows.count), totalBaseline / Double(rows.count)))
    }
}
