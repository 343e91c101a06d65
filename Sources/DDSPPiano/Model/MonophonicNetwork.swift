/// Per voice, batched over the 16 voices: [extended pitch/128, pitch/128, velocity, context]
/// (35) → Dense(128, leaky ReLU) → GRU(192) → Dense(192, leaky ReLU) → Normalize
/// → Dense(161) = [amplitude, 96 harmonic weights, 64 noise magnitudes] (raw).
public struct MonophonicNetwork: Sendable {
    public var dense: Dense          // [35, 128]
    public var gru: GRU              // 128 → 192, batch = voices
    public var hidden: Dense         // [192, 192]
    public var norm: Normalize       // 192
    public var out: Dense            // [192, 161]
    public let voices: Int
    /// Rows kept from the last frame, bit for bit, where that is exact (`IdleRows`).
    public var idle: IdleRows
    private var rawCurrent: [Bool]   // [voices]: raw was made from the current preNorm row
    private var lastMeans: [Float]   // [voices]: the statistics raw was made with
    private var lastVariances: [Float]
    private var finishKept: [Bool]   // [voices] scratch: rows whose raw stays this frame

    /// [voices, 35]: filled by the caller before `forwardToNorm`.
    public var input: [Float]
    private var denseOut: [Float]    // [voices, 128]
    private var gruOut: [Float]      // [voices, 192]
    /// Per voice, the Normalize input of the last step: [voices, 192].
    public private(set) var preNorm: [Float]
    private var normed: [Float]      // [voices, 192] scratch
    /// Per voice, the raw outputs after `finish`: [voices, 161].
    public private(set) var raw: [Float]

    public init(weights w: PianoWeights, voices: Int) {
        self.voices = voices
        dense = Dense(kernel: w.monoDenseKernel, bias: w.monoDenseBias, activation: .leakyReLU)
        gru = GRU(kernel: w.monoGRUKernel, recurrentKernel: w.monoGRURecurrentKernel,
                  inputBias: w.monoGRUInputBias, recurrentBias: w.monoGRURecurrentBias, batch: voices)
        hidden = Dense(kernel: w.monoHiddenKernel, bias: w.monoHiddenBias, activation: .leakyReLU)
        norm = Normalize(scale: w.monoNormScale, shift: w.monoNormShift)
        out = Dense(kernel: w.monoOutKernel, bias: w.monoOutBias, activation: .linear)
        input = [Float](repeating: 0, count: voices * dense.inputs)
        denseOut = [Float](repeating: 0, count: voices * dense.outputs)
        gruOut = [Float](repeating: 0, count: voices * gru.units)
        preNorm = [Float](repeating: 0, count: voices * hidden.outputs)
        raw = [Float](repeating: 0, count: voices * out.outputs)
        normed = preNorm
        idle = IdleRows(voices: voices, inputWidth: dense.inputs, stateWidth: gru.units)
        rawCurrent = [Bool](repeating: false, count: voices)
        lastMeans = [Float](repeating: 0, count: voices)
        lastVariances = lastMeans
        finishKept = rawCurrent
    }

    public mutating func reset() {
        gru.reset()
        idle.reset()
        for v in 0..<voices { rawCurrent[v] = false }
    }

    /// The voices `rows` (all by default) up to the Normalize input. Rows are independent: any
    /// split gives the same bits (a two-thread render runs the voices in two parts).
    public mutating func forwardToNorm(rows: Range<Int>? = nil) {
        let rr = rows ?? 0..<voices
        input.withUnsafeBufferPointer { idle.plan(input: $0.baseAddress!, rows: rr, sharedSame: true) }
        gru.state.withUnsafeBufferPointer { idle.save(state: $0.baseAddress!, rows: rr) }
        let kept = idle.kept
        IdleRows.runs(kept, in: rr) { forwardRows($0) }
        for v in rr where !kept[v] { rawCurrent[v] = false }
        gru.state.withUnsafeBufferPointer { idle.settle(state: $0.baseAddress!, rows: rr) }
    }

    private mutating func forwardRows(_ rr: Range<Int>) {
        let n = rr.count, r0 = rr.lowerBound
        input.withUnsafeBufferPointer { x in
        denseOut.withUnsafeMutableBufferPointer { d in
        gruOut.withUnsafeMutableBufferPointer { g in
        preNorm.withUnsafeMutableBufferPointer { p in
            let dp = d.baseAddress! + r0 * dense.outputs, gp = g.baseAddress! + r0 * gru.units
            dense.forward(x.baseAddress! + r0 * dense.inputs, rows: n, into: dp)
            gru.forward(dp, rows: rr, into: gp)
            hidden.forward(gp, rows: n, into: p.baseAddress! + r0 * hidden.outputs)
        }}}}
    }

    /// Normalises each voice of `rows` (all by default) with its own statistics and computes its `raw`.
    public mutating func finish(means: UnsafePointer<Float>, variances: UnsafePointer<Float>, rows: Range<Int>? = nil) {
        let rr = rows ?? 0..<voices
        // A row whose preNorm and statistics are those raw was made from keeps its raw.
        for v in rr {
            finishKept[v] = rawCurrent[v] && means[v].bitPattern == lastMeans[v].bitPattern
                && variances[v].bitPattern == lastVariances[v].bitPattern
        }
        let done = finishKept
        IdleRows.runs(done, in: rr) { finishRows(means: means, variances: variances, $0) }
        for v in rr where !done[v] { rawCurrent[v] = true; lastMeans[v] = means[v]; lastVariances[v] = variances[v] }
    }

    private mutating func finishRows(means: UnsafePointer<Float>, variances: UnsafePointer<Float>, _ rr: Range<Int>) {
        let c = hidden.outputs
        normed.withUnsafeMutableBufferPointer { p in
            (p.baseAddress! + rr.lowerBound * c).update(from: preNorm, rows: rr, width: c)
            for v in rr { norm.apply(p.baseAddress! + v * c, mean: means[v], variance: variances[v]) }
            raw.withUnsafeMutableBufferPointer { r in
                out.forward(p.baseAddress! + rr.lowerBound * c, rows: rr.count, into: r.baseAddress! + rr.lowerBound * out.outputs)
            }
        }
    }

    /// Rows of `raw` made elsewhere (the other engine of a two-thread render), [rows.count, 161].
    public mutating func setRaw(rows: Range<Int>, from source: UnsafePointer<Float>) {
        let w = out.outputs
        for v in rows { rawCurrent[v] = false }
        raw.withUnsafeMutableBufferPointer { (r: inout UnsafeMutableBufferPointer<Float>) in
            (r.baseAddress! + rows.lowerBound * w).update(from: source, count: rows.count * w)
        }
    }
}

extension UnsafeMutablePointer where Pointee == Float {
    /// Copies the rows `rows` of a [rows, width] array here.
    @inline(__always)
    func update(from a: [Float], rows: Range<Int>, width: Int) {
        a.withUnsafeBufferPointer { update(from: $0.baseAddress! + rows.lowerBound * width, count: rows.count * width) }
    }
}
