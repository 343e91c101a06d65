import DDSPPiano
import Foundation
import PianoFormats
import PianoIO

/// What `ddsp-piano-train train` was asked for: the options that decide where a run starts.
public struct TrainingRunOptions: Sendable {
    public var runFolder: URL
    /// Continue the run in `runFolder` from its checkpoint (`data`/`maestro` override where its data moved).
    public var resume = false
    public var data: String?
    public var maestro: String?
    public var validation: String?
    public var maxSecondsPerFile: Double?
    /// Start from this weight file (fine-tuning) instead of a fresh model.
    public var initialWeights: String?
    /// NAME=OLD: data instrument NAME starts as the initial weights' instrument OLD.
    public var maps: [String] = []
    /// Comma-separated lists, one value per phase (`phases` from upstream's 1, 2, 3).
    public var phases = "1,2,3"
    public var epochs: String?
    public var steps: String?
    public var batchSize: String?
    public var learningRate: String?
    /// Threads (model replicas) of this process; an MPI run has ranks × threads replicas.
    public var threads = 1
    public var seed: UInt64 = 1
    public var harmonicPrior: Float = 1
    /// The architecture of a fresh model (`--model`): "dafx22" or "v2". With `initialWeights`
    /// the file's architecture is the run's.
    public var model = "dafx22"
    public var validationSegments = 24
    /// Steps between validations (with the pictures) and between checkpoints.
    public var validateEvery = 50
    public var checkpointEvery = 10

    public init(runFolder: URL) { self.runFolder = runFolder }
}

/// An option value the plan cannot use (the command line reports it as a usage error).
public struct TrainingOptionError: CodedError, Equatable, Sendable {
    public var description: String
    public var code: ErrorCode { .usage }
    public init(_ description: String) { self.description = description }
}

/// Where the training and validation sets come from (stored in the checkpoint for --resume).
public struct TrainingDataSource: Codable, Sendable, Equatable {
    public var data: String?
    public var maestro: String?
    public var validation: String?
    public var maxSecondsPerFile: Double?
    public init(data: String? = nil, maestro: String? = nil, validation: String? = nil, maxSecondsPerFile: Double? = nil) {
        self.data = data; self.maestro = maestro; self.validation = validation; self.maxSecondsPerFile = maxSecondsPerFile
    }
}

/// A run ready to step: its folder (log opened), the trainer (fresh, fine-tuning or resumed from
/// the checkpoint), the data it trains on and the time spent before this session. `prepare`
/// makes every decision of `ddsp-piano-train train` before its loop; `step` does one optimiser
/// step with its log record, validations and checkpoints; the caller prints and decides when to stop.
// Not Sendable: one thread drives a run.
public final class TrainingRun {
    public let folder: TrainingRunFolder
    public let trainer: Trainer
    public let source: TrainingDataSource
    /// Seconds of training before this session (from the checkpoint when resuming).
    public let elapsedBefore: Double
    public let resumed: Bool
    /// A resumed run's replicas before this session (from its checkpoint).
    public private(set) var replicasBefore: Int?
    public let validateEvery: Int
    public let checkpointEvery: Int
    /// Only rank 0 writes the run folder (checkpoints, log, pictures) and validates.
    public var isRoot: Bool { trainer.ranks.isRoot }
    /// Under MPI, rank 0 keeps the last step's checkpoint in memory: a launcher stopping the job
    /// (Ctrl-C on mpirun, a failed rank) gives the ranks about a second before it kills them,
    /// less than a step, so the checkpoint is written from memory (`saveLatest`).
    public let latest: LatestCheckpoint?
    public var keepsLatest: Bool { latest != nil }

    /// This session: its start, steps and segments, the last 20 losses, the last validation loss.
    public let started = Date()
    public private(set) var stepsThisSession = 0
    public private(set) var segmentsThisSession = 0
    public private(set) var recentLosses: [Double] = []
    public private(set) var lastValidationLoss: Double?

    init(folder: TrainingRunFolder, trainer: Trainer, source: TrainingDataSource, elapsedBefore: Double, resumed: Bool,
         options o: TrainingRunOptions) {
        self.folder = folder; self.trainer = trainer; self.source = source
        self.elapsedBefore = elapsedBefore; self.resumed = resumed
        validateEvery = max(1, o.validateEvery); checkpointEvery = max(1, o.checkpointEvery)
        lastValidationLoss = folder.validationCurve.last?.loss
        latest = trainer.ranks.size > 1 && trainer.ranks.isRoot ? LatestCheckpoint(url: folder.checkpointURL) : nil
    }

    /// Resumes (the checkpoint's data, configuration and position) or starts a run (initial
    /// weights, phase plan, initial.safetensors). `skipped` hears one line per unusable pair.
    /// Under MPI (`ranks`) every rank calls it: each loads its share of the data, rank 0 reads
    /// the checkpoint or the initial weights and sends them, and only rank 0 writes the folder.
    /// A plain `--resume` keeps the run's replicas (an exact continuation); under MPI there are
    /// ranks × `threads` replicas.
    public static func prepare(_ o: TrainingRunOptions, ranks: Ranks = .solo, skipped: (String) -> Void = { _ in }) throws -> TrainingRun {
        let root = ranks.isRoot
        let folder = root ? try TrainingRunFolder(o.runFolder) : TrainingRunFolder(unwritten: o.runFolder)
        let replicas = ranks.size * max(1, o.threads)
        if o.resume {
            var bytes: [UInt8] = []
            if root {
                guard FileManager.default.fileExists(atPath: folder.checkpointURL.path) else {
                    throw TrainingDataError("\(folder.checkpointURL.path): no checkpoint to resume from")
                }
                do { bytes = try WeightStore.readBytes(folder.checkpointURL, limit: Int.max) }
                catch { throw TrainingDataError("\(folder.checkpointURL.path): \(error)") }
            }
            let c: TrainingCheckpoint
            do { c = try TrainingCheckpoint(bytes: ranks.broadcast(bytes)) } catch { throw TrainingDataError("\(folder.checkpointURL.path): \(error)") }
            guard let json = c.state["data"], var source = try? JSONDecoder().decode(TrainingDataSource.self, from: Data(json.utf8)) else {
                throw TrainingDataError("\(folder.checkpointURL.path): the checkpoint does not say which data it was trained on")
            }
            // The data may have moved (a rebuilt dataset, another machine): --data overrides.
            if let d = o.data { source.data = d; source.maestro = nil }
            if let m = o.maestro { source.maestro = m; source.data = nil }
            var instruments = c.file.instruments
            let (t, v, table) = try loadSets(source, instruments: &instruments, threads: o.threads, sampleRate: c.file.sampleRate,
                                             ranks: ranks, skipped: skipped)
            guard instruments == c.file.instruments else {
                throw TrainingDataError("the data now has instruments the checkpoint lacks (\(instruments.filter { !c.file.instruments.contains($0) }.joined(separator: ", ")))")
            }
            // --steps lengthens or shortens the run's phases; the rest of the plan is the run's.
            let steps = try Trainer.config(of: c).flatMap { try list(o.steps, "steps", count: $0.phases.count) { Int($0) } }
            let trainer = try Trainer(checkpoint: c, train: t, validation: v, replicas: ranks.size > 1 ? replicas : nil, steps: steps,
                                      ranks: ranks, table: table)
            if root { try folder.openLog(resumingAt: trainer.completedSteps) }
            let run = TrainingRun(folder: folder, trainer: trainer, source: source,
                                  elapsedBefore: c.state["seconds"].flatMap(Double.init) ?? 0, resumed: true, options: o)
            run.replicasBefore = Trainer.config(of: c)?.threads
            return run
        }
        let source = TrainingDataSource(data: o.data, maestro: o.maestro, validation: o.validation, maxSecondsPerFile: o.maxSecondsPerFile)
        var aliases: [String: String] = [:]
        for m in o.maps {
            let p = m.split(separator: "=")
            guard p.count == 2 else { throw TrainingOptionError("--map takes NAME=OLD, not '\(m)'") }
            aliases[String(p[0])] = String(p[1])
        }
        // Rank 0 reads the initial weights; the other ranks start from what it sends.
        // Either architecture: a v2 file trains the v2 model (on 24-kHz audio).
        var initial: WeightFile? = root ? try o.initialWeights.map { try WeightStore.readFile(URL(fileURLWithPath: $0)) } : nil
        if ranks.size > 1, o.initialWeights != nil {
            let bytes = ranks.broadcast(initial?.safetensors().serialized() ?? [])
            if !root { initial = try WeightFile(safetensors: try Safetensors(bytes: bytes)) }
        }
        guard ["dafx22", V2Weights.architecture].contains(o.model) else { throw TrainingOptionError("--model takes dafx22 or v2, not '\(o.model)'") }
        let v2 = initial.map { $0.architecture == V2Weights.architecture } ?? (o.model == V2Weights.architecture)
        var instruments = initial?.instruments ?? []
        let sampleRate = v2 ? V2Weights.sampleRate : PianoWeights.Hyper.dafx22.sampleRate
        let (t, v, table) = try loadSets(source, instruments: &instruments, threads: o.threads, sampleRate: sampleRate, ranks: ranks, skipped: skipped)
        let weights = try initial.map { try $0.withInstruments(instruments, aliases: aliases) }
            ?? (v2 ? .v2(V2Weights.initial(instruments: instruments, seed: o.seed, harmonicPrior: o.harmonicPrior))
                   : .dafx22(PianoWeights.initial(instruments: instruments, seed: o.seed, harmonicPrior: o.harmonicPrior)))
        var config = TrainerConfig()
        config.seed = o.seed; config.threads = replicas; config.validationSegments = o.validationSegments
        config.phases = try phasePlans(o, segments: table.count, architecture: weights.architecture)
        let trainer = try Trainer(file: weights, config: config, train: t, validation: v, ranks: ranks, table: table)
        if root {
            try folder.openLog(resumingAt: 0)
            // The starting point, for comparisons ("untrained" in an evaluation) and re-runs.
            do { try WeightStore.install(weights, at: folder.url.appendingPathComponent("initial.safetensors")) }
            catch { throw TrainingDataError("\(folder.url.path): cannot write initial.safetensors (\(error))") }
        }
        return TrainingRun(folder: folder, trainer: trainer, source: source, elapsedBefore: 0, resumed: false, options: o)
    }

    /// The phases of a new run: upstream's batch size, learning rate and epochs for each phase
    /// asked for, unless given; epochs become steps over `segments` training segments.
    /// v2 has no phase 2: it trains only the partial-frequency parts, which v2 freezes (its
    /// parametric tuning is not trainable upstream), so it is left out of a v2 plan.
    public static func phasePlans(_ o: TrainingRunOptions, segments: Int, architecture: String = "dafx22") throws -> [PhasePlan] {
        let plans = try allPhasePlans(o, segments: segments)
        guard architecture == V2Weights.architecture else { return plans }
        let kept = plans.filter { !$0.phase.trainsNothingInV2 }
        guard !kept.isEmpty else { throw TrainingOptionError("v2 trains nothing in phase 2 (its tuning is frozen); choose phases 1 and 3") }
        return kept
    }

    static func allPhasePlans(_ o: TrainingRunOptions, segments: Int) throws -> [PhasePlan] {
        let phaseNumbers = try list(o.phases, "phases", count: o.phases.split(separator: ",").count) { Int($0) }!
        guard phaseNumbers.allSatisfy({ (1...3).contains($0) }) else { throw TrainingOptionError("--phases takes numbers among 1, 2, 3") }
        let n = phaseNumbers.count
        let upstream = TrainingPhase.upstream
        let batches = try list(o.batchSize, "batch-size", count: n) { Int($0) } ?? phaseNumbers.map { upstream[$0 - 1].batchSize }
        let rates = try list(o.learningRate, "learning-rate", count: n) { Double($0) } ?? phaseNumbers.map { upstream[$0 - 1].learningRate }
        guard batches.allSatisfy({ $0 >= 1 }), rates.allSatisfy({ $0 > 0 && $0.isFinite }) else {
            throw TrainingOptionError("batch sizes and learning rates must be positive")
        }
        let stepCounts: [Int]
        if let s = try list(o.steps, "steps", count: n, parse: { Int($0) }) { stepCounts = s }
        else {
            let e = try list(o.epochs, "epochs", count: n) { Double($0) } ?? phaseNumbers.map { Double(upstream[$0 - 1].epochs) }
            stepCounts = zip(e, batches).map { max(1, Int(($0 * Double(segments / max(1, min($1, segments)))).rounded())) }
        }
        return (0..<n).map { PhasePlan(number: phaseNumbers[$0], batchSize: batches[$0], learningRate: rates[$0], steps: stepCounts[$0]) }
    }

    /// A comma-separated option with one value per phase; nil when not given.
    public static func list<T>(_ text: String?, _ name: String, count: Int, parse: (Substring) -> T?) throws -> [T]? {
        guard let text else { return nil }
        let items = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        let values = items.compactMap { parse(Substring($0)) }
        guard values.count == items.count, values.count == count else {
            throw TrainingOptionError("--\(name) needs \(count) comma-separated value(s), one per phase, not '\(text)'")
        }
        return values
    }

    /// Loads the sets (this rank's share of the training pieces; the validation set on rank 0
    /// only), reports skipped pairs and refuses data with no usable segment.
    static func loadSets(_ source: TrainingDataSource, instruments: inout [String], threads: Int,
                         sampleRate: Int = PianoWeights.Hyper.dafx22.sampleRate, ranks: Ranks = .solo,
                         skipped: (String) -> Void) throws -> (TrainingSet, TrainingSet?, WindowTable) {
        let (t, v) = try loadSetsQuietly(source, instruments: &instruments, threads: threads, sampleRate: sampleRate, ranks: ranks)
        for s in t.skipped + (v?.skipped ?? []) { skipped("\(s.path): \(s.reason); skipped") }
        let table = WindowTable.gather(t, ranks: ranks)
        guard table.count > 0 else {
            throw TrainingDataError("\(source.data ?? source.maestro ?? "data"): no usable 3-second segment (\(table.pieces) usable pieces, \(table.skipped) files skipped)")
        }
        return (t, v, table)
    }

    /// --maestro: its CSV's splits; --data: DIR/train and DIR/validation when so laid out, a
    /// --validation folder, or every twelfth pair of DIR. Rank r of N loads the training pairs
    /// r, r + N, r + 2N… (every rank lists the same pairs: checked).
    static func loadSetsQuietly(_ source: TrainingDataSource, instruments: inout [String], threads: Int,
                                sampleRate: Int = PianoWeights.Hyper.dafx22.sampleRate, ranks: Ranks = .solo) throws -> (TrainingSet, TrainingSet?) {
        let progress = TerminalProgress(label: "loading data", enabled: ranks.isRoot && TerminalProgress.stderrIsTerminal)
        defer { progress.finish() }
        var trainJobs: [TrainingSet.Job], validationJobs: [TrainingSet.Job]?
        var trainSkipped: [TrainingPairs.Skipped] = [], validationSkipped: [TrainingPairs.Skipped] = []
        if let m = source.maestro {
            let root = URL(fileURLWithPath: m)
            trainJobs = try TrainingSet.maestroJobs(root: root, split: "train", instruments: &instruments)
            validationJobs = try TrainingSet.maestroJobs(root: root, split: "validation", instruments: &instruments)
        } else {
            guard let data = source.data else { throw TrainingDataError("no data: give --data DIR or --maestro DIR") }
            var trainURL = URL(fileURLWithPath: data)
            var validationURL = source.validation.map { URL(fileURLWithPath: $0) }
            let fm = FileManager.default
            if fm.fileExists(atPath: trainURL.appendingPathComponent("train").path) {
                if validationURL == nil, fm.fileExists(atPath: trainURL.appendingPathComponent("validation").path) {
                    validationURL = trainURL.appendingPathComponent("validation")
                }
                trainURL = trainURL.appendingPathComponent("train")
            }
            (trainJobs, trainSkipped) = try TrainingSet.jobs(folder: trainURL, instruments: &instruments)
            if let v = validationURL {
                let (j, s) = try TrainingSet.jobs(folder: v, instruments: &instruments)
                validationJobs = j; validationSkipped = s
            } else if trainJobs.count >= 4 {
                // No validation folder: every twelfth pair (a fixed choice).
                validationJobs = trainJobs.enumerated().filter { $0.offset % 12 == 11 }.map(\.element)
                trainJobs = trainJobs.enumerated().filter { $0.offset % 12 != 11 }.map(\.element)
            }
        }
        if ranks.size > 1 {
            // The ranks must agree on the pairs and instruments (the same data on every machine).
            let listing = (trainJobs + (validationJobs ?? [])).map { "\($0.name)\t\($0.instrument)" }.joined(separator: "\n")
                + "\n" + instruments.joined(separator: ",")
            let mine = SHA256.hash(Array(listing.utf8))
            for (r, other) in ranks.allgather(mine).enumerated() where other != mine {
                throw TrainingDataError("\(source.data ?? source.maestro ?? "data"): rank \(r) lists other pairs or instruments than rank \(ranks.rank) (give every machine the same data at the same path)")
            }
        }
        let share = trainJobs.indices.filter { $0 % ranks.size == ranks.rank }
        let t = TrainingSet.load(jobs: share.map { trainJobs[$0] }, keys: share, instruments: instruments,
                                 skipped: ranks.isRoot ? trainSkipped : [], threads: threads,
                                 maxSecondsPerFile: source.maxSecondsPerFile, sampleRate: sampleRate) { progress.update(0.9 * $0) }
        guard ranks.isRoot, let vj = validationJobs else { return (t, nil) }
        let v = TrainingSet.load(jobs: vj, instruments: instruments, skipped: validationSkipped, threads: threads,
                                 maxSecondsPerFile: source.maxSecondsPerFile, sampleRate: sampleRate, progress: nil)
        return (t, v)
    }

    /// One optimiser step, its record in the log, then a validation every `validateEvery` steps
    /// and a checkpoint every `checkpointEvery` (and both at the end). On divergence the event is
    /// logged, the log closed and `TrainingDiverged` thrown (the last checkpoint stays).
    public func step() throws -> Trainer.StepReport {
        let t0 = Date()
        let r: Trainer.StepReport
        do { r = try trainer.step() } catch let e as TrainingDiverged {
            folder.append(["step": e.step, "event": "diverged", "detail": e.description])
            folder.close()
            throw e
        }
        stepsThisSession += 1; segmentsThisSession += r.segments
        recentLosses.append(r.losses.total); if recentLosses.count > 20 { recentLosses.removeFirst() }
        let dt = Date().timeIntervalSince(t0)
        folder.append(["step": r.globalStep, "phase": r.phase, "epoch": r.epoch, "loss": r.losses.total, "spectral_loss": r.losses.spectral,
                       "reverb_loss": r.losses.reverb, "inharmonicity_l1": r.losses.inharmonicityL1, "gradient_norm": r.gradientNorm,
                       "learning_rate": r.learningRate, "seconds": dt, "segments": r.segments, "time": Date().timeIntervalSince1970])
        if isRoot, r.globalStep % validateEvery == 0 || trainer.isFinished { try validateAndDraw(step: r.globalStep) }
        if keepsLatest { keepLatest() }
        if r.globalStep % checkpointEvery == 0 || trainer.isFinished { try save() }
        return r
    }

    /// Rank 0 of an MPI run: the checkpoint after this step, in memory.
    private func keepLatest() {
        let state = checkpointState(seconds: elapsedBefore + Date().timeIntervalSince(started),
                                    lastLoss: recentLosses.last, lastValidationLoss: lastValidationLoss)
        guard let bytes = try? trainer.checkpoint(state: state).serialized() else { return }
        latest?.keep(bytes, step: trainer.completedSteps)
    }

    /// Validation loss (logged), loss plot and a validation spectrogram; the plot only when
    /// there is no validation set.
    public func validateAndDraw(step: Int) throws {
        guard isRoot else { return }
        guard let v = trainer.validationLoss() else { try folder.writeLossPlot(); return }
        lastValidationLoss = v
        folder.append(["step": step, "validation_loss": v, "time": Date().timeIntervalSince1970])
        try folder.writeLossPlot()
        if let ex = trainer.validationExample() {
            try folder.writeSpectrogram(target: ex.target, model: ex.model, label: String(format: "validation segment, step %d", step))
        }
    }

    /// Writes the checkpoint (then renames it: a failure leaves the previous one); rank 0 only.
    public func save() throws {
        guard isRoot else { return }
        if let l = latest, try l.save(step: trainer.completedSteps) { return }
        let state = checkpointState(seconds: elapsedBefore + Date().timeIntervalSince(started),
                                    lastLoss: recentLosses.last, lastValidationLoss: lastValidationLoss)
        do { try trainer.checkpoint(state: state).save(to: folder.checkpointURL) }
        catch { throw TrainingDataError("\(folder.checkpointURL.path): cannot save the checkpoint (\(error)); the previous one is intact") }
    }

    /// The run facts a checkpoint stores beside the trainer's own (`Trainer.checkpoint(state:)`).
    public func checkpointState(seconds: Double, lastLoss: Double?, lastValidationLoss: Double?) -> [String: String] {
        let sourceJSON = String(decoding: (try? JSONEncoder().encode(source)) ?? Data("{}".utf8), as: UTF8.self)
        var state = ["data": sourceJSON, "seconds": String(seconds), "instruments_trained": trainer.train.instruments.joined(separator: ",")]
        if let l = lastLoss { state["last_loss"] = String(l) }
        if let v = lastValidationLoss { state["last_validation_loss"] = String(v) }
        return state
    }
}

/// Rank 0 of an MPI run keeps the checkpoint of the last finished step in memory, so that it can
/// be written from another thread at once when the launcher stops the job (`TrainCommand`).
// @unchecked Sendable: every field is under `lock`.
public final class LatestCheckpoint: @unchecked Sendable {
    public let url: URL
    private let lock = NSLock()
    private var bytes: [UInt8]?
    private var step = 0
    private var saved = false

    init(url: URL) { self.url = url }

    func keep(_ bytes: [UInt8], step: Int) {
        lock.lock(); defer { lock.unlock() }
        self.bytes = bytes; self.step = step; saved = false
    }

    /// Writes the kept checkpoint if it is of `step`; false when it is not.
    func save(step wanted: Int) throws -> Bool {
        lock.lock(); defer { lock.unlock() }
        guard let b = bytes, step == wanted else { return false }
        do { try WeightStore.writeAtomically(b, to: url) }
        catch { throw TrainingDataError("\(url.path): cannot save the checkpoint (\(error)); the previous one is intact") }
        saved = true
        return true
    }

    /// Writes the kept checkpoint unless already written; the step it holds, or nil.
    public func saveNow() -> Int? {
        lock.lock(); defer { lock.unlock() }
        guard let b = bytes, !saved, (try? WeightStore.writeAtomically(b, to: url)) != nil else { return nil }
        saved = true
        return step
    }
}
