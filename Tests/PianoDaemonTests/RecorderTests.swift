import Atomics
import CMallocCounter
import DDSPPiano
import Foundation
import PianoDaemon
import PianoIO
import PianoLive
import PianoTestKit
import XCTest

/// The recorder (issue 14, item 4): the takes archive (every take as a MIDI file, stamped on the
/// audio thread at engine samples), `ctl takes`, `ctl record start/stop` (the output through a
/// lock-free ring and a writer thread to WAV), and the real-time rule with both on.
final class RecorderTests: XCTestCase {
    static func snr(_ a: ArraySlice<Float>, _ reference: ArraySlice<Float>) -> (db: Double, exact: Int, maxError: Float) {
        var s = 0.0, n = 0.0, exact = 0, worst: Float = 0
        for (x, y) in zip(a, reference) {
            s += Double(y) * Double(y); n += Double(x - y) * Double(x - y)
            if x == y { exact += 1 }
            worst = max(worst, abs(x - y))
        }
        return (n == 0 ? .infinity : 10 * log10(s / n), exact, worst)
    }

    /// The daemon on the null clock plays notes, pedal and a program change sent through
    /// `ctl midi` while `ctl record` records its output; the take ends after 1 s of silence and
    /// is archived; `ddsp-piano render --live` of the take (its piano, rate and pre-roll, all
    /// read from the take) equals the recording.
    func testTakeIsArchivedListedAndReRendersToTheRecording() throws {
        let dir = try DaemonSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (weights, _) = try DaemonSupport.bundledWeights()
        let takesDir = dir.appendingPathComponent("takes")
        let d = try DaemonProcess(arguments: ["--audio", "null", "--sample-rate", "16000", "--weights", weights.path,
                                              "--piano", "0", "--take-silence", "1", "--takes-dir", takesDir.path], dir: dir)
        defer { _ = d.stop() }
        XCTAssertTrue(d.waitReady(), d.output)
        XCTAssertEqual(try d.status()["takes"], "\(takesDir.path), ending after 1 s of silence")
        XCTAssertEqual(try d.ctl("takes"), ["0 takes in \(takesDir.path)"])

        let wav = dir.appendingPathComponent("rec.wav")
        let started = try d.ctl("record start \(wav.path)")
        print("record start: \(started)")
        XCTAssertEqual(started, ["recording to \(wav.path) (2 channels, 16000 Hz, 32-bit float)"])
        XCTAssertThrowsError(try d.ctl("record start \(dir.path)/other.wav")) { e in
            XCTAssertTrue("\(e)".contains("already recording to \(wav.path)"), "\(e)")
        }
        usleep(300_000)
        for (line, pause) in [("90 3C 64", 250), ("90 40 50", 200), ("B0 40 7F", 300), ("80 3C 00", 50), ("80 40 00", 300),
                              ("B0 40 00", 200), ("C0 01", 150), ("90 43 70", 400), ("80 43 00", 0)] {
            XCTAssertEqual(try d.ctl("midi " + line).count, 1)
            usleep(UInt32(pause * 1000))
        }
        // The take ends 1 s (engine time) after the last note-off, with nothing held.
        var listed: [String] = []
        XCTAssertTrue(DaemonSupport.waitUntil(60) {
            listed = (try? d.ctl("takes")) ?? []
            return listed.first == "1 take in \(takesDir.path)"
        }, "\(listed) \(d.output)")
        print("ctl takes: \(listed)")
        usleep(500_000)
        let stopped = try d.ctl("record stop")
        print("record stop: \(stopped)")
        XCTAssertThrowsError(try d.ctl("record stop")) { XCTAssertTrue("\($0)".contains("not recording"), "\($0)") }
        // An existing file is refused in one line, and left as it was.
        let before = try Data(contentsOf: wav)
        XCTAssertThrowsError(try d.ctl("record start \(wav.path)")) { e in
            XCTAssertTrue("\(e)".contains("\(wav.path) exists: not overwritten"), "\(e)")
            XCTAssertFalse("\(e)".contains("\n"))
        }
        XCTAssertThrowsError(try d.ctl("record pause")) { XCTAssertTrue("\($0)".contains("record takes 'start FILE.wav' or 'stop'"), "\($0)") }
        XCTAssertEqual(try Data(contentsOf: wav), before)
        let status = try d.status()
        XCTAssertEqual(status["recording"], "no")
        XCTAssertEqual(status["recording overruns"], "0")
        XCTAssertEqual(status["take events lost"], "0")

        guard let reply = stopped.first,
              let m = reply.range(of: #"(\d+) frames .* from engine sample (\d+), overruns (\d+) frames"#, options: .regularExpression) else {
            return XCTFail("record stop: \(stopped)")
        }
        let numbers = reply[m].split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }
        let (frames, recordStart, overruns) = (numbers[0], numbers[numbers.count - 2], numbers[numbers.count - 1])
        XCTAssertEqual(overruns, 0)

        // The take: its notes, its meta events, its name.
        let names = try FileManager.default.contentsOfDirectory(atPath: takesDir.path)
        XCTAssertEqual(names.count, 1, "\(names)")
        let name = names[0]
        XCTAssertNotNil(name.range(of: #"^\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d_piano-fluidr3-bright-yamaha-grand\.mid$"#, options: .regularExpression), name)
        let take = takesDir.appendingPathComponent(name)
        let bytes = [UInt8](try Data(contentsOf: take))
        let midi = try MIDIFile(bytes: bytes)
        let text = String(decoding: bytes.map { $0 >= 0x20 && $0 < 0x7F ? $0 : 0x0A }, as: UTF8.self)
        for expected in ["ddsp-piano take", "piano 0 (fluidr3-bright-yamaha-grand)", "model ", "gain_db 0.0",
                         "velocity_curve linear", "sample_rate 16000", "engine_sample ", "take start"] {
            XCTAssertTrue(text.contains(expected), "meta event '\(expected)' in \(text)")
        }
        guard let r = text.range(of: #"engine_sample (\d+)"#, options: .regularExpression),
              let origin = Int(text[r].split(separator: " ")[1]) else { return XCTFail("no engine_sample in \(text)") }
        let ons = midi.events.compactMap { e -> (Double, UInt8, UInt8)? in
            if case let .noteOn(_, p, v) = e.message, v > 0 { return (e.time, p, v) } else { return nil }
        }
        XCTAssertEqual(ons.map(\.1), [60, 64, 67])
        XCTAssertEqual(ons.map(\.2), [100, 80, 112], "velocities as played (linear curve)")
        let programs = midi.events.compactMap { e -> UInt8? in if case let .programChange(_, p) = e.message { return p } else { return nil } }
        XCTAssertEqual(programs, [0, 1], "the take's piano at its start, then the program change played")
        let pedals = midi.events.filter { if case .controlChange(_, 64, _) = $0.message { return true } else { return false } }.count
        XCTAssertEqual(pedals, 2)
        XCTAssertEqual(ons[0].0 * 16000, 0.5, accuracy: 1e-6, "the first note at tick 1, the middle of the take's first sample")
        let sent = [0.0, 0.25, 1.45]   // the ctl pauses before each note-on
        for (i, on) in ons.enumerated() {
            print(String(format: "take note %d at %.4f s (sent %.2f s after the first)", on.1, on.0, sent[i]))
        }
        // Where the notes land follows the ctl commands' times only when the null clock kept real
        // time (a debug build does not: it renders slower, and each cycle takes what came meanwhile).
        let lateCycles = Int(status["xruns"] ?? "") ?? -1
        if lateCycles == 0 {
            XCTAssertEqual(ons[1].0, 0.25, accuracy: 0.1, "the second note where it was played (ctl timing)")
        } else {
            print("the null clock fell behind real time (\(lateCycles) late cycles): the ctl timing is not checked")
        }
        XCTAssertTrue(listed[1].hasPrefix(name), listed[1])
        XCTAssertTrue(listed[1].hasSuffix("3 notes"), listed[1])

        // The recording: valid WAV at the daemon's rate.
        let recorded = try AudioFile.read(wav)
        XCTAssertEqual(recorded.sampleRate, 16000)
        XCTAssertEqual(recorded.channels, 2, "the daemon's stereo image")
        XCTAssertEqual(recorded.frames, frames)
        XCTAssertGreaterThan(origin, recordStart, "the recording started before the first note")

        // The re-render: the take's events at their engine samples, from the same engine state.
        let out = dir.appendingPathComponent("render.wav")
        let seconds = (recorded.frames - (origin - recordStart)) / 16000 + 1   // as long as the recording after the take's start
        let rr = try DaemonSupport.run(try TestKit.executable("ddsp-piano"),
                                       ["render", "--live", "--weights", weights.path, "--piano", "0", "--sample-rate", "16000",
                                        "--width", DaemonRules.shown(DaemonRules.defaultWidth),
                                        "--pre-roll", String(origin), "--duration", String(seconds), take.path, out.path])
        XCTAssertEqual(rr.status, 0, rr.output)
        let renderedFile = try AudioFile.read(out)
        XCTAssertEqual(renderedFile.channels, 2)
        let rendered = renderedFile.samples                 // interleaved L, R as the recording
        let lead = origin - recordStart                     // recording frames before the take's time 0
        let overlap = min(recorded.frames - lead, renderedFile.frames)
        let before0 = recorded.samples[0..<(2 * lead)].reduce(Float(0)) { max($0, abs($1)) }
        let (db, exact, worst) = Self.snr(recorded.samples[(2 * lead)..<(2 * (lead + overlap))], rendered[0..<(2 * overlap)])
        let peak = rendered.reduce(Float(0)) { max($0, abs($1)) }
        print(String(format: "take at engine sample %d, recording from %d (%d frames, %.2f s); before the take: peak %.3g; " +
                     "recording vs render --live --width 0.5 --pre-roll over %d frames (both channels): SNR %.1f dB, %d bit-exact, max error %.3g (render peak %.3f)",
                     origin, recordStart, frames, Double(frames) / 16000, before0, overlap, db, exact, worst, peak))
        XCTAssertEqual(overlap, recorded.frames - lead, "the render covers the whole recording after the take's start")
        XCTAssertGreaterThan(peak, 0.01, "the notes sound")
        XCTAssertEqual(exact, 2 * overlap, "the recording is the re-render, bit for bit (both channels)")
        XCTAssertLessThan(before0, 1e-4, "silence before the first note (the engine's idle output, below -80 dBFS)")

        // A second take in progress is written at shutdown (SIGTERM), and the recording closed.
        let wav2 = dir.appendingPathComponent("rec2.wav")
        _ = try d.ctl("record start \(wav2.path)")
        _ = try d.ctl("midi 90 48 60")
        usleep(300_000)
        XCTAssertEqual(d.stop(), 0, d.output)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: takesDir.path).filter { $0.hasSuffix(".mid") }.count, 2, d.output)
        let second = try AudioFile.read(wav2)
        print("at SIGTERM: \(second.frames) frames of the second recording, \(d.output.split(separator: "\n").filter { $0.contains("take written") || $0.contains("recorded") })")
        XCTAssertGreaterThan(second.frames, 0)
        XCTAssertTrue(d.output.contains("recorded \(wav2.path): \(second.frames) frames"), d.output)
    }

    /// SIGINT while recording: the WAV is complete and readable.
    func testSIGINTClosesTheRecording() throws {
        let dir = try DaemonSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let weights = try DaemonSupport.syntheticWeights(in: dir)
        let d = try DaemonProcess(arguments: ["--audio", "null", "--sample-rate", "16000", "--weights", weights.path, "--takes-dir", "none"], dir: dir)
        defer { _ = d.stop() }
        XCTAssertTrue(d.waitReady(), d.output)
        XCTAssertEqual(try d.status()["takes"], "off")
        XCTAssertThrowsError(try d.ctl("takes")) { XCTAssertTrue("\($0)".contains("takes archive is off"), "\($0)") }
        let wav = dir.appendingPathComponent("int.wav")
        _ = try d.ctl("record start \(wav.path)")
        usleep(700_000)
        kill(d.process.processIdentifier, SIGINT)
        d.process.waitUntilExit()
        XCTAssertEqual(d.process.terminationStatus, 0, d.output)
        let a = try AudioFile.read(wav)
        let line = d.output.split(separator: "\n").first { $0.contains("recorded ") } ?? ""
        print("SIGINT while recording: \(a.frames) frames (\(Double(a.frames) / 16000) s) in a valid WAV; log: \(line)")
        XCTAssertGreaterThan(a.frames, 0)
        XCTAssertTrue(line.contains("recorded \(wav.path): \(a.frames) frames"), String(line))
    }

    /// Ticks per quarter and tempo: one tick is half a sample, exactly, at the usual rates.
    func testTakeTimingIsExactAtUsualRates() {
        for rate in [16000, 22050, 24000, 44100, 48000, 88200, 96000, 192000] {
            let t = TakeTiming(rate: rate)
            XCTAssertTrue(t.exact, "\(rate)")
            XCTAssertEqual(t.ticksPerQuarter * 500_000, t.microsecondsPerQuarter * rate, "\(rate): a tick is 1/(2·rate) s")
            XCTAssertLessThanOrEqual(t.ticksPerQuarter, 32767)
            print("rate \(rate): \(t.ticksPerQuarter) ticks per quarter, \(t.microsecondsPerQuarter) µs per quarter (\(String(format: "%.2f", 6e7 / Double(t.microsecondsPerQuarter))) bpm)")
        }
    }

    /// The audio thread with the takes archive on and a recording running: no allocator call,
    /// while a consumer thread drains the ring; then with nobody draining: the full ring and
    /// the full take queue are counted (overruns, lost events), never waited on. Like
    /// `AudioCoreTests`, meaningful in a release build (CI's `swift test -c release`): an
    /// unoptimised build's engine calls the allocator on its own.
    func testProcessDoesNotAllocateWhileRecording() throws {
        let (_, weights) = try DaemonSupport.bundledWeights()
        let core = AudioCore(recorderCapacity: 1 << 16, takeCapacity: AudioCore.daemonTakeCapacity)   // 128 cycles of stereo: overruns once nobody drains
        let engine = try AudioCoreTests.engine(weights)
        core.install(engine: engine)
        core.install(router: MIDIRouter(instruments: weights.instruments.count))
        let driver = NullDriver(core: core, sampleRate: 48_000, blockSize: 256)
        driver.warmUp(engine: engine)
        core.takesOn.store(true, ordering: .relaxed)
        let ring = core.recorder
        ring.channels.store(2, ordering: .relaxed)
        ring.request.wrappingIncrement(ordering: .releasing)   // recording

        let draining = ManagedAtomic<Bool>(true)
        let done = ManagedAtomic<Bool>(false)
        let drained = ManagedAtomic<Int>(0)
        let consumer = Thread {
            let buffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: 8192)
            defer { buffer.deallocate() }
            while !done.load(ordering: .acquiring) {
                if draining.load(ordering: .relaxed) {
                    drained.wrappingIncrement(by: ring.read(into: buffer, frameWidth: 2), ordering: .relaxed)
                    while core.takeEvents.pop() != nil {}
                }
                usleep(500)
            }
        }
        consumer.start()
        var cycles = 0
        malloc_counter_start()
        for step in 0..<400 {
            if step % 10 == 0 { core.controlMIDIQueue.push(AudioCoreTests.midi(0x90, UInt8(40 + step % 40), 90)) }
            if step % 10 == 5 { core.controlMIDIQueue.push(AudioCoreTests.midi(0x80, UInt8(40 + (step - 5) % 40), 0)) }
            if step % 100 == 0 { core.controlMIDIQueue.push(AudioCoreTests.midi(0xB0, 64, step % 200 == 0 ? 127 : 0)) }
            if step == 200 { draining.store(false, ordering: .relaxed) }   // nobody drains: the ring fills
            driver.cycle(at: monotonicNanoseconds())
            cycles += 1
            if cycles % 8 == 0 { usleep(200) }
        }
        let calls = malloc_counter_stop()
        done.store(true, ordering: .releasing)
        while consumer.isExecuting { usleep(1000) }
        let recorded = ring.recordedFrames.load(ordering: .relaxed), over = ring.overrunFrames.load(ordering: .relaxed)
        print("AudioCore.process with takes on and recording (stereo ring of \(ring.capacity) floats): \(cycles) cycles of 256, " +
              "\(recorded) frames into the ring, \(drained.load(ordering: .relaxed) / 2) drained, overruns \(over) frames, " +
              "take events lost \(core.stats.takeEventsLost.load(ordering: .relaxed)): allocator calls \(calls)")
        XCTAssertEqual(calls, 0, "the audio thread called the allocator")
        XCTAssertEqual(recorded + over, cycles * 256, "every frame recorded or counted")
        XCTAssertGreaterThan(over, 0, "the undrained ring overran (counted)")
        XCTAssertEqual(ring.acknowledged.load(ordering: .relaxed), ring.request.load(ordering: .relaxed))
        XCTAssertEqual(ring.startSample.load(ordering: .relaxed), 0)
    }
}
