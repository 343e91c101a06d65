import CMallocCounter
import Foundation
import XCTest
import DDSPPiano
import PianoIO
import PianoTestKit

/// Offline renders on two cores (issue 15, item 3): the engine split at its networks
/// (`ControlPipeline`: one engine runs the context and some voices' networks, the other the rest
/// and the sound), on two threads (`ThreadedRenderRunner`). The output must be the one-thread
/// render's, to the bit, for both models, every conditioning, any split, rate, block size and
/// channel count; and neither engine may allocate while rendering.
final class RenderThreadsTests: XCTestCase {
    /// Eight seconds with chords over the keyboard, pedal, a piano change, volume and a run
    /// (more than 16 notes at times).
    static func midi(instruments: Int) throws -> MIDIFile {
        var track: [UInt8] = SMF.tempo(0, 500_000)
        var t = 0
        func at(_ time: Int) -> Int { let d = time - t; t = time; return d }
        var events: [(Int, [UInt8])] = []
        for bar in 0..<8 {
            let start = bar * 960
            let chord: [UInt8] = [36, 43, 52, 60, 64, 67, 72, 79].map { $0 + UInt8(bar % 3) }
            for (i, p) in chord.enumerated() {
                events.append((start + 5 * i, [0x90, p, UInt8(40 + (i * 11 + bar * 17) % 80)]))
                events.append((start + 700 + 3 * i, [0x80, p, 64]))
            }
            for k in 0..<6 {
                let p = UInt8(84 + (bar * 5 + k * 3) % 20)
                events.append((start + 120 * k, [0x90, p, 90]))
                events.append((start + 120 * k + 100, [0x80, p, 0]))
            }
            events.append((start + 10, [0xB0, 64, bar % 2 == 0 ? 127 : 0]))
        }
        events.append((2000, [0xB0, 7, 90]))
        events.append((3900, [0xC0, UInt8(min(2, instruments - 1))]))
        for (time, bytes) in events.sorted(by: { $0.0 < $1.0 }) {
            track += SMF.vlq(at(time)) + bytes
        }
        track += SMF.eot(at(8 * 960))
        return try MIDIFile(bytes: SMF.file(format: 0, division: 480, tracks: [track]))
    }

    static func render(_ model: PianoModel, _ midi: MIDIFile, settings base: RenderSettings, threads: Int,
                       split: Int? = nil) throws -> RenderOutput {
        var settings = base
        settings.threads = threads
        settings.runner = threads > 1 ? ThreadedRenderRunner() : nil
        settings.splitVoices = split
        return try OfflineRenderer.render(midi: midi, model: model, settings: settings)
    }

    static func differences(_ a: [Float], _ b: [Float]) -> Int {
        guard a.count == b.count else { return max(a.count, b.count) }
        return zip(a, b).filter { $0.0.bitPattern != $0.1.bitPattern }.count
    }

    func testTwoThreadsRenderTheOneThreadRenderToTheBit() throws {
        for (name, model) in try Fixtures.structuralWeights() {
            let midi = try Self.midi(instruments: model.instruments.count)
            var variants: [(String, RenderSettings, [Int?])] = []
            var s = RenderSettings()
            s.instrument = min(s.instrument, model.instruments.count - 1)
            variants.append(("model rate", s, [nil, 0, 4, 16]))
            var hi = s
            hi.sampleRate = 48_000
            hi.blockSize = 100
            hi.stereoWidth = 0.5
            variants.append(("48 kHz stereo, blocks of 100", hi, [nil, 12]))
            var live = s
            live.conditioning = .live
            live.sampleRate = 44_100
            variants.append(("live conditioning at 44.1 kHz", live, [nil]))
            var other = s
            other.conditioning = model.architecture == .v2 ? .events : .upstream
            variants.append((model.architecture == .v2 ? "events conditioning" : "upstream conditioning", other, [nil]))
            for (label, settings, splits) in variants {
                let one = try Self.render(model, midi, settings: settings, threads: 1)
                XCTAssertGreaterThan(one.wet.map { abs($0) }.max() ?? 0, 1e-3, "\(name) \(label): silent render")
                for split in splits {
                    let two = try Self.render(model, midi, settings: settings, threads: 2, split: split)
                    let wet = Self.differences(one.wet, two.wet), dry = Self.differences(one.dry, two.dry)
                    print("\(name), \(label), split \(split.map(String.init) ?? "default"): \(one.wet.count) samples, \(wet) differ (wet), \(dry) (dry)")
                    XCTAssertEqual(wet, 0, "\(name) \(label) split \(String(describing: split)): wet")
                    XCTAssertEqual(dry, 0, "\(name) \(label) split \(String(describing: split)): dry")
                }
            }
        }
    }

    /// Both engines of a pair, driven block by block on this thread (a schedule the runner may
    /// choose), allocate nothing after `prepare`.
    func testPipelinedEnginesDoNotAllocate() throws {
        for (name, model) in try Fixtures.structuralWeights() {
            var options = PianoEngine.Options()
            options.instrument = min(options.instrument, model.instruments.count - 1)
            options.stereo = true
            options.width = 0.5
            let ring = ControlFrameRing(model: model, split: 12, capacity: options.warmUpFrames + 64)
            var controlOptions = options, synthesisOptions = options
            controlOptions.pipeline = ControlPipeline(ring: ring, role: .controls)
            synthesisOptions.pipeline = ControlPipeline(ring: ring, role: .synthesis)
            let controls = PianoEngine(model: model, options: controlOptions)
            let synthesis = PianoEngine(model: model, options: synthesisOptions)
            let block = 128
            try controls.prepare(sampleRate: 48_000, maxBlockSize: block)
            try synthesis.prepare(sampleRate: 48_000, maxBlockSize: block)
            var left = [Float](repeating: 0, count: block), right = left, scratch = left
            var events = [EngineEvent](repeating: EngineEvent(offset: 0, message: .programChange(channel: 0, program: 0)), count: 4)
            func play(_ count: Int) {
                events.withUnsafeBufferPointer { e in
                    let ev = UnsafeBufferPointer(rebasing: e[0..<count])
                    scratch.withUnsafeMutableBufferPointer { controls.render(events: ev, into: $0) }
                    left.withUnsafeMutableBufferPointer { l in right.withUnsafeMutableBufferPointer { r in
                        synthesis.render(events: ev, left: l, right: r)
                    }}
                }
            }
            play(0)
            var peak: Float = 0
            malloc_counter_start()
            for b in 0..<1500 {
                var count = 0
                if b % 5 == 0 {
                    events[count] = EngineEvent(offset: (b * 37) % block, message: .noteOn(channel: 0, pitch: UInt8(30 + (b * 7) % 70), velocity: 80)); count += 1
                    events[count] = EngineEvent(offset: block - 1, message: .noteOff(channel: 0, pitch: UInt8(30 + ((b - 15) * 7 % 70 + 70) % 70), velocity: 0)); count += 1
                }
                if b % 97 == 0 { events[count] = EngineEvent(offset: 3, message: .controlChange(channel: 0, controller: 64, value: b % 194 == 0 ? 127 : 0)); count += 1 }
                if b % 401 == 0 { events[count] = EngineEvent(offset: 5, message: .programChange(channel: 0, program: UInt8(b / 401 % model.instruments.count))); count += 1 }
                play(count)
                for x in left where abs(x) > peak { peak = abs(x) }   // no array: nothing allocated here
            }
            let calls = malloc_counter_stop()
            print("allocator calls (\(name), two engines of a pipeline) in 1500 blocks of \(block) at 48 kHz: \(calls); peak \(peak)")
            XCTAssertEqual(calls, 0, name)
            XCTAssertEqual(controls.pipelineFrames, synthesis.pipelineFrames, "\(name): frames put and taken")
            XCTAssertGreaterThan(peak, 1e-3, "\(name): silent")
        }
    }

    /// v2's ten reverb impulse responses computed side by side (what `WeightStore` asks for)
    /// equal the one-core computation, bit for bit.
    func testReverbsComputedInParallelAreTheSame() throws {
        let file = WeightFile.v2(StructuralV2.weights())
        let serial = try PianoModel(file)
        let parallel = try PianoModel(file, parallel: { n, body in DispatchQueue.concurrentPerform(iterations: n, execute: body) })
        let differ = zip(serial.reverbImpulseResponses, parallel.reverbImpulseResponses).filter { $0.0.bitPattern != $0.1.bitPattern }.count
        print("v2 reverbs, \(serial.instruments.count) pianos × \(serial.reverbImpulseResponses.count / serial.instruments.count) samples: \(differ) differ between one core and all cores")
        XCTAssertEqual(serial.reverbImpulseResponses.count, parallel.reverbImpulseResponses.count)
        XCTAssertEqual(differ, 0)
    }

    struct FailingSink: RenderSink {
        struct Full: Error {}
        var wantsDry: Bool { false }
        var channels: Int { 1 }
        var writes = 0
        mutating func begin(sampleRate: Int, length: Int) throws {}
        mutating func write(wet: UnsafeBufferPointer<Float>, dry: UnsafeBufferPointer<Float>?) throws {
            writes += 1
            if writes == 20 { throw Full() }
        }
    }

    /// A sink that fails (a full disk) stops a two-thread render with its error; the other
    /// thread stops too (the call returns).
    func testAFailingSinkStopsBothThreads() throws {
        let model = StructuralV2.model()
        var settings = RenderSettings()
        settings.threads = 2
        settings.runner = ThreadedRenderRunner()
        var sink = FailingSink()
        let started = Date()
        XCTAssertThrowsError(try OfflineRenderer.render(midi: try Self.midi(instruments: model.instruments.count), model: model,
                                                        settings: settings, into: &sink)) { error in
            XCTAssertTrue(error is FailingSink.Full, "\(error)")
        }
        print(String(format: "two-thread render with a sink failing at its 20th block: stopped after %.2f s", Date().timeIntervalSince(started)))
        XCTAssertEqual(sink.writes, 20)
    }
}
