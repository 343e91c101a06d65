import DDSPPiano
import Foundation
import PianoTestKit
import XCTest

/// Real performances (../shared/midi/performance) looped through JACK MIDI into the daemon at
/// 48 kHz with 256-frame periods: no xrun, no memory growth. 60 s by default (CI);
/// DDSP_PIANO_SOAK_SECONDS=600 for the full ten minutes.
final class SoakTests: XCTestCase {
    static func bytes(_ m: MIDIMessage) -> (UInt8, UInt8, UInt8) {
        switch m {
        case let .noteOn(c, p, v): return (0x90 | c, p, v)
        case let .noteOff(c, p, v): return (0x80 | c, p, v)
        case let .controlChange(c, n, v): return (0xB0 | c, n, v)
        case let .programChange(c, p): return (0xC0 | c, p, 0)
        }
    }

    static func residentKiB(_ pid: Int32) -> Int {
        let text = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        let line = text.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
        return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
    }

    static func loadAverage() -> String {
        ((try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8)) ?? "").split(separator: " ").prefix(3).joined(separator: " ")
    }

    func testLoopedPerformancesThroughJack() throws {
        let seconds = Double(ProcessInfo.processInfo.environment["DDSP_PIANO_SOAK_SECONDS"] ?? "") ?? 60
        let dir = try DaemonSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (weightsURL, _) = try DaemonSupport.realWeights(in: dir)
        let midiDir = TestKit.shared.appendingPathComponent("midi/performance")
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: midiDir.path)) ?? []).filter { $0.hasSuffix(".mid") }.sorted()
        guard !names.isEmpty else { print("skipped: no MIDI corpus at \(midiDir.path)"); throw XCTSkip("no MIDI corpus") }

        // The performances one after another (1 s apart), looped to fill the run; all notes
        // and pedals released between files so nothing carries over.
        var lines: [String] = []
        var offset = 0.0, notes = 0
        var used = Set<String>()
        let rate = 48000.0
        outer: while true {
            for name in names {
                guard let file = try? MIDIFile(bytes: [UInt8](try Data(contentsOf: midiDir.appendingPathComponent(name)))) else { continue }
                var last = 0.0
                for e in file.events {
                    let t = offset + e.time
                    if t > seconds - 2 { break }
                    let (s, a, b) = Self.bytes(e.message)
                    if (s & 0xF0) == 0xC0 { continue }   // keep the piano
                    if (s & 0xF0) == 0x90 && b > 0 { notes += 1; used.insert(name) }
                    lines.append("\(Int(t * rate)) \(s) \(a) \(b)")
                    last = max(last, e.time)
                }
                offset += last + 1
                for ch in 0..<16 { lines.append("\(Int(min(offset, seconds - 1.5) * rate)) \(0xB0 | ch) 123 0"); lines.append("\(Int(min(offset, seconds - 1.5) * rate)) \(0xB0 | ch) 64 0") }
                if offset >= seconds - 2 { break outer }
            }
        }
        let eventsFile = dir.appendingPathComponent("events.txt")
        try lines.joined(separator: "\n").write(to: eventsFile, atomically: true, encoding: .utf8)

        let jack = try JackServer(dir: dir)
        try jack.start()
        defer { jack.stop() }
        let daemon = try DaemonProcess(arguments: ["--weights", weightsURL.path, "--width", "0", "--connect-audio", "system", "--connect-midi", "none"],
                                       dir: dir, environment: jack.environment)
        defer { _ = daemon.stop() }
        XCTAssertTrue(daemon.waitReady(60), daemon.output)
        XCTAssertTrue(DaemonSupport.waitUntil(30) { (try? daemon.status()["audio"])?.hasPrefix("jack ddsp-piano") ?? false }, daemon.output)

        let sampler = CPUSampler(pids: [daemon.process.processIdentifier, jack.pid ?? 0])
        let p = Process()
        p.executableURL = try TestKit.executable("jack-test-client")
        p.arguments = ["ddsp-piano", "-", String(seconds), "--events", eventsFile.path]
        p.environment = jack.environment
        let pipe = Pipe()
        p.standardOutput = pipe
        try p.run()
        // Memory after the first tenth (buffers touched, steady state), then at the end.
        Thread.sleep(forTimeInterval: max(5, seconds / 10))
        let early = Self.residentKiB(daemon.process.processIdentifier)
        let xrunsEarly = Int((try? daemon.status()["xruns"]) ?? "") ?? -1
        var peakLoad = 0.0
        while p.isRunning {
            Thread.sleep(forTimeInterval: 1)
            let load = Double((try? daemon.status()["callback cpu load"])?.dropLast() ?? "") ?? 0
            peakLoad = max(peakLoad, load)
        }
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertEqual(p.terminationStatus, 0, output)
        let late = Self.residentKiB(daemon.process.processIdentifier)
        let status = try daemon.status()
        print("soak: \(Int(seconds)) s, \(notes) notes from \(used.count) performances (looped), xruns \(status["xruns"] ?? "?") in \(status["xrun incidents"] ?? "?") incidents (\(xrunsEarly) by the end of the first tenth), " +
              "memory locked \(status["memory locked"] ?? "?"), " +
              "late callbacks \(status["late callbacks"] ?? "?"), notes received \(status["notes received"] ?? "?"), dropped \(status["dropped events"] ?? "?"), " +
              "callback load: average up to \(peakLoad)%, single-callback peak \(status["callback peak load"] ?? "?"), load average \(Self.loadAverage()), " +
              "RSS \(early) KiB -> \(late) KiB")
        // Where the xruns came from: the daemon logs each (time since activation, its own
        // callback's figures), jackd names a client that did not finish.
        let xrunLines = daemon.output.split(separator: "\n").filter { $0.contains("xrun") }
            + ((try? String(contentsOf: jack.log, encoding: .utf8)) ?? "").split(separator: "\n")
                .filter { $0.localizedCaseInsensitiveContains("xrun") || $0.contains("not finished") }.prefix(20)
        if !xrunLines.isEmpty { print("soak xrun log:\n" + xrunLines.joined(separator: "\n")) }
        // What the machine did (the sender's report, the server's xruns and skipped cycles, other
        // processes' CPU) against what the daemon did (notes lost with no interference, notes
        // left sounding after every release reached it, its own late callbacks, its drops).
        var report = MachineReport()
        report.client = MachineReport.parseClient(output)
        report.xruns = Int(status["xruns"] ?? "") ?? 0
        report.skippedFrames = Int(status["skipped frames"] ?? "") ?? 0
        report.lateCallbacks = Int(status["late callbacks"] ?? "") ?? Int.max
        report.droppedEvents = Int(status["dropped events"] ?? "") ?? -1
        sampler.measure(into: &report)
        print("soak \(report.summary)")
        let strict = ProcessInfo.processInfo.environment["DDSP_PIANO_SOAK_STRICT"] == "1"
        let trouble = report.machineTrouble
        func judge(_ ok: Bool, _ what: String) {
            guard !ok else { return }
            if !trouble.isEmpty && !strict {
                print("soak: \(what), but the machine interfered (\(trouble.joined(separator: ", "))): not the daemon's fault, not failed")
            } else {
                XCTFail("\(what), with no interference from the machine" + (trouble.isEmpty ? "" : " (strict: \(trouble.joined(separator: ", ")))"))
            }
        }
        judge(status["notes received"] == String(notes), "the daemon received \(status["notes received"] ?? "?") of \(notes) notes")
        judge(status["active voices"] == "0", "\(status["active voices"] ?? "?") voices still sounding after the last releases")
        // Its own queues and cycles never drop at this rate: any drop is ours.
        XCTAssertEqual(report.droppedEvents, 0, "the daemon dropped events")
        // Our callback must not overrun its period. On these shared virtual machines a callback
        // very rarely takes 10x its usual time (seen once in 10 minutes: 100.5% of the period,
        // against 8-15% normally), which is preemption of the VM rather than work: one per
        // 5 minutes is allowed; more on a busy machine (other processes or the hypervisor took
        // the CPUs) is reported, not failed; strict mode (DDSP_PIANO_SOAK_STRICT=1, for a quiet
        // dedicated machine) asks for none at all, and no xrun either.
        let allowance = strict ? 0 : max(1, Int(seconds / 300))
        if report.lateCallbacks > allowance {
            if report.busy && !strict {
                print("soak: \(report.lateCallbacks) late callbacks (allowance \(allowance)) on a busy machine: not failed")
            } else {
                XCTFail("the daemon's callback overran its period \(report.lateCallbacks) times (allowance \(allowance))")
            }
        }
        if strict { XCTAssertEqual(report.xruns, 0, "xruns on a machine declared quiet") }
        XCTAssertLessThan(late - early, 2048, "resident memory grew by \(late - early) KiB")
    }
}
