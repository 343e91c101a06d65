import ArgumentParser
import DDSPPiano
import Foundation
import PianoIO
import PianoTraining
#if canImport(Glibc)
import Glibc
#endif

/// Set by SIGINT/SIGTERM: the loop saves a checkpoint after the current step and stops.
nonisolated(unsafe) var stopRequested: sig_atomic_t = 0

struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train or fine-tune a model; checkpoints, log and pictures go to the run folder.",
        discussion: """
        Data: --data DIR with one sub-folder per instrument holding .wav/.flac + .mid pairs of \
        the same name (or DIR/train and DIR/validation so laid out, as `ddsp-piano-train \
        dataset` writes), or --maestro DIR (MAESTRO v3: its CSV's train and validation splits, \
        one instrument per year). Audio is resampled to 16 kHz and cut into 3-second segments \
        overlapping by half; segments with more than 16 simultaneous notes are dropped.

        Schedule: upstream's three phases by default (1: everything except the partial \
        frequencies, detuning off, batch 6, lr 1e-3, 7 epochs; 2: only the frequency parts, \
        batch 3, lr 1e-5, 3 epochs; 3: as 1 for 10 epochs). Adam (ε 1e-7, gradients clipped to \
        norm 3, lr × 0.98 every 10 000 steps), multi-scale spectral loss + reverb and \
        inharmonicity regularisers.

        The run folder gets checkpoint.safetensors (every --checkpoint-every steps, on Ctrl-C, \
        at the end; written then renamed), initial.safetensors (the weights it started from), \
        log.jsonl, loss.png, spectrogram.png. --resume \
        continues exactly where the checkpoint stopped. A non-finite loss or gradient stops the \
        run without applying the update; the last checkpoint is kept.
        """
    )

    @Option(help: ArgumentHelp("Folder of (audio, MIDI) pairs, one sub-folder per instrument.", valueName: "dir"))
    var data: String?

    @Option(help: ArgumentHelp("MAESTRO v3 folder (maestro-v3.0.0.csv and its files).", valueName: "dir"))
    var maestro: String?

    @Option(help: ArgumentHelp("Validation folder (default: DIR/validation next to DIR/train, or an 8 % share of the pieces).", valueName: "dir"))
    var validation: String?

    @Option(name: .customLong("run"), help: ArgumentHelp("Run folder (checkpoint, log, pictures).", valueName: "dir"))
    var runFolder: String

    @Flag(help: "Continue the run in --run from its checkpoint (on the data it was trained on, or --data/--maestro if it moved).")
    var resume = false

    @Option(help: ArgumentHelp("Start from these weights (fine-tuning), e.g. imported dafx22 weights; default: a fresh model.", valueName: "file"))
    var `init`: String?

    @Option(name: .customLong("map"), help: ArgumentHelp("Data instrument NAME starts as the --init file's instrument OLD (repeatable).", valueName: "NAME=OLD"))
    var maps: [String] = []

    @Option(help: ArgumentHelp("Phases to run, from upstream's 1,2,3.", valueName: "list"))
    var phases: String = "1,2,3"

    @Option(help: ArgumentHelp("Epochs per phase (upstream: 7,3,10).", valueName: "list"))
    var epochs: String?

    @Option(help: ArgumentHelp("Optimiser steps per phase (instead of --epochs).", valueName: "list"))
    var steps: String?

    @Option(name: .customLong("batch-size"), help: ArgumentHelp("Segments per step, per phase (upstream: 6,3,6).", valueName: "list"))
    var batchSize: String?

    @Option(name: .customLong("learning-rate"), help: ArgumentHelp("Initial learning rate per phase (upstream: 1e-3,1e-5,1e-3).", valueName: "list"))
    var learningRate: String?

    @Option(help: ArgumentHelp("Threads (model replicas working on parts of each batch).", valueName: "n"))
    var threads: Int = max(1, ProcessInfo.processInfo.activeProcessorCount)

    @Option(help: ArgumentHelp("Seed of the initialisation, data order and noise.", valueName: "n"))
    var seed: UInt64 = 1

    @Option(name: .customLong("harmonic-prior"), help: ArgumentHelp("A fresh model's partials start with a decaying spectrum of this strength (0: Keras' flat start, which tends to lose the partials; see PianoWeights.initial).", valueName: "a"))
    var harmonicPrior: Float = 1

    @Option(name: .customLong("validate-every"), help: ArgumentHelp("Steps between validations (and pictures).", valueName: "n"))
    var validateEvery: Int = 50

    @Option(name: .customLong("checkpoint-every"), help: ArgumentHelp("Steps between checkpoints.", valueName: "n"))
    var checkpointEvery: Int = 10

    @Option(name: .customLong("validation-segments"), help: ArgumentHelp("Validation segments evaluated each time.", valueName: "n"))
    var validationSegments: Int = 24

    @Option(name: .customLong("max-minutes"), help: ArgumentHelp("Stop (with a checkpoint) after this much time; --resume goes on.", valueName: "min"))
    var maxMinutes: Double?

    @Option(name: .customLong("max-seconds-per-file"), help: ArgumentHelp("Use only the beginning of long recordings.", valueName: "s"))
    var maxSecondsPerFile: Double?

    func validate() throws {
        if !resume {
            guard (data == nil) != (maestro == nil) else { throw ValidationError("give exactly one of --data DIR or --maestro DIR") }
        } else {
            guard data == nil || maestro == nil else { throw ValidationError("give at most one of --data DIR or --maestro DIR") }
        }
        guard threads >= 1, threads <= 64 else { throw ValidationError("--threads must be between 1 and 64") }
        guard validateEvery >= 1, checkpointEvery >= 1 else { throw ValidationError("--validate-every and --checkpoint-every must be at least 1") }
        if let m = maxMinutes { guard m > 0 else { throw ValidationError("--max-minutes must be positive") } }
        guard harmonicPrior >= 0, harmonicPrior <= 10 else { throw ValidationError("--harmonic-prior must be between 0 and 10") }
        for m in maps { guard m.split(separator: "=").count == 2 else { throw ValidationError("--map takes NAME=OLD, not '\(m)'") } }
    }

    static func list<T>(_ text: String?, _ name: String, count: Int, parse: (Substring) -> T?) throws -> [T]? {
        guard let text else { return nil }
        let items = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        let values = items.compactMap { parse(Substring($0)) }
        guard values.count == items.count, values.count == count else {
            throw ValidationError("--\(name) needs \(count) comma-separated value(s), one per phase, not '\(text)'")
        }
        return values
    }

    func run() throws {
        do { try train() } catch let e as TrainingDataError {
            FileHandle.standardError.write(Data("ddsp-piano-train: \(e.description)\n".utf8)); throw ExitCode(1)
        } catch let e as TrainingDiverged {
            FileHandle.standardError.write(Data("ddsp-piano-train: \(e.description)\n".utf8)); throw ExitCode(3)
        } catch let e as WeightStoreError {
            FileHandle.standardError.write(Data("ddsp-piano-train: \(e)\n".utf8)); throw ExitCode(1)
        } catch let e as WeightsError {
            FileHandle.standardError.write(Data("ddsp-piano-train: \(e)\n".utf8)); throw ExitCode(1)
        }
    }

    /// Where the training and validation sets come from (stored in the checkpoint for --resume).
    struct DataSource: Codable {
        var data: String?
        var maestro: String?
        var validation: String?
        var maxSecondsPerFile: Double?
    }

    /// Loads the sets, lists skipped pairs (one line each) and refuses data with no usable segment.
    func loadSets(_ source: DataSource, instruments: inout [String], threads: Int) throws -> (TrainingSet, TrainingSet?) {
        let (t, v) = try loadSetsQuietly(source, instruments: &instruments, threads: threads)
        for s in t.skipped + (v?.skipped ?? []) { FileHandle.standardError.write(Data("ddsp-piano-train: \(s.path): \(s.reason); skipped\n".utf8)) }
        guard !t.windows.isEmpty else {
            throw TrainingDataError("\(source.data ?? source.maestro ?? "data"): no usable 3-second segment (\(t.performances.count) usable pieces, \(t.skipped.count) files skipped)")
        }
        return (t, v)
    }

    func loadSetsQuietly(_ source: DataSource, instruments: inout [String], threads: Int) throws -> (TrainingSet, TrainingSet?) {
        let progress = TerminalProgress(label: "loading data")
        defer { progress.finish() }
        if let m = source.maestro {
            let root = URL(fileURLWithPath: m)
            let t = try TrainingSet.loadMaestro(root: root, split: "train", instruments: &instruments, threads: threads,
                                                maxSecondsPerFile: source.maxSecondsPerFile) { progress.update(0.9 * $0) }
            let v = try TrainingSet.loadMaestro(root: root, split: "validation", instruments: &instruments, threads: threads,
                                                maxSecondsPerFile: source.maxSecondsPerFile)
            return (t, v)
        }
        var trainURL = URL(fileURLWithPath: source.data!)
        var validationURL = source.validation.map { URL(fileURLWithPath: $0) }
        let fm = FileManager.default
        if fm.fileExists(atPath: trainURL.appendingPathComponent("train").path) {
            if validationURL == nil, fm.fileExists(atPath: trainURL.appendingPathComponent("validation").path) {
                validationURL = trainURL.appendingPathComponent("validation")
            }
            trainURL = trainURL.appendingPathComponent("train")
        }
        var t = try TrainingSet.load(folder: trainURL, instruments: &instruments, threads: threads,
                                     maxSecondsPerFile: source.maxSecondsPerFile) { progress.update(0.9 * $0) }
        if let v = validationURL {
            return (t, try TrainingSet.load(folder: v, instruments: &instruments, threads: threads, maxSecondsPerFile: source.maxSecondsPerFile))
        }
        // No validation folder: every twelfth piece of each instrument (a fixed choice).
        guard t.performances.count >= 4 else { return (t, nil) }
        var train = TrainingSet(instruments: t.instruments), val = TrainingSet(instruments: t.instruments)
        for i in t.performances.indices {
            if i % 12 == 11 { val.add(t.performances[i], instrument: t.performanceInstrument[i], name: t.performanceNames[i]) }
            else { train.add(t.performances[i], instrument: t.performanceInstrument[i], name: t.performanceNames[i]) }
        }
        train.skipped = t.skipped
        t = train
        return (t, val)
    }

    func train() throws {
        let folder = try TrainingRunFolder(URL(fileURLWithPath: runFolder))
        let trainer: Trainer
        var source: DataSource
        var elapsedBefore = 0.0
        if resume {
            guard FileManager.default.fileExists(atPath: folder.checkpointURL.path) else {
                throw TrainingDataError("\(folder.checkpointURL.path): no checkpoint to resume from")
            }
            let c: TrainingCheckpoint
            do { c = try TrainingCheckpoint.load(folder.checkpointURL) } catch { throw TrainingDataError("\(folder.checkpointURL.path): \(error)") }
            guard let json = c.state["data"], let s = try? JSONDecoder().decode(DataSource.self, from: Data(json.utf8)) else {
                throw TrainingDataError("\(folder.checkpointURL.path): the checkpoint does not say which data it was trained on")
            }
            source = s
            // The data may have moved (a rebuilt dataset, another machine): --data overrides.
            if let d = data { source.data = d; source.maestro = nil }
            if let m = maestro { source.maestro = m; source.data = nil }
            elapsedBefore = c.state["seconds"].flatMap(Double.init) ?? 0
            var instruments = c.weights.instruments
            let (t, v) = try loadSets(source, instruments: &instruments, threads: threads)
            guard instruments == c.weights.instruments else {
                throw TrainingDataError("the data now has instruments the checkpoint lacks (\(instruments.filter { !c.weights.instruments.contains($0) }.joined(separator: ", ")))")
            }
            trainer = try Trainer(checkpoint: c, train: t, validation: v)
            try folder.openLog(resumingAt: trainer.completedSteps)
            print("resuming \(folder.checkpointURL.path) at step \(trainer.completedSteps) of \(trainer.totalSteps)")
        } else {
            source = DataSource(data: data, maestro: maestro, validation: validation, maxSecondsPerFile: maxSecondsPerFile)
            var aliases: [String: String] = [:]
            for m in maps { let p = m.split(separator: "="); aliases[String(p[0])] = String(p[1]) }
            let initial: PianoWeights? = try `init`.map { try WeightStore.load(URL(fileURLWithPath: $0)) }
            var instruments = initial?.instruments ?? []
            let (t, v) = try loadSets(source, instruments: &instruments, threads: threads)
            let weights = try initial.map { try $0.withInstruments(instruments, aliases: aliases) }
                ?? PianoWeights.initial(instruments: instruments, seed: seed, harmonicPrior: harmonicPrior)
            let phaseNumbers = try Self.list(phases, "phases", count: phases.split(separator: ",").count) { Int($0) }!
            guard phaseNumbers.allSatisfy({ (1...3).contains($0) }) else { throw ValidationError("--phases takes numbers among 1, 2, 3") }
            let n = phaseNumbers.count
            let upstream = TrainingPhase.upstream
            let batches = try Self.list(batchSize, "batch-size", count: n) { Int($0) } ?? phaseNumbers.map { upstream[$0 - 1].batchSize }
            let rates = try Self.list(learningRate, "learning-rate", count: n) { Double($0) } ?? phaseNumbers.map { upstream[$0 - 1].learningRate }
            guard batches.allSatisfy({ $0 >= 1 }), rates.allSatisfy({ $0 > 0 && $0.isFinite }) else { throw ValidationError("batch sizes and learning rates must be positive") }
            let stepCounts: [Int]
            if let s = try Self.list(steps, "steps", count: n, parse: { Int($0) }) { stepCounts = s }
            else {
                let e = try Self.list(epochs, "epochs", count: n) { Double($0) } ?? phaseNumbers.map { Double(upstream[$0 - 1].epochs) }
                stepCounts = zip(e, batches).map { max(1, Int(($0 * Double(t.windows.count / max(1, min($1, t.windows.count)))).rounded())) }
            }
            var config = TrainerConfig()
            config.seed = seed; config.threads = threads; config.validationSegments = validationSegments
            config.phases = (0..<n).map { PhasePlan(number: phaseNumbers[$0], batchSize: batches[$0], learningRate: rates[$0], steps: stepCounts[$0]) }
            trainer = try Trainer(weights: weights, config: config, train: t, validation: v)
            try folder.openLog(resumingAt: 0)
            // The starting point, for comparisons ("untrained" in an evaluation) and re-runs.
            do { try WeightStore.install(weights, at: folder.url.appendingPathComponent("initial.safetensors")) }
            catch { throw TrainingDataError("\(folder.url.path): cannot write initial.safetensors (\(error))") }
        }
        let t = trainer.train
        print(String(format: "data: %d pieces, %.1f min, %d segments (%d dropped: over 16 notes), instruments %@; validation: %d segments",
                     t.performances.count, t.seconds / 60, t.windows.count, t.droppedForPolyphony, t.instruments.joined(separator: ", "),
                     trainer.validationWindows.count))
        print("plan: " + trainer.config.phases.map { "phase \($0.number): \($0.steps) steps of \($0.batchSize) (lr \($0.learningRate))" }.joined(separator: "; ")
              + "; \(trainer.config.threads) thread(s); run folder \(folder.url.path)")

        signal(SIGINT) { _ in stopRequested = 1 }
        signal(SIGTERM) { _ in stopRequested = 1 }
        let sourceJSON = String(decoding: try JSONEncoder().encode(source), as: UTF8.self)
        let started = Date()
        var lastValidation: Double? = folder.validationCurve.last?.loss
        var recent: [Double] = []
        func save() throws {
            let seconds = elapsedBefore + Date().timeIntervalSince(started)
            var state = ["data": sourceJSON, "seconds": String(seconds), "instruments_trained": t.instruments.joined(separator: ",")]
            if let l = recent.last { state["last_loss"] = String(l) }
            if let v = lastValidation { state["last_validation_loss"] = String(v) }
            do { try trainer.checkpoint(state: state).save(to: folder.checkpointURL) }
            catch { throw TrainingDataError("\(folder.checkpointURL.path): cannot save the checkpoint (\(error)); the previous one is intact") }
        }
        func validateAndDraw(step: Int) throws {
            guard let v = trainer.validationLoss() else { try folder.writeLossPlot(); return }
            lastValidation = v
            folder.append(["step": step, "validation_loss": v, "time": Date().timeIntervalSince1970])
            try folder.writeLossPlot()
            if let ex = trainer.validationExample() {
                try folder.writeSpectrogram(target: ex.target, model: ex.model, label: String(format: "step %d", step))
            }
        }
        if trainer.completedSteps == 0 { try validateAndDraw(step: 0); print(String(format: "validation loss before training: %.4f", lastValidation ?? .nan)) }

        let tty = TerminalProgress.stderrIsTerminal
        var stepsThisSession = 0
        var segmentsThisSession = 0
        while !trainer.isFinished {
            let t0 = Date()
            let r: Trainer.StepReport
            do { r = try trainer.step() } catch let e as TrainingDiverged {
                folder.append(["step": e.step, "event": "diverged", "detail": e.description])
                folder.close()
                FileHandle.standardError.write(Data("ddsp-piano-train: \(e.description); last good checkpoint: \(folder.checkpointURL.path)\n".utf8))
                throw ExitCode(3)
            }
            stepsThisSession += 1; segmentsThisSession += r.segments
            recent.append(r.losses.total); if recent.count > 20 { recent.removeFirst() }
            let dt = Date().timeIntervalSince(t0)
            folder.append(["step": r.globalStep, "phase": r.phase, "epoch": r.epoch, "loss": r.losses.total, "spectral_loss": r.losses.spectral,
                           "reverb_loss": r.losses.reverb, "inharmonicity_l1": r.losses.inharmonicityL1, "gradient_norm": r.gradientNorm,
                           "learning_rate": r.learningRate, "seconds": dt, "segments": r.segments, "time": Date().timeIntervalSince1970])
            if r.globalStep % validateEvery == 0 || trainer.isFinished { try validateAndDraw(step: r.globalStep) }
            if r.globalStep % checkpointEvery == 0 || trainer.isFinished { try save() }

            let session = Date().timeIntervalSince(started)
            let perStep = session / Double(stepsThisSession)
            let eta = perStep * Double(trainer.totalSteps - trainer.completedSteps)
            let mean = recent.reduce(0, +) / Double(recent.count)
            let line = String(format: "phase %d  step %d/%d  epoch %d  loss %.3f (mean %.3f)  val %@  %.2f seg/s  ETA %@",
                              r.phase, r.globalStep, trainer.totalSteps, r.epoch + 1, r.losses.total, mean,
                              lastValidation.map { String(format: "%.3f", $0) } ?? "-", Double(segmentsThisSession) / session, eta.isFinite ? TerminalProgress.clock(eta) : "-")
            if tty { FileHandle.standardError.write(Data("\r\(line)\u{1b}[K".utf8)) }
            else if r.globalStep % 10 == 0 || trainer.isFinished { print(line); fflush(nil) }

            let outOfTime = maxMinutes.map { session >= $0 * 60 } ?? false
            if stopRequested != 0 || outOfTime {
                try save(); try folder.writeLossPlot()
                if tty { FileHandle.standardError.write(Data("\n".utf8)) }
                print("\(stopRequested != 0 ? "interrupted" : "time limit reached") at step \(r.globalStep): checkpoint saved to \(folder.checkpointURL.path); continue with: ddsp-piano-train train --run \(runFolder) --resume")
                folder.close()
                if stopRequested != 0 { throw ExitCode(130) }
                return
            }
        }
        if tty { FileHandle.standardError.write(Data("\n".utf8)) }
        folder.close()
        print(String(format: "done: %d steps, validation loss %@, %.0f s this session; export with: ddsp-piano-train export %@ -o model.safetensors",
                     trainer.completedSteps, lastValidation.map { String(format: "%.4f", $0) } ?? "-", Date().timeIntervalSince(started), folder.checkpointURL.path))
    }
}
