import Foundation

// Training-mode forward and backward of `LayerNorm`: the forward is LayerNorm.swift's own kernel
// (same float32 values as the engine); the cache's normalised values and inverse deviations
// are recomputed in Double for the backward pass.

/// Keras LayerNormalization over the channels of each row (v2: every frame of every voice on
/// its own), optionally followed by leaky ReLU (ddsp's Fc), for training.
public struct LayerNormTraining: Sendable {
    public var gamma: [Float]        // [channels]
    public var beta: [Float]         // [channels]
    public var gammaGrad: [Float]
    public var betaGrad: [Float]
    public let leaky: Bool

    public init(gamma: [Float], beta: [Float], leaky: Bool) {
        precondition(gamma.count == beta.count && !gamma.isEmpty)
        self.gamma = gamma; self.beta = beta; self.leaky = leaky
        gammaGrad = gamma.zeroed; betaGrad = beta.zeroed
    }

    public var channels: Int { gamma.count }

    public struct Cache: Sendable {
        public var rows: Int
        public var normalized: [Float]   // [rows, channels]: (x − μ)/√(σ² + ε)
        public var inverseStd: [Float]   // [rows]
        public var output: [Float]       // [rows, channels], after the leaky ReLU when `leaky`
    }

    /// y [rows, channels] from x [rows, channels].
    public func forward(_ x: [Float], rows: Int) -> (output: [Float], cache: Cache) {
        let C = channels
        precondition(x.count == rows * C)
        var y = [Float](repeating: 0, count: x.count)
        let layer = LayerNorm(gamma: Tensor(shape: [C], values: gamma), beta: Tensor(shape: [C], values: beta))
        x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { yp in
            layer.forward(xp.baseAddress!, rows: rows, into: yp.baseAddress!, leaky: leaky)
        }}
        var xhat = [Float](repeating: 0, count: x.count), inv = [Float](repeating: 0, count: rows)
        for r in 0..<rows {
            var s = 0.0
            for c in 0..<C { s += Double(x[r * C + c]) }
            let mu = s / Double(C)
            var s2 = 0.0
            for c in 0..<C { let d = Double(x[r * C + c]) - mu; s2 += d * d }
            let iv = 1 / (s2 / Double(C) + Double(LayerNorm.epsilon)).squareRoot()
            inv[r] = Float(iv)
            for c in 0..<C { xhat[r * C + c] = Float((Double(x[r * C + c]) - mu) * iv) }
        }
        return (y, Cache(rows: rows, normalized: xhat, inverseStd: inv, output: y))
    }

    /// Accumulates γ and β gradients from dL/dy; returns dL/dx:
    /// dx = inv·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂)) per row, dx̂ = dy·γ.
    public mutating func backward(_ dy: [Float], cache: Cache) -> [Float] {
        let C = channels
        precondition(dy.count == cache.rows * C)
        var dx = [Float](repeating: 0, count: dy.count)
        var gg = [Double](repeating: 0, count: C), gb = gg
        var dh = [Double](repeating: 0, count: C)
        for r in 0..<cache.rows {
            var sum = 0.0, sumX = 0.0
            for c in 0..<C {
                let i = r * C + c
                var d = Double(dy[i])
                if leaky && cache.output[i] < 0 { d *= Double(Dense.leakySlope) }
                let h = Double(cache.normalized[i])
                gg[c] += d * h; gb[c] += d
                dh[c] = d * Double(gamma[c])
                sum += dh[c]; sumX += dh[c] * h
            }
            let meanD = sum / Double(C), meanDX = sumX / Double(C), inv = Double(cache.inverseStd[r])
            for c in 0..<C {
                let i = r * C + c
                dx[i] = Float(inv * (dh[c] - meanD - Double(cache.normalized[i]) * meanDX))
            }
        }
        for c in 0..<C { gammaGrad[c] += Float(gg[c]); betaGrad[c] += Float(gb[c]) }
        return dx
    }

    public mutating func zeroGrad() { gammaGrad.setZero(); betaGrad.setZero() }
}
