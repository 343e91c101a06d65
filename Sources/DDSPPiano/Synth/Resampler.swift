import Foundation

/// Why a resampler could not be made.
public struct ResamplerError: CodedError, Equatable, Sendable {
    public var message: String
    /// The rates asked for are not supported.
    public var code: ErrorCode { .usage }
    public init(_ message: String) { self.message = message }
    public var description: String { "resampler: \(message)" }
}

/// Streaming 16 kHz → host-rate converter for the real-time engine: mono float32, linear phase,
/// exactly `delayInputFrames` (16 input samples = 1 ms at 16 kHz) of delay and no other buffering.
///
/// Why not libsoxr here: its streaming engines work on blocks (DFT stages, and the polyphase stage
/// after them), so output trails input by far more than the filter's own delay. Measured with
/// libsoxr 0.1.3 as the largest shortfall of output behind `input·ratio` (1-sample chunks,
/// log2_min_dft_size 8; the default 10 is worse), 16 kHz → 44.1 / 48 / 96 kHz:
///   LQ linear 1.3 / 4.0 / 6.2 ms; LQ minimum phase 5.5 / 2.9 / 4.8 ms;
///   MQ, HQ, VHQ (any phase) 9–75 ms; SOXR_STEEP_FILTER 36–470 ms;
///   custom specs (passband 0.875–0.95, precision 16–20, any phase) 11–59 ms.
/// None fits the ≤ 1 ms the latency budget leaves (4 ms look-ahead + resampler ≤ 5 ms), so the
/// stream uses this direct-form polyphase FIR, which emits every output sample as soon as its
/// newest input sample has arrived. libsoxr stays for whole-signal work (`OfflineResampler`,
/// in PianoStudy).
///
/// Filter: a Kaiser-windowed sinc (β = 6) of 32 taps per phase, cut off at the input Nyquist
/// (8 kHz) and centred 16 input samples back, so the delay is the same 1 ms at every host rate.
/// With a 1 ms delay a linear-phase filter can be at most 32 taps long at 16 kHz; asymmetric
/// (low-delay) least-squares designs with 40–96 taps and the same delay were tried and were no
/// better in the passband (the 16 samples of look-ahead, not the length, limit them), and
/// non-linear phase would smear the harmonic phases the model produces. Designed in double
/// precision (for 44.1 kHz every one of the 441 phases is exact):
///   response 0 dB to 7 kHz (ripple ≈ −70 dB), −1.4 dB at 7.6 kHz, −6 dB at 8 kHz,
///   images ≤ −62 dB from 9 kHz up; error against ideal band-limited interpolation of content
///   ≤ 7 kHz ≈ −70 dB (images included). Content at 7–8 kHz, which the model barely produces,
///   is partly attenuated and imaged into 8–9 kHz: the price of the 1 ms budget.
/// Output sample j (time j/ratio in input samples) holds the band-limited input at j/ratio − 16;
/// phase 0 of the filter is an exact 16-sample delay (the sinc is zero at the other taps).
///
/// The output depends only on the total input, never on how it is chunked (bit-identical).
/// `process` does not allocate, lock, log or do I/O.
// @unchecked Sendable: one stream's state, used by the thread that renders that stream.
public final class StreamingResampler: @unchecked Sendable {
    /// Taps per polyphase branch (input samples spanned by each output's kernel).
    public static let tapsPerPhase = 32
    /// Delay in input samples (1 ms at 16 kHz), at every output rate.
    public static let delayInputFrames = 16
    /// Kaiser window β: ≈ 62 dB image rejection; larger β trades passband accuracy for rejection.
    static let kaiserBeta = 6.0
    /// Largest interpolation factor L (outputRate / gcd): 441 for the 44.1 kHz family.
    public static let maxPhases = 4096

    public let inputRate: Double
    public let outputRate: Double
    /// Largest chunk handled in one pass; larger `process` calls are split internally.
    public let maxInputFrames: Int
    /// outputRate / inputRate = up / down, in lowest terms (1 / 1 when equal).
    public let up: Int
    public let down: Int

    private let taps: Int
    /// [up, taps]: each phase's kernel reversed, so an output is a dot product with contiguous input.
    private let coefficients: UnsafeMutablePointer<Float>
    /// [taps − 1 + maxInputFrames]: the last taps − 1 input samples, then the chunk being processed.
    private let history: UnsafeMutablePointer<Float>
    private let historyCount: Int
    /// Next output: its branch (0..<up) and its newest input sample, relative to the chunk start.
    private var phase = 0
    private var newest = 0

    /// Rates in Hz, whole numbers, outputRate ≥ inputRate (the engine only upsamples).
    /// maxInputFrames: the largest chunk the caller normally passes (the engine passes 64).
    public init(inputRate: Double, outputRate: Double, maxInputFrames: Int) throws {
        func whole(_ r: Double) -> Int? {
            guard r.isFinite, r >= 1, r <= 1e7, abs(r - r.rounded()) < 1e-9 else { return nil }
            return Int(r.rounded())
        }
        guard let fin = whole(inputRate), let fout = whole(outputRate) else {
            throw ResamplerError("rates must be whole numbers of Hz (got \(inputRate) → \(outputRate))")
        }
        guard fout >= fin else {
            throw ResamplerError("downsampling (\(fin) → \(fout) Hz) is not supported")
        }
        guard maxInputFrames >= 1 else { throw ResamplerError("maxInputFrames must be ≥ 1") }
        var a = fin, b = fout
        while b != 0 { (a, b) = (b, a % b) }
        let L = fout / a, M = fin / a
        guard L <= Self.maxPhases else {
            throw ResamplerError("\(fin) → \(fout) Hz needs \(L) filter phases (at most \(Self.maxPhases))")
        }
        self.inputRate = inputRate
        self.outputRate = outputRate
        self.maxInputFrames = maxInputFrames
        up = L
        down = M
        taps = L == M ? 1 : Self.tapsPerPhase
        coefficients = .allocate(capacity: L * taps)
        historyCount = taps - 1 + maxInputFrames
        history = .allocate(capacity: historyCount)
        history.initialize(repeating: 0, count: historyCount)
        if L == M {
            coefficients.initialize(to: 1)
        } else {
            Self.design(into: coefficients, phases: L, taps: taps)
        }
    }

    deinit {
        coefficients.deallocate()
        history.deallocate()
    }

    /// Kaiser-windowed sinc, branch p at fractional position μ = p/up: tap k weighs x[n − k] for
    /// the output at time n + μ − delay, i.e. sinc(t)·w(t) with t = k + μ − delay.
    private static func design(into c: UnsafeMutablePointer<Float>, phases: Int, taps: Int) {
        let half = Double(taps) / 2, beta = kaiserBeta
        let norm = besselI0(beta)
        for p in 0..<phases {
            let mu = Double(p) / Double(phases)
            for k in 0..<taps {
                let t = Double(k) + mu - Double(delayInputFrames)
                let x = t / half
                let w = abs(x) <= 1 ? besselI0(beta * (1 - x * x).squareRoot()) / norm : 0
                // Exact zeros at whole t make branch 0 an exact delay.
                let s = t == t.rounded() ? (t == 0 ? 1 : 0) : sin(Double.pi * t) / (Double.pi * t)
                c[p * taps + (taps - 1 - k)] = Float(s * w)
            }
        }
    }

    /// Modified Bessel function of the first kind, order 0 (power series; converges fast for x ≤ 20).
    private static func besselI0(_ x: Double) -> Double {
        var sum = 1.0, term = 1.0, k = 1.0
        let q = x * x / 4
        while term > sum * 1e-17 {
            term *= q / (k * k)
            sum += term
            k += 1
        }
        return sum
    }

    /// Group delay in output samples (16 · outputRate / inputRate; 0 when the rates are equal).
    public var delay: Double { up == down ? 0 : Double(Self.delayInputFrames) * outputRate / inputRate }

    /// Upper bound of the frames one `process` call of n input frames writes: ⌈n · up / down⌉.
    public func maxOutputFrames(forInput n: Int) -> Int { (n * up + down - 1) / down }

    /// Upper bound for a call with maxInputFrames frames (177 for 64 frames at 44.1 kHz).
    public var maxOutputFrames: Int { maxOutputFrames(forInput: maxInputFrames) }

    /// Same bound without an instance (for sizing buffers before one exists).
    public static func maxOutputFrames(forInput n: Int, inputRate: Double, outputRate: Double) -> Int {
        Int((Double(n) * outputRate / inputRate).rounded(.up)) + 1
    }

    /// Consumes `count` input frames, writes the output frames they complete and returns how many.
    /// capacity should be ≥ maxOutputFrames(forInput: count); frames beyond it are dropped (the
    /// stream's timing stays intact), never written out of bounds.
    @discardableResult
    public func process(_ input: UnsafePointer<Float>, count: Int, into output: UnsafeMutablePointer<Float>, capacity: Int) -> Int {
        if up == down {
            let n = min(count, capacity)
            output.update(from: input, count: n)
            return n
        }
        var done = 0, written = 0
        while done < count {
            let n = min(count - done, maxInputFrames)
            written = run(input + done, count: n, output: output, written: written, capacity: capacity)
            done += n
        }
        return min(written, capacity)
    }

    /// One chunk of at most maxInputFrames; `written` counts emitted frames, including dropped ones.
    private func run(_ input: UnsafePointer<Float>, count n: Int, output: UnsafeMutablePointer<Float>,
                     written start: Int, capacity: Int) -> Int {
        let K = taps, L = up, M = down
        let buffer = history
        (buffer + (K - 1)).update(from: input, count: n)
        var p = phase, newest = self.newest, written = start
        // An output whose newest input is x[chunkStart + newest] starts its kernel at buffer[newest].
        while newest < n {
            let x = buffer + newest
            let h = coefficients + p * K
            var a0: Float = 0, a1: Float = 0, a2: Float = 0, a3: Float = 0
            var i = 0
            while i < K {
                a0 += h[i] * x[i]
                a1 += h[i + 1] * x[i + 1]
                a2 += h[i + 2] * x[i + 2]
                a3 += h[i + 3] * x[i + 3]
                i += 4
            }
            if written < capacity { output[written] = (a0 + a1) + (a2 + a3) }
            written += 1
            p += M
            if p >= L { p -= L; newest += 1 }   // M ≤ L: at most one input step per output
        }
        // Keep the last K − 1 input samples in front of the next chunk.
        buffer.update(from: buffer + n, count: K - 1)
        phase = p
        self.newest = newest - n
        return written
    }

    /// Back to the state right after init (silence before the first input); allocates nothing.
    public func reset() {
        history.update(repeating: 0, count: historyCount)
        phase = 0
        newest = 0
    }
}
