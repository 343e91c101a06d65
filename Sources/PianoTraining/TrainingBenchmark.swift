import DDSPPiano
import Foundation

/// Training throughput on piano-like material: segments per second of forward + backward +
/// Adam with `threads` replicas, and what that means for MAESTRO.
public enum TrainingBenchmark {
    /// A generated performance: a dense, pedalled texture of 6–12 sounding notes (MAESTRO-like
    /// polyphony), `seconds` long, with decaying-partial audio (the content does not change the
    /// cost, the active voices do).
    public static func performance(seconds: Double, seed: UInt64 = 1, sampleRate: Int = PianoWeights.Hyper.dafx22.sampleRate) -> Performance {
        var rng = TrainingRNG(seed: seed)
        var notes: [NoteSequence.Note] = [], controls: [NoteSequence.ControlChange] = []
        var t = 0.0
        while t < seconds - 0.5 {
            let pitch = 36 + Int(rng.next() % 60), len = 0.3 + rng.uniform() * 1.5
            notes.append(NoteSequence.Note(pitch: pitch, velocity: 30 + Int(rng.next() % 90), start: t, end: min(seconds, t + len)))
            t += 0.06 + rng.uniform() * 0.12
        }
        var p = 0.0
        while p < seconds { controls.append(.init(time: p, controller: 64, value: 127)); controls.append(.init(time: p + 1.6, controller: 64, value: 0)); p += 2 }
        let sequence = NoteSequence(notes: notes, controlChanges: controls, totalTime: seconds).applyingSustain()
        let c = UpstreamConditioning.make(sequence: sequence, warmUp: 0, duration: seconds)
        let n = Int(seconds * Double(sampleRate))
        var audio = [Float](repeating: 0, count: n)
        for i in 0..<n { audio[i] = Float(0.1 * sin(Double(i) * 0.05 * 16_000 / Double(sampleRate)) * rng.uniform()) }
        return Performance(audio: audio, conditioning: c, polyphony: Segmenter.polyphony(sequence, frames: c.frames))
    }

    public struct Result: Sendable {
        public var threads: Int
        public var steps: Int
        public var segments: Int
        public var seconds: Double
        public var meanPolyphony: Double
        /// Trained values of the model (what ranks exchange as gradients each step).
        public var parameters: Int
        public var segmentsPerSecond: Double { Double(segments) / seconds }
    }

    /// Runs phase-1 steps of `batchSize` for at least `minSeconds` (after one warm-up step).
    /// `model`: "dafx22" (16 kHz) or "v2" (24 kHz), a fresh model of that architecture.
    public static func run(threads: Int, batchSize: Int = 6, minSeconds: Double = 20, seed: UInt64 = 1, model: String = "dafx22") throws -> Result {
        let v2 = model == V2Weights.architecture
        let rate = v2 ? V2Weights.sampleRate : PianoWeights.Hyper.dafx22.sampleRate
        var set = TrainingSet(instruments: ["bench"], sampleRate: rate)
        set.add(performance(seconds: 120, seed: seed, sampleRate: rate), instrument: 0, name: "bench")
        var config = TrainerConfig()
        config.threads = threads; config.seed = seed
        config.phases = [PhasePlan(number: 1, batchSize: batchSize, learningRate: 1e-3, steps: 1_000_000)]
        let file: WeightFile = v2 ? .v2(V2Weights.initial(instruments: ["bench"], seed: seed))
                                  : .dafx22(PianoWeights.initial(instruments: ["bench"], seed: seed))
        let trainer = try Trainer(file: file, config: config, train: set, validation: nil)
        _ = try trainer.step()
        let start = Date()
        var steps = 0, segments = 0
        while Date().timeIntervalSince(start) < minSeconds || steps < 2 {
            segments += try trainer.step().segments; steps += 1
        }
        let poly = set.performances[0].polyphony.map { Double(min($0, 16)) }
        var parameters = 0
        trainer.replicas[0].forEachParameter { _, _, value, _ in parameters += value.count }
        return Result(threads: threads, steps: steps, segments: segments, seconds: Date().timeIntervalSince(start),
                      meanPolyphony: poly.reduce(0, +) / Double(poly.count), parameters: parameters)
    }

    /// Upstream's schedule (`TrainingPhase.upstream`: 20 epochs at batches 6, 3, 6) on `machines`
    /// machines of `threads` replicas each, from one replica's measured rate on such a machine
    /// (`segmentsPerSecond` with all its threads busy, divided by them). A step lasts as long
    /// as the largest part of its batch (a replica computes ⌈batch / replicas⌉ segments, so
    /// replicas beyond the batch size wait), plus the exchange between machines: every rank
    /// receives every replica's gradient (`parameters` floats) and the batch's windows, over
    /// `networkBytesPerSecond`. `growBatch`: batches of at least one segment per replica (a
    /// different optimisation: upstream's learning rates were tuned for its batches).
    public struct ClusterProjection: Sendable {
        public var machines: Int
        public var replicas: Int
        public var batches: [Int]
        public var hoursPerEpoch: Double   // phase 1's batch
        public var totalHours: Double      // the 20 epochs
    }

    /// `v2`: without phase 2 (v2 trains nothing there).
    public static func projectCluster(machines: Int, threads: Int, replicaSegmentsPerSecond rate: Double, parameters: Int,
                                      audioHours: Double, networkBytesPerSecond: Double, growBatch: Bool, v2: Bool = false) -> ClusterProjection {
        let replicas = machines * threads
        let windows = audioHours * 3600 / 1.5
        // A window as ranks send it: 3 s of 16-kHz target, 750 frames of 16 voices' (pitch,
        // velocity) and of 4 pedals, as float32.
        let windowBytes: Double = 4 * (48_000 + 750 * 16 * 2 + 750 * 4)
        func epochHours(_ batch: Int) -> Double {
            let b = growBatch ? max(batch, replicas) : batch
            var step = Double((b + replicas - 1) / replicas) / rate
            if machines > 1 { step += (Double(min(b, replicas)) * Double(parameters) * 4 + Double(b) * windowBytes) / networkBytesPerSecond }
            return windows / Double(b) * step / 3600
        }
        let phases = TrainingPhase.upstream.filter { !v2 || !$0.trainsNothingInV2 }
        let batches = phases.map { growBatch ? max($0.batchSize, replicas) : $0.batchSize }
        return ClusterProjection(machines: machines, replicas: replicas, batches: batches, hoursPerEpoch: epochHours(phases[0].batchSize),
                                 totalHours: phases.reduce(0) { $0 + Double($1.epochs) * epochHours($1.batchSize) })
    }

    /// Hours to train on `hours` of audio for `epochs` epochs at `segmentsPerSecond` (3-s
    /// windows every 1.5 s, as upstream cuts MAESTRO).
    public static func projectedHours(audioHours: Double, epochs: Double, segmentsPerSecond: Double) -> Double {
        let windows = audioHours * 3600 / 1.5
        return windows * epochs / segmentsPerSecond / 3600
    }
}
