import Foundation
import XCTest
import DDSPPiano
import PianoStudy

/// The streaming engine as a musician meets it: latency, no stuck notes, clean piano switches,
/// the host-rate path against an offline resampling.
final class StreamingTests: XCTestCase {
    static var weights: PianoWeights?

    func weights() throws -> PianoWeights {
        if let w = Self.weights { return w }
        let w = try Fixtures.dafx22Weights()
        Self.weights = w
        return w
    }

    func render(_ events: [TimedMessage], seconds: Double, rate: Double = 16_000, block: Int = 128, noise: Bool = true,
                instrument: Int = 9) throws -> [Float] {
        var options = PianoEngine.Options()
        options.noise = noise
        options.instrument = instrument
        return try renderEngine(try weights(), options: options, events: events, seconds: seconds, rate: rate, block: block)
    }

    static func on(_ t: Double, _ p: UInt8, _ v: UInt8 = 100) -> TimedMessage { TimedMessage(time: t, message: .noteOn(channel: 0, pitch: p, velocity: v)) }
    static func off(_ t: Double, _ p: UInt8) -> TimedMessage { TimedMessage(time: t, message: .noteOff(channel: 0, pitch: p, velocity: 0)) }
    static func cc(_ t: Double, _ c: UInt8, _ v: UInt8) -> TimedMessage { TimedMessage(time: t, message: .controlChange(channel: 0, controller: c, value: v)) }

    static func rms(_ x: ArraySlice<Float>) -> Double {
        (x.reduce(0.0) { $0 + Double($1) * Double($1) } / Double(max(1, x.count))).squareRoot()
    }

    /// From a note-on to the first sample that differs from the same stream without it.
    /// Runs on the bundled model in every clone, and on dafx22 when ../shared is there.
    func testLatencyFromEventToSound() throws {
        for (name, weights) in try Fixtures.structuralWeights() {
            var options = PianoEngine.Options()
            options.noise = false
            options.instrument = weights.instruments.count - 1
            let modelRate = Double(weights.sampleRate)
            for rate in [modelRate, 48_000.0] {
                var worst = 0.0
                let without = try renderEngine(weights, options: options, events: [], seconds: 0.6, rate: rate, block: 128)
                // Event times spread over a frame, so the frame quantisation shows.
                for k in 0..<8 {
                    let t = 0.5 + Double(k) * 0.0005 + 0.000_01
                    let with = try renderEngine(weights, options: options, events: [Self.on(t, 60)], seconds: 0.6, rate: rate, block: 128)
                    let start = Int(t * rate)
                    guard let first = (0..<with.count).first(where: { abs(with[$0] - without[$0]) > 1e-7 }) else {
                        XCTFail("no sound from the note at \(rate) Hz (\(name))"); continue
                    }
                    XCTAssertGreaterThanOrEqual(first, start - 1, "sound before its event (\(name))")
                    worst = max(worst, Double(first - start) / rate)
                }
                // By design: one frame (4 ms) of look-ahead, plus the resampler's 1 ms away from
                // the model's rate; the first sample of the model's Hann crossfade is zero, hence
                // + one model sample.
                let budget = 0.004 + (rate == modelRate ? 0 : 0.001) + 1.0 / modelRate + 1 / rate
                print(String(format: "latency event → first sound (%@) at %.0f Hz: at most %.3f ms over 8 event phases (budget %.3f ms: look-ahead frame 4 ms + resampler %@)",
                             name, rate, worst * 1e3, budget * 1e3, rate == modelRate ? "0 ms" : "1 ms"))
                XCTAssertLessThanOrEqual(worst, budget, name)
            }
        }
    }

    func testNothingSticks() throws {
        let idle = try render([], seconds: 4, noise: false)
        let idleRMS = Self.rms(idle[48_000...])
        // Note-off of a note never started, and velocity-0 note-ons, change nothing.
        let ghost = try render([Self.off(0.3, 64), TimedMessage(time: 0.5, message: .noteOn(channel: 0, pitch: 70, velocity: 0))], seconds: 4, noise: false)
        XCTAssertEqual(ghost, idle)
        // A played and released note dies away (1 s release + 1.5 s reverb).
        let played = try render([Self.on(0.2, 60), Self.off(0.5, 60)], seconds: 4, noise: false)
        let tail = Self.rms(played[56_000...])
        print("after note-off: tail RMS \(tail) vs idle \(idleRMS)")
        XCTAssertLessThan(tail, max(1e-6, 2 * idleRMS))
        // Velocity-0 note-on is a note-off.
        let zeroOff = try render([Self.on(0.2, 60), TimedMessage(time: 0.5, message: .noteOn(channel: 0, pitch: 60, velocity: 0))], seconds: 4, noise: false)
        XCTAssertEqual(zeroOff, played)
        // All-notes-off respects the sustain pedal, then the pedal's release ends the notes.
        let held = try render([Self.cc(0.1, 64, 127), Self.on(0.2, 60), Self.on(0.2, 64), Self.cc(0.5, 123, 0)], seconds: 3, noise: false)
        let heldLevel = Self.rms(held[Int(1.8 * 16000)..<Int(2.2 * 16000)])
        let released = try render([Self.cc(0.1, 64, 127), Self.on(0.2, 60), Self.on(0.2, 64), Self.cc(0.5, 123, 0), Self.cc(0.6, 64, 0)], seconds: 4, noise: false)
        print("all-notes-off under the pedal: level while held \(heldLevel); after the pedal goes up: \(Self.rms(released[56_000...]))")
        XCTAssertGreaterThan(heldLevel, 10 * idleRMS + 1e-5, "sustained notes keep sounding after CC123")
        XCTAssertLessThan(Self.rms(released[56_000...]), max(1e-6, 2 * idleRMS))
        // All-sound-off silences at once, pedal or not.
        let cut = try render([Self.cc(0.1, 64, 127), Self.on(0.2, 60), Self.on(0.25, 67), Self.cc(1.0, 120, 0)], seconds: 1.5, noise: false)
        let after = Self.rms(cut[Int(1.03 * 16000)..<Int(1.2 * 16000)])
        print("all-sound-off: RMS 30-200 ms after \(after) vs idle \(idleRMS)")
        XCTAssertLessThan(after, max(1e-6, 2 * idleRMS))
        // More than 16 held notes: the lowest drop out, and come back when voices free up.
        var many: [TimedMessage] = []
        for p in 40..<60 { many.append(Self.on(0.1, UInt8(p))) }
        for p in 44..<60 { many.append(Self.off(1.0, UInt8(p))) }
        for p in 40..<44 { many.append(Self.off(2.0, UInt8(p))) }
        let crowd = try render(many, seconds: 5, noise: false)
        let between = Self.rms(crowd[Int(1.3 * 16000)..<Int(1.9 * 16000)])
        print("20 notes held, 16 released: the 4 dropped low notes sound again (RMS \(between)); all released: tail \(Self.rms(crowd[72_000...]))")
        XCTAssertGreaterThan(between, 10 * idleRMS + 1e-5)
        XCTAssertLessThan(Self.rms(crowd[72_000...]), max(1e-6, 2 * idleRMS))
    }

    /// The largest sample-to-sample step around a piano switch, against normal playing.
    func testPianoSwitchHasNoClick() throws {
        var score: [TimedMessage] = [Self.cc(0.05, 64, 127)]
        for (i, p) in [48, 55, 60, 64, 67, 72, 76].enumerated() { score.append(Self.on(0.1 + 0.02 * Double(i), UInt8(p), 90)) }
        for k in 0..<6 { score.append(Self.on(0.6 + 0.25 * Double(k), UInt8(79 + k), 80)); score.append(Self.off(0.8 + 0.25 * Double(k), UInt8(79 + k))) }
        func maxStep(_ x: ArraySlice<Float>) -> Float {
            var m: Float = 0
            var prev = x.first ?? 0
            for v in x.dropFirst() { m = max(m, abs(v - prev)); prev = v }
            return m
        }
        let plain = try render(score, seconds: 2.5)
        var worstRatio: Float = 0
        for target in [0, 3, 5] {
            let switched = try render((score + [TimedMessage(time: 1.01, message: .programChange(channel: 0, program: UInt8(target)))]).sorted { $0.time < $1.time }, seconds: 2.5)
            let window = switched[Int(0.98 * 16000)..<Int(1.25 * 16000)]
            let atSwitch = maxStep(window)
            // Normal playing: the same music on either piano, whichever steps more.
            let other = try render(score, seconds: 2.5, instrument: target)
            let normal = max(maxStep(plain[8000...]), maxStep(other[8000...]))
            worstRatio = max(worstRatio, atSwitch / normal)
            print("switch 2018 → \(PianoWeights.dafx22Instruments[target]) while a chord sounds: largest step \(atSwitch) in the 270 ms around the switch vs \(normal) in normal playing (ratio \(atSwitch / normal))")
        }
        XCTAssertLessThanOrEqual(worstRatio, 1.0)
    }

    /// Host-rate output against a high-quality offline resampling of the 16 kHz render.
    func testHostRateMatchesOfflineResampling() throws {
        var score: [TimedMessage] = []
        for k in 0..<10 { score.append(Self.on(0.1 + 0.2 * Double(k), UInt8(48 + 3 * k), 90)); score.append(Self.off(0.35 + 0.2 * Double(k), UInt8(48 + 3 * k))) }
        let base = try render(score, seconds: 3, rate: 16_000, noise: false)
        // The streaming resampler delays by exactly 16 model samples (1 ms): delay the 16 kHz
        // render by as much before resampling it offline, so the two line up at any rate.
        let delayed = [Float](repeating: 0, count: StreamingResampler.delayInputFrames) + base
        for rate in [44_100.0, 48_000.0, 96_000.0] {
            let host = try render(score, seconds: 3, rate: rate, noise: false)
            let reference = try OfflineResampler.resample(delayed, from: 16_000, to: rate)
            let n = min(host.count, reference.count) - Int(0.05 * rate)
            var signal = 0.0, error = 0.0
            for i in Int(0.05 * rate)..<n {
                let r = Double(reference[i]), h = Double(host[i])
                signal += r * r; error += (h - r) * (h - r)
            }
            let snr = 10 * log10(signal / max(error, 1e-30))
            print(String(format: "host rate %.0f Hz vs offline soxr VHQ resampling of the 16 kHz render: SNR %.1f dB", rate, snr))
            XCTAssertGreaterThan(snr, 50)
        }
    }
}
