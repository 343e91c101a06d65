import DDSPPiano
import Foundation
import PianoDaemon
import PianoTestKit
import XCTest

/// The latency the daemon publishes to JACK (its latency callback) is the engine's, measured.
final class JackLatencyTests: XCTestCase {
    /// From a note-on at a sample offset to the first sample that differs from the same stream
    /// without it, over 32 offsets across a model frame, through the AudioCore as JACK MIDI
    /// arrives: within [0, latencySamples], the range published to JACK.
    /// Runs in every clone.
    func testPublishedLatencyRangeHoldsTheMeasuredOne() throws {
        let (_, weights) = try DaemonSupport.bundledWeights()
        func render(noteAt: Int?) throws -> (out: [Float], max: Int) {
            let core = AudioCore()
            var options = Daemon.engineOptions(instrument: 0, noise: false)
            options.warmUpFrames = 8
            let engine = PianoEngine(weights: weights, options: options)
            try engine.prepare(sampleRate: 48_000, maxBlockSize: 256)
            core.install(engine: engine)
            core.install(router: MIDIRouter(instruments: weights.instruments.count))
            var out = [Float](repeating: 0, count: 256 * 94)   // whole cycles, about 0.5 s
            var position = 0
            out.withUnsafeMutableBufferPointer { o in
                while position + 256 <= o.count {
                    core.process(frames: 256, cycleStart: monotonicNanoseconds(), period: 5_333_333, position: position,
                                 left: o.baseAddress! + position, right: nil) { c in
                        if let t = noteAt, t >= position && t < position + 256 { c.addRaw(offset: t - position, status: 0x90, data1: 60, data2: 100) }
                    }
                    position += 256
                }
            }
            return (out, core.latencySamples)
        }
        let without = try render(noteAt: nil)
        var measured: [Int] = []
        let frame = 48_000 / 250
        for k in 0..<32 {
            let t = 12_000 + k * frame / 32
            let with = try render(noteAt: t)
            guard let first = (0..<with.out.count).first(where: { with.out[$0] != without.out[$0] }) else { XCTFail("no sound"); continue }
            measured.append(first - t)
        }
        print("latency event -> first changed sample at 48 kHz over 32 offsets in a model frame: measured \(measured.min()!)...\(measured.max()!) samples; published to JACK [0 \(without.max)]")
        XCTAssertGreaterThanOrEqual(measured.min()!, 0, "never before the event")
        XCTAssertLessThanOrEqual(measured.max()!, without.max, "never later than published")
    }

    /// "PORT\n\tport playback latency = [ a b ] frames\n\tport capture latency = [ a b ] frames"
    /// of `jack_lsp -l`, per port.
    static func latencies(_ text: String) -> [String: (playback: [Int], capture: [Int])] {
        var d: [String: (playback: [Int], capture: [Int])] = [:]
        var port = ""
        for line in text.split(separator: "\n") {
            if !line.hasPrefix(" ") && !line.hasPrefix("\t") { port = String(line); d[port] = ([], []); continue }
            guard let open = line.firstIndex(of: "["), let close = line.firstIndex(of: "]") else { continue }
            let numbers = line[line.index(after: open)..<close].split(separator: " ").compactMap { Int($0) }
            if line.contains("playback latency") { d[port]?.playback = numbers }
            if line.contains("capture latency") { d[port]?.capture = numbers }
        }
        return d
    }

    static func jackLsp(_ jack: JackServer) throws -> String {
        let p = Process()
        p.executableURL = DaemonSupport.tool("jack_lsp")!
        p.arguments = ["-l"]
        p.environment = jack.environment
        let pipe = Pipe()
        p.standardOutput = pipe
        try p.run()
        let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        return text
    }

    /// Under `jackd -d dummy` (48 kHz, 256 frames) with out_L/out_R connected to system:playback:
    /// jack_lsp -l shows, by JACK's rules, the outputs' capture latency = our latency range
    /// [min max] (nothing feeds midi_in: its capture latency is 0) and midi_in's playback latency
    /// = the system playback ports' latency + ours; "max" equals the daemon's reported
    /// "latency samples".
    func testLatencyPublishedToJack() throws {
        let dir = try DaemonSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (weightsURL, weights) = try DaemonSupport.bundledWeights()
        let jack = try JackServer(dir: dir)
        try jack.start()
        defer { jack.stop() }
        let daemon = try DaemonProcess(arguments: ["--weights", weightsURL.path, "--width", "0", "--connect-audio", "system", "--connect-midi", "none"],
                                       dir: dir, environment: jack.environment)
        defer { _ = daemon.stop() }
        XCTAssertTrue(daemon.waitReady(60), daemon.output)
        XCTAssertTrue(DaemonSupport.waitUntil(30) { (try? daemon.status()["connections out_R"]) == "system:playback_2" }, daemon.output)
        let status = try daemon.status()
        guard let reported = Int(status["latency samples"] ?? "") else { XCTFail("no latency in status"); return }
        // The same engine here; our least latency is 0 (JackDriver.ownLatency).
        let engine = PianoEngine(weights: weights, options: Daemon.engineOptions(instrument: 0, noise: true))
        try engine.prepare(sampleRate: 48_000, maxBlockSize: 256)
        XCTAssertEqual(engine.latencySamples, reported)
        let least = 0

        var ports: [String: (playback: [Int], capture: [Int])] = [:]
        var text = ""
        let published = DaemonSupport.waitUntil(10) {
            text = (try? Self.jackLsp(jack)) ?? ""
            ports = Self.latencies(text)
            return ports["ddsp-piano:out_L"]?.capture == [least, reported]
        }
        print("jack_lsp -l:\n" + text.split(separator: "\n").filter { !$0.hasPrefix("jtc") }.joined(separator: "\n"))
        let system = ports["system:playback_1"]?.playback ?? []
        print("daemon latency samples \(reported) (least \(least)); ddsp-piano:out_L capture \(ports["ddsp-piano:out_L"]?.capture ?? []), "
              + "out_R capture \(ports["ddsp-piano:out_R"]?.capture ?? []), out_L playback \(ports["ddsp-piano:out_L"]?.playback ?? []), "
              + "midi_in playback \(ports["ddsp-piano:midi_in"]?.playback ?? []), midi_in capture \(ports["ddsp-piano:midi_in"]?.capture ?? []); system:playback_1 playback \(system)")
        XCTAssertTrue(published, text)
        XCTAssertEqual(ports["ddsp-piano:out_L"]?.capture, [least, reported])
        XCTAssertEqual(ports["ddsp-piano:out_R"]?.capture, [least, reported])
        XCTAssertEqual(ports["ddsp-piano:midi_in"]?.capture, [0, 0])
        XCTAssertEqual(system.count, 2)
        if system.count == 2 {
            XCTAssertEqual(ports["ddsp-piano:out_L"]?.playback, system, "the outputs' playback latency is what they feed")
            XCTAssertEqual(ports["ddsp-piano:midi_in"]?.playback, [system[0] + least, system[1] + reported])
        }
    }
}
