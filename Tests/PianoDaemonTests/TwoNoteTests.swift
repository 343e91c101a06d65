import DDSPPiano
import Foundation
import PianoDaemon
import XCTest

/// The two-note case of issue 9, many times: jackd -d dummy at 48 kHz / 256, notes 60 then 67
/// one second apart (velocity 100) sent by the JACK test client into ddsp-piano:midi_in, the
/// daemon's out_L recorded and compared, take by take, with the same engine rendering the
/// same events offline. Every take must match (so the second note has its attack), unless the
/// machine demonstrably interfered (the server skipped cycles, the sender could not deliver on
/// time, a client was thrown out): such takes are reported, never blamed on the daemon.
/// Runs quiet, then with two busy loops on the CPUs (ordinary processes: the JACK threads are
/// SCHED_FIFO and must not be disturbed by them).
/// DDSP_PIANO_TWO_NOTE_RUNS (default 50) and DDSP_PIANO_TWO_NOTE_LOADED_RUNS (default 20).
final class TwoNoteTests: XCTestCase {
    /// The daemon's engine offline, from the daemon's engine origin on, fed the events of each
    /// take as they come (absolute JACK frames).
    final class OfflineFollower {
        let engine: PianoEngine
        let origin: Int
        var out: [Float] = []
        private var block = [Float](repeating: 0, count: 256)

        init(weights: PianoWeights, instrument: Int, origin: Int) throws {
            engine = PianoEngine(weights: weights, options: Daemon.engineOptions(instrument: instrument, noise: true))
            try engine.prepare(sampleRate: 48_000, maxBlockSize: 256)
            self.origin = origin
        }

        /// Renders up to absolute frame `end` with `events` (absolute frames, sorted, none
        /// before what was rendered); returns the samples of [from, end).
        func render(to end: Int, events: [(Int, MIDIMessage)], from: Int) -> ArraySlice<Float> {
            var next = 0
            while origin + out.count < end {
                let position = out.count, n = min(256, end - origin - position)
                var blockEvents: [EngineEvent] = []
                while next < events.count && events[next].0 - origin < position + n {
                    blockEvents.append(EngineEvent(offset: max(0, events[next].0 - origin - position), message: events[next].1))
                    next += 1
                }
                block.withUnsafeMutableBufferPointer { b in
                    blockEvents.withUnsafeBufferPointer { e in engine.render(events: e, into: UnsafeMutableBufferPointer(rebasing: b[0..<n])) }
                }
                out.append(contentsOf: block[0..<n])
            }
            return out[(from - origin)..<(end - origin)]
        }
    }

    enum Verdict: String { case matches, machine, daemon }

    func testSecondNoteAlwaysHasItsAttack() throws {
        let env = ProcessInfo.processInfo.environment
        // 25 + 10 runs in CI (its 30-minute budget); the variables ask for more on a soak.
        let quietRuns = Int(env["DDSP_PIANO_TWO_NOTE_RUNS"] ?? "") ?? 25
        let loadedRuns = Int(env["DDSP_PIANO_TWO_NOTE_LOADED_RUNS"] ?? "") ?? 10
        let dir = try DaemonSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        // The reported case used dafx22's 2018 piano; every clone has the bundled model.
        let (weightsURL, weights): (URL, PianoWeights)
        if let real = try? DaemonSupport.realWeights(in: dir) { (weightsURL, weights) = real } else { (weightsURL, weights) = try DaemonSupport.bundledWeights() }
        let piano = min(9, weights.instruments.count - 1)
        let jack = try JackServer(dir: dir)
        try jack.start()
        defer { jack.stop() }

        var tally: [String: [Verdict: Int]] = [:]
        var worstSNR = Double.infinity, attackRatios: [Double] = []
        for (phase, runs) in [("quiet", quietRuns), ("loaded", loadedRuns)] where runs > 0 {
            var burners: [Process] = []
            if phase == "loaded" {
                for _ in 0..<ProcessInfo.processInfo.activeProcessorCount {
                    let b = Process()
                    b.executableURL = URL(fileURLWithPath: "/bin/sh")
                    b.arguments = ["-c", "while :; do :; done"]
                    try b.run()
                    burners.append(b)
                }
            }
            defer { for b in burners { b.terminate(); b.waitUntilExit() } }
            var done = 0
            while done < runs {
                let daemon = try DaemonProcess(arguments: ["--weights", weightsURL.path, "--width", "0", "--piano", String(piano), "--connect-audio", "none",
                                                           "--connect-midi", "none"], dir: dir, environment: jack.environment)
                defer { _ = daemon.stop() }
                XCTAssertTrue(daemon.waitReady(60), daemon.output)
                guard DaemonSupport.waitUntil(30, { (try? daemon.status()["engine origin"]).flatMap { Int($0) } ?? -1 >= 0 }),
                      let origin = Int((try? daemon.status()["engine origin"]) ?? "") else {
                    XCTFail("the daemon did not start playing: \(daemon.output)"); return
                }
                let follower = try OfflineFollower(weights: weights, instrument: piano, origin: origin)
                // Up to 10 takes per daemon; a fresh one after the server skipped its cycles.
                for _ in 0..<min(10, runs - done) {
                    done += 1
                    let before = try daemon.status()
                    let sampler = CPUSampler(pids: [daemon.process.processIdentifier, jack.pid ?? 0])
                    let take = try JackEndToEndTests.play(jack, dir: dir, seconds: 2.6, notes: ["60:300:1800", "67:1300:900"])
                    let after = try daemon.status()
                    var report = MachineReport()
                    report.client = take.report
                    func delta(_ key: String) -> Int { (Int(after[key] ?? "") ?? 0) - (Int(before[key] ?? "") ?? 0) }
                    report.xruns = delta("xruns")
                    report.skippedFrames = delta("skipped frames")
                    report.lateCallbacks = delta("late callbacks")
                    report.droppedEvents = delta("dropped events")
                    sampler.measure(into: &report)
                    let originNow = Int(after["engine origin"] ?? "") ?? -1

                    var verdict = Verdict.matches, snr = 0.0, ratio = 0.0
                    if take.notes.count == 2 && originNow == origin && take.samples.count > 0 {
                        var events: [(Int, MIDIMessage)] = []
                        for n in take.notes {
                            events.append((n.on, .noteOn(channel: 0, pitch: UInt8(n.pitch), velocity: 100)))
                            events.append((n.off, .noteOff(channel: 0, pitch: UInt8(n.pitch), velocity: 0)))
                        }
                        events.sort { $0.0 < $1.0 }
                        let offline = follower.render(to: take.startFrame + take.samples.count, events: events, from: take.startFrame)
                        var signal = 0.0, noise = 0.0
                        for (a, b) in zip(take.samples, offline) { signal += Double(b) * Double(b); noise += Double(a - b) * Double(a - b) }
                        snr = 10 * log10(signal / max(noise, 1e-30))
                        // The second note's attack: peak over its first 100 ms, recorded vs offline.
                        let on2 = take.notes[1].on - take.startFrame
                        let window = on2..<min(take.samples.count, on2 + 4800 + 240)
                        let rec = take.samples[window].map { abs($0) }.max() ?? 0
                        let off = offline[(offline.startIndex + window.lowerBound)..<(offline.startIndex + window.upperBound)].map { abs($0) }.max() ?? 1
                        ratio = Double(rec / max(off, 1e-9))
                        attackRatios.append(ratio)
                        worstSNR = min(worstSNR, snr)
                        if snr < 60 { verdict = report.machineTrouble.isEmpty ? .daemon : .machine }
                    } else {
                        // An engine origin that moved means JACK's clock and the cycles it gave the
                        // daemon parted (cycles skipped, or the clock re-timed backwards after an
                        // xrun, which the skipped-frames counter does not count): the server's doing.
                        verdict = report.machineTrouble.isEmpty && originNow == origin ? .daemon : .machine
                    }
                    // Our callback overrunning its period is ours, unless the CPUs were taken away.
                    if report.lateCallbacks > 0 && verdict == .matches && !report.busy { verdict = .daemon }
                    tally[phase, default: [:]][verdict, default: 0] += 1
                    if verdict != .matches || report.lateCallbacks > 0 {
                        print("two notes, \(phase) take \(done): \(verdict.rawValue): engine origin \(origin) -> \(originNow), SNR \(String(format: "%.1f", snr)) dB, second attack \(String(format: "%.3f", ratio)) of the offline render; \(report.summary)"
                              + (report.machineTrouble.isEmpty ? "" : "; machine: \(report.machineTrouble.joined(separator: ", "))"))
                    }
                    XCTAssertNotEqual(verdict, .daemon, "take \(done) (\(phase)): the daemon's output differs with no interference from the machine; \(report.summary)\n\(daemon.output)")
                    if originNow != origin { break }   // the server skipped cycles: a fresh daemon
                }
            }
        }
        let line = tally.keys.sorted().map { phase in
            "\(phase): " + [Verdict.matches, .machine, .daemon].map { "\($0.rawValue) \(tally[phase]?[$0] ?? 0)" }.joined(separator: ", ")
        }.joined(separator: "; ")
        print("two-note JACK takes (\(weights.instruments[piano])): \(line); worst SNR against the offline render \(String(format: "%.1f", worstSNR)) dB; "
              + "second-note attack / offline: min \(String(format: "%.4f", attackRatios.min() ?? 0)), max \(String(format: "%.4f", attackRatios.max() ?? 0))")
        XCTAssertEqual(tally.values.reduce(0) { $0 + ($1[.daemon] ?? 0) }, 0)
        let quietMachine = tally["quiet"]?[.machine] ?? 0
        if quietMachine > quietRuns / 2 {
            print("two-note JACK takes: the machine interfered with \(quietMachine) of \(quietRuns) quiet takes; too busy to judge the daemon")
        }
    }
}
