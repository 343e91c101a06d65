import CBLAS
import Foundation

/// Filtered white noise per voice (ddsp FilteredNoise / frequency_filter, window_size 257),
/// one frame at a time.
///
/// Each frame's 64 magnitudes define a linear-phase FIR by the frequency-sampling method:
/// a 126-point inverse real FFT (zero phase), a 126-point periodic Hann window (the requested
/// 257 is capped at the IR size), rotated to causal form. That whole design is linear in the
/// magnitudes, so it is one precomputed matrix: IR[voices, 126] = M[voices, 64] · D[64, 126].
/// Each frame of noise is convolved with its own IR, overlap-added, and the output is read
/// 61 samples late to compensate the filter's group delay (ddsp's `(ir_size − 1) // 2 − 1`).
/// Output frame F therefore needs noise frame F+1: one frame of look-ahead.
public struct FilteredNoise: Sendable {
    public let voices: Int
    public let bands: Int
    public let irSize: Int
    public let frameSize: Int
    public let delay: Int

    /// The design matrix [bands, irSize], packed for the engine's own products (see Dense.packed).
    private let design: PackedMatrix
    /// [voices, pad + irSize + pad] scratch: each filter between `convolvePadding` zeros (what
    /// the convolution kernel reads around it).
    private var impulse: [Float]
    /// Voice v's filter starts at v · filterStride + convolvePadding in `impulse`.
    private let filterStride: Int
    private var noise: [Float]        // [frameSize] scratch
    /// Overlap-add accumulator of filtered noise (all voices summed), in stream samples
    /// starting at `accStart`; holds the current and upcoming frames.
    private var acc: [Float]
    /// Stereo: the same for the side signal (each voice weighted by its pan), and one voice's
    /// filtered frame before it is split between the two (allocated on first use, in `prepareSide`).
    private var sideAcc: [Float] = []
    private var voiceFrame: [Float] = []
    public var generator: NoiseGenerator

    public init(hyper h: PianoWeights.Hyper, seed: UInt64) {
        voices = h.voices; bands = h.noiseBands; frameSize = h.samplesPerFrame
        irSize = 2 * (bands - 1)
        delay = (irSize - 1) / 2 - 1
        let n = irSize
        design = PackedMatrix(FilteredNoise.designMatrix(bands: bands), inputs: bands, columns: n)
        filterStride = n + 2 * convolvePadding
        impulse = [Float](repeating: 0, count: voices * filterStride)
        noise = [Float](repeating: 0, count: frameSize)
        acc = [Float](repeating: 0, count: 4 * frameSize + n + convolvePadding)
        generator = NoiseGenerator(seed: seed)
    }

    /// The filter design as a matrix [bands, 2·(bands − 1)]: magnitudes → causal windowed IR
    /// (inverse real FFT, periodic Hann, rotation to causal form), shared with training.
    public static func designMatrix(bands: Int) -> [Float] {
        let n = 2 * (bands - 1)
        var d = [Float](repeating: 0, count: bands * n)
        for i in 0..<n {
            let w = 0.5 - 0.5 * cos(2 * Double.pi * Double(i) / Double(n))
            let m = (i + n / 2) % n   // causal index i reads zero-phase index i + n/2
            for k in 0..<bands {
                let weight = (k == 0 || k == bands - 1) ? 1.0 : 2.0
                d[k * n + i] = Float(w * weight * cos(2 * Double.pi * Double(k * m) / Double(n)) / Double(n))
            }
        }
        return d
    }

    /// IR [rows, 2·(bands − 1)] = M [rows, bands] · D (`designMatrix`): every row's filter at
    /// once, float32 (OpenBLAS sgemm); shared with `FilteredNoiseTraining`.
    @inline(__always)
    static func impulseResponses(_ magnitudes: UnsafePointer<Float>, rows: Int, bands: Int, design: UnsafePointer<Float>,
                                 into ir: UnsafeMutablePointer<Float>) {
        let n = 2 * (bands - 1)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(rows), Int32(n), Int32(bands),
                    1, magnitudes, Int32(bands), design, Int32(n), 0, ir, Int32(n))
    }

    /// Allocates the stereo buffers (not for the audio thread).
    public mutating func prepareSide() {
        if sideAcc.isEmpty { sideAcc = [Float](repeating: 0, count: acc.count) }
        if voiceFrame.isEmpty { voiceFrame = [Float](repeating: 0, count: frameSize + irSize + convolvePadding) }
    }

    public mutating func reset(seed: UInt64) {
        for i in acc.indices { acc[i] = 0 }
        for i in sideAcc.indices { sideAcc[i] = 0 }
        generator = NoiseGenerator(seed: seed)
        primed = false
    }

    private var primed = false

    /// Filters frame F+1's noise with `next`'s magnitudes and adds output frame F to `out`.
    /// On the first call it also takes in frame 0 (`current`).
    /// `side` (stereo, after `prepareSide`): the voices' noise weighted by their pan is added there.
    public mutating func render(current: SynthControls, next: SynthControls, into out: UnsafeMutablePointer<Float>,
                                side: UnsafeMutablePointer<Float>? = nil) {
        let stereo = side != nil && !sideAcc.isEmpty
        if !primed {
            addFrame(current, at: 0, stereo: stereo)
            primed = true
        }
        // acc[0..<frameSize] is frame F; the frame F+1 filter output starts at acc[frameSize].
        addFrame(next, at: frameSize, stereo: stereo)
        let N = frameSize, D = delay
        acc.withUnsafeMutableBufferPointer { a in
            for r in 0..<N { out[r] += a[D + r] }
            FilteredNoise.slide(a, by: N)
        }
        if !sideAcc.isEmpty {
            sideAcc.withUnsafeMutableBufferPointer { a in
                if let side { for r in 0..<N { side[r] += a[D + r] } }
                FilteredNoise.slide(a, by: N)
            }
        }
    }

    @inline(__always)
    private static func slide(_ a: UnsafeMutableBufferPointer<Float>, by n: Int) {
        let keep = a.count - n
        for i in 0..<keep { a[i] = a[i + n] }
        for i in keep..<a.count { a[i] = 0 }
    }

    /// Designs the frame's filters and adds the filtered noise of every voice at `position`.
    private mutating func addFrame(_ c: SynthControls, at position: Int, stereo: Bool) {
        let n = irSize, N = frameSize
        c.magnitudes.withUnsafeBufferPointer { m in
        design.values.withUnsafeBufferPointer { d in
        impulse.withUnsafeMutableBufferPointer { h in
            // IR = M · D as `impulseResponses` (which training keeps on OpenBLAS for its big batches);
            // the product adds to the filters, whose padding stays 0.
            let first = h.baseAddress! + convolvePadding, stride = filterStride
            for v in 0..<voices { (first + v * stride).update(repeating: 0, count: n) }
            PianoKernels.active.packedProduct(voices, m.baseAddress!, bands, d.baseAddress!, bands, n, first, stride)
        }}}
        if stereo { return addFrameStereo(c, at: position) }
        noise.withUnsafeMutableBufferPointer { x in
        impulse.withUnsafeBufferPointer { h in
        acc.withUnsafeMutableBufferPointer { a in
            let convolveAdd = PianoKernels.active.convolveAdd
            for v in 0..<voices {
                generator.fill(x.baseAddress!, count: N)
                // a[position + i + j] += x[i]·h[j]: the chosen kernels (vectorised over j).
                convolveAdd(x.baseAddress!, N, h.baseAddress! + v * filterStride + convolvePadding, n, a.baseAddress! + position)
            }
        }}}
    }

    /// Stereo: each voice is filtered on its own, then added to the mix and, weighted by its
    /// pan, to the side (one convolution per voice, as in mono; the same noise sequence).
    private mutating func addFrameStereo(_ c: SynthControls, at position: Int) {
        let n = irSize, N = frameSize, L = N + n - 1
        noise.withUnsafeMutableBufferPointer { x in
        impulse.withUnsafeBufferPointer { h in
        voiceFrame.withUnsafeMutableBufferPointer { y in
        acc.withUnsafeMutableBufferPointer { a in
        sideAcc.withUnsafeMutableBufferPointer { sa in
        c.pan.withUnsafeBufferPointer { pan in
            let convolveAdd = PianoKernels.active.convolveAdd
            for v in 0..<voices {
                generator.fill(x.baseAddress!, count: N)
                for i in 0..<L { y[i] = 0 }
                convolveAdd(x.baseAddress!, N, h.baseAddress! + v * filterStride + convolvePadding, n, y.baseAddress!)
                let p = pan[v]
                for i in 0..<L {
                    a[position + i] += y[i]
                    sa[position + i] += p * y[i]
                }
            }
        }}}}}}
    }
}

/// Uniform white noise in [−1, 1), seeded (xoshiro128+), reproducible across runs.
public struct NoiseGenerator: Sendable {
    private var s0, s1, s2, s3: UInt32

    public init(seed: UInt64) {
        // SplitMix64 spreads the seed over the state (the seed itself is its first increment).
        var g = SplitMix64(seed: seed &+ 0x9E37_79B9_7F4A_7C15)
        let a = g.next(), b = g.next()
        s0 = UInt32(truncatingIfNeeded: a); s1 = UInt32(truncatingIfNeeded: a >> 32)
        s2 = UInt32(truncatingIfNeeded: b); s3 = UInt32(truncatingIfNeeded: b >> 32)
        if s0 | s1 | s2 | s3 == 0 { s0 = 1 }
    }

    @inline(__always)
    public mutating func nextFloat() -> Float {
        let result = s0 &+ s3
        let t = s1 << 9
        s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3
        s2 ^= t
        s3 = (s3 << 11) | (s3 >> 21)
        // 24 random bits → [0, 1) → [−1, 1)
        return Float(result >> 8) * (2.0 / 16_777_216.0) - 1
    }

    public mutating func fill(_ p: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { p[i] = nextFloat() }
    }
}
