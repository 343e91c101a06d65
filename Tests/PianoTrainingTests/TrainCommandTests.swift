import DDSPPiano
import Foundation
import PianoIO
import PianoTestKit
import PianoTraining
import XCTest

/// `ddsp-piano-train` as a user runs it: train, Ctrl-C (checkpoint saved), --resume, export,
/// render the exported weights with `ddsp-piano`, evaluate; and its errors on bad input.
final class TrainCommandTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("ddsp-train-cli-\(getpid())-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(at: dir) }

    struct Run { var status: Int32; var out: String; var err: String }

    func start(_ tool: String, _ args: [String]) throws -> (Process, URL, URL) {
        let p = Process()
        p.executableURL = try TestKit.executable(tool)
        p.arguments = args
        p.currentDirectoryURL = dir
        var env = ProcessInfo.processInfo.environment
        env["XDG_DATA_HOME"] = dir.appendingPathComponent("xdg").path
        env["DDSP_PIANO_WEIGHTS"] = nil
        p.environment = env
        let id = UUID().uuidString
        let o = dir.appendingPathComponent("\(id).out"), e = dir.appendingPathComponent("\(id).err")
        _ = FileManager.default.createFile(atPath: o.path, contents: nil); _ = FileManager.default.createFile(atPath: e.path, contents: nil)
        p.standardOutput = try FileHandle(forWritingTo: o); p.standardError = try FileHandle(forWritingTo: e)
        try p.run()
        return (p, o, e)
    }

    func run(_ tool: String, _ args: [String]) throws -> Run {
        let (p, o, e) = try start(tool, args)
        p.waitUntilExit()
        let r = Run(status: p.terminationStatus, out: try String(contentsOf: o, encoding: .utf8), err: try String(contentsOf: e, encoding: .utf8))
        print("$ \(tool) \(args.joined(separator: " "))  → \(r.status)\n\(r.out)\(r.err)")
        return r
    }

    func testTrainInterruptResumeExportRenderEvaluate() throws {
        _ = try TestKit.executable("ddsp-piano-train")
        let data = dir.appendingPathComponent("data")
        try TrainerTests.writePair(folder: data.appendingPathComponent("train/grand"), name: "a", seconds: 8, seed: 1)
        try TrainerTests.writePair(folder: data.appendingPathComponent("train/upright"), name: "b", seconds: 7, seed: 2)
        try TrainerTests.writePair(folder: data.appendingPathComponent("validation/grand"), name: "c", seconds: 5, seed: 3)
        let runDir = dir.appendingPathComponent("run")
        let log = runDir.appendingPathComponent("log.jsonl")

        // Ctrl-C after the second step: a checkpoint is saved and the tool says how to go on.
        let (p, o, _) = try start("ddsp-piano-train", ["train", "--data", data.path, "--run", runDir.path, "--phases", "1", "--steps", "6",
                                                        "--batch-size", "2", "--validate-every", "3", "--checkpoint-every", "100",
                                                        "--validation-segments", "2", "--seed", "5"])
        let deadline = Date().addingTimeInterval(120)
        while Date() < deadline, p.isRunning {
            if let text = try? String(contentsOf: log, encoding: .utf8), text.contains("\"step\":2,") { break }
            usleep(50_000)
        }
        XCTAssertTrue(p.isRunning, "the run ended before it could be interrupted")
        kill(p.processIdentifier, SIGINT)
        p.waitUntilExit()
        let said = try String(contentsOf: o, encoding: .utf8)
        print(said)
        XCTAssertEqual(p.terminationStatus, 130)
        XCTAssertTrue(said.contains("interrupted at step"), said)
        let checkpoint = try TrainingCheckpoint.load(runDir.appendingPathComponent("checkpoint.safetensors"))
        let stoppedAt = checkpoint.adam.step
        XCTAssertGreaterThanOrEqual(stoppedAt, 2); XCTAssertLessThan(stoppedAt, 6)

        let resumed = try run("ddsp-piano-train", ["train", "--run", runDir.path, "--resume"])
        XCTAssertEqual(resumed.status, 0)
        XCTAssertTrue(resumed.out.contains("resuming") && resumed.out.contains("done: 6 steps"), resumed.out)
        // The log holds each step once, 1...6, and validations at 0, 3, 6.
        let records = try String(contentsOf: log, encoding: .utf8).split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
        XCTAssertEqual(records.filter { $0["loss"] != nil }.compactMap { $0["step"] as? Int }, [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(records.filter { $0["validation_loss"] != nil }.compactMap { $0["step"] as? Int }, [0, 3, 6])
        XCTAssertEqual(try WeightStore.load(runDir.appendingPathComponent("initial.safetensors")).instruments, ["grand", "upright"])
        for picture in ["loss.png", "spectrogram.png"] {
            let bytes = try Data(contentsOf: runDir.appendingPathComponent(picture))
            XCTAssertEqual(Array(bytes.prefix(4)), [0x89, 0x50, 0x4E, 0x47], picture)
        }

        let model = dir.appendingPathComponent("model.safetensors")
        let exported = try run("ddsp-piano-train", ["export", runDir.appendingPathComponent("checkpoint.safetensors").path, "-o", model.path])
        XCTAssertEqual(exported.status, 0)
        let w = try WeightStore.load(model)
        XCTAssertEqual(w.instruments, ["grand", "upright"])
        XCTAssertEqual(w.provenance["training.steps"], "6")
        XCTAssertNotNil(w.calibration, "export measures a normalisation calibration")

        let wav = dir.appendingPathComponent("out.wav")
        let rendered = try run("ddsp-piano", ["render", "--weights", model.path, "--piano", "upright",
                                              data.appendingPathComponent("train/upright/b.mid").path, wav.path])
        XCTAssertEqual(rendered.status, 0)
        let audio = try AudioFile.read(wav).mono()
        let peak = audio.map { abs($0) }.max() ?? 0
        print("render with the exported weights: \(audio.count) samples, peak \(peak)")
        XCTAssertTrue(audio.allSatisfy(\.isFinite))
        XCTAssertGreaterThan(peak, 1e-4)

        let evaluated = try run("ddsp-piano-train", ["evaluate", "--weights", model.path, "--data", data.appendingPathComponent("validation").path])
        XCTAssertEqual(evaluated.status, 0)
        XCTAssertTrue(evaluated.out.contains("mean over all 1 renders"), evaluated.out)
    }

    /// `spectrogram` as a model card is made: a recording and two renders of another rate, one
    /// PNG; a file it cannot read gets one line naming it.
    func testSpectrogramPictureOfSeveralFiles() throws {
        _ = try TestKit.executable("ddsp-piano-train")
        let a = dir.appendingPathComponent("a.wav"), b = dir.appendingPathComponent("b.flac")
        try AudioFile.write((0..<96_000).map { 0.3 * Float(sin(2 * .pi * 440 * Double($0) / 24_000)) }, sampleRate: 24_000, format: .f32, to: a)
        try AudioFile.write((0..<64_000).map { 0.3 * Float(sin(2 * .pi * 1000 * Double($0) / 16_000)) }, sampleRate: 16_000, format: .flac16, to: b)
        let png = dir.appendingPathComponent("cmp.png")
        let r = try run("ddsp-piano-train", ["spectrogram", "-o", png.path, "--seconds", "3", "--title", "test",
                                             "--label", "recording", a.path, "--label", "model", b.path])
        XCTAssertEqual(r.status, 0, r.err)
        let bytes = [UInt8](try Data(contentsOf: png))
        XCTAssertEqual(Array(bytes.prefix(8)), [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        func be32(_ at: Int) -> Int { bytes[at..<(at + 4)].reduce(0) { $0 << 8 | Int($1) } }
        // IHDR: 3 s at 16 kHz in hop-128 columns after the first 1024-sample frame; title + 2 panels.
        XCTAssertEqual(be32(16), 1 + (48_000 - 1024) / 128)
        XCTAssertEqual(be32(20), 22 + 2 * (22 + TrainingPlots.panelRows))
        XCTAssertTrue(r.out.contains("2 panel(s)"), r.out)

        let bad = dir.appendingPathComponent("bad.wav")
        try Data("RIFF not really".utf8).write(to: bad)
        let refused = try run("ddsp-piano-train", ["spectrogram", "-o", png.path, a.path, bad.path])
        XCTAssertEqual(refused.status, 1)
        XCTAssertEqual(refused.err.split(separator: "\n").count, 1, refused.err)
        XCTAssertTrue(refused.err.contains(bad.path), refused.err)
        let mismatched = try run("ddsp-piano-train", ["spectrogram", "-o", png.path, "--label", "x", a.path, b.path])
        XCTAssertEqual(mismatched.status, 64)
    }

    /// v2 as a user trains it: a v2 weight file as --init (the seeded StructuralV2, real layout)
    /// makes the run a v2 run on 24-kHz audio; a new piano is added; checkpoint, --resume,
    /// export as a v2 file, render it with `ddsp-piano`, evaluate it.
    func testTrainV2FromAV2WeightFile() throws {
        _ = try TestKit.executable("ddsp-piano-train")
        let data = dir.appendingPathComponent("data")
        try TrainerTests.writePair(folder: data.appendingPathComponent("train/mine"), name: "a", seconds: 8, seed: 1)
        try TrainerTests.writePair(folder: data.appendingPathComponent("train/mine"), name: "b", seconds: 7, seed: 2)
        try TrainerTests.writePair(folder: data.appendingPathComponent("validation/mine"), name: "c", seconds: 5, seed: 3)
        let initial = dir.appendingPathComponent("v2.safetensors")
        try WeightStore.install(.v2(StructuralV2.weights()), at: initial)
        let runDir = dir.appendingPathComponent("run")
        let first = try run("ddsp-piano-train", ["train", "--data", data.path, "--run", runDir.path, "--init", initial.path, "--phases", "1",
                                                 "--steps", "3", "--batch-size", "2", "--validate-every", "3", "--checkpoint-every", "100",
                                                 "--validation-segments", "2", "--seed", "5", "--max-minutes", "0.0001"])
        XCTAssertEqual(first.status, 0, first.err)
        XCTAssertTrue(first.out.contains("time limit reached at step 1"), first.out)
        let checkpoint = try TrainingCheckpoint.load(runDir.appendingPathComponent("checkpoint.safetensors"))
        XCTAssertEqual(checkpoint.file.architecture, "v2")
        XCTAssertEqual(checkpoint.file.instruments.last, "mine", "the data's piano is added")
        XCTAssertEqual(checkpoint.file.instruments.count, 11)
        // A resumed run keeps its plan: a new batch size is refused in one line, before any work.
        let refused = try run("ddsp-piano-train", ["train", "--run", runDir.path, "--resume", "--batch-size", "3"])
        XCTAssertEqual(refused.status, 64)
        XCTAssertTrue(refused.err.contains("--batch-size cannot change a resumed run"), refused.err)
        // --steps lengthens it where it stands (3 planned, 4 run).
        let resumed = try run("ddsp-piano-train", ["train", "--run", runDir.path, "--resume", "--steps", "4"])
        XCTAssertEqual(resumed.status, 0, resumed.err)
        XCTAssertTrue(resumed.out.contains("resuming") && resumed.out.contains("of 4") && resumed.out.contains("done: 4 steps"), resumed.out)
        let log = try String(contentsOf: runDir.appendingPathComponent("log.jsonl"), encoding: .utf8)
        let losses = log.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            .compactMap { $0["loss"] as? Double }
        print("v2 training losses: \(losses)")
        XCTAssertEqual(losses.count, 4)
        XCTAssertTrue(losses.allSatisfy { $0.isFinite && $0 > 0 })

        let model = dir.appendingPathComponent("model.safetensors")
        let exported = try run("ddsp-piano-train", ["export", runDir.appendingPathComponent("checkpoint.safetensors").path, "-o", model.path])
        XCTAssertEqual(exported.status, 0, exported.err)
        guard case .v2(let w) = try WeightStore.readFile(model) else { return XCTFail("export wrote no v2 file") }
        XCTAssertEqual(w.provenance["training.steps"], "4")
        let wav = dir.appendingPathComponent("out.wav")
        let rendered = try run("ddsp-piano", ["render", "--weights", model.path, "--piano", "mine",
                                              data.appendingPathComponent("train/mine/a.mid").path, wav.path])
        XCTAssertEqual(rendered.status, 0, rendered.err)
        let audio = try AudioFile.read(wav).mono()
        let peak = audio.map { abs($0) }.max() ?? 0
        print("render with the exported v2 weights: \(audio.count) samples, peak \(peak)")
        XCTAssertTrue(audio.allSatisfy(\.isFinite))
        XCTAssertGreaterThan(peak, 1e-4)
        let evaluated = try run("ddsp-piano-train", ["evaluate", "--weights", model.path, "--data", data.appendingPathComponent("validation").path])
        XCTAssertEqual(evaluated.status, 0, evaluated.err)
        XCTAssertTrue(evaluated.out.contains("mean over all 1 renders"), evaluated.out)
        // At dafx22's rate, to compare with a dafx22 model on equal terms: another value.
        let at16 = try run("ddsp-piano-train", ["evaluate", "--weights", model.path, "--data", data.appendingPathComponent("validation").path,
                                                "--sample-rate", "16000"])
        XCTAssertEqual(at16.status, 0, at16.err)
        func mean(_ text: String) -> Double? { text.split(separator: " ").last.flatMap { Double($0.trimmingCharacters(in: .whitespacesAndNewlines)) } }
        let a = mean(evaluated.out), b = mean(at16.out)
        print("v2 model evaluated at 24 kHz: \(a ?? .nan), at 16 kHz: \(b ?? .nan)")
        XCTAssertNotNil(a); XCTAssertNotNil(b); XCTAssertNotEqual(a, b)
    }

    /// A fresh v2 model (`--model v2`): upstream's initialisation, upstream's phases without
    /// phase 2 (it would train only v2's frozen tuning), and a model the engine plays.
    func testFreshV2RunLeavesOutPhase2() throws {
        _ = try TestKit.executable("ddsp-piano-train")
        let data = dir.appendingPathComponent("data")
        try TrainerTests.writePair(folder: data.appendingPathComponent("train/mine"), name: "a", seconds: 7, seed: 1)
        try TrainerTests.writePair(folder: data.appendingPathComponent("validation/mine"), name: "c", seconds: 5, seed: 3)
        let runDir = dir.appendingPathComponent("run")
        let r = try run("ddsp-piano-train", ["train", "--model", "v2", "--data", data.path, "--run", runDir.path, "--phases", "1,2,3",
                                             "--steps", "1,1,1", "--batch-size", "2,2,2", "--validation-segments", "1", "--seed", "9"])
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertTrue(r.out.contains("model: v2, 24000 Hz") && r.out.contains("phase 2 left out"), r.out)
        XCTAssertTrue(r.out.contains("plan: phase 1: 1 steps of 2 (lr 0.001); phase 3: 1 steps of 2"), r.out)
        XCTAssertTrue(r.out.contains("done: 2 steps"), r.out)
        guard case .v2(let w) = try WeightStore.readFile(runDir.appendingPathComponent("initial.safetensors")) else { return XCTFail("not v2") }
        XCTAssertEqual(w.instruments, ["mine"])
        XCTAssertEqual(w.releaseDuration, 1.1)
        // A piano that is no MAESTRO year starts from the mean of upstream's ten tunings.
        XCTAssertEqual(Double(w["tuning.K"].values[0]), 9.0901, accuracy: 1e-3)
        let gamma = w["mono.out_stack.1.gamma"].values
        XCTAssertTrue(gamma.allSatisfy { $0 == 1 })
        let model = try PianoModel(.v2(w))
        XCTAssertEqual(model.instruments, ["mine"])
        // Phase 2 alone is refused in one line.
        let only2 = try run("ddsp-piano-train", ["train", "--model", "v2", "--data", data.path, "--run", dir.appendingPathComponent("r2").path,
                                                 "--phases", "2", "--steps", "1"])
        XCTAssertNotEqual(only2.status, 0)
        XCTAssertTrue(only2.err.contains("v2 trains nothing in phase 2"), only2.err)
    }

    func testBadInputGetsOneLineNamingTheFile() throws {
        _ = try TestKit.executable("ddsp-piano-train")
        let missing = dir.appendingPathComponent("nothing-here").path
        let a = try run("ddsp-piano-train", ["train", "--data", missing, "--run", dir.appendingPathComponent("r1").path])
        XCTAssertEqual(a.status, 1)
        XCTAssertEqual(a.err.split(separator: "\n").count, 1); XCTAssertTrue(a.err.contains(missing), a.err)

        let b = try run("ddsp-piano-train", ["train", "--run", dir.appendingPathComponent("r2").path, "--resume"])
        XCTAssertEqual(b.status, 1)
        XCTAssertTrue(b.err.contains("no checkpoint to resume from"), b.err)

        let junk = dir.appendingPathComponent("junk.safetensors")
        try Data("not a checkpoint".utf8).write(to: junk)
        let c = try run("ddsp-piano-train", ["export", junk.path, "-o", dir.appendingPathComponent("x.safetensors").path])
        XCTAssertEqual(c.status, 1)
        XCTAssertEqual(c.err.split(separator: "\n").count, 1); XCTAssertTrue(c.err.contains(junk.path), c.err)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("x.safetensors").path))

        // A folder whose only pair is unusable: listed with the reason, then a clear error.
        let data = dir.appendingPathComponent("bad/grand")
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        try Data("MThd garbage".utf8).write(to: data.appendingPathComponent("x.mid"))
        try AudioFile.write([Float](repeating: 0.1, count: 16_000), channels: 1, sampleRate: 16_000, format: .f32, to: data.appendingPathComponent("x.wav"))
        let d = try run("ddsp-piano-train", ["train", "--data", dir.appendingPathComponent("bad").path, "--run", dir.appendingPathComponent("r3").path])
        XCTAssertEqual(d.status, 1)
        XCTAssertTrue(d.err.contains("x.mid"), d.err)
        XCTAssertTrue(d.err.contains("no usable 3-second segment"), d.err)
        XCTAssertEqual(d.err.split(separator: "\n").count, 2, "one line for the skipped pair, one for the error")
    }
}
