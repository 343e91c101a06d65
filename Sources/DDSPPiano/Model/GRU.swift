import CBLAS
import Foundation

/// Keras GRU, reset_after=True (the TF2 default), tanh / sigmoid, zero initial state.
/// Gate columns are ordered (update z, reset r, candidate h); the input bias is added to the
/// input projection and the recurrent bias to the recurrent projection, and the reset gate
/// multiplies the recurrent projection *after* the matrix product:
///   z = σ(x·Kz + bz + h·Rz + b'z), r = σ(x·Kr + br + h·Rr + b'r)
///   c = tanh(x·Kh + bh + r ⊙ (h·Rh + b'h)),  h ← z ⊙ h + (1 − z) ⊙ c
/// One `GRU` holds the state of `batch` independent sequences (the 16 voices, or 1 for the context).
public struct GRU: Sendable {
    public let inputs: Int
    public let units: Int
    public let batch: Int
    public var kernel: [Float]            // [inputs, 3·units]
    public var recurrentKernel: [Float]   // [units, 3·units]
    public var inputBias: [Float]         // [3·units]
    public var recurrentBias: [Float]     // [3·units]

    /// Explicit state: [batch, units].
    public var state: [Float]
    private var inputProjection: [Float]     // [batch, 3·units] scratch
    private var recurrentProjection: [Float] // [batch, 3·units] scratch

    public init(kernel: Tensor, recurrentKernel: Tensor, inputBias: Tensor, recurrentBias: Tensor, batch: Int) {
        inputs = kernel.shape[0]
        units = recurrentKernel.shape[0]
        precondition(kernel.shape[1] == 3 * units && recurrentKernel.shape[1] == 3 * units)
        self.batch = batch
        self.kernel = kernel.values
        self.recurrentKernel = recurrentKernel.values
        self.inputBias = inputBias.values
        self.recurrentBias = recurrentBias.values
        state = [Float](repeating: 0, count: batch * units)
        inputProjection = [Float](repeating: 0, count: batch * 3 * units)
        recurrentProjection = [Float](repeating: 0, count: batch * 3 * units)
    }

    public mutating func reset() {
        for i in state.indices { state[i] = 0 }
    }

    /// Advances every sequence by one step; `x` is [batch, inputs]; the new state is also copied to `output` [batch, units].
    public mutating func forward(_ x: UnsafePointer<Float>, into output: UnsafeMutablePointer<Float>) {
        let u = units, u3 = 3 * units, b = batch
        let ni = Int32(inputs)
        kernel.withUnsafeBufferPointer { k in
        recurrentKernel.withUnsafeBufferPointer { rk in
        inputBias.withUnsafeBufferPointer { ib in
        recurrentBias.withUnsafeBufferPointer { rb in
        inputProjection.withUnsafeMutableBufferPointer { xp in
        recurrentProjection.withUnsafeMutableBufferPointer { hp in
        state.withUnsafeMutableBufferPointer { h in
            for r in 0..<b {
                (xp.baseAddress! + r * u3).update(from: ib.baseAddress!, count: u3)
                (hp.baseAddress! + r * u3).update(from: rb.baseAddress!, count: u3)
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(b), Int32(u3), ni,
                        1, x, ni, k.baseAddress, Int32(u3), 1, xp.baseAddress, Int32(u3))
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(b), Int32(u3), Int32(u),
                        1, h.baseAddress, Int32(u), rk.baseAddress, Int32(u3), 1, hp.baseAddress, Int32(u3))
            for r in 0..<b {
                let xr = xp.baseAddress! + r * u3, hr = hp.baseAddress! + r * u3, hs = h.baseAddress! + r * u
                for j in 0..<u {
                    let z = sigmoid(xr[j] + hr[j])
                    let rg = sigmoid(xr[u + j] + hr[u + j])
                    let c = tanhf(xr[2 * u + j] + rg * hr[2 * u + j])
                    let new = z * hs[j] + (1 - z) * c
                    hs[j] = new
                    output[r * u + j] = new
                }
            }
        }}}}}}}
    }
}

@inline(__always) func sigmoid(_ x: Float) -> Float { 1 / (1 + expf(-x)) }
