import CMallocCounter
import DDSPPiano
import Foundation
import PianoDaemon
import PianoTestKit
import XCTest

/// A change of the server's period keeps the engine: its held notes and reverb tail go on.
/// The engine is prepared once for the largest period (`JackDriver.engineBlockSize`) and the
/// AudioCore splits any larger cycle, so the output is the same samples whatever the periods.
final class JackBufferSizeTests: XCTestCase {
    /// Events at absolute sample positions, played into an AudioCore the way JACK MIDI arrives
    /// (each in the cycle that holds it, at its offset), cycles of the given sizes in turn.
    static func play(_ weights: PianoWeights, prepared: Int, periods: [Int], total: Int,
                     events: [(Int, Raw)], countAllocations: Bool = false) throws -> (out: [Float], allocations: Int) {
        let core = AudioCore()
        let engine = try AudioCoreTests.engine(weights, instrument: 1, block: prepared)
        core.install(engine: engine)
        core.install(router: MIDIRouter(instruments: weights.instruments.count))
        let largest = max(periods.max() ?? 1, 1)
        let buffer = UnsafeMutablePointer<Float>.allocate(capacity: largest)
        defer { buffer.deallocate() }
        buffer.initialize(repeating: 0, count: largest)
        var out = [Float](repeating: 0, count: total)
        var position = 0, k = 0, next = 0, calls = 0
        while position < total {
            let n = min(periods[k % periods.count], total - position)
            k += 1
            if countAllocations && position > 0 { malloc_counter_start() }
            core.process(frames: n, cycleStart: monotonicNanoseconds(), period: UInt64(n) * 1_000_000_000 / 48_000,
                         position: position, left: buffer, right: nil) { c in
                while next < events.count && events[next].0 < position + n {
                    let (at, m) = events[next]
                    c.addRaw(offset: at - position, status: m.status, data1: m.data1, data2: m.data2)
                    next += 1
                }
            }
            if countAllocations && position > 0 { calls += Int(malloc_counter_stop()) }
            out.withUnsafeMutableBufferPointer { o in (o.baseAddress! + position).update(from: buffer, count: n) }
            position += n
        }
        return (out, calls)
    }

    /// Sustain pedal and chords over changing periods (256 → 128 → 512 → 1024 → 64 → 2048 →
    /// 300, cycles larger than the engine was prepared for among them): sample for sample the
    /// same as a fixed 256-frame period, and no allocation on the way. Runs in every clone.
    func testAudioCorePeriodChangesKeepTheSamples() throws {
        let (_, weights) = try DaemonSupport.bundledWeights()
        let total = 48_000 * 3
        // Pedal down, a chord, a note in the middle of what becomes a large cycle, pedal up
        // late (the reverb tail runs over the last period changes).
        var events: [(Int, Raw)] = [(100, Raw(0xB0, 64, 127)), (1_000, Raw(0x90, 60, 100)), (1_000, Raw(0x90, 64, 90)),
                                    (9_000, Raw(0x80, 60, 0)), (9_000, Raw(0x80, 64, 0)), (20_777, Raw(0x90, 67, 110)),
                                    (30_001, Raw(0x80, 67, 0)), (70_555, Raw(0xB0, 64, 0)), (90_123, Raw(0x90, 72, 80)),
                                    (100_999, Raw(0x80, 72, 0))]
        events.sort { $0.0 < $1.0 }
        let fixed = try Self.play(weights, prepared: 256, periods: [256], total: total, events: events).out
        // Prepared for 256 as a smaller server would have it, then cycles up to 2048 (split).
        let changing = try Self.play(weights, prepared: 256, periods: Array(repeating: 256, count: 20) + Array(repeating: 128, count: 30)
                                     + Array(repeating: 512, count: 20) + Array(repeating: 1024, count: 20) + Array(repeating: 64, count: 50)
                                     + Array(repeating: 2048, count: 10) + Array(repeating: 300, count: 1000),
                                     total: total, events: events, countAllocations: true)
        // Prepared for the largest period, as the daemon does for JACK.
        let large = try Self.play(weights, prepared: JackDriver.engineBlockSize(forPeriod: 256),
                                  periods: Array(repeating: 256, count: 40) + Array(repeating: 128, count: 100) + Array(repeating: 512, count: 1000),
                                  total: total, events: events)
        var peak: Float = 0, diffChanging: Float = 0, diffLarge: Float = 0
        for i in 0..<total {
            peak = max(peak, abs(fixed[i]))
            diffChanging = max(diffChanging, abs(changing.out[i] - fixed[i]))
            diffLarge = max(diffLarge, abs(large.out[i] - fixed[i]))
        }
        print("AudioCore across period changes: peak \(peak); largest difference from a fixed 256-frame period: \(diffChanging) (engine prepared for 256, cycles up to 2048 split), \(diffLarge) (prepared for \(JackDriver.engineBlockSize(forPeriod: 256))); allocator calls while cycling \(changing.allocations)")
        XCTAssertGreaterThan(peak, 0.01, "the notes sound")
        XCTAssertEqual(diffChanging, 0, "the same samples whatever the periods")
        XCTAssertEqual(diffLarge, 0)
        XCTAssertEqual(changing.allocations, 0, "splitting a large cycle does not allocate")
        XCTAssertEqual(JackDriver.engineBlockSize(forPeriod: 128), 8192)
        XCTAssertEqual(JackDriver.engineBlockSize(forPeriod: 16384), 16384)
    }
}

/// Through a real `jackd -d dummy` (48 kHz, 256 frames): three notes held across two changes of
/// the server's period (jack_bufsize 128, then 512), recorded from ddsp-piano:out_L and compared
/// with the same engine rendering the same events offline at a fixed block size.
final class JackBufferSizeEndToEndTests: XCTestCase {
    static func setBufferSize(_ jack: JackServer, _ frames: Int) throws {
        let b = Process()
        b.executableURL = DaemonSupport.tool("jack_bufsize")!
        b.arguments = [String(frames)]
        b.environment = jack.environment
        b.standardOutput = FileHandle.nullDevice
        try b.run()
        b.waitUntilExit()
    }

    /// What one take across period changes came to.
    struct Outcome {
        var snr = -Double.infinity, peakDifference: Float = 0, peak: Float = 0
        /// Worst 10 ms window of the held notes, recording rms / offline rms; the quietest window.
        var worstRatio = 0.0, quietest = 0.0
        var tail = 0.0
        var originBefore = 0, originAfter = 0
        var report = MachineReport()
        var followed = false
        var line = ""
        /// Per stretch between period changes: where it starts, its period, SNR against the
        /// offline render as recorded, and the shift (samples) that would line it up best.
        var stretches: [(start: Int, frames: Int, snr: Double, bestShift: Int, snrShifted: Double)] = []
    }

    static func snr(_ a: ArraySlice<Float>, _ b: ArraySlice<Float>) -> Double {
        var signal = 0.0, noise = 0.0
        for (x, y) in zip(a, b) { signal += Double(y) * Double(y); noise += Double(x - y) * Double(x - y) }
        return 10 * log10(max(signal, 1e-30) / max(noise, 1e-30))
    }

    /// One take on a running daemon: C4 and E4 held from 0.3 s to 3.8 s, G4 from 2.0 s to 3.2 s,
    /// `setPeriod` called with 128 at 1.5 s and 512 at 2.9 s after the take starts (while the
    /// notes sound), then the recording (by the stream: jack-test-client's JTC_STREAM_CLOCK)
    /// against the daemon's engine rendering the same events offline from its origin.
    static func heldNotesAcrossPeriodChanges(environment: [String: String], launcher: URL? = nil, daemon: DaemonProcess,
                                             weights: PianoWeights, piano: Int, dir: URL,
                                             setPeriod: @escaping (Int) throws -> Void) throws -> Outcome {
        var o = Outcome()
        guard DaemonSupport.waitUntil(30, { (try? daemon.status()["engine origin"]).flatMap { Int($0) } ?? -1 >= 0 }),
              let origin = Int((try? daemon.status()["engine origin"]) ?? "") else {
            XCTFail("the daemon did not start playing: \(daemon.output)"); return o
        }
        o.originBefore = origin
        let before = try daemon.status()
        let sampler = CPUSampler(pids: [daemon.process.processIdentifier])
        // The take runs on its own thread while this one changes the period.
        final class Result: @unchecked Sendable { var take: JackEndToEndTests.Take?; var error: Error? }
        let result = Result()
        let finished = DispatchSemaphore(value: 0)
        let started = Date()
        Thread {
            // Positions by the stream, not the server's frame clock, which jumps by the
            // difference of the periods at a change (jackd2 and PipeWire alike).
            var env = environment
            env["JTC_STREAM_CLOCK"] = "1"
            do {
                result.take = try JackEndToEndTests.play(environment: env, launcher: launcher, dir: dir, seconds: 5,
                                                         notes: ["60:300:3500", "64:300:3500", "67:2000:1200"])
            } catch { result.error = error }
            finished.signal()
        }.start()
        Thread.sleep(until: started.addingTimeInterval(1.5))
        try setPeriod(128)
        let at128 = DaemonSupport.waitUntil(5) { (try? daemon.status()["audio"]) == "jack ddsp-piano 48000 Hz 128 frames" }
        Thread.sleep(until: started.addingTimeInterval(2.9))
        try setPeriod(512)
        let at512 = DaemonSupport.waitUntil(5) { (try? daemon.status()["audio"]) == "jack ddsp-piano 48000 Hz 512 frames" }
        finished.wait()
        if let error = result.error { throw error }
        guard let take = result.take, take.notes.count == 3, !take.samples.isEmpty else { XCTFail("no take"); return o }
        o.followed = at128 && at512
        let after = try daemon.status()
        o.report.client = take.report
        sampler.measure(into: &o.report)
        func delta(_ key: String) -> Int { (Int(after[key] ?? "") ?? 0) - (Int(before[key] ?? "") ?? 0) }
        o.report.xruns = delta("xruns")
        o.report.lateCallbacks = delta("late callbacks")
        o.originAfter = Int(after["engine origin"] ?? "") ?? -1

        var events: [(Int, MIDIMessage)] = []
        for n in take.notes {
            events.append((n.on, .noteOn(channel: 0, pitch: UInt8(n.pitch), velocity: 100)))
            events.append((n.off, .noteOff(channel: 0, pitch: UInt8(n.pitch), velocity: 0)))
        }
        events.sort { $0.0 < $1.0 }
        let follower = try TwoNoteTests.OfflineFollower(weights: weights, instrument: piano, origin: origin)
        let offline = Array(follower.render(to: take.startFrame + take.samples.count, events: events, from: take.startFrame))
        var signal = 0.0, noise = 0.0
        for (a, b) in zip(take.samples, offline) {
            signal += Double(b) * Double(b); noise += Double(a - b) * Double(a - b)
            o.peakDifference = max(o.peakDifference, abs(a - b)); o.peak = max(o.peak, abs(b))
        }
        o.snr = 10 * log10(signal / max(noise, 1e-30))
        // Continuity: the recording's level in 10 ms windows while the notes are held, against
        // the offline render's in the same window; a gap (a fresh engine, silent cycles) would
        // drop it far below.
        let on = take.notes[0].on - take.startFrame, off = take.notes[0].off - take.startFrame
        var levels: [Double] = []
        o.worstRatio = .infinity
        var i = on + 4800
        while i + 480 <= off {
            let level = JackEndToEndTests.rms(take.samples[i..<(i + 480)])
            levels.append(level)
            o.worstRatio = min(o.worstRatio, level / max(JackEndToEndTests.rms(offline[i..<(i + 480)]), 1e-12))
            i += 480
        }
        o.quietest = levels.min() ?? 0
        o.tail = JackEndToEndTests.rms(take.samples[(off + 2400)..<min(take.samples.count, off + 12_000)])
        // Stretch by stretch (what a mismatch is: a cycle lost or repeated at a change shifts
        // everything after it).
        let bounds = [0] + take.periodChanges.map { max(0, min(take.samples.count, $0.position)) } + [take.samples.count]
        for k in 0..<(bounds.count - 1) where bounds[k + 1] - bounds[k] > 2048 {
            let a = bounds[k], b = bounds[k + 1]
            let asRecorded = snr(take.samples[a..<b], offline[a..<b])
            // The best shift over ±1024 samples, judged on the stretch's first 100 ms.
            let w = min(4800, b - a - 1024)
            var best = (shift: 0, snr: -Double.infinity)
            if w > 0 {
                for shift in -1024...1024 where a + shift >= 0 && a + shift + w <= offline.count {
                    let v = snr(take.samples[a..<(a + w)], offline[(a + shift)..<(a + shift + w)])
                    if v > best.snr { best = (shift, v) }
                }
            }
            o.stretches.append((a, k == 0 ? 256 : take.periodChanges[k - 1].frames, asRecorded, best.shift, best.snr))
        }
        o.line = String(format: "periods 256 -> 128 -> 512 with notes held: recording vs offline render SNR %.1f dB, peak difference %g (peak %g); "
                        + "held notes in 10 ms windows: quietest rms %.4f, worst ratio to the offline render's %.3f; reverb tail after the release rms %.5f; "
                        + "engine origin %d -> %d; %@", o.snr, Double(o.peakDifference), Double(o.peak), o.quietest, o.worstRatio, o.tail,
                        o.originBefore, o.originAfter, o.report.summary)
            + "; stretches: " + o.stretches.map { String(format: "from %d at %d frames: SNR %.1f dB, best shift %+d samples (SNR %.1f dB)", $0.start, $0.frames, $0.snr, $0.bestShift, $0.snrShifted) }.joined(separator: "; ")
        return o
    }

    func testBufferSizeChangesKeepHeldNotesAndMatchOfflineRender() throws {
        guard DaemonSupport.tool("jack_bufsize") != nil else {
            print("skipped: jack_bufsize is not installed (package jackd2)")
            throw XCTSkip("jack_bufsize is not installed")
        }
        let dir = try DaemonSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (weightsURL, weights) = try DaemonSupport.bundledWeights()
        let piano = weights.instruments.count - 1
        let jack = try JackServer(dir: dir)
        try jack.start()
        defer { jack.stop() }

        var verdicts: [String] = []
        for attempt in 1...3 {
            try Self.setBufferSize(jack, 256)
            let daemon = try DaemonProcess(arguments: ["--weights", weightsURL.path, "--width", "0", "--piano", String(piano), "--connect-audio", "none",
                                                       "--connect-midi", "none"], dir: dir, environment: jack.environment)
            defer { _ = daemon.stop() }
            XCTAssertTrue(daemon.waitReady(60), daemon.output)
            var o = try Self.heldNotesAcrossPeriodChanges(environment: jack.environment, daemon: daemon, weights: weights, piano: piano, dir: dir) {
                try Self.setBufferSize(jack, $0)
            }
            print("JACK take \(attempt): " + o.line)
            XCTAssertTrue(o.followed, "the daemon followed both changes: \(daemon.output)")
            XCTAssertFalse(daemon.output.contains("engine prepared again"), "no new engine for a new period: \(daemon.output)")
            // jackd2's frame clock moves by the new period minus the old at each change; the
            // engine origin (clock minus samples rendered) follows exactly that unless the
            // server skipped cycles, which are the machine's. (An xrun notification alone is
            // not counted: jackd2 may send one for the restart a period change makes.)
            o.report.skippedFrames = o.originAfter - o.originBefore - ((128 - 256) + (512 - 128))
            o.report.xruns = 0
            if o.report.skippedFrames == 0 && o.report.machineTrouble.isEmpty {
                XCTAssertGreaterThan(o.snr, 60, "the recording matches the offline render across the period changes")
                XCTAssertGreaterThan(o.worstRatio, 0.9, "no gap while the notes are held")
                XCTAssertGreaterThan(o.tail, 1e-4, "the reverb tail continues")
                XCTAssertEqual(try daemon.status()["notes received"], "3")
                return
            }
            // The server skipped the daemon's cycles (a busy machine): the comparison cannot
            // line up; still, nothing may have gone silent. Again with a fresh daemon.
            verdicts.append("take \(attempt): machine interfered (\(o.report.machineTrouble.joined(separator: ", ")))")
            print(verdicts.last!)
            XCTAssertGreaterThan(o.quietest, 1e-5, "no gap while the notes are held")
        }
        print("skipped the strict comparison: the machine interfered with every take: \(verdicts)")
    }
}
