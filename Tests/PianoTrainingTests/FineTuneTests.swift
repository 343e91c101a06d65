import DDSPPiano
import Foundation
import PianoFormats
import PianoIO
import PianoTestKit
import PianoTraining
import XCTest

/// Fine-tuning the imported upstream dafx22 model on a SoundFont piano (Debian's FluidR3 Yamaha
/// Grand through fluidsynth) lowers its validation loss. Needs ../shared (the checkpoint and
/// MIDI files) and fluidsynth with fluid-soundfont-gm; says "skipped" otherwise.
final class FineTuneTests: XCTestCase {
    static let soundFont = "/usr/share/sounds/sf2/FluidR3_GM.sf2"

    static func fluidsynth() -> String? {
        ["/usr/bin/fluidsynth", "/usr/local/bin/fluidsynth"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// Renders `midi` through FluidR3 at `rate` into `folder` as a (wav, mid) pair.
    static func render(_ midi: URL, into folder: URL, rate: Int = 16_000) throws {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let stem = midi.deletingPathExtension().lastPathComponent
        try FileManager.default.copyItem(at: midi, to: folder.appendingPathComponent(stem + ".mid"))
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.fluidsynth()!)
        p.arguments = ["-ni", "-q", "-R", "0", "-C", "0", "-g", "0.5", "-r", String(rate), "-F", folder.appendingPathComponent(stem + ".wav").path,
                       Self.soundFont, midi.path]
        p.standardOutput = FileHandle.nullDevice; p.standardError = FileHandle.nullDevice
        try p.run(); p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw TrainingDataError("fluidsynth failed on \(midi.path)") }
    }

    func testFineTuningDafx22OnASoundFontPianoLowersValidationLoss() throws {
        let raw = TestKit.shared.appendingPathComponent("reference/dafx22/checkpoint_raw.safetensors")
        guard FileManager.default.fileExists(atPath: raw.path) else { print("skipped: no reference fixtures (\(raw.path))"); throw XCTSkip("no reference fixtures") }
        guard Self.fluidsynth() != nil, FileManager.default.fileExists(atPath: Self.soundFont) else {
            print("skipped: no fluidsynth or no \(Self.soundFont)"); throw XCTSkip("no fluidsynth")
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ddsp-finetune-\(getpid())-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let midi = TestKit.shared.appendingPathComponent("midi")
        for name in ["score/music21corpus__mozart_k545_movement1_exposition.mid", "score/music21corpus__schoenberg_opus19_movement2.mid"] {
            try Self.render(midi.appendingPathComponent(name), into: dir.appendingPathComponent("train/fluidr3"))
        }
        try Self.render(midi.appendingPathComponent("performance/parangonar__mozart_k265_var1.mid"), into: dir.appendingPathComponent("validation/fluidr3"))

        let upstream = try PianoWeights(upstreamCheckpoint: try Safetensors(bytes: [UInt8](try Data(contentsOf: raw))).tensors)
        var instruments = upstream.instruments
        let train = try TrainingSet.load(folder: dir.appendingPathComponent("train"), instruments: &instruments)
        let validation = try TrainingSet.load(folder: dir.appendingPathComponent("validation"), instruments: &instruments)
        XCTAssertEqual(instruments.last, "fluidr3")
        // The new piano starts as the 2018 Disklavier (the default piano).
        let weights = try upstream.withInstruments(instruments, aliases: ["fluidr3": "2018"])
        var config = TrainerConfig()
        config.seed = 1; config.threads = 2; config.validationSegments = 6
        config.phases = [PhasePlan(number: 1, batchSize: 3, learningRate: 1e-3, steps: 10)]
        let trainer = try Trainer(weights: weights, config: config, train: train, validation: validation)
        let before = trainer.validationLoss()!
        var losses: [Double] = []
        while !trainer.isFinished { losses.append(try trainer.step().losses.total) }
        let after = trainer.validationLoss()!
        print(String(format: "fine-tuning dafx22 (2018) on FluidR3 Yamaha Grand, 10 steps of 3 segments: validation spectral loss %.4f -> %.4f (%.1f %%); training loss %@",
                     before, after, 100 * (after - before) / before, losses.map { String(format: "%.2f", $0) }.joined(separator: " ")))
        XCTAssertLessThan(after, before, "fine-tuning must lower the validation loss")
    }
}
