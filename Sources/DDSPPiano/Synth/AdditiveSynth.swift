import Foundation
import PianoKernelTypes

/// Inharmonic additive synthesis with two substrings per voice (upstream MultiInharmonic with
/// ddsp's harmonic_synthesis and cosine oscillators), one 64-sample frame at a time.
///
/// Between frame F and F+1, partial frequencies are interpolated linearly and amplitudes
/// cross-faded with half-overlapping periodic Hann windows (ddsp `resample(method='window')`):
/// both need frame F+1, which is the synthesis' one frame of look-ahead. Phases follow ddsp's
/// `angular_cumsum` in float32: a running sum within chunks of 1000 samples (counted from the
/// start of the stream), and a float32 running sum of the chunk ends modulo 2π as offset; so an
/// offline render reproduces upstream's oscillator phases, which depend on the whole history
/// (idle voices keep running at about 8 Hz).
///
/// Such a running sum is chaotic in the last bit of its terms, so the radians per sample are
/// computed as TensorFlow computes them: the frequency interpolated by the legacy bilinear
/// resize (position float32(n)·float32(1/frame) of the absolute sample n, its fraction in
/// float32), then (F·2π)/rate, each step rounded to float32. Where a partial's frequency does
/// not change over the frame that is its constant rate, the fast path.
public struct AdditiveSynth: Sendable {
    public let voices: Int
    public let substrings: Int
    public let harmonics: Int
    public let frameSize: Int
    public let sampleRate: Int

    static let chunkSize = 1000
    static let twoPi: Float = Float(2 * Double.pi)   // ddsp's 2·np.pi as a float32 constant

    /// Explicit state per oscillator [voices, substrings, harmonics].
    private var chunkPhase: [Float]
    private var offsetSum: [Float]
    private var offset: [Float]
    /// Samples rendered since the stream started (for the 1000-sample phase chunks).
    public private(set) var sampleIndex: Int = 0

    private let window: [Float]        // periodic Hann, 2·frameSize
    /// Per sample of the frame being rendered, the resize's interpolation fraction (TensorFlow's
    /// float32 arithmetic on the absolute sample index).
    private var lerp: [Float]
    private let resizeScale: Float     // float32(1/frameSize) as TensorFlow's in/out size ratio
    private var partialSum: [SIMD8<Float>]    // [frameSize] scratch: per-sample lanes of partial sums
    private var silentBlocks: [Int]           // scratch: byte offsets of the frame's silent 8-partial blocks

    public init(hyper h: PianoWeights.Hyper) {
        voices = h.voices; substrings = h.substrings; harmonics = h.harmonics
        frameSize = h.samplesPerFrame; sampleRate = h.sampleRate
        let n = voices * substrings * harmonics
        chunkPhase = [Float](repeating: 0, count: n)
        offsetSum = [Float](repeating: 0, count: n)
        offset = [Float](repeating: 0, count: n)
        let wl = 2 * frameSize
        window = (0..<wl).map { Float(0.5 - 0.5 * cos(2 * Double.pi * Double($0) / Double(wl))) }
        lerp = [Float](repeating: 0, count: frameSize)
        resizeScale = Float(1) / Float(h.samplesPerFrame)
        partialSum = [SIMD8<Float>](repeating: .zero, count: frameSize)
        silentBlocks = [Int](repeating: 0, count: n / 8 + 1)
    }

    public mutating func reset() {
        for i in chunkPhase.indices { chunkPhase[i] = 0; offsetSum[i] = 0; offset[i] = 0 }
        sampleIndex = 0
    }

    /// Adds frame F of every voice to `out` [frameSize], given the controls of frame F (`current`)
    /// and F+1 (`next`; pass `current` again at the very end, which holds the last frame).
    /// `side` (stereo, optional): each voice is also added there weighted by its key position
    /// (`SynthControls.pan`, glided from `current` to `next`).
    public mutating func render(current: SynthControls, next: SynthControls, into out: UnsafeMutablePointer<Float>,
                                side: UnsafeMutablePointer<Float>? = nil) {
        let H = harmonics, S = substrings, N = frameSize
        precondition(H % 8 == 0, "partials are processed 8 at a time")
        let start = sampleIndex
        for r in 0..<N {
            let position = Float(start + r) * resizeScale
            lerp[r] = position - position.rounded(.down)
        }
        // Index within the frame of the last sample of a phase chunk, if one ends in this frame.
        let chunkEnd = (AdditiveSynth.chunkSize - 1 - start % AdditiveSynth.chunkSize)
        let folds = chunkEnd < N                       // a phase chunk ends in this frame
        let chunk = folds ? chunkEnd + 1 : N            // samples up to and including its end
        // The oscillators of every voice: the chosen kernels' `additiveFrame` (Sources/PianoKernels).
        chunkPhase.withUnsafeMutableBufferPointer { cp in
        offsetSum.withUnsafeMutableBufferPointer { os in
        offset.withUnsafeMutableBufferPointer { off in
        partialSum.withUnsafeMutableBufferPointer { acc in
        current.harmonicFrequency.withUnsafeBufferPointer { fc in
        next.harmonicFrequency.withUnsafeBufferPointer { fn in
        current.harmonicAmplitude.withUnsafeBufferPointer { ac in
        next.harmonicAmplitude.withUnsafeBufferPointer { an in
        current.silent.withUnsafeBufferPointer { sc in
        next.silent.withUnsafeBufferPointer { sn in
        window.withUnsafeBufferPointer { w in
        lerp.withUnsafeBufferPointer { lp in
        silentBlocks.withUnsafeMutableBufferPointer { pending in
        current.pan.withUnsafeBufferPointer { pc in
        next.pan.withUnsafeBufferPointer { pn in
            var frame = AdditiveFrame(
                voices: voices, substrings: S, harmonics: H, frameSize: N, sampleRate: sampleRate, chunk: chunk, folds: folds,
                silentCurrent: sc.baseAddress!, silentNext: sn.baseAddress!,
                chunkPhase: cp.baseAddress!, offsetSum: os.baseAddress!, offset: off.baseAddress!,
                frequencyCurrent: fc.baseAddress!, frequencyNext: fn.baseAddress!,
                amplitudeCurrent: ac.baseAddress!, amplitudeNext: an.baseAddress!,
                window: w.baseAddress!, lerp: lp.baseAddress!, partialSums: acc.baseAddress!, pending: pending.baseAddress!,
                out: out)
            if let side { frame.side = side; frame.pan = pc.baseAddress!; frame.panNext = pn.baseAddress! }
            PianoKernels.active.additiveFrame(frame)
        }}}}}}}}}}}}}}}
        sampleIndex += N
    }
}

/// cos(x) for float32 x up to a few thousand radians (`VectorMath.vcos` on one lane).
@inline(__always)
public func fastCos(_ x: Float) -> Float {
    VectorMath.vcos(SIMD8<Float>(repeating: x))[0]
}

/// `fastCos` on eight lanes.
@inline(__always)
public func fastCos(_ x: SIMD8<Float>) -> SIMD8<Float> {
    VectorMath.vcos(x)
}
