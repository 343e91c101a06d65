import Foundation
import XCTest
import DDSPPiano
import PianoIO
import CMallocCounter
import PianoStudy
import PianoTestKit

/// StreamingResampler (16 kHz model rate → host rate) against an offline reference.
///
/// Reference: libsoxr VHQ linear phase, steep (passband to 7.86 kHz), one-shot, in double
/// precision (`OfflineResampler`), applied to the input delayed by the stream's 16 input samples
/// so the two line up sample for sample at every rate. It is itself checked against a direct
/// double-precision windowed-sinc interpolation (half-length 256 input samples, Kaiser β = 12).
final class ResamplerTests: XCTestCase {
    static let rates: [Double] = [44100, 48000, 96000]
    static let inRate = 16000.0
    static let delayIn = StreamingResampler.delayInputFrames

    // MARK: helpers

    /// Streams x through r in chunks of `chunk` (cycling through `chunks` when given).
    static func stream(_ r: StreamingResampler, _ x: [Float], chunk: Int = 64, chunks: [Int]? = nil) -> [Float] {
        var out = [Float]()
        out.reserveCapacity(r.maxOutputFrames(forInput: x.count) + 1)
        var buf = [Float](repeating: 0, count: r.maxOutputFrames(forInput: max(chunk, chunks?.max() ?? 0)))
        var i = 0, c = 0
        x.withUnsafeBufferPointer { xp in
            while i < x.count {
                let n = min(chunks.map { $0[c % $0.count] } ?? chunk, x.count - i)
                c += 1
                let bound = r.maxOutputFrames(forInput: n)
                let got = buf.withUnsafeMutableBufferPointer { r.process(xp.baseAddress! + i, count: n, into: $0.baseAddress!, capacity: $0.count) }
                XCTAssertLessThanOrEqual(got, bound)
                out.append(contentsOf: buf[0..<got])
                i += n
            }
        }
        return out
    }

    /// Σ partials, Double, with 20 ms raised-cosine fades: (frequency Hz, amplitude, decay 1/s).
    static func partials(_ p: [(Double, Double, Double)], seconds: Double, seed: UInt64 = 1) -> [Double] {
        var rng = SplitMix64(seed: seed)
        let n = Int(seconds * inRate)
        var x = [Double](repeating: 0, count: n)
        for (f, a, d) in p {
            let ph = rng.unit() * 2 * .pi, w = 2 * .pi * f / inRate
            for i in 0..<n { x[i] += a * exp(-d * Double(i) / inRate) * sin(w * Double(i) + ph) }
        }
        return faded(x)
    }

    static func faded(_ x: [Double]) -> [Double] {
        var x = x
        let f = Int(0.02 * inRate)
        for i in 0..<f {
            let g = 0.5 - 0.5 * cos(Double.pi * Double(i) / Double(f))
            x[i] *= g; x[x.count - 1 - i] *= g
        }
        return x
    }

    /// 30 equal tones at random frequencies in [40 Hz, 7 kHz].
    static func multitone() -> [Double] {
        var rng = SplitMix64(seed: 7)
        return partials((0..<30).map { _ in (40 + rng.unit() * 6960, 0.03, 0) }, seconds: 1)
    }

    /// Linear chirp 20 Hz → 7 kHz over 2 s: flat spectrum over the band.
    static func sweep() -> [Double] {
        let n = Int(2 * inRate), f0 = 20.0, f1 = 7000.0, T = 2.0
        return faded((0..<n).map { i in
            let t = Double(i) / inRate
            return 0.5 * sin(2 * .pi * (f0 * t + (f1 - f0) * t * t / (2 * T)))
        })
    }

    /// Piano-like: three stiff-string notes, inharmonic partials f_k = k·f0·√(1 + B k²) below 7 kHz,
    /// amplitudes falling 1/k, higher partials decaying faster.
    static func pianoLike() -> [Double] {
        var p = [(Double, Double, Double)]()
        for (f0, B) in [(110.0, 0.0002), (329.6, 0.0004), (1046.5, 0.001)] {
            var k = 1.0
            while true {
                let f = k * f0 * (1 + B * k * k).squareRoot()
                if f >= 7000 { break }
                p.append((f, 0.1 / k, 1 + 0.002 * f))
                k += 1
            }
        }
        return partials(p, seconds: 1.5, seed: 3)
    }

    /// The reference output for the stream: x delayed by the stream's delay, resampled offline.
    static func reference(_ x: [Double], to rate: Double) throws -> [Double] {
        try OfflineResampler.resample([Double](repeating: 0, count: delayIn) + x, from: inRate, to: rate)
    }

    /// SNR in dB of `y` against `ref` over ref's range [from, to).
    static func snr(_ y: [Float], _ ref: [Double], from: Int, to: Int) -> Double {
        var s = 0.0, e = 0.0
        for i in from..<to {
            s += ref[i] * ref[i]
            let d = Double(y[i]) - ref[i]
            e += d * d
        }
        return 10 * log10(s / max(e, 1e-300))
    }

    /// Streams x (plus a tail that flushes the delay) and returns the SNR against the reference,
    /// skipping 50 ms at both ends (fades, and soxr's whole-signal edges).
    static func measure(_ x: [Double], rate: Double) throws -> Double {
        let r = try StreamingResampler(inputRate: inRate, outputRate: rate, maxInputFrames: 64)
        let y = stream(r, (x + [Double](repeating: 0, count: 64)).map { Float($0) })
        let ref = try reference(x, to: rate)
        let edge = Int(0.05 * rate)
        return snr(y, ref, from: edge, to: min(y.count, ref.count) - edge)
    }

    // MARK: accuracy

    func testSNRAgainstOfflineReference() throws {
        // Measured at 44.1 / 48 / 96 kHz: 30 tones 71.4 / 71.4 / 71.4 dB, sweep 72.1 / 72.1 / 72.0,
        // piano-like 77.4 / 77.5 / 77.4 (the error is passband ripple, mostly near 7 kHz, plus images).
        // The reference itself is good to ≈ 96 dB at 44.1 kHz and ≈ 140 dB at 48/96 kHz (below).
        let signals: [(String, [Double], Double)] = [
            ("30 tones ≤ 7 kHz", Self.multitone(), 68),
            ("sweep 20 Hz–7 kHz", Self.sweep(), 68),
            ("piano-like partials ≤ 7 kHz", Self.pianoLike(), 75),
        ]
        for rate in Self.rates {
            for (name, x, floor) in signals {
                let s = try Self.measure(x, rate: rate)
                print(String(format: "resampler 16 kHz → %.0f Hz, %@: SNR %.1f dB (floor %.0f)", rate, name, s, floor))
                XCTAssertGreaterThanOrEqual(s, floor, "\(name) at \(rate)")
            }
        }
    }

    /// The soxr reference agrees with direct band-limited interpolation in double precision.
    func testReferenceMatchesDirectSincInterpolation() throws {
        let x = Self.multitone()
        let half = 256, beta = 12.0, i0b = besselI0(beta)
        for rate in Self.rates {
            let ref = try OfflineResampler.resample(x, from: Self.inRate, to: rate)
            let R = rate / Self.inRate
            // 0.1 s from the middle, far from the edges.
            let j0 = Int(0.45 * rate), j1 = Int(0.55 * rate)
            var direct = [Double](repeating: 0, count: ref.count)
            for j in j0..<j1 {
                let t = Double(j) / R, n = Int(t.rounded(.down))
                var acc = 0.0
                for m in (n - half + 1)...(n + half) {
                    let u = t - Double(m), v = u / Double(half)
                    guard abs(v) < 1 else { continue }
                    // Cut-off 7.8 kHz: passes the ≤ 7 kHz content, like soxr's 7.86 kHz passband.
                    let fc = 7800.0 / Self.inRate * 2
                    let s = u == 0 ? fc : sin(.pi * fc * u) / (.pi * u)
                    acc += x[m] * s * besselI0(beta * (1 - v * v).squareRoot()) / i0b
                }
                direct[j] = acc
            }
            let s = Self.snr(direct.map { Float($0) }, ref, from: j0, to: j1)
            // Measured 95.1 dB at 44.1 kHz (soxr's interpolated polyphase coefficients for the
            // 441/160 ratio; no soxr flag improves it), 141 dB at 48 and 96 kHz (Float rounding).
            print(String(format: "reference check at %.0f Hz: soxr VHQ vs direct sinc %.1f dB", rate, s))
            XCTAssertGreaterThanOrEqual(s, 95)
        }
    }

    /// Real model output (a reference render's wet mix, content up to 8 kHz) through the stream.
    func testRealModelAudio() throws {
        let wav = Fixtures.shared.appendingPathComponent("reference/cases/real_mozart_k265_var1_p9/wet.wav")
        guard FileManager.default.fileExists(atPath: wav.path) else {
            print("skipped: no reference audio (\(wav.path))")
            throw XCTSkip("no reference audio")
        }
        let audio = try AudioFile.read(wav)
        XCTAssertEqual(audio.sampleRate, 16000)
        let x = Array(audio.mono().prefix(16000 * 4)).map { Double($0) }
        for rate in Self.rates {
            let s = try Self.measure(x, rate: rate)
            // Measured 69.0 dB at all three rates; what error there is sits mostly in the 7–8 kHz band
            // the 1 ms filter gives up (the reference passes up to 7.86 kHz).
            print(String(format: "resampler 16 kHz → %.0f Hz, model audio (Mozart wet, 4 s): SNR %.1f dB", rate, s))
            XCTAssertGreaterThanOrEqual(s, 66)
        }
    }

    /// Magnitude at chosen frequencies and image rejection, from single tones.
    func testFrequencyResponse() throws {
        for rate in Self.rates {
            let r = try StreamingResampler(inputRate: Self.inRate, outputRate: rate, maxInputFrames: 64)
            var line = String(format: "response at %.0f Hz:", rate)
            for f in [1000.0, 7000.0, 7600.0, 7800.0] {
                let n = 16000
                let x = (0..<n).map { Float(sin(2 * .pi * f * Double($0) / Self.inRate)) }
                r.reset()
                let y = Self.stream(r, x)
                // Project onto the tone and its first image (16 kHz − f) over the steady part.
                func level(_ g: Double) -> Double {
                    var c = 0.0, s = 0.0
                    let j0 = Int(0.1 * rate), j1 = Int(0.9 * rate)
                    for j in j0..<j1 {
                        let ph = 2 * .pi * g * Double(j) / rate
                        c += Double(y[j]) * cos(ph); s += Double(y[j]) * sin(ph)
                    }
                    return 20 * log10(2 * (c * c + s * s).squareRoot() / Double(j1 - j0))
                }
                let pass = level(f), image = level(16000 - f)
                line += String(format: "  %.0f Hz %.2f dB (image %.1f dB)", f, pass, image)
                if f <= 7000 { XCTAssertEqual(pass, 0, accuracy: 0.01); XCTAssertLessThan(image, -60) }
                if f == 7600 { XCTAssertGreaterThan(pass, -2); XCTAssertLessThan(image, -15) }
            }
            print(line)
        }
    }

    // MARK: delay

    func testDelayIsOneMillisecondWithNoHiddenBuffering() throws {
        for rate in Self.rates {
            let r = try StreamingResampler(inputRate: Self.inRate, outputRate: rate, maxInputFrames: 64)
            let ms = r.delay / rate * 1000
            XCTAssertEqual(r.delay, 16 * rate / Self.inRate, accuracy: 1e-9)
            XCTAssertLessThanOrEqual(ms, 1.1)
            // Impulse at input 1000, fed one sample at a time: the output's centre of mass must sit at
            // (1000 + 16)·R, and its peak must be out once input 1016 is in.
            let n0 = 1000
            var x = [Float](repeating: 0, count: 1200)
            x[n0] = 1
            var out = [Float](), emittedAt = [Int]()
            var buf = [Float](repeating: 0, count: 8)
            for i in 0..<x.count {
                let got = x.withUnsafeBufferPointer { xp in
                    buf.withUnsafeMutableBufferPointer { r.process(xp.baseAddress! + i, count: 1, into: $0.baseAddress!, capacity: $0.count) }
                }
                out += buf[0..<got]
                emittedAt += [Int](repeating: i, count: got)
            }
            let R = rate / Self.inRate
            var m0 = 0.0, m1 = 0.0
            for (j, v) in out.enumerated() { m0 += Double(v); m1 += Double(j) * Double(v) }
            let centre = m1 / m0
            let expected = Double(n0 + Self.delayIn) * R
            let peak = out.indices.max { abs(out[$0]) < abs(out[$1]) }!
            let latencyIn = emittedAt[Int(expected.rounded(.down))] - n0
            print(String(format: "delay at %.0f Hz: %.2f output samples = %.3f ms; impulse centre %.3f (expected %.3f), peak out after %d input samples (%.2f ms)",
                         rate, r.delay, ms, centre, expected, latencyIn, Double(latencyIn) / 16))
            XCTAssertEqual(centre, expected, accuracy: 0.01)
            XCTAssertLessThanOrEqual(abs(Double(peak) - expected), 1)
            XCTAssertLessThanOrEqual(latencyIn, Self.delayIn)
        }
    }

    // MARK: streaming behaviour

    func testChunkingInvariance() throws {
        let x = Self.pianoLike().map { Float($0) }
        for rate in Self.rates {
            let small = try StreamingResampler(inputRate: Self.inRate, outputRate: rate, maxInputFrames: 64)
            let large = try StreamingResampler(inputRate: Self.inRate, outputRate: rate, maxInputFrames: 4096)
            let base = Self.stream(small, x, chunk: 64)
            var worst: Float = 0
            let runs: [(String, StreamingResampler, Int, [Int]?)] = [
                ("1", large, 1, nil), ("7", large, 7, nil), ("4096", large, 4096, nil),
                ("4096 split by a 64-frame instance", small, 4096, nil),
                ("irregular 1…300", large, 1, [1, 300, 17, 64, 3, 255, 128, 2, 99]),
            ]
            for (name, r, chunk, chunks) in runs {
                r.reset()
                let y = Self.stream(r, x, chunk: chunk, chunks: chunks)
                XCTAssertEqual(y.count, base.count, name)
                var d: Float = 0
                for i in 0..<min(y.count, base.count) { d = max(d, abs(y[i] - base[i])) }
                worst = max(worst, d)
                XCTAssertLessThanOrEqual(d, 1e-6, "chunks of \(name) at \(rate)")
            }
            // Total output count follows the rate exactly.
            XCTAssertEqual(base.count, (x.count * small.up + small.down - 1) / small.down)
            print(String(format: "chunking at %.0f Hz: max |diff| %g over chunks 64 / 1 / 7 / 4096 / irregular", rate, Double(worst)))
        }
    }

    func testProcessDoesNotAllocate() throws {
        let x = (0..<64).map { Float(sin(Double($0) * 0.3)) }
        for rate in Self.rates + [Self.inRate] {
            let r = try StreamingResampler(inputRate: Self.inRate, outputRate: rate, maxInputFrames: 64)
            let cap = r.maxOutputFrames(forInput: 64)
            let out = UnsafeMutablePointer<Float>.allocate(capacity: cap)
            defer { out.deallocate() }
            x.withUnsafeBufferPointer { xp in
                let p = xp.baseAddress!
                for _ in 0..<4 { r.process(p, count: 64, into: out, capacity: cap) }   // warm-up
                malloc_counter_start()
                var total = 0
                for _ in 0..<5000 { total &+= r.process(p, count: 64, into: out, capacity: cap) }
                r.reset()
                let mallocs = malloc_counter_stop()
                print(String(format: "allocations at %.0f Hz: %lld in 5000 process(64) calls + reset (%d frames out)", rate, mallocs, total))
                XCTAssertEqual(mallocs, 0)
            }
        }
    }

    func testIdentityWhenRatesAreEqual() throws {
        let r = try StreamingResampler(inputRate: 16000, outputRate: 16000, maxInputFrames: 64)
        XCTAssertEqual(r.delay, 0)
        XCTAssertEqual(r.maxOutputFrames(forInput: 64), 64)
        let x = Self.multitone().map { Float($0) }
        XCTAssertEqual(Self.stream(r, x, chunks: [64, 1, 500]), x)
    }

    func testResetRestoresInitialState() throws {
        let a = Self.sweep().map { Float($0) }, b = Self.multitone().map { Float($0) }
        for rate in Self.rates {
            let fresh = try StreamingResampler(inputRate: Self.inRate, outputRate: rate, maxInputFrames: 64)
            let expected = Self.stream(fresh, b)
            let used = try StreamingResampler(inputRate: Self.inRate, outputRate: rate, maxInputFrames: 64)
            _ = Self.stream(used, Array(a.prefix(12345)), chunk: 7)   // leaves a mid-phase state
            used.reset()
            XCTAssertEqual(Self.stream(used, b), expected)
        }
    }

    func testSmallCapacityNeverOverflows() throws {
        let r = try StreamingResampler(inputRate: 16000, outputRate: 44100, maxInputFrames: 64)
        let x = [Float](repeating: 0.5, count: 64)
        var out = [Float](repeating: -7, count: 200)
        let got = out.withUnsafeMutableBufferPointer { r.process(x, count: 64, into: $0.baseAddress!, capacity: 100) }
        XCTAssertEqual(got, 100)
        XCTAssertTrue(out[100...].allSatisfy { $0 == -7 })
    }

    func testRejectsUnsupportedRates() {
        XCTAssertThrowsError(try StreamingResampler(inputRate: 16000, outputRate: 8000, maxInputFrames: 64))
        XCTAssertThrowsError(try StreamingResampler(inputRate: 16000, outputRate: 44100.5, maxInputFrames: 64))
        XCTAssertThrowsError(try StreamingResampler(inputRate: 16000, outputRate: 48001, maxInputFrames: 64))  // 48001 phases
        XCTAssertThrowsError(try StreamingResampler(inputRate: 16000, outputRate: 48000, maxInputFrames: 0))
        XCTAssertNoThrow(try StreamingResampler(inputRate: 16000, outputRate: 192000, maxInputFrames: 64))
        XCTAssertNoThrow(try StreamingResampler(inputRate: 16000, outputRate: 88200, maxInputFrames: 64))
    }

    func testOfflineResamplerLengthAndAlignment() throws {
        let x = Self.multitone()
        for rate in Self.rates {
            let y = try OfflineResampler.resample(x.map { Float($0) }, from: Self.inRate, to: rate)
            XCTAssertEqual(y.count, Int((Double(x.count) * rate / Self.inRate).rounded()))
            // Zero delay: the 16 kHz samples reappear at j = n·R where that is whole (every 160th at 44.1 kHz).
            let step = rate == 44100 ? 160 : 1, R = rate / Self.inRate
            var e = 0.0, s = 0.0
            for n in stride(from: 4000, to: 12000, by: step) {
                let d = Double(y[Int((Double(n) * R).rounded())]) - x[n]
                e += d * d; s += x[n] * x[n]
            }
            // Float I/O; measured 98.4 dB at 44.1 kHz (interpolated coefficients), more at 48/96.
            XCTAssertGreaterThan(10 * log10(s / e), 90)
        }
    }
}

/// Modified Bessel function I0 (power series), for the test's own Kaiser window.
private func besselI0(_ x: Double) -> Double {
    var sum = 1.0, term = 1.0, k = 1.0
    while term > sum * 1e-17 { term *= x * x / 4 / (k * k); sum += term; k += 1 }
    return sum
}
