import DDSPPiano
import Foundation
import PianoIO
import PianoStudy
import PianoTestKit
import PianoTraining
import XCTest

/// The model shipped in weights/ (trained by ddsp-piano-train; weights/README.md is its card):
/// it loads, renders the bundled example, and on held-out music (never trained on) rendered
/// through the same SoundFont it is far closer to the recording than the untrained model.
final class BundledModelTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let weightsURL = root.appendingPathComponent("weights/soundfont-grands.safetensors")

    func testBundledWeightsLoadAndPlayTheExample() throws {
        let w = try WeightStore.load(Self.weightsURL)
        XCTAssertEqual(w.instruments, ["fluidr3-bright-yamaha-grand", "fluidr3-yamaha-grand", "musescore-grand"])
        XCTAssertNotNil(w.calibration, "the streaming engine needs the calibration")
        XCTAssertNotNil(w.provenance["training.steps"].flatMap(Int.init))
        let midi = try MIDIFile(bytes: [UInt8](try Data(contentsOf: Self.root.appendingPathComponent("examples/arpeggios.mid"))))
        var settings = RenderSettings()
        settings.instrument = w.instruments.count - 1
        let audio = try OfflineRenderer.render(midi: midi, weights: w, settings: settings).wet
        let peak = audio.map { abs($0) }.max() ?? 0
        let rms = (audio.reduce(0) { $0 + Double($1) * Double($1) } / Double(audio.count)).squareRoot()
        print(String(format: "bundled model, examples/arpeggios.mid: %.1f s, peak %.3f, rms %.4f", Double(audio.count) / 16_000, peak, rms))
        XCTAssertTrue(audio.allSatisfy(\.isFinite))
        XCTAssertGreaterThan(rms, 1e-3)
        XCTAssertLessThan(peak, 1.5)
    }

    func testShippedModelBeatsTheUntrainedOneOnHeldOutMusic() throws {
        let midiDir = TestKit.shared.appendingPathComponent("midi/score")
        guard FileManager.default.fileExists(atPath: midiDir.path) else { print("skipped: no ../shared/midi"); throw XCTSkip("no MIDI corpus") }
        guard let fluidsynth = FineTuneTests.fluidsynth(), FileManager.default.fileExists(atPath: FineTuneTests.soundFont) else {
            print("skipped: no fluidsynth or no \(FineTuneTests.soundFont)"); throw XCTSkip("no fluidsynth")
        }
        let shipped = try WeightStore.load(Self.weightsURL)
        // The same starting point as the shipped run (seed 1), calibrated like it.
        var untrained = PianoWeights.initial(instruments: shipped.instruments, seed: 1)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ddsp-bundled-\(getpid())-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        // Held out of the shipped model's training set (weights/README.md).
        let pieces = ["mpteval__ref", "music21corpus__bach_bwv250_chorale_as_piano", "pianoplayer__scarlatti_k027"]
        var conditioning: [FrameConditioning] = []
        for name in pieces {
            let m = try MIDIFile(bytes: [UInt8](try Data(contentsOf: midiDir.appendingPathComponent(name + ".mid"))))
            conditioning.append(Calibration.conditioning(midi: m, cropSeconds: 20))
        }
        untrained.calibration = Calibration.calibrate(performances: conditioning, weights: untrained)
        let piano = shipped.instruments.firstIndex(of: "fluidr3-yamaha-grand")!
        var ours: [Double] = [], baseline: [Double] = []
        for name in pieces {
            let wav = dir.appendingPathComponent(name + ".wav"), mid = midiDir.appendingPathComponent(name + ".mid")
            let p = Process()
            p.executableURL = URL(fileURLWithPath: fluidsynth)
            p.arguments = ["-ni", "-q", "-R", "0", "-C", "0", "-g", "0.5", "-r", "16000", "-F", wav.path, FineTuneTests.soundFont, mid.path]
            p.standardOutput = FileHandle.nullDevice; p.standardError = FileHandle.nullDevice
            try p.run(); p.waitUntilExit()
            XCTAssertEqual(p.terminationStatus, 0)
            let a = try Evaluation.distance(audio: wav, midi: mid, weights: shipped, piano: piano, maxSeconds: 20).distance
            let b = try Evaluation.distance(audio: wav, midi: mid, weights: untrained, piano: piano, maxSeconds: 20).distance
            print(String(format: "held-out %@ (FluidR3 Yamaha Grand, first 20 s): shipped %.3f, untrained %.3f", name, a, b))
            ours.append(a); baseline.append(b)
        }
        let meanOurs = ours.reduce(0, +) / Double(ours.count), meanBase = baseline.reduce(0, +) / Double(baseline.count)
        print(String(format: "multi-scale spectral distance, mean of %d held-out pieces: shipped %.3f vs untrained %.3f (%.0f %% lower)",
                     pieces.count, meanOurs, meanBase, 100 * (1 - meanOurs / meanBase)))
        XCTAssertLessThan(meanOurs, 0.7 * meanBase, "the shipped model must beat the untrained one clearly")
    }
}
