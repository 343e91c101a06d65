/// v2's monophonic network (upstream MonophonicDeepNetwork), one frame for the 16 voices as
/// rows of every product:
///   a = FcStack(64, 3)(extended pitch / 128)       [16, 64]
///   b = FcStack(64, 3)(pitch / 128, velocity)      [16, 64]
///   c = FcStack(64, 3)(context)                    the same for every voice: one row
///   g = GRU(192)(a | b | c)                        [16, 192], one sequence per voice
///   raw = Dense(225)(FcStack(64, 3)(a | b | c | g)) [16, 225] = amplitude, 128 harmonics, 96 noise
/// The GRU's input projection of c is the same for every voice: it is computed once per frame
/// and added to the input bias, and the 16-row product covers only a | b (the GRU is the bulk
/// of the network's cost; this saves a sixth of it). Same values up to float32 rounding order.
public struct V2MonophonicNetwork: Sendable {
    public let voices: Int
    /// Rows kept from the last frame, bit for bit, where that is exact (`IdleRows`): a row's
    /// input is its pitch and conditioning, plus the context every row shares.
    public var idle: IdleRows
    private var idleInput: [Float]          // [voices, 3]: extended pitch / 128, pitch / 128, velocity
    private var lastContext: [Float]        // [32]
    public var pitchStack: FcStack          // 1 → 64
    public var conditioningStack: FcStack   // 2 → 64
    public var contextStack: FcStack        // 32 → 64, one row
    public var gru: GRU                     // a | b (128) → 192, batch = voices; input bias per frame
    public let gruContextKernel: [Float]    // [64, 576]: the rows of the GRU kernel that take c
    private let packedContextKernel: PackedMatrix
    public let gruInputBias: [Float]        // [576]: the GRU's own input bias
    public var outStack: FcStack            // 384 → 64
    public var denseOut: Dense              // [64, 225], linear

    /// Inputs, filled by the caller before `forward`.
    public var pitchInput: [Float]          // [voices]: extended pitch / 128
    public var conditioningInput: [Float]   // [voices, 2]: active pitch / 128, onset velocity
    /// Taps and outputs of the last step.
    public private(set) var gruInput: [Float]        // [voices, 128]: a | b
    public private(set) var contextFeatures: [Float] // [64]: c (one row, the same for every voice)
    public private(set) var gruOutput: [Float]       // [voices, 192]
    public private(set) var outInput: [Float]        // [voices, 384]: a | b | c | g
    public private(set) var outStackOutput: [Float]  // [voices, 64]
    public private(set) var raw: [Float]             // [voices, 225]

    public init(weights w: V2Weights, voices: Int = V2Weights.voices) {
        self.voices = voices
        pitchStack = FcStack(weights: w, name: "mono.pitch_stack", layers: 3, maxRows: voices)
        conditioningStack = FcStack(weights: w, name: "mono.conditioning_stack", layers: 3, maxRows: voices)
        contextStack = FcStack(weights: w, name: "mono.context_stack", layers: 3, maxRows: 1)
        let kernel = w["mono.gru.kernel"]
        let ab = pitchStack.width + conditioningStack.width, cols = kernel.shape[1]
        precondition(kernel.shape[0] == ab + contextStack.width)
        gru = GRU(kernel: Tensor(shape: [ab, cols], values: Array(kernel.values[0..<(ab * cols)])),
                  recurrentKernel: w["mono.gru.recurrent_kernel"],
                  inputBias: w["mono.gru.input_bias"], recurrentBias: w["mono.gru.recurrent_bias"], batch: voices)
        gruContextKernel = Array(kernel.values[(ab * cols)...])
        packedContextKernel = PackedMatrix(gruContextKernel, inputs: contextStack.width, columns: cols)
        gruInputBias = w["mono.gru.input_bias"].values
        outStack = FcStack(weights: w, name: "mono.out_stack", layers: 3, maxRows: voices)
        denseOut = Dense(kernel: w["mono.dense_out.kernel"], bias: w["mono.dense_out.bias"], activation: .linear, maxRows: voices)
        let stacks = ab + contextStack.width
        precondition(pitchStack.inputs == 1 && conditioningStack.inputs == 2
                     && outStack.inputs == stacks + gru.units && denseOut.inputs == outStack.width)
        func zeros(_ n: Int) -> [Float] { [Float](repeating: 0, count: n) }
        pitchInput = zeros(voices)
        conditioningInput = zeros(voices * 2)
        gruInput = zeros(voices * ab)
        contextFeatures = zeros(contextStack.width)
        gruOutput = zeros(voices * gru.units)
        outInput = zeros(voices * outStack.inputs)
        outStackOutput = zeros(voices * outStack.width)
        raw = zeros(voices * denseOut.outputs)
        idle = IdleRows(voices: voices, inputWidth: 3, stateWidth: gru.units)
        idleInput = zeros(voices * 3)
        lastContext = zeros(contextStack.inputs)
    }

    public mutating func reset() {
        gru.reset()
        idle.reset()
    }

    /// Rows of `raw` made elsewhere (the other engine of a two-thread render), [rows.count, 225].
    public mutating func setRaw(rows: Range<Int>, from source: UnsafePointer<Float>) {
        let w = denseOut.outputs
        raw.withUnsafeMutableBufferPointer { r in (r.baseAddress! + rows.lowerBound * w).update(from: source, count: rows.count * w) }
    }

    /// One frame from the inputs and `context` [32], for the voices `rows` (all by default; rows
    /// are independent, so any split gives the same bits).
    public mutating func forward(context: UnsafePointer<Float>, rows: Range<Int>? = nil) {
        let rr = rows ?? 0..<voices
        var contextSame = true
        let cw = contextStack.inputs
        lastContext.withUnsafeMutableBufferPointer { last in
            for i in 0..<cw where last[i].bitPattern != context[i].bitPattern { contextSame = false; last[i] = context[i] }
        }
        for r in rr {
            idleInput[3 * r] = pitchInput[r]
            idleInput[3 * r + 1] = conditioningInput[2 * r]
            idleInput[3 * r + 2] = conditioningInput[2 * r + 1]
        }
        idleInput.withUnsafeBufferPointer { idle.plan(input: $0.baseAddress!, rows: rr, sharedSame: contextSame) }
        gru.state.withUnsafeBufferPointer { idle.save(state: $0.baseAddress!, rows: rr) }
        let kept = idle.kept
        // Rows are independent: the context row once for all voices this frame computes.
        if rr.contains(where: { !kept[$0] }) { forwardContextRow(context) }
        IdleRows.runs(kept, in: rr) { forwardRows($0) }
        gru.state.withUnsafeBufferPointer { idle.settle(state: $0.baseAddress!, rows: rr) }
    }

    /// c = FcStack(context) and this frame's GRU input bias: own bias + c · K_c.
    private mutating func forwardContextRow(_ context: UnsafePointer<Float>) {
        let wc = contextStack.width, u3 = 3 * gru.units
        contextFeatures.withUnsafeMutableBufferPointer { cf in
            let cp = cf.baseAddress!
            contextStack.forward(context, rows: 1, into: cp)
            packedContextKernel.values.withUnsafeBufferPointer { kc in
            gruInputBias.withUnsafeBufferPointer { b0 in
            gru.inputBias.withUnsafeMutableBufferPointer { ib in
                ib.baseAddress!.update(from: b0.baseAddress!, count: u3)
                PianoKernels.active.packedProduct(1, cp, wc, kc.baseAddress!, wc, u3, ib.baseAddress!, u3)
            }}}
        }
    }

    /// The voices `rr` from their inputs and this frame's context row (`forwardContextRow`).
    private mutating func forwardRows(_ rr: Range<Int>) {
        let v = rr.count, r0 = rr.lowerBound
        let wa = pitchStack.width, wb = conditioningStack.width, wc = contextStack.width
        let gi = wa + wb, u = gru.units, oi = gi + wc + u
        pitchInput.withUnsafeBufferPointer { pin in
        conditioningInput.withUnsafeBufferPointer { cin in
        gruInput.withUnsafeMutableBufferPointer { x in
        contextFeatures.withUnsafeBufferPointer { cf in
        gruOutput.withUnsafeMutableBufferPointer { g in
        outInput.withUnsafeMutableBufferPointer { o in
        outStackOutput.withUnsafeMutableBufferPointer { os in
        raw.withUnsafeMutableBufferPointer { r in
            let xp = x.baseAddress! + r0 * gi, op = o.baseAddress! + r0 * oi, cp = cf.baseAddress!, gp = g.baseAddress! + r0 * u
            pitchStack.forward(pin.baseAddress! + r0, rows: v, into: xp, yStride: gi)
            conditioningStack.forward(cin.baseAddress! + 2 * r0, rows: v, into: xp + wa, yStride: gi)
            gru.forward(xp, rows: rr, into: gp)
            for row in 0..<v {
                (op + row * oi).update(from: xp + row * gi, count: gi)
                (op + row * oi + gi).update(from: cp, count: wc)
                (op + row * oi + gi + wc).update(from: gp + row * u, count: u)
            }
            let osp = os.baseAddress! + r0 * outStack.width
            outStack.forward(op, rows: v, into: osp)
            denseOut.forward(osp, rows: v, into: r.baseAddress! + r0 * denseOut.outputs)
        }}}}}}}}
    }
}
