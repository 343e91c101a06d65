/// A stereo image from the mono model, as mid/side: the engine's mono output is the mid M, and
/// a side signal S gives L = M − S, R = M + S, so the mono fold-down (L + R)/2 is the mono render
/// (to float rounding) and width 0 is today's mono exactly.
///
/// - Keys: each voice is panned by its key's position on the keyboard, bass to the left as the
///   pianist hears it: p = width · (key − 64.5)/43.5, clamped to ±width (A0 … C8 span ±1).
///   Its share of S is p · voice, so L = (1 − p)·voice, R = (1 + p)·voice: a linear,
///   sum-compatible pan law (L + R = 2·voice at every position; the power is +10·log10(1 + p²)
///   dB at position p, +0.97 dB for the outermost keys at width 0.5).
/// - Room: the reverb (wet − dry) adds √width · D(reverb) to S, where D is a cascade of
///   Schroeder allpasses (flat magnitude, scattered phase): the tail's two channels are
///   decorrelated without changing its spectrum or the mid.
public enum StereoImage {
    /// The daemon's and the plugin's default width (`render` stays mono unless asked, as upstream).
    public static let defaultWidth: Float = 0.5
    /// What `render --stereo` uses when no `--width` is given.
    public static let renderWidth: Float = defaultWidth
    public static let widthRange: ClosedRange<Float> = 0...1
    static let center: Float = 64.5, halfSpan: Float = 43.5

    /// A key's position in −1 … 1 (A0 −1, C8 +1), before the width.
    @inline(__always)
    public static func position(pitch: Float) -> Float {
        min(1, max(-1, (pitch - center) / halfSpan))
    }

    /// How much of the decorrelated reverb goes into the side signal at `width`.
    @inline(__always)
    public static func roomAmount(width: Float) -> Float { width.squareRoot() }
}

/// The reverb's decorrelator: four Schroeder allpasses in series (delays of 4.7 to 17.3 ms,
/// mutually prime in samples, gain 0.6). Allocates in `init` only.
public struct Decorrelator: Sendable {
    /// The four delay lines back to back; line l is `buffer[starts[l] ..< starts[l] + lengths[l]]`.
    private var buffer: [Float]
    private let starts: [Int], lengths: [Int]
    private var heads: [Int]
    private let gain: Float = 0.6
    static let delaysMs: [Double] = [4.7, 7.9, 11.3, 17.3]

    public init(sampleRate: Int) {
        var used = Set<Int>()
        let lengths = Decorrelator.delaysMs.map { ms -> Int in
            var d = max(2, Int((ms * Double(sampleRate) / 1000).rounded()))
            while used.contains(d) || !Decorrelator.isPrime(d) { d += 1 }
            used.insert(d)
            return d
        }
        self.lengths = lengths
        var starts: [Int] = [], total = 0
        for d in lengths { starts.append(total); total += d }
        self.starts = starts
        buffer = [Float](repeating: 0, count: total)
        heads = [Int](repeating: 0, count: lengths.count)
    }

    static func isPrime(_ n: Int) -> Bool {
        guard n > 2 else { return n == 2 }
        var k = 2
        while k * k <= n { if n % k == 0 { return false }; k += 1 }
        return true
    }

    public mutating func reset() {
        for i in buffer.indices { buffer[i] = 0 }
        for l in heads.indices { heads[l] = 0 }
    }

    /// x = D(x), in place.
    public mutating func processInPlace(_ x: UnsafeMutablePointer<Float>, count: Int) {
        run(x, count: count) { i, y in x[i] = y }
    }

    /// y = D(x), then `out[i] += amount · y` for `count` samples.
    public mutating func process(_ x: UnsafePointer<Float>, count: Int, amount: Float, addInto out: UnsafeMutablePointer<Float>) {
        run(x, count: count) { i, y in out[i] += amount * y }
    }

    @inline(__always)
    private mutating func run(_ x: UnsafePointer<Float>, count: Int, _ emit: (Int, Float) -> Void) {
        let g = gain, L = lengths.count
        buffer.withUnsafeMutableBufferPointer { b in
        heads.withUnsafeMutableBufferPointer { heads in
            for i in 0..<count {
                var s = x[i]
                for l in 0..<L {
                    // Direct form II: v[n] = s + g·v[n−D], y = v[n−D] − g·v[n].
                    let h = heads[l], slot = starts[l] + h
                    let delayed = b[slot]
                    let v = s + g * delayed
                    b[slot] = v
                    heads[l] = h + 1 == lengths[l] ? 0 : h + 1
                    s = delayed - g * v
                }
                emit(i, s)
            }
        }}
    }
}
