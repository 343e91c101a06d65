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
    public let kernel: [Float]            // [inputs, 3·units]
    public let recurrentKernel: [Float]   // [units, 3·units]
    public var inputBias: [Float]         // [3·units] (v2 adds its context row per frame)
    public let recurrentBias: [Float]     // [3·units]
    /// Both kernels packed for PianoKernels' packedProduct (see Dense.packed).
    public let packedKernel: PackedMatrix
    public let packedRecurrentKernel: PackedMatrix

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
        packedKernel = PackedMatrix(kernel.values, inputs: inputs, columns: 3 * units)
        packedRecurrentKernel = PackedMatrix(recurrentKernel.values, inputs: units, columns: 3 * units)
        state = [Float](repeating: 0, count: batch * units)
        inputProjection = [Float](repeating: 0, count: batch * 3 * units)
        recurrentProjection = [Float](repeating: 0, count: batch * 3 * units)
    }

    public mutating func reset() {
        for i in state.indices { state[i] = 0 }
    }

    /// The step's two products, input and recurrent (for `bench`'s accounting).
    public var productShapes: [ProductShape] {
        [ProductShape(rows: batch, inputs: inputs, columns: 3 * units), ProductShape(rows: batch, inputs: units, columns: 3 * units)]
    }

    /// Advances every sequence by one step; `x` is [batch, inputs]; the new state is also copied to `output` [batch, units].
    public mutating func forward(_ x: UnsafePointer<Float>, into output: UnsafeMutablePointer<Float>) {
        forward(x, rows: 0..<batch, into: output)
    }

    /// Advances the sequences `rows` only: `x` and `output` point at the first of them (rows of
    /// `inputs` and `units` floats). Each sequence's step depends on its own row only (the
    /// products are PianoKernels' packedProduct), so any split of the rows gives the same bits.
    public mutating func forward(_ x: UnsafePointer<Float>, rows: Range<Int>, into output: UnsafeMutablePointer<Float>) {
        let u = units, u3 = 3 * units, b = rows.count, r0 = rows.lowerBound
        precondition(rows.lowerBound >= 0 && rows.upperBound <= batch)
        packedKernel.values.withUnsafeBufferPointer { k in
        packedRecurrentKernel.values.withUnsafeBufferPointer { rk in
        inputBias.withUnsafeBufferPointer { ib in
        recurrentBias.withUnsafeBufferPointer { rb in
        inputProjection.withUnsafeMutableBufferPointer { xp0 in
        recurrentProjection.withUnsafeMutableBufferPointer { hp0 in
        state.withUnsafeMutableBufferPointer { h0 in
            let xp = xp0.baseAddress! + r0 * u3, hp = hp0.baseAddress! + r0 * u3, h = h0.baseAddress! + r0 * u
            for r in 0..<b {
                (xp + r * u3).update(from: ib.baseAddress!, count: u3)
                (hp + r * u3).update(from: rb.baseAddress!, count: u3)
            }
            let kernels = PianoKernels.active
            kernels.packedProduct(b, x, inputs, k.baseAddress!, inputs, u3, xp, u3)
            kernels.packedProduct(b, h, u, rk.baseAddress!, u, u3, hp, u3)
            // Every sequence's gates in one call to the chosen kernels (PianoKernels).
            kernels.gruGates(b, u, xp, hp, h, output, h, nil, nil)
        }}}}}}}
    }
}

extension GRU {
    /// One sequence's step after its projections, shared by `forward` and `GRUTraining.forward`:
    /// from the input projection x·K + b and the recurrent projection h·R + b' (each [3·units],
    /// gates z, r, h) and the previous state [units], the new state h ← z ⊙ h + (1 − z) ⊙ c goes to
    /// `output` (and `state`, which may be `previous`). Training also keeps z, r, c in `gates`
    /// [3·units] and h·Rh + b'h in `candidate` [units]; the engine passes nil.
    /// The chosen kernels' `gruGates` (Sources/PianoKernels): eight units at a time with bit-exact
    /// vector ports of libm's expf and tanhf (see VectorMath.tanhfLibm for why exactly the same),
    /// at a fraction of the cost; a tail (units not a multiple of 8) uses libm.
    @inline(__always)
    static func gates(units u: Int, inputProjection xs: UnsafePointer<Float>, recurrentProjection hq: UnsafePointer<Float>,
                      previous: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                      state: UnsafeMutablePointer<Float>? = nil,
                      gates: UnsafeMutablePointer<Float>? = nil, candidate: UnsafeMutablePointer<Float>? = nil) {
        PianoKernels.active.gruGates(1, u, xs, hq, previous, output, state, gates, candidate)
    }
}

@inline(__always) func sigmoid(_ x: Float) -> Float { 1 / (1 + expf(-x)) }
