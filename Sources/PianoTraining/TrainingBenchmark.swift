import DDSPPiano
import Foundation

/// Training throughput on piano-like material: segments per second of forward + backward +
/// Adam with `threads` replicas, and what that means for MAESTRO.
public enum TrainingBenchmark {
    /// A generated performance: a dense, pedalled texture of 6–12 sounding notes (MAESTRO-like
    /// polyphony), `seconds` long, with decaying-partial audio (the content does not change the
    /// cost, the active voices do).
    public static func performance(seconds: Double, seed: UInt64 = 1) -> Performance {
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
        let n = Int(seconds * Double(PianoWeights.Hyper.dafx22.sampleRate))
        var audio = [Float](repeating: 0, count: n)
        for i in 0..<n { audio[i] = Float(0.1 * sin(Double(i) * 0.05) * rng.uniform()) }
        return Performance(audio: audio, conditioning: c, polyphony: Segmenter.polyphony(sequence, frames: c.frames))
    }

    public struct Result: Sendable {
        public var threads: Int
        public var steps: Int
        public var segments: Int
        public var seconds: Double
        public var meanPolyphony: Double
        public var segmentsPerSecond: Double { Double(segments) / seconds }
    }

    /// Runs phase-1 steps of `batchSize` for at least `minSeconds` (after one warm-up step).
    public static func run(threads: Int, batchSize: Int = 6, minSeconds: Double = 20, seed: UInt64 = 1) throws -> Result {
        var set = TrainingSet(instruments: ["bench"])
        set.add(performance(seconds: 120, seed: seed), instrument: 0, name: "bench")
        var config = TrainerConfig()
        config.threads = threads; config.seed = seed
        config.phases = [PhasePlan(number: 1, batchSize: batchSize, learningRate: 1e-3, steps: 1_000_000)]
        let trainer = try Trainer(weights: PianoWeights.initial(instruments: ["bench"], seed: seed), config: config, train: set, validation: nil)
        _ = try trainer.step()
        let start = Date()
        var steps = 0, segments = 0
        while Date().timeIntervalSince(start) < minSeconds || steps < 2 {
            segments += try trainer.step().segments; steps += 1
        }
        let poly = set.performances[0].polyphony.map { Double(min($0, 16)) }
        return Result(threads: threads, steps: steps, segments: segments, seconds: Date().timeIntervalSince(start),
                      meanPolyphony: poly.reduce(0, +) / Double(poly.count))
    }

    /// Hours to train on `hours` of audio for `epochs` epochs at `segmentsPerSecond` (3-s
    /// windows every 1.5 s, as upstream cuts MAESTRO).
    public static func projectedHours(audioHours: Double, epochs: Double, segmentsPerSecond: Double) -> Double {
        let windows = audioHours * 3600 / 1.5
        return windows * epochs / segmentsPerSecond / 3600
    }
}
