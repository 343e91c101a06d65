import ArgumentParser
import DDSPPiano
import Foundation
import PianoIO
import PianoStudy
import PianoTraining

struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write a checkpoint's model as a weight file ddsp-piano and ddsp-pianod load.",
        discussion: """
        The weight file (dafx22 or v2, as the run) gets the run's facts as metadata (data, \
        steps, phases, losses, instruments, training time); a dafx22 file also a normalisation \
        calibration measured on MIDI files (by default the training data's, first 60 s of up to \
        24 pieces; see `ddsp-piano weights calibrate`), which the streaming engine needs to \
        sound right from the first note (v2 normalises per frame and needs none).
        """
    )

    @Argument(help: ArgumentHelp("Checkpoint (RUN/checkpoint.safetensors).", valueName: "checkpoint"))
    var checkpoint: String

    @Option(name: .shortAndLong, help: ArgumentHelp("Weight file to write.", valueName: "file.safetensors"))
    var output: String

    @Option(name: .customLong("calibrate-midi"), parsing: .upToNextOption, help: ArgumentHelp("MIDI files or folders for the calibration (default: the training data's).", valueName: "path"))
    var calibrateMIDI: [String] = []

    @Flag(name: .customLong("no-calibration"), help: "Do not measure a calibration (the engine then uses generic constants).")
    var noCalibration = false

    @Option(name: .customLong("note"), help: ArgumentHelp("Free text stored as metadata 'training.note'.", valueName: "text"))
    var note: String?

    func run() throws {
        do { try export() } catch let e as TrainingDataError {
            FileHandle.standardError.write(Data("ddsp-piano-train: \(e.description)\n".utf8)); throw ExitCode(1)
        } catch let e as WeightStoreError {
            FileHandle.standardError.write(Data("ddsp-piano-train: \(e)\n".utf8)); throw ExitCode(1)
        }
    }

    static func midiFiles(under folder: String) -> [URL] {
        guard let walker = FileManager.default.enumerator(atPath: folder) else { return [] }
        var found: [String] = []
        while let name = walker.nextObject() as? String {
            let ext = (name as NSString).pathExtension.lowercased()
            if ext == "mid" || ext == "midi" { found.append(name) }
        }
        return found.sorted().map { URL(fileURLWithPath: folder).appendingPathComponent($0) }
    }

    func export() throws {
        let url = URL(fileURLWithPath: checkpoint)
        let c: TrainingCheckpoint
        do { c = try TrainingCheckpoint.load(url) } catch { throw TrainingDataError("\(checkpoint): \(error)") }
        // The run's facts, for the model card and `ddsp-piano weights info`.
        var meta: [String: String] = [:]
        if let json = c.state["config"], let config = try? TrainerConfig.from(json: json) {
            let p = Int(c.state["phase_index"] ?? "0") ?? 0, s = Int(c.state["step_in_phase"] ?? "0") ?? 0
            let done = config.phases.prefix(p).reduce(0) { $0 + $1.steps } + s
            meta["training.steps"] = String(done)
            meta["training.plan"] = config.phases.map { "phase \($0.number): \($0.steps) steps, batch \($0.batchSize), lr \($0.learningRate)" }.joined(separator: "; ")
            meta["training.seed"] = String(config.seed)
        }
        meta["training.optimizer_steps"] = String(c.adam.step)
        if let d = c.state["data"] { meta["training.data"] = d }
        if let s = c.state["seconds"] { meta["training.seconds"] = s }
        if let l = c.state["last_loss"] { meta["training.last_loss"] = l }
        if let v = c.state["last_validation_loss"] { meta["training.validation_loss"] = v }
        if let i = c.state["instruments_trained"] { meta["training.instruments_trained"] = i }
        meta["training.instruments"] = c.file.instruments.joined(separator: ",")
        meta["training.tool"] = "ddsp-piano-train"
        meta["training.exported"] = ISO8601DateFormatter().string(from: Date())
        if let note { meta["training.note"] = note }
        let file: WeightFile
        switch c.file {
        case .v2(var w):
            // v2 normalises every frame on its own: there is no calibration to measure.
            for (k, v) in meta { w.provenance[k] = v }
            file = .v2(w)
        case .dafx22(var w):
            for (k, v) in meta { w.provenance[k] = v }
            try calibrate(&w, c)
            file = .dafx22(w)
        }
        let out = URL(fileURLWithPath: output)
        try WeightStore.install(file, at: out)
        print("wrote \(out.path): \(file.architecture), \(file.instruments.count) instruments (\(file.instruments.joined(separator: ", "))), step \(meta["training.steps"] ?? "?")"
              + (meta["training.validation_loss"].map { ", validation loss \($0)" } ?? ""))
    }

    /// dafx22: the normalisation calibration on the training MIDI (or --calibrate-midi).
    func calibrate(_ w: inout PianoWeights, _ c: TrainingCheckpoint) throws {
        if !noCalibration {
            var files: [URL] = []
            if calibrateMIDI.isEmpty {
                struct Source: Decodable { var data: String? }
                if let json = c.state["data"], let s = try? JSONDecoder().decode(Source.self, from: Data(json.utf8)), let d = s.data {
                    let train = (d as NSString).appendingPathComponent("train")
                    files = Self.midiFiles(under: FileManager.default.fileExists(atPath: train) ? train : d)
                }
                guard !files.isEmpty else { throw TrainingDataError("\(checkpoint): cannot find the training MIDI files for the calibration; give --calibrate-midi or --no-calibration") }
            } else {
                for p in calibrateMIDI {
                    var isDir: ObjCBool = false
                    guard FileManager.default.fileExists(atPath: p, isDirectory: &isDir) else { throw TrainingDataError("\(p): no such file or folder") }
                    files += isDir.boolValue ? Self.midiFiles(under: p) : [URL(fileURLWithPath: p)]
                }
            }
            // Evenly spread over the list, so every instrument folder and kind of music counts.
            let chosen = files.count <= 24 ? files : (0..<24).map { files[$0 * files.count / 24] }
            var pieces: [FrameConditioning] = []
            for f in chosen {
                guard let bytes = try? WeightStore.readBytes(f, limit: 64 << 20), let m = try? MIDIFile(bytes: bytes), !m.isTruncated else {
                    FileHandle.standardError.write(Data("ddsp-piano-train: \(f.path): not a readable MIDI file; skipped\n".utf8)); continue
                }
                let cond = Calibration.conditioning(midi: m, cropSeconds: 60)
                if cond.frames > 125, cond.conditioning.contains(where: { $0 > 0 }) { pieces.append(cond) }
            }
            guard !pieces.isEmpty else { throw TrainingDataError("no usable MIDI file for the calibration") }
            let progress = TerminalProgress(label: "calibrating")
            w.calibration = Calibration.calibrate(performances: pieces, weights: w) { progress.update($0) }
            progress.finish()
            w.provenance["calibration"] = "\(pieces.count) MIDI files (first 60 s), ddsp-piano-train export"
        }
    }
}
