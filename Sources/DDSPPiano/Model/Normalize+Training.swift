import Foundation

// Training-mode forward and backward of `Normalize`: the same ε and per-channel affine
// (`Normalize.scaleAndShift`); the statistics differ by design (here the segment's own, two-pass
// in Double, with their gradient; the engine takes them from its caller).

/// ddsp's Normalize('layer') on [batch, time, channels]: per sequence one mean and one biased
/// variance over all its frames and channels, then a per-channel scale and shift. In training
/// the statistics are those of the segment itself, and the gradient flows through them.
public struct NormalizeTraining: Sendable {
    public var scale: [Float]        // [channels]
    public var shift: [Float]        // [channels]
    public var scaleGrad: [Float]
    public var shiftGrad: [Float]

    public init(scale: [Float], shift: [Float]) {
        precondition(scale.count == shift.count && !scale.isEmpty)
        self.scale = scale
        self.shift = shift
        scaleGrad = scale.zeroed
        shiftGrad = shift.zeroed
    }

    public var channels: Int { scale.count }

    public struct Cache: Sendable {
        public var batch: Int, time: Int
        public var normalized: [Float]   // [batch, time, channels]: (x − μ)/√(σ² + ε)
        public var inverseStd: [Float]   // [batch]
        public var mean: [Float]         // [batch]
        public var variance: [Float]     // [batch]
    }

    /// Returns y [batch, time, channels] and the cache.
    public func forward(_ x: [Float], batch: Int, time: Int) -> (output: [Float], cache: Cache) {
        let C = channels, n = time * C
        precondition(x.count == batch * n)
        var y = [Float](repeating: 0, count: x.count)
        var xhat = y
        var means = [Float](repeating: 0, count: batch), vars = means, invs = means
        let affine = Normalize(scale: scale, shift: shift)
        for b in 0..<batch {
            // Two passes in Double: the segment holds up to 750·192 values.
            var s = 0.0
            for i in 0..<n { s += Double(x[b * n + i]) }
            let mu = s / Double(n)
            var s2 = 0.0
            for i in 0..<n { let d = Double(x[b * n + i]) - mu; s2 += d * d }
            let v = s2 / Double(n)
            let inv = 1 / (v + Double(Normalize.epsilon)).squareRoot()
            means[b] = Float(mu); vars[b] = Float(v); invs[b] = Float(inv)
            for t in 0..<time {
                for c in 0..<C {
                    let i = b * n + t * C + c
                    let h = Float((Double(x[i]) - mu) * inv)
                    xhat[i] = h
                    y[i] = affine.scaleAndShift(h, channel: c)
                }
            }
        }
        return (y, Cache(batch: batch, time: time, normalized: xhat, inverseStd: invs, mean: means, variance: vars))
    }

    /// dL/dx from dL/dy, through the statistics: dx = inv·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂)).
    public mutating func backward(_ dy: [Float], cache: Cache) -> [Float] {
        let C = channels, n = cache.time * C
        precondition(dy.count == cache.batch * n)
        var dx = [Float](repeating: 0, count: dy.count)
        var gScale = [Double](repeating: 0, count: C), gShift = gScale
        for b in 0..<cache.batch {
            var sum = 0.0, sumX = 0.0
            for t in 0..<cache.time {
                for c in 0..<C {
                    let i = b * n + t * C + c
                    let d = Double(dy[i]), h = Double(cache.normalized[i])
                    gScale[c] += d * h
                    gShift[c] += d
                    let dh = d * Double(scale[c])
                    sum += dh
                    sumX += dh * h
                }
            }
            let meanD = sum / Double(n), meanDX = sumX / Double(n), inv = Double(cache.inverseStd[b])
            for t in 0..<cache.time {
                for c in 0..<C {
                    let i = b * n + t * C + c
                    let dh = Double(dy[i]) * Double(scale[c])
                    dx[i] = Float(inv * (dh - meanD - Double(cache.normalized[i]) * meanDX))
                }
            }
        }
        for c in 0..<C { scaleGrad[c] += Float(gScale[c]); shiftGrad[c] += Float(gShift[c]) }
        return dx
    }

    public mutating func zeroGrad() { scaleGrad.setZero(); shiftGrad.setZero() }
}
