/// Keras `LayerNormalization()` as v2 uses it: over the channels of each row only (per frame and
/// per voice, never over time), biased variance, epsilon 1e-3, then scale and shift:
///   y = (x − mean) · 1/√(var + ε) · γ + β
/// Keras runs this as a fused batch norm (scale 1, offset 0) followed by `· γ + β`; the order of
/// the float32 operations here is the same.
public struct LayerNorm: Sendable {
    public let channels: Int
    public var gamma: [Float]   // [channels]
    public var beta: [Float]    // [channels]

    /// Keras' default (all 19 LayerNorms of maestro-v2.gin use it).
    public static let epsilon: Float = 1e-3

    public init(gamma: Tensor, beta: Tensor) {
        precondition(gamma.shape.count == 1 && beta.shape == gamma.shape)
        channels = gamma.count
        self.gamma = gamma.values
        self.beta = beta.values
    }

    /// Normalises `rows` rows of `x` (rows `xStride` apart) into `y` (rows `yStride` apart),
    /// followed by leaky ReLU when `leaky` (ddsp's Fc). `x` and `y` may be the same buffer.
    public func forward(_ x: UnsafePointer<Float>, xStride: Int? = nil, rows: Int,
                        into y: UnsafeMutablePointer<Float>, yStride: Int? = nil, leaky: Bool) {
        let c = channels, xs = xStride ?? c, ys = yStride ?? c
        let n = Float(c)
        let c8 = c / 8 * 8
        typealias V = SIMD8<Float>
        gamma.withUnsafeBufferPointer { g in
        beta.withUnsafeBufferPointer { b in
            for r in 0..<rows {
                let xr = x + r * xs, yr = y + r * ys
                let rx = UnsafeRawPointer(xr)
                // Eight partial sums: a pairwise-like order, accurate to a few ulp for 16–64 channels.
                var acc = V()
                var j = 0
                while j < c8 { acc += rx.loadUnaligned(fromByteOffset: 4 * j, as: V.self); j += 8 }
                var sum = acc.sum()
                while j < c { sum += xr[j]; j += 1 }
                let mean = sum / n
                var acc2 = V()
                j = 0
                while j < c8 {
                    let d = rx.loadUnaligned(fromByteOffset: 4 * j, as: V.self) - mean
                    acc2 += d * d
                    j += 8
                }
                var sq = acc2.sum()
                while j < c { let d = xr[j] - mean; sq += d * d; j += 1 }
                let inv = 1 / (sq / n + LayerNorm.epsilon).squareRoot()
                // Element by element (y may be x), eight at a time: the scalar tail's operations.
                let ry = UnsafeMutableRawPointer(yr), gr = UnsafeRawPointer(g.baseAddress!), br = UnsafeRawPointer(b.baseAddress!)
                let meanV = V(repeating: mean), invV = V(repeating: inv), slope = V(repeating: Dense.leakySlope)
                j = 0
                while j < c8 {
                    var v = (rx.loadUnaligned(fromByteOffset: 4 * j, as: V.self) - meanV) * invV
                        * gr.loadUnaligned(fromByteOffset: 4 * j, as: V.self) + br.loadUnaligned(fromByteOffset: 4 * j, as: V.self)
                    if leaky { v.replace(with: v * slope, where: v .< 0) }
                    ry.storeBytes(of: v, toByteOffset: 4 * j, as: V.self)
                    j += 8
                }
                while j < c {
                    let v = (xr[j] - mean) * inv * g[j] + b[j]
                    yr[j] = leaky && v < 0 ? v * Dense.leakySlope : v
                    j += 1
                }
            }
        }}
    }
}
