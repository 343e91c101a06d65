import Foundation

// Training-mode forward and backpropagation through time of `GRU`; the forward's gate maths per
// row is GRU.swift's own kernel (`GRU.gates`: the same activations as the engine's step, which
// keeps only the state); the projections are whole-segment products here, per-step ones there.

/// A Keras GRU (reset_after=True, zero initial state) run over whole segments:
/// x [batch, time, inputs] → h [batch, time, units].
///   z = σ(x·Kz + bz + h·Rz + b'z), r = σ(x·Kr + br + h·Rr + b'r)
///   c = tanh(x·Kh + bh + r ⊙ (h·Rh + b'h)),  h ← z ⊙ h + (1 − z) ⊙ c
public struct GRUTraining: Sendable {
    public let inputs: Int
    public let units: Int
    public var kernel: [Float]             // [inputs, 3·units]
    public var recurrentKernel: [Float]    // [units, 3·units]
    public var inputBias: [Float]          // [3·units]
    public var recurrentBias: [Float]      // [3·units]
    public var kernelGrad: [Float]
    public var recurrentKernelGrad: [Float]
    public var inputBiasGrad: [Float]
    public var recurrentBiasGrad: [Float]

    public init(kernel: [Float], recurrentKernel: [Float], inputBias: [Float], recurrentBias: [Float]) {
        precondition(inputBias.count % 3 == 0 && recurrentBias.count == inputBias.count)
        units = inputBias.count / 3
        precondition(recurrentKernel.count == units * 3 * units && kernel.count % (3 * units) == 0)
        inputs = kernel.count / (3 * units)
        self.kernel = kernel
        self.recurrentKernel = recurrentKernel
        self.inputBias = inputBias
        self.recurrentBias = recurrentBias
        kernelGrad = kernel.zeroed
        recurrentKernelGrad = recurrentKernel.zeroed
        inputBiasGrad = inputBias.zeroed
        recurrentBiasGrad = recurrentBias.zeroed
    }

    /// Everything BPTT needs. Row (b, t) of each array is at index (b·time + t).
    public struct Cache: Sendable {
        public var batch: Int, time: Int
        public var input: [Float]          // [batch, time, inputs]
        public var output: [Float]         // [batch, time, units]: h_t (h_{t-1} is the previous row)
        public var gates: [Float]          // [batch, time, 3·units]: z, r, c after their activations
        public var recurrentCandidate: [Float] // [batch, time, units]: h_{t-1}·Rh + b'h (what r multiplies)
    }

    public func forward(_ x: [Float], batch: Int, time: Int) -> Cache {
        let u = units, u3 = 3 * units, rows = batch * time
        precondition(x.count == rows * inputs)
        var xp = [Float](repeating: 0, count: rows * u3)       // input projections, all steps at once
        var out = [Float](repeating: 0, count: rows * u)
        var gates = [Float](repeating: 0, count: rows * u3)
        var rc = [Float](repeating: 0, count: rows * u)
        var hp = [Float](repeating: 0, count: batch * u3)      // one step's recurrent projection
        xp.withUnsafeMutableBufferPointer { xpp in
            for r in 0..<rows { (xpp.baseAddress! + r * u3).update(from: inputBias, count: u3) }
            x.withUnsafeBufferPointer { xb in kernel.withUnsafeBufferPointer { k in
                TrainingMath.gemm(m: rows, n: u3, k: inputs, a: xb.baseAddress!, lda: inputs,
                                  b: k.baseAddress!, ldb: u3, beta: 1, c: xpp.baseAddress!, ldc: u3)
            }}
        }
        let zeros = [Float](repeating: 0, count: u)                 // h_{-1}
        out.withUnsafeMutableBufferPointer { o in
        hp.withUnsafeMutableBufferPointer { h in
        xp.withUnsafeBufferPointer { xpbuf in let xpb = xpbuf.baseAddress!
        gates.withUnsafeMutableBufferPointer { gbuf in let gb = gbuf.baseAddress!
        rc.withUnsafeMutableBufferPointer { rcbuf in let rcb = rcbuf.baseAddress!
        zeros.withUnsafeBufferPointer { zb in
        recurrentKernel.withUnsafeBufferPointer { rk in
            for t in 0..<time {
                for b in 0..<batch { (h.baseAddress! + b * u3).update(from: recurrentBias, count: u3) }
                if t > 0 {
                    // h_{t-1} of every sequence: rows (b·time + t − 1), `time·units` apart.
                    TrainingMath.gemm(m: batch, n: u3, k: u, a: o.baseAddress! + (t - 1) * u, lda: time * u,
                                      b: rk.baseAddress!, ldb: u3, beta: 1, c: h.baseAddress!, ldc: u3)
                }
                for b in 0..<batch {
                    let row = b * time + t
                    GRU.gates(units: u, inputProjection: xpb + row * u3, recurrentProjection: h.baseAddress! + b * u3,
                              previous: t > 0 ? UnsafePointer(o.baseAddress! + (row - 1) * u) : zb.baseAddress!,
                              output: o.baseAddress! + row * u, gates: gb + row * u3, candidate: rcb + row * u)
                }
            }
        }}}}}}}
        return Cache(batch: batch, time: time, input: x, output: out, gates: gates, recurrentCandidate: rc)
    }

    /// Backpropagation through time from dL/dh [batch, time, units]; accumulates the weight
    /// gradients and returns dL/dx [batch, time, inputs].
    public mutating func backward(_ dh: [Float], cache: Cache) -> [Float] {
        let u = units, u3 = 3 * units, batch = cache.batch, time = cache.time, rows = batch * time
        precondition(dh.count == rows * u)
        // Pre-activation gradients of the input projection (z, r, c) and of the recurrent
        // projection (z, r, and the candidate's h·Rh term), kept for every step so the weight
        // gradients become three large products after the loop.
        var dxp = [Float](repeating: 0, count: rows * u3)
        var dhp = [Float](repeating: 0, count: rows * u3)
        var carry = [Float](repeating: 0, count: batch * u)   // dL/dh_t flowing back from step t+1
        let g = cache.gates, o = cache.output, rc = cache.recurrentCandidate
        dxp.withUnsafeMutableBufferPointer { dxpp in
        dhp.withUnsafeMutableBufferPointer { dhpp in
        carry.withUnsafeMutableBufferPointer { cp in
        recurrentKernel.withUnsafeBufferPointer { rk in
            for t in stride(from: time - 1, through: 0, by: -1) {
                for b in 0..<batch {
                    let row = b * time + t
                    for j in 0..<u {
                        let d = dh[row * u + j] + cp[b * u + j]
                        let z = g[row * u3 + j], r = g[row * u3 + u + j], c = g[row * u3 + 2 * u + j]
                        let prev: Float = t > 0 ? o[(row - 1) * u + j] : 0
                        let dz = d * (prev - c)
                        let dc = d * (1 - z)
                        let dac = dc * (1 - c * c)
                        let dr = dac * rc[row * u + j]
                        let daz = dz * z * (1 - z)
                        let dar = dr * r * (1 - r)
                        dxpp[row * u3 + j] = daz
                        dxpp[row * u3 + u + j] = dar
                        dxpp[row * u3 + 2 * u + j] = dac
                        dhpp[row * u3 + j] = daz
                        dhpp[row * u3 + u + j] = dar
                        dhpp[row * u3 + 2 * u + j] = dac * r
                        cp[b * u + j] = d * z      // the direct path h_{t-1} → h_t
                    }
                }
                if t > 0 {
                    // carry += dhp_t · Rᵀ
                    TrainingMath.gemm(transB: true, m: batch, n: u, k: u3, a: dhpp.baseAddress! + t * u3, lda: time * u3,
                                      b: rk.baseAddress!, ldb: u3, beta: 1, c: cp.baseAddress!, ldc: u)
                }
            }
        }}}}
        let dx = TrainingMath.affineBackward(dxp, input: cache.input, kernel: kernel, rows: rows, inputs: inputs, outputs: u3,
                                             kernelGrad: &kernelGrad, biasGrad: &inputBiasGrad)
        dhp.withUnsafeBufferPointer { d in
            recurrentBiasGrad.withUnsafeMutableBufferPointer { TrainingMath.addColumnSums(d.baseAddress!, rows: rows, cols: u3, into: $0.baseAddress!) }
            // dR += Σ_t h_{t-1}ᵀ · dhp_t, per sequence (h_{-1} = 0, so step 0 adds nothing).
            if time > 1 {
                o.withUnsafeBufferPointer { ob in recurrentKernelGrad.withUnsafeMutableBufferPointer { rg in
                    for b in 0..<batch {
                        TrainingMath.gemm(transA: true, m: u, n: u3, k: time - 1, a: ob.baseAddress! + b * time * u, lda: u,
                                          b: d.baseAddress! + (b * time + 1) * u3, ldb: u3, beta: 1, c: rg.baseAddress!, ldc: u3)
                    }
                }}
            }
        }
        return dx
    }

    public mutating func zeroGrad() {
        kernelGrad.setZero(); recurrentKernelGrad.setZero(); inputBiasGrad.setZero(); recurrentBiasGrad.setZero()
    }
}
