import CBLAS
import DDSPPiano
import Foundation

/// One phase of a run as executed: upstream's phase (what it trains, detuning on or off), its
/// batch size and learning rate, and how many optimiser steps it lasts.
public struct PhasePlan: Codable, Sendable, Equatable {
    public var number: Int
    public var batchSize: Int
    public var learningRate: Double
    public var steps: Int
    public init(number: Int, batchSize: Int, learningRate: Double, steps: Int) {
        self.number = number; self.batchSize = batchSize; self.learningRate = learningRate; self.steps = steps
    }
    public var phase: TrainingPhase { TrainingPhase(number: number, batchSize: batchSize, epochs: 0, learningRate: learningRate) }
}

/// Everything that decides a run's arithmetic; stored in its checkpoints so `--resume` repeats it.
public struct TrainerConfig: Codable, Sendable, Equatable {
    public var seed: UInt64 = 1
    public var phases: [PhasePlan] = []
    /// Data-parallel replicas in all (threads × MPI ranks); each takes a contiguous part of
    /// every batch, and their gradients are summed in replica order.
    public var threads: Int = 2
    public var validationSegments: Int = 24
    public var lossSizes: [Int] = [2048, 1024, 512, 256, 128, 64]
    public init() {}

    public var json: String { String(decoding: try! JSONEncoder().encode(self), as: UTF8.self) }
    public static func from(json: String) throws -> TrainerConfig { try JSONDecoder().decode(TrainerConfig.self, from: Data(json.utf8)) }
}

public struct TrainingDiverged: CodedError {
    public var code: ErrorCode { .diverged }
    public var step: Int
    public var what: String
    public var description: String { "training diverged at step \(step): \(what) is not finite; the update was not applied" }
}

/// Runs the phase schedule over a training set: batches drawn in a seeded order per epoch,
/// forward and backward on `config.threads` replicas of the model at once (data parallel,
/// gradients summed in a fixed order, so a run does not depend on thread timing), Adam,
/// validation. The replicas may be spread over MPI ranks (`ranks`): each rank runs
/// `threads / ranks.size` of them on its share of the data, the ranks exchange the batch's
/// windows and every replica's gradient, and each applies the same sum in the same order, so a
/// seed gives the same run for a given number of replicas, however they are spread.
/// The caller drives it step by step (progress, logging, checkpoints and stopping are its job).
// @unchecked Sendable: driven by one thread; its workers get disjoint batches and write disjoint slots.
public final class Trainer: @unchecked Sendable {
    public let config: TrainerConfig
    /// This rank's share of the training data (all of it in a single process).
    public let train: TrainingSet
    /// Every rank's windows in one order.
    public let table: WindowTable
    public let validation: TrainingSet?
    public let ranks: Ranks
    /// This rank's replicas: global replicas firstReplica ..< firstReplica + replicas.count.
    public private(set) var replicas: [any TrainingModel]
    public let firstReplica: Int
    public private(set) var adam: Adam
    /// Position in the schedule: phase index into config.phases and steps done in it.
    public private(set) var phaseIndex: Int
    public private(set) var stepInPhase: Int
    /// Fixed tensors, shapes, names and metadata of the exported weights (either architecture).
    public let base: WeightFile

    public struct StepReport: Sendable {
        public var globalStep: Int       // completed steps over the whole run, this one included
        public var phase: Int            // upstream's phase number
        public var stepInPhase: Int      // completed steps in the phase
        public var epoch: Int            // in the phase, from 0
        public var losses: PianoModelTraining.Losses
        public var gradientNorm: Double
        public var learningRate: Double
        public var segments: Int
    }

    public convenience init(weights: PianoWeights, config: TrainerConfig, train: TrainingSet, validation: TrainingSet?,
                            adam: Adam? = nil, phaseIndex: Int = 0, stepInPhase: Int = 0, ranks: Ranks = .solo, table: WindowTable? = nil) throws {
        try self.init(file: .dafx22(weights), config: config, train: train, validation: validation, adam: adam, phaseIndex: phaseIndex,
                      stepInPhase: stepInPhase, ranks: ranks, table: table)
    }

    /// A run of either architecture (`file`: the weights it starts from); the data must be at
    /// the model's sample rate.
    public init(file weights: WeightFile, config: TrainerConfig, train: TrainingSet, validation: TrainingSet?,
                adam: Adam? = nil, phaseIndex: Int = 0, stepInPhase: Int = 0, ranks: Ranks = .solo, table: WindowTable? = nil) throws {
        guard !config.phases.isEmpty else { throw TrainingDataError("no training phase planned") }
        let table = table ?? .solo(train)
        guard table.count > 0 else { throw TrainingDataError("the training set has no usable 3-second segment") }
        guard weights.instruments.count >= train.instruments.count else {
            throw TrainingDataError("the weights have \(weights.instruments.count) instruments but the data \(train.instruments.count)")
        }
        guard train.sampleRate == weights.sampleRate, validation.map({ $0.sampleRate == weights.sampleRate }) ?? true else {
            throw TrainingDataError("the data is held at \(train.sampleRate) Hz but the \(weights.architecture) model runs at \(weights.sampleRate) Hz")
        }
        let total = max(1, config.threads)
        guard total % ranks.size == 0 else {
            throw TrainingDataError("\(total) replicas cannot be spread evenly over \(ranks.size) ranks")
        }
        self.config = config; self.train = train; self.table = table; self.validation = validation; self.base = weights
        self.ranks = ranks
        self.phaseIndex = phaseIndex; self.stepInPhase = stepInPhase
        let perRank = total / ranks.size
        firstReplica = ranks.rank * perRank
        replicas = (0..<perRank).map { _ in weights.trainingModel(lossSizes: config.lossSizes) }
        self.adam = adam ?? Adam(learningRate: config.phases[0].learningRate)
        if phaseIndex < config.phases.count { enter(phase: phaseIndex, resetLearningRate: adam == nil) }
        // Threads are ours: OpenBLAS's own would compete with the replicas for the cores.
        if perRank > 1 { openblas_set_num_threads(1) }
    }

    /// Continues a run from its checkpoint (the data must be the same for an exact continuation).
    /// `replicas` replaces the run's number of replicas (a continuation on other hardware:
    /// valid, but not the same sums as the original run). `steps` replaces the phases' lengths
    /// (one per phase of the run): a run lengthened or cut short where it stands; steps already
    /// taken cannot be undone.
    public convenience init(checkpoint c: TrainingCheckpoint, train: TrainingSet, validation: TrainingSet?,
                            replicas: Int? = nil, steps: [Int]? = nil, ranks: Ranks = .solo, table: WindowTable? = nil) throws {
        guard var config = Self.config(of: c),
              var p = c.state["phase_index"].flatMap(Int.init), var s = c.state["step_in_phase"].flatMap(Int.init) else {
            throw TrainingDataError("the checkpoint lacks the run's configuration or position")
        }
        if let r = replicas { config.threads = r }
        var adam = c.adam
        if let steps {
            let before = p
            (config.phases, p, s) = try Self.replan(config.phases, phaseIndex: p, stepInPhase: s, steps: steps)
            // A phase cut where it stood: the next starts at its own learning rate, as after a step.
            if p != before, p < config.phases.count { adam.learningRate = config.phases[p].learningRate }
        }
        try self.init(file: c.file, config: config, train: train, validation: validation, adam: adam, phaseIndex: p, stepInPhase: s,
                      ranks: ranks, table: table)
    }

    /// New phase lengths for a run at (`phaseIndex`, `stepInPhase`): finished phases keep theirs,
    /// the current one may end where it stands (the next begins), later ones need a step.
    public static func replan(_ phases: [PhasePlan], phaseIndex: Int, stepInPhase: Int, steps: [Int]) throws
        -> (phases: [PhasePlan], phaseIndex: Int, stepInPhase: Int) {
        guard steps.count == phases.count else {
            throw TrainingOptionError("--steps needs \(phases.count) value(s), one per phase of the run (\(phases.map { String($0.number) }.joined(separator: ",")))")
        }
        var plans = phases, p = phaseIndex, s = stepInPhase
        for (i, n) in steps.enumerated() {
            if i < p, n != phases[i].steps {
                throw TrainingOptionError("phase \(phases[i].number) is finished after \(phases[i].steps) steps; --steps cannot change it")
            }
            if i == p, n < s {
                throw TrainingOptionError("phase \(phases[i].number) has already run \(s) steps; --steps cannot give it fewer")
            }
            if i > p, n < 1 { throw TrainingOptionError("--steps: phase \(phases[i].number) needs at least 1 step") }
            plans[i].steps = n
        }
        // The current phase cut where it stands: the run moves on to the next.
        if p < plans.count, s >= plans[p].steps { p += 1; s = 0 }
        return (plans, p, s)
    }

    /// The configuration a checkpoint was written with.
    public static func config(of c: TrainingCheckpoint) -> TrainerConfig? {
        c.state["config"].flatMap { try? TrainerConfig.from(json: $0) }
    }

    public var isFinished: Bool { phaseIndex >= config.phases.count }
    public var totalSteps: Int { config.phases.reduce(0) { $0 + $1.steps } }
    public var completedSteps: Int { config.phases.prefix(phaseIndex).reduce(0) { $0 + $1.steps } + (isFinished ? 0 : stepInPhase) }

    private func enter(phase i: Int, resetLearningRate: Bool) {
        let plan = config.phases[i]
        for r in replicas { r.configure(plan.phase) }
        if resetLearningRate { adam.learningRate = plan.learningRate }
    }

    public func stepsPerEpoch(batchSize: Int) -> Int { max(1, table.count / max(1, min(batchSize, table.count))) }

    /// The windows of the next batch: epoch e of phase p visits the windows in a permutation
    /// seeded by (seed, p, e).
    func nextBatchIndices() -> (indices: [Int], epoch: Int) {
        let plan = config.phases[phaseIndex]
        let B = min(plan.batchSize, table.count)
        let perEpoch = stepsPerEpoch(batchSize: B)
        let epoch = stepInPhase / perEpoch, k = stepInPhase % perEpoch
        var rng = TrainingRNG(seed: TrainingRNG.derive(config.seed, UInt64(phaseIndex), UInt64(epoch)))
        let order = rng.permutation(table.count)
        return (Array(order[(k * B)..<((k + 1) * B)]), epoch)
    }

    /// Splits `indices` into the replicas' contiguous parts (sizes differ by at most one).
    func parts(_ n: Int) -> [Range<Int>] {
        let r = min(max(1, config.threads), n)
        return (0..<r).map { i in (i * n / r)..<((i + 1) * n / r) }
    }

    /// The batches of this rank's replicas that have a part (by local replica). Across ranks,
    /// each sends the windows of the batch it holds and every rank receives them all.
    func localBatches(_ indices: [Int], _ ranges: [Range<Int>]) -> [Int: (batch: SegmentBatch, target: [Float])] {
        let mine = (0..<replicas.count).filter { firstReplica + $0 < ranges.count }
        var out: [Int: (batch: SegmentBatch, target: [Float])] = [:]
        if ranks.size == 1 {
            for i in mine { out[i] = train.batch(Array(indices[ranges[i]])) }
            return out
        }
        // Per held window: its place in the batch, instrument, voices, then the floats.
        var send: [UInt8] = []
        for (k, w) in indices.enumerated() where Int(table.owner[w]) == ranks.rank {
            let r = train.record(Int(table.local[w]))
            send += [UInt8](raw: [Int32(k), Int32(r.instrument), Int32(r.voices),
                                  Int32(r.conditioning.count), Int32(r.pedal.count), Int32(r.target.count)])
            send += [UInt8](raw: r.conditioning) + [UInt8](raw: r.pedal) + [UInt8](raw: r.target)
        }
        var records = [TrainingSet.Record?](repeating: nil, count: indices.count)
        for bytes in ranks.allgather(send) {
            var o = 0
            while o < bytes.count {
                let h = bytes.values(Int32.self, at: o, count: 6).map(Int.init); o += 24
                let c = bytes.values(Float.self, at: o, count: h[3]); o += 4 * h[3]
                let p = bytes.values(Float.self, at: o, count: h[4]); o += 4 * h[4]
                let t = bytes.values(Float.self, at: o, count: h[5]); o += 4 * h[5]
                records[h[0]] = TrainingSet.Record(conditioning: c, pedal: p, target: t, instrument: h[1], voices: h[2])
            }
        }
        for i in mine { out[i] = TrainingSet.batch(records[ranges[firstReplica + i]].map { $0! }, frames: train.framesPerSegment()) }
        return out
    }

    /// Every replica's losses and gradients (by parameter) for the replicas 0..<count, gathered
    /// from all ranks; nil in a single process (they are the replicas' own).
    func gatheredGradients(_ count: Int, _ losses: [PianoModelTraining.Losses?]) -> [(losses: PianoModelTraining.Losses, grads: [[Float]])]? {
        guard ranks.size > 1 else { return nil }
        var sizes: [Int] = []
        replicas[0].forEachParameter { _, _, _, grad in sizes.append(grad.count) }
        let total = sizes.reduce(0, +)
        var send: [UInt8] = []
        for i in replicas.indices where firstReplica + i < count {
            let l = losses[i]!
            send += [UInt8](raw: [l.spectral, l.reverb, l.inharmonicityL1])
            replicas[i].forEachParameter { _, _, _, grad in send += [UInt8](raw: grad) }
        }
        var all: [(losses: PianoModelTraining.Losses, grads: [[Float]])] = []
        for bytes in ranks.allgather(send) {
            var o = 0
            while o < bytes.count {
                let l = bytes.values(Double.self, at: o, count: 3); o += 24
                let flat = bytes.values(Float.self, at: o, count: total); o += 4 * total
                var grads: [[Float]] = [], at = 0
                for n in sizes { grads.append(Array(flat[at..<(at + n)])); at += n }
                all.append((PianoModelTraining.Losses(spectral: l[0], reverb: l[1], inharmonicityL1: l[2]), grads))
            }
        }
        precondition(all.count == count, "gathered \(all.count) replicas' gradients instead of \(count)")
        return all
    }

    /// One optimiser step. Throws `TrainingDiverged` (and leaves the parameters untouched) when
    /// a loss or the gradient is not finite.
    public func step() throws -> StepReport {
        precondition(!isFinished)
        let plan = config.phases[phaseIndex]
        let (indices, epoch) = nextBatchIndices()
        let globalStep = completedSteps
        let ranges = parts(indices.count)
        let batches = localBatches(indices, ranges)
        let mine = batches.keys.sorted()
        // @unchecked Sendable: each worker writes only its own slots; read after all workers joined.
        final class Box: @unchecked Sendable { var losses: [PianoModelTraining.Losses?]; init(_ n: Int) { losses = Array(repeating: nil, count: n) } }
        let box = Box(replicas.count)
        DispatchQueue.concurrentPerform(iterations: mine.count) { k in
            let i = mine[k]
            let (batch, target) = batches[i]!
            let model = replicas[i]
            model.zeroGrad()
            box.losses[i] = model.trainingStep(batch, target: target,
                                               noiseSeed: TrainingRNG.derive(config.seed, UInt64(globalStep), UInt64(firstReplica + i)),
                                               gradients: true).losses
        }
        // Replica r's losses and gradients: its own in a single process, else gathered.
        let gathered = gatheredGradients(ranges.count, box.losses)
        func replicaLosses(_ r: Int) -> PianoModelTraining.Losses { gathered?[r].losses ?? box.losses[r]! }
        // Each replica's losses are means over its part: weight them by the part's share.
        let B = Float(indices.count)
        var grads: [[[Float]]] = []
        for i in 1..<ranges.count {
            if let g = gathered { grads.append(g[i].grads); continue }
            var g: [[Float]] = []
            replicas[i].forEachParameter { _, _, _, grad in g.append(grad) }
            grads.append(g)
        }
        let share0 = Float(ranges[0].count) / B
        var t = 0
        replicas[0].forEachParameter { _, _, _, grad in
            if let g = gathered { grad = g[0].grads[t] }
            for j in grad.indices { grad[j] *= share0 }
            for i in 1..<ranges.count {
                let s = Float(ranges[i].count) / B
                let gi = grads[i - 1][t]
                for j in grad.indices { grad[j] += s * gi[j] }
            }
            t += 1
        }
        var losses = PianoModelTraining.Losses(spectral: 0, reverb: 0, inharmonicityL1: replicaLosses(0).inharmonicityL1)
        for (i, r) in ranges.enumerated() {
            let s = Double(r.count) / Double(indices.count)
            losses.spectral += s * replicaLosses(i).spectral
            losses.reverb += s * replicaLosses(i).reverb
        }
        guard losses.total.isFinite else { throw TrainingDiverged(step: globalStep + 1, what: "the loss") }
        let phase = plan.phase
        var trainable: [[Float]] = []
        replicas[0].forEachParameter { _, group, _, grad in if phase.trains(group) { trainable.append(grad) } }
        let norm = Adam.globalNorm(trainable)
        guard norm.isFinite else { throw TrainingDiverged(step: globalStep + 1, what: "the gradient") }
        let lr = adam.currentLearningRate
        let first = replicas[0]
        adam.update { body in first.forEachParameter { name, group, value, grad in if phase.trains(group) { body(name, &value, &grad) } } }
        var values: [[Float]] = []
        first.forEachParameter { _, _, value, _ in values.append(value) }
        for r in replicas.dropFirst() {
            var k = 0
            r.forEachParameter { _, _, value, _ in value = values[k]; k += 1 }
        }
        stepInPhase += 1
        let report = StepReport(globalStep: globalStep + 1, phase: plan.number, stepInPhase: stepInPhase, epoch: epoch,
                                losses: losses, gradientNorm: norm, learningRate: lr, segments: indices.count)
        if stepInPhase >= plan.steps {
            phaseIndex += 1; stepInPhase = 0
            if phaseIndex < config.phases.count { enter(phase: phaseIndex, resetLearningRate: true) }
        }
        return report
    }

    /// The validation windows used every time: up to `validationSegments`, evenly spread.
    public var validationWindows: [Int] {
        guard let v = validation, !v.windows.isEmpty else { return [] }
        let n = min(config.validationSegments, v.windows.count)
        return (0..<n).map { $0 * v.windows.count / n }
    }

    /// Mean spectral loss over the validation windows (fixed noise: comparable between steps).
    public func validationLoss() -> Double? {
        guard let v = validation else { return nil }
        let windows = validationWindows
        guard !windows.isEmpty else { return nil }
        let per = 3
        let chunks = stride(from: 0, to: windows.count, by: per).map { Array(windows[$0..<min($0 + per, windows.count)]) }
        // @unchecked Sendable: each worker writes only its own slots; read after all workers joined.
        final class Box: @unchecked Sendable { var sums: [Double]; init(_ n: Int) { sums = Array(repeating: 0, count: n) } }
        let box = Box(chunks.count)
        let workers = min(replicas.count, chunks.count)
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            for c in stride(from: w, to: chunks.count, by: workers) {
                let (batch, target) = v.batch(chunks[c])
                let l = replicas[w].trainingStep(batch, target: target, noiseSeed: TrainingRNG.derive(config.seed, 0xFA11, UInt64(c)), gradients: false).losses
                box.sums[c] = l.spectral * Double(chunks[c].count)
            }
        }
        return box.sums.reduce(0, +) / Double(windows.count)
    }

    /// Target and model audio of one validation window (for the spectrogram picture).
    public func validationExample(_ k: Int = 0) -> (target: [Float], model: [Float])? {
        guard let v = validation, !validationWindows.isEmpty else { return nil }
        let (batch, target) = v.batch([validationWindows[k % validationWindows.count]])
        let audio = replicas[0].trainingStep(batch, target: target, noiseSeed: TrainingRNG.derive(config.seed, 0xFA11, 0), gradients: false).audio
        return (target, audio)
    }

    /// The current parameters as a weight file.
    public func weights() throws -> WeightFile { try replicas[0].weightFile(updating: base) }

    /// A checkpoint from which `init(checkpoint:…)` continues exactly; `state` adds run facts.
    public func checkpoint(state extra: [String: String] = [:]) throws -> TrainingCheckpoint {
        var state = extra
        state["config"] = config.json
        state["phase_index"] = String(phaseIndex)
        state["step_in_phase"] = String(stepInPhase)
        let phase = isFinished ? config.phases.last!.number : config.phases[phaseIndex].number
        return TrainingCheckpoint(file: try weights(), adam: adam, phase: phase, state: state)
    }
}
