/// ddsp's Normalize('layer') on a [batch, time, channels] tensor: one mean and one biased
/// variance per sequence over all frames AND channels, then a learned per-channel scale and
/// shift. The statistics are not causal: the caller supplies them (two-pass offline, or an
/// estimate when streaming).
public struct Normalize: Sendable {
    public var scale: [Float]   // [channels]
    public var shift: [Float]   // [channels]
    public static let epsilon: Float = 1e-5

    public init(scale: Tensor, shift: Tensor) {
        self.scale = scale.values
        self.shift = shift.values
    }

    init(scale: [Float], shift: [Float]) {
        self.scale = scale
        self.shift = shift
    }

    public var channels: Int { scale.count }

    /// In place on one frame of one sequence.
    @inline(__always)
    public func apply(_ x: UnsafeMutablePointer<Float>, mean: Float, variance: Float) {
        let inv = 1 / (variance + Normalize.epsilon).squareRoot()
        for c in 0..<scale.count {
            x[c] = scaleAndShift((x[c] - mean) * inv, channel: c)
        }
    }

    /// The learned per-channel affine of a normalised value, shared with `NormalizeTraining`.
    @inline(__always)
    func scaleAndShift(_ normalized: Float, channel c: Int) -> Float {
        normalized * scale[c] + shift[c]
    }
}

/// Running sums for the whole-sequence statistics, in double precision.
public struct MomentAccumulator: Sendable {
    public var count: Double = 0
    public var sum: Double = 0
    public var sumOfSquares: Double = 0
    public init() {}

    public mutating func add(_ x: UnsafePointer<Float>, count n: Int) {
        var s = 0.0, s2 = 0.0
        for i in 0..<n { let v = Double(x[i]); s += v; s2 += v * v }
        sum += s; sumOfSquares += s2; count += Double(n)
    }

    public var mean: Float { count > 0 ? Float(sum / count) : 0 }
    /// Biased variance, like tf.nn.moments.
    public var variance: Float {
        guard count > 0 else { return 1 }
        let m = sum / count
        return Float(max(0, sumOfSquares / count - m * m))
    }
}
