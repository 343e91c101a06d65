import DDSPPiano
import Foundation

/// `ddsp-piano bench`: the streaming engine's speed, measured the way a host uses it.
public enum EngineBenchmark {
    /// A passage that keeps every voice slot busy: a 16-note chord over the whole keyboard,
    /// re-struck in turns with varied velocities, the sustain pedal going up and down, and a
    /// run on top (more than 16 notes: the lowest are dropped, as upstream does).
    public static func densePassage(seconds: Double) -> [TimedMessage] {
        var out: [TimedMessage] = []
        let chord = [28, 33, 38, 43, 47, 50, 55, 59, 62, 64, 67, 71, 74, 79, 83, 88]
        var t = 0.0
        var round = 0
        while t < seconds {
            for (i, p) in chord.enumerated() where (i + round) % 3 != 0 || round == 0 {
                let v = UInt8(40 + (i * 13 + round * 29) % 80)
                out.append(TimedMessage(time: t + 0.003 * Double(i), message: .noteOff(channel: 0, pitch: UInt8(p), velocity: 0)))
                out.append(TimedMessage(time: t + 0.003 * Double(i) + 0.001, message: .noteOn(channel: 0, pitch: UInt8(p), velocity: v)))
            }
            let pedal: UInt8 = round % 2 == 0 ? 127 : 0
            out.append(TimedMessage(time: t + 0.25, message: .controlChange(channel: 0, controller: 64, value: pedal)))
            for k in 0..<4 {
                let p = UInt8(90 + (round * 5 + k * 2) % 14)
                out.append(TimedMessage(time: t + 0.1 + 0.1 * Double(k), message: .noteOn(channel: 0, pitch: p, velocity: 90)))
                out.append(TimedMessage(time: t + 0.18 + 0.1 * Double(k), message: .noteOff(channel: 0, pitch: p, velocity: 0)))
            }
            t += 0.5
            round += 1
        }
        return out.filter { $0.time < seconds }.sorted { $0.time < $1.time }
    }

    public struct Result: Sendable {
        public var sampleRate: Double
        public var blockSize: Int
        public var audioSeconds: Double
        public var wallSeconds: Double
        public var blockTimes: [Double]   // seconds, sorted ascending
        public var meanVoicesSounding: Double
        /// CPU time of the rendering thread over the run.
        public var cpuSeconds: Double = 0
        /// CPU milliseconds per second of audio.
        public var cpuPerSecond: Double { 1000 * cpuSeconds / audioSeconds }

        public var realTimeFactor: Double { audioSeconds / wallSeconds }
        public var period: Double { Double(blockSize) / sampleRate }
        public var worst: Double { blockTimes.last ?? 0 }
        public func percentile(_ p: Double) -> Double {
            guard !blockTimes.isEmpty else { return 0 }
            return blockTimes[min(blockTimes.count - 1, Int((Double(blockTimes.count - 1) * p).rounded(.up)))]
        }
    }

    /// Drives one engine over the passage in blocks, timing every block.
    public static func run(weights: PianoWeights, instrument: Int, sampleRate: Double, blockSize: Int, seconds: Double,
                           noise: Bool = true) throws -> Result {
        try run(model: PianoModel(weights: weights), instrument: instrument, sampleRate: sampleRate, blockSize: blockSize,
                seconds: seconds, noise: noise)
    }

    public static func run(model: PianoModel, instrument: Int, sampleRate: Double, blockSize: Int, seconds: Double,
                           noise: Bool = true) throws -> Result {
        var options = PianoEngine.Options()
        options.instrument = instrument
        options.noise = noise
        let engine = PianoEngine(model: model, options: options)
        try engine.prepare(sampleRate: sampleRate, maxBlockSize: blockSize)
        let events = densePassage(seconds: seconds)
        let total = Int(seconds * sampleRate)
        let blocks = (total + blockSize - 1) / blockSize
        var times = [Double](repeating: 0, count: blocks)
        var out = [Float](repeating: 0, count: blockSize)
        var feed = BlockEventFeed(events: events, sampleRate: sampleRate)
        var blockEvents = [EngineEvent]()
        blockEvents.reserveCapacity(256)
        var pos = 0, b = 0
        var voices = 0.0
        let start = DispatchTime.now().uptimeNanoseconds
        let cpuStart = ComponentBenchmark.threadCPUSeconds()
        while pos < total {
            let n = min(blockSize, total - pos)
            feed.take(position: pos, count: n, into: &blockEvents)
            let t0 = DispatchTime.now().uptimeNanoseconds
            blockEvents.withUnsafeBufferPointer { ev in
                out.withUnsafeMutableBufferPointer { o in
                    engine.render(events: ev, into: UnsafeMutableBufferPointer(rebasing: o[0..<n]))
                }
            }
            times[b] = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            voices += Double(min(16, engine.soundingNotes))
            b += 1
            pos += n
        }
        let wall = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        let cpu = ComponentBenchmark.threadCPUSeconds() - cpuStart
        return Result(sampleRate: sampleRate, blockSize: blockSize, audioSeconds: Double(total) / sampleRate,
                      wallSeconds: wall, blockTimes: times.sorted(), meanVoicesSounding: voices / Double(max(1, b)),
                      cpuSeconds: cpu)
    }

    /// Peak resident memory of this process so far, in bytes.
    public static func peakResidentBytes() -> Int {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return usage.ru_maxrss * 1024
    }
}
