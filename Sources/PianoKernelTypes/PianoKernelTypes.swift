/// What the engine's kernel variants share: the signature of their table and the arguments of
/// the oscillator frame. The kernels themselves are one source (Sources/PianoKernels) compiled
/// three times, once per instruction set (PianoKernelsSSE, PianoKernelsAVX2, PianoKernelsAVX512;
/// see Package.swift); DDSPPiano picks one table at run time (`PianoKernels`).
///
/// Every entry works on a whole block (pointers and counts): one indirect call per frame, row or
/// voice, never per sample. None allocates.
public struct PianoKernelSet: Sendable {
    /// "sse", "avx2" or "avx512".
    public let name: String

    /// GRU gates after the projections, for `rows` sequences at once (see GRU.gates): rows of
    /// `inputProjection` / `recurrentProjection` (and `gates`) are 3·units apart, those of
    /// `previous`, `output`, `state` (and `candidate`) units apart. `state` may be `previous`.
    public let gruGates: @Sendable (_ rows: Int, _ units: Int, _ inputProjection: UnsafePointer<Float>,
                                    _ recurrentProjection: UnsafePointer<Float>, _ previous: UnsafePointer<Float>,
                                    _ output: UnsafeMutablePointer<Float>, _ state: UnsafeMutablePointer<Float>?,
                                    _ gates: UnsafeMutablePointer<Float>?, _ candidate: UnsafeMutablePointer<Float>?) -> Void

    /// out[i] = ddsp exp_sigmoid(x[i] + shift) for i < count (`out` may be `x`).
    public let expSigmoid: @Sendable (_ x: UnsafePointer<Float>, _ shift: Float, _ out: UnsafeMutablePointer<Float>,
                                      _ count: Int) -> Void

    /// One frame of the additive oscillators of every voice (see AdditiveSynth.render).
    public let additiveFrame: @Sendable (_ frame: AdditiveFrame) -> Void

    /// Direct convolution, accumulated: out[i + j] += x[i]·h[j] for i < count, j < taps, each
    /// output summed from its old value in order of i, a multiply and an add per term (the
    /// plain double loop's values). Outputs are accumulated in registers, tiles of up to
    /// `convolvePadding` at a time, so `h` must have `convolvePadding` readable zeros before
    /// h[0] and after h[taps − 1], and `out` `convolvePadding` floats after out[count + taps − 2]
    /// (the tile's lanes past the end add x·0 there: their values stay).
    public let convolveAdd: @Sendable (_ x: UnsafePointer<Float>, _ count: Int, _ h: UnsafePointer<Float>, _ taps: Int,
                                       _ out: UnsafeMutablePointer<Float>) -> Void

    /// y[r·ldy + n] += Σ_i x[r·lda + i] · B[i, n] for r < rows, n < columns, with B packed by
    /// `PackedMatrix` (`inputs` rows): each element summed from 0 in input order with one FMA
    /// per input (no FMA in the sse variant), then added to y (Sources/PianoKernels/PackedProduct.swift).
    public let packedProduct: @Sendable (_ rows: Int, _ x: UnsafePointer<Float>, _ lda: Int, _ packed: UnsafePointer<Float>,
                                         _ inputs: Int, _ columns: Int, _ y: UnsafeMutablePointer<Float>, _ ldy: Int) -> Void

    /// The reverb's partitioned convolution, accumulated: out[k] = Σ_p X_{(head + p) mod P}[k] ·
    /// H_p[k], complex in split form, P partitions of K bins (Reverb; PackedProduct.swift).
    public let spectralAccumulate: @Sendable (_ partitions: Int, _ bins: Int, _ head: Int,
                                              _ xRe: UnsafePointer<Float>, _ xIm: UnsafePointer<Float>,
                                              _ hRe: UnsafePointer<Float>, _ hIm: UnsafePointer<Float>,
                                              _ outRe: UnsafeMutablePointer<Float>, _ outIm: UnsafeMutablePointer<Float>) -> Void

    public init(name: String,
                gruGates: @escaping @Sendable (Int, Int, UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>,
                                               UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>?,
                                               UnsafeMutablePointer<Float>?, UnsafeMutablePointer<Float>?) -> Void,
                expSigmoid: @escaping @Sendable (UnsafePointer<Float>, Float, UnsafeMutablePointer<Float>, Int) -> Void,
                additiveFrame: @escaping @Sendable (AdditiveFrame) -> Void,
                convolveAdd: @escaping @Sendable (UnsafePointer<Float>, Int, UnsafePointer<Float>, Int, UnsafeMutablePointer<Float>) -> Void,
                packedProduct: @escaping @Sendable (Int, UnsafePointer<Float>, Int, UnsafePointer<Float>, Int, Int,
                                                    UnsafeMutablePointer<Float>, Int) -> Void,
                spectralAccumulate: @escaping @Sendable (Int, Int, Int, UnsafePointer<Float>, UnsafePointer<Float>,
                                                         UnsafePointer<Float>, UnsafePointer<Float>,
                                                         UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>) -> Void) {
        self.name = name
        self.gruGates = gruGates
        self.expSigmoid = expSigmoid
        self.additiveFrame = additiveFrame
        self.convolveAdd = convolveAdd
        self.packedProduct = packedProduct
        self.spectralAccumulate = spectralAccumulate
    }
}

/// One frame of `AdditiveSynth`: its state, the frame's controls and scratch, as pointers.
public struct AdditiveFrame {
    public var voices: Int, substrings: Int, harmonics: Int, frameSize: Int
    public var sampleRate: Int
    /// Samples up to and including the end of a 1000-sample phase chunk (frameSize if none
    /// ends in this frame), and whether one does.
    public var chunk: Int, folds: Bool
    /// [voices]: a voice's additive part is silent at frame F / F+1.
    public var silentCurrent: UnsafePointer<Bool>, silentNext: UnsafePointer<Bool>
    /// Phase state, [voices, substrings, harmonics] each.
    public var chunkPhase: UnsafeMutablePointer<Float>, offsetSum: UnsafeMutablePointer<Float>, offset: UnsafeMutablePointer<Float>
    /// Partial frequencies [voices, substrings, harmonics] and amplitudes [voices, harmonics] at F and F+1.
    public var frequencyCurrent: UnsafePointer<Float>, frequencyNext: UnsafePointer<Float>
    public var amplitudeCurrent: UnsafePointer<Float>, amplitudeNext: UnsafePointer<Float>
    /// Periodic Hann window [2·frameSize]; per-sample interpolation fractions [frameSize].
    public var window: UnsafePointer<Float>, lerp: UnsafePointer<Float>
    /// Scratch: [frameSize] SIMD8<Float> partial sums; [voices·substrings·harmonics/8 + 1] Ints.
    public var partialSums: UnsafeMutablePointer<SIMD8<Float>>, pending: UnsafeMutablePointer<Int>
    /// The frame is added here, [frameSize].
    public var out: UnsafeMutablePointer<Float>
    /// Stereo (optional): each voice's frame is also added to `side` [frameSize], weighted by its
    /// pan position, interpolated across the frame from `pan` to `panNext` [voices] (StereoImage).
    public var side: UnsafeMutablePointer<Float>? = nil
    public var pan: UnsafePointer<Float>? = nil, panNext: UnsafePointer<Float>? = nil

    public init(voices: Int, substrings: Int, harmonics: Int, frameSize: Int, sampleRate: Int, chunk: Int, folds: Bool,
                silentCurrent: UnsafePointer<Bool>, silentNext: UnsafePointer<Bool>,
                chunkPhase: UnsafeMutablePointer<Float>, offsetSum: UnsafeMutablePointer<Float>, offset: UnsafeMutablePointer<Float>,
                frequencyCurrent: UnsafePointer<Float>, frequencyNext: UnsafePointer<Float>,
                amplitudeCurrent: UnsafePointer<Float>, amplitudeNext: UnsafePointer<Float>,
                window: UnsafePointer<Float>, lerp: UnsafePointer<Float>,
                partialSums: UnsafeMutablePointer<SIMD8<Float>>, pending: UnsafeMutablePointer<Int>,
                out: UnsafeMutablePointer<Float>) {
        self.voices = voices; self.substrings = substrings; self.harmonics = harmonics; self.frameSize = frameSize
        self.sampleRate = sampleRate; self.chunk = chunk; self.folds = folds
        self.silentCurrent = silentCurrent; self.silentNext = silentNext
        self.chunkPhase = chunkPhase; self.offsetSum = offsetSum; self.offset = offset
        self.frequencyCurrent = frequencyCurrent; self.frequencyNext = frequencyNext
        self.amplitudeCurrent = amplitudeCurrent; self.amplitudeNext = amplitudeNext
        self.window = window; self.lerp = lerp
        self.partialSums = partialSums; self.pending = pending; self.out = out
    }
}

/// A weight matrix [inputs, columns] (row-major, Keras layout) packed for `packedProduct`: panels
/// of 16 columns, each [inputs][16] contiguous, the last one zero-padded. Built once with the model.
public struct PackedMatrix: Sendable {
    public let inputs: Int
    public let columns: Int
    public let values: [Float]   // [ceil(columns / 16), inputs, 16]

    /// Columns `offset..<offset + count` of a row-major matrix with `stride` floats per row.
    public init(_ m: UnsafePointer<Float>, inputs: Int, stride: Int, offset: Int = 0, count: Int) {
        self.inputs = inputs
        columns = count
        let panels = (count + 15) / 16
        var v = [Float](repeating: 0, count: panels * inputs * 16)
        for p in 0..<panels {
            for i in 0..<inputs {
                for j in 0..<min(16, count - 16 * p) {
                    v[(p * inputs + i) * 16 + j] = m[i * stride + offset + 16 * p + j]
                }
            }
        }
        values = v
    }

    public init(_ m: [Float], inputs: Int, columns: Int) {
        self = m.withUnsafeBufferPointer { PackedMatrix($0.baseAddress!, inputs: inputs, stride: columns, count: columns) }
    }
}

/// One matrix product of a network step: rows × inputs times inputs × columns.
public struct ProductShape: Sendable, Hashable, CustomStringConvertible {
    public var rows: Int, inputs: Int, columns: Int
    public init(rows: Int, inputs: Int, columns: Int) { self.rows = rows; self.inputs = inputs; self.columns = columns }
    /// Multiplies and adds, counted as two operations.
    public var flops: Int { 2 * rows * inputs * columns }
    public var description: String { "\(rows)×\(inputs)·\(inputs)×\(columns)" }
}

/// Zeros around each filter, and room after each output, that `PianoKernelSet.convolveAdd` reads.
public let convolvePadding = 64
