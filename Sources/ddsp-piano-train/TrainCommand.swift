import ArgumentParser
import DDSPPiano
import Foundation
import PianoIO
import PianoTraining
#if canImport(Glibc)
import Glibc
#endif

struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train or fine-tune a model; checkpoints, log and pictures go to the run folder.",
        discussion: """
        Data: --data DIR with one sub-folder per instrument holding .wav/.flac + .mid pairs of \
        the same name (or DIR/train and DIR/validation so laid out, as `ddsp-piano-train \
        dataset` writes), or --maestro DIR (MAESTRO v3: its CSV's train and validation splits, \
        one instrument per year). Audio is resampled to the model's rate (dafx22 16 kHz, v2 \
        24 kHz) and cut into 3-second segments overlapping by half; segments with more than 16 \
        simultaneous notes are dropped.

        Models: dafx22 (the 2022 paper's) by default; v2 (upstream's maestro-v2.gin) with \
        --model v2 or a v2 file as --init. v2 trains its networks and each piano's reverb; its \
        tuning and note release are frozen as upstream's, its loss is the spectral loss alone, \
        and its plan leaves out phase 2 (which would train only the frozen tuning).

        Schedule: upstream's three phases by default (1: everything except the partial \
        frequencies, detuning off, batch 6, lr 1e-3, 7 epochs; 2: only the frequency parts, \
        batch 3, lr 1e-5, 3 epochs; 3: as 1 for 10 epochs). Adam (ε 1e-7, gradients clipped to \
        norm 3, lr × 0.98 every 10 000 steps), multi-scale spectral loss + reverb and \
        inharmonicity regularisers (dafx22).

        Across processes and machines: `mpirun -np N ddsp-piano-train train …` (Open MPI; or \
        Slurm's srun) runs N data-parallel ranks of --threads replicas each. Each rank loads \
        its share of the pieces (every machine needs the data at the same path), the gradients \
        are summed in a fixed order (a seed gives the same run for the same number of replicas, \
        however spread), and rank 0 writes the run folder. Ctrl-C on mpirun, --max-minutes or a \
        failed rank stop every rank with a checkpoint; --resume works with another N.

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

    @Option(help: ArgumentHelp("Start from these weights (fine-tuning), dafx22 or v2 (the run is then of that architecture); default: a fresh model.", valueName: "file"))
    var `init`: String?

    @Option(help: ArgumentHelp("Architecture of a fresh model: dafx22 (16 kHz) or v2 (upstream's maestro-v2.gin, 24 kHz; v2 has no phase 2: its tuning is frozen).", valueName: "name"))
    var model: String = "dafx22"

    @Option(name: .customLong("map"), help: ArgumentHelp("Data instrument NAME starts as the --init file's instrument OLD (repeatable).", valueName: "NAME=OLD"))
    var maps: [String] = []

    @Option(help: ArgumentHelp("Phases to run, from upstream's 1,2,3.", valueName: "list"))
    var phases: String = "1,2,3"

    @Option(help: ArgumentHelp("Epochs per phase (upstream: 7,3,10).", valueName: "list"))
    var epochs: String?

    @Option(help: ArgumentHelp("Optimiser steps per phase (instead of --epochs); with --resume, the run's phases' new lengths.", valueName: "list"))
    var steps: String?

    @Option(name: .customLong("batch-size"), help: ArgumentHelp("Segments per step, per phase (upstream: 6,3,6).", valueName: "list"))
    var batchSize: String?

    @Option(name: .customLong("learning-rate"), help: ArgumentHelp("Initial learning rate per phase (upstream: 1e-3,1e-5,1e-3).", valueName: "list"))
    var learningRate: String?

    @Option(help: ArgumentHelp("Threads (model replicas working on parts of each batch) of this process (default: the usable cores; under MPI, shared among the machine's ranks).", valueName: "n"))
    var threads: Int?

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
            // A resumed run keeps its plan; only the phases' lengths may change (--steps).
            let fixed = [("--epochs", epochs != nil), ("--batch-size", batchSize != nil), ("--learning-rate", learningRate != nil),
                         ("--init", `init` != nil), ("--map", !maps.isEmpty)].filter { $0.1 }.map { $0.0 }
            guard fixed.isEmpty else {
                throw ValidationError("\(fixed.joined(separator: ", ")) cannot change a resumed run (its checkpoint keeps its plan); --steps can lengthen or shorten its phases")
            }
        }
        if let t = threads { guard t >= 1, t <= 64 else { throw ValidationError("--threads must be between 1 and 64") } }
        guard validateEvery >= 1, checkpointEvery >= 1 else { throw ValidationError("--validate-every and --checkpoint-every must be at least 1") }
        if let m = maxMinutes { guard m > 0 else { throw ValidationError("--max-minutes must be positive") } }
        guard harmonicPrior >= 0, harmonicPrior <= 10 else { throw ValidationError("--harmonic-prior must be between 0 and 10") }
        guard ["dafx22", "v2"].contains(model) else { throw ValidationError("--model takes dafx22 or v2, not '\(model)'") }
        for m in maps { guard m.split(separator: "=").count == 2 else { throw ValidationError("--map takes NAME=OLD, not '\(m)'") } }
    }

    func run() throws {
        // Started by mpirun or srun: join the job first; a rank's error stops every rank.
        let ranks: Ranks
        if Ranks.launchedByMPI() {
            do { ranks = try Ranks.start() } catch {
                FileHandle.standardError.write(Data("ddsp-piano-train: \(error)\n".utf8)); throw ExitCode(1)
            }
        } else { ranks = .solo }
        func fail(_ message: String, _ status: Int32) -> ExitCode {
            let who = ranks.size > 1 ? "ddsp-piano-train (rank \(ranks.rank) of \(ranks.size))" : "ddsp-piano-train"
            FileHandle.standardError.write(Data("\(who): \(message)\n".utf8))
            if ranks.size > 1 { ranks.abort(status) }
            return ExitCode(status)
        }
        do { try train(ranks) } catch let e as TrainingOptionError {
            if ranks.size > 1 { throw fail(e.description, 64) }
            throw ValidationError(e.description)
        } catch let e as TrainingDataError {
            throw fail(e.description, 1)
        } catch let e as TrainingDiverged {
            throw fail(e.description, 3)
        } catch let e as WeightStoreError {
            throw fail("\(e)", 1)
        } catch let e as WeightsError {
            throw fail("\(e)", 1)
        }
        ranks.finish()
    }

    /// Threads of this process: --threads, or the usable cores shared among this machine's ranks.
    func threadsPerRank() -> Int {
        threads ?? max(1, ProcessInfo.processInfo.activeProcessorCount / Ranks.localSize())
    }

    func train(_ ranks: Ranks) throws {
        var options = TrainingRunOptions(runFolder: URL(fileURLWithPath: runFolder))
        options.resume = resume
        options.data = data; options.maestro = maestro; options.validation = validation
        options.maxSecondsPerFile = maxSecondsPerFile
        options.initialWeights = `init`; options.maps = maps
        options.phases = phases; options.epochs = epochs; options.steps = steps
        options.batchSize = batchSize; options.learningRate = learningRate
        options.threads = threadsPerRank(); options.seed = seed; options.harmonicPrior = harmonicPrior; options.model = model
        options.validationSegments = validationSegments
        options.validateEvery = validateEvery; options.checkpointEvery = checkpointEvery
        let run = try TrainingRun.prepare(options, ranks: ranks) { FileHandle.standardError.write(Data("ddsp-piano-train: \($0)\n".utf8)) }
        let folder = run.folder, trainer = run.trainer
        // SIGINT/SIGTERM (`Signals`): the loop saves a checkpoint after the current step and stops.
        Signals.receive([SIGINT, SIGTERM])
        if let latest = run.latest { watchForTheLauncher(latest) }
        let root = ranks.isRoot
        if root {
            if run.resumed { print("resuming \(folder.checkpointURL.path) at step \(trainer.completedSteps) of \(trainer.totalSteps)") }
            let t = trainer.table
            print(String(format: "data: %d pieces, %.1f min, %d segments (%d dropped: over 16 notes), instruments %@; validation: %d segments",
                         t.pieces, t.seconds / 60, t.count, t.droppedForPolyphony, trainer.train.instruments.joined(separator: ", "),
                         trainer.validationWindows.count))
            let layout = ranks.size > 1 ? "\(ranks.size) MPI ranks × \(trainer.replicas.count) thread(s)" : "\(trainer.config.threads) thread(s)"
            let arch = trainer.base.architecture
            let dropped = arch == "v2" && phases.split(separator: ",").contains("2") && !run.resumed
            print("model: \(arch), \(trainer.base.sampleRate) Hz, \(trainer.base.parameterCount) parameters"
                  + (dropped ? " (phase 2 left out: it trains only the partial frequencies, which v2 freezes)" : ""))
            print("plan: " + trainer.config.phases.map { "phase \($0.number): \($0.steps) steps of \($0.batchSize) (lr \($0.learningRate))" }.joined(separator: "; ")
                  + "; \(layout); run folder \(folder.url.path)")
            if run.resumed, let before = run.replicasBefore, before != trainer.config.threads {
                print("the run had \(before) replicas and goes on with \(trainer.config.threads): the same schedule, gradients summed over other parts (not the same bits as before)")
            }
            fflush(nil)
        }
        if trainer.completedSteps == 0 {
            try run.validateAndDraw(step: 0)
            if root { print(String(format: "validation loss before training: %.4f", run.lastValidationLoss ?? .nan)) }
        }

        let tty = root && TerminalProgress.stderrIsTerminal
        while !trainer.isFinished {
            let r: Trainer.StepReport
            do { r = try run.step() } catch let e as TrainingDiverged {
                FileHandle.standardError.write(Data("ddsp-piano-train: \(e.description); last good checkpoint: \(folder.checkpointURL.path)\n".utf8))
                throw ExitCode(3)
            }
            let session = Date().timeIntervalSince(run.started)
            let perStep = session / Double(run.stepsThisSession)
            let eta = perStep * Double(trainer.totalSteps - trainer.completedSteps)
            let mean = run.recentLosses.reduce(0, +) / Double(run.recentLosses.count)
            let line = String(format: "phase %d  step %d/%d  epoch %d  loss %.3f (mean %.3f)  val %@  %.2f seg/s  ETA %@",
                              r.phase, r.globalStep, trainer.totalSteps, r.epoch + 1, r.losses.total, mean,
                              run.lastValidationLoss.map { String(format: "%.3f", $0) } ?? "-", Double(run.segmentsThisSession) / session,
                              eta.isFinite ? TerminalProgress.clock(eta) : "-")
            if tty { FileHandle.standardError.write(Data("\r\(line)\u{1b}[K".utf8)) }
            else if root, r.globalStep % 10 == 0 || trainer.isFinished { print(line); fflush(nil) }

            // Rank 0's clock decides the time limit; a signal on any rank stops them all.
            var outOfTime = root && (maxMinutes.map { session >= $0 * 60 } ?? false)
            var interrupted = Signals.received != 0
            if ranks.size > 1 {
                let votes = ranks.allgather([outOfTime ? 1 : 0, interrupted ? 1 : 0])
                outOfTime = votes.contains { $0[0] == 1 }; interrupted = votes.contains { $0[1] == 1 }
            }
            if interrupted || outOfTime {
                guard root else { if interrupted { throw ExitCode(130) }; return }
                try run.save(); try folder.writeLossPlot()
                if tty { FileHandle.standardError.write(Data("\n".utf8)) }
                print("\(interrupted ? "interrupted" : "time limit reached") at step \(r.globalStep): checkpoint saved to \(folder.checkpointURL.path); continue with: \(ranks.size > 1 ? "mpirun -np N " : "")ddsp-piano-train train --run \(runFolder) --resume")
                fflush(nil)
                folder.close()
                if interrupted { ranks.finish(); throw ExitCode(130) }
                return
            }
        }
        if tty { FileHandle.standardError.write(Data("\n".utf8)) }
        folder.close()
        guard root else { return }
        print(String(format: "done: %d steps, validation loss %@, %.0f s this session; export with: ddsp-piano-train export %@ -o model.safetensors",
                     trainer.completedSteps, run.lastValidationLoss.map { String(format: "%.4f", $0) } ?? "-", Date().timeIntervalSince(run.started),
                     folder.checkpointURL.path))
    }

    /// Rank 0 of an MPI run: when a signal comes (mpirun passes Ctrl-C on as SIGTERM, and sends
    /// it when a rank fails), the checkpoint of the last finished step is written at once from
    /// memory, because the launcher kills the ranks a second later, before a step could end.
    func watchForTheLauncher(_ latest: LatestCheckpoint) {
        let path = latest.url.path, folder = runFolder
        let t = Thread {
            while Signals.received == 0 { usleep(10_000) }
            if let step = latest.saveNow() {
                print("stopping (signal \(Signals.received)): checkpoint of step \(step) saved to \(path); continue with: mpirun -np N ddsp-piano-train train --run \(folder) --resume")
                fflush(nil)
            }
        }
        t.start()
    }
}
