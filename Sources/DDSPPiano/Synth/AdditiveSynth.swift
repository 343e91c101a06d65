import Foundation

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
    private var lerp: [Float]          // r / frameSize
    private var partialSum: [SIMD8<Float>]    // [frameSize] scratch: per-sample lanes of partial sums

    public init(hyper h: PianoWeights.Hyper) {
        voices = h.voices; substrings = h.substrings; harmonics = h.harmonics
        frameSize = h.samplesPerFrame; sampleRate = h.sampleRate
        let n = voices * substrings * harmonics
        chunkPhase = [Float](repeating: 0, count: n)
        offsetSum = [Float](repeating: 0, count: n)
        offset = [Float](repeating: 0, count: n)
        let wl = 2 * frameSize
        window = (0..<wl).map { Float(0.5 - 0.5 * cos(2 * Double.pi * Double($0) / Double(wl))) }
        lerp = (0..<frameSize).map { Float($0) * (1 / Float(h.samplesPerFrame)) }
        partialSum = [SIMD8<Float>](repeating: .zero, count: frameSize)
    }

    public mutating func reset() {
        for i in chunkPhase.indices { chunkPhase[i] = 0; offsetSum[i] = 0; offset[i] = 0 }
        sampleIndex = 0
    }

    /// Adds frame F of every voice to `out` [frameSize], given the controls of frame F (`current`)
    /// and F+1 (`next`; pass `current` again at the very end, which holds the last frame).
    public mutating func render(current: SynthControls, next: SynthControls, into out: UnsafeMutablePointer<Float>) {
        let H = harmonics, S = substrings, N = frameSize
        precondition(H % 8 == 0, "partials are processed 8 at a time")
        let nyquist = SIMD8<Float>(repeating: Float(sampleRate) / 2)
        let sr = SIMD8<Float>(repeating: Float(sampleRate))
        let twoPi = SIMD8<Float>(repeating: AdditiveSynth.twoPi)
        let start = sampleIndex
        // Index within the frame of the last sample of a phase chunk, if one ends in this frame.
        let chunkEnd = (AdditiveSynth.chunkSize - 1 - start % AdditiveSynth.chunkSize)
        chunkPhase.withUnsafeMutableBufferPointer { cp in
        offsetSum.withUnsafeMutableBufferPointer { os in
        offset.withUnsafeMutableBufferPointer { off in
        partialSum.withUnsafeMutableBufferPointer { acc in
        current.harmonicFrequency.withUnsafeBufferPointer { fc in
        next.harmonicFrequency.withUnsafeBufferPointer { fn in
        current.harmonicAmplitude.withUnsafeBufferPointer { ac in
        next.harmonicAmplitude.withUnsafeBufferPointer { an in
        window.withUnsafeBufferPointer { w in
        lerp.withUnsafeBufferPointer { lp in
            let cpR = UnsafeMutableRawPointer(cp.baseAddress!), osR = UnsafeMutableRawPointer(os.baseAddress!)
            let offR = UnsafeMutableRawPointer(off.baseAddress!)
            let fcR = UnsafeRawPointer(fc.baseAddress!), fnR = UnsafeRawPointer(fn.baseAddress!)
            let acR = UnsafeRawPointer(ac.baseAddress!), anR = UnsafeRawPointer(an.baseAddress!)
            for v in 0..<voices {
                let audible = !(current.silent[v] && next.silent[v])
                for s in 0..<S {
                    if audible { for r in 0..<N { acc[r] = .zero } }
                    for kb in stride(from: 0, to: H, by: 8) {
                        let o = ((v * S + s) * H + kb) * 4, ao = (v * H + kb) * 4
                        let f0 = fcR.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self)
                        let f1 = fnR.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self)
                        // Radians per sample at both ends of the frame; interpolating these is
                        // interpolating the frequency (to float rounding), without a division
                        // per sample.
                        let w0 = (f0 * twoPi) / sr
                        let dw = (f1 * twoPi) / sr - w0
                        var phase = cpR.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self)
                        var ofs = offR.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self)
                        let a0 = acR.loadUnaligned(fromByteOffset: ao, as: SIMD8<Float>.self)
                        let a1 = anR.loadUnaligned(fromByteOffset: ao, as: SIMD8<Float>.self)
                        // Silent partials (no amplitude at either end, or above Nyquist for the
                        // whole frame) only advance their phase.
                        let lastT = lp[N - 1]
                        let aboveNyquist = (f0 .>= nyquist) .& ((f0 + (f1 - f0) * lastT) .>= nyquist)
                        let silent = (a0 .== 0) .& (a1 .== 0)
                        if audible && !all(aboveNyquist .| silent) {
                            let df = f1 - f0
                            for r in 0..<N {
                                let t = lp[r]
                                phase += w0 + dw * t
                                var a = a0 * w[N + r] + a1 * w[r]
                                a.replace(with: 0, where: (f0 + df * t) .>= nyquist)
                                acc[r] += a * fastCos(phase + ofs)
                                if r == chunkEnd { AdditiveSynth.foldChunk(&phase, &ofs, osR, o, twoPi: twoPi[0]) }
                            }
                        } else {
                            for r in 0..<N {
                                phase += w0 + dw * lp[r]
                                if r == chunkEnd { AdditiveSynth.foldChunk(&phase, &ofs, osR, o, twoPi: twoPi[0]) }
                            }
                        }
                        cpR.storeBytes(of: phase, toByteOffset: o, as: SIMD8<Float>.self)
                        offR.storeBytes(of: ofs, toByteOffset: o, as: SIMD8<Float>.self)
                    }
                    if audible { for r in 0..<N { out[r] += acc[r].sum() } }
                }
            }
        }}}}}}}}}}
        sampleIndex += N
    }

    /// ddsp angular_cumsum at a chunk end: the next chunk starts from 0, offset by the float32
    /// running sum of previous chunk ends (each mod 2π), mod 2π.
    @inline(__always)
    private static func foldChunk(_ phase: inout SIMD8<Float>, _ ofs: inout SIMD8<Float>, _ sums: UnsafeMutableRawPointer, _ o: Int, twoPi: Float) {
        var sum = sums.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self)
        for l in 0..<8 {
            sum[l] += fmodf(phase[l], twoPi)
            ofs[l] = fmodf(sum[l], twoPi)
        }
        sums.storeBytes(of: sum, toByteOffset: o, as: SIMD8<Float>.self)
        phase = .zero
    }
}

/// cos(x) for float32 x up to a few thousand radians, accurate to about 1e-6 plus the
/// float32 rounding of x itself; branch-free so that loops over partials vectorise.
@inline(__always)
public func fastCos(_ x: Float) -> Float {
    var y = x * 0.159154943091895335768883763372514362   // x / 2π
    let magic: Float = 12582912                          // 1.5·2²³: round to nearest
    y -= (y + magic) - magic                              // y ∈ [−0.5, 0.5]
    let a = abs(y)
    let flip = a > 0.25
    let b = flip ? 0.5 - a : a                            // cos(2πa) = −cos(2π(½ − a))
    let t = b * 6.28318530717958647692528676655900577
    let t2 = t * t
    var c: Float = 1.0 / 479001600
    c = c * t2 - 1.0 / 3628800
    c = c * t2 + 1.0 / 40320
    c = c * t2 - 1.0 / 720
    c = c * t2 + 1.0 / 24
    c = c * t2 - 0.5
    c = c * t2 + 1
    return flip ? -c : c
}

/// `fastCos` on eight lanes.
@inline(__always)
public func fastCos(_ x: SIMD8<Float>) -> SIMD8<Float> {
    var y = x * 0.159154943091895335768883763372514362
    let magic = SIMD8<Float>(repeating: 12582912)
    y -= (y + magic) - magic
    let a = y.replacing(with: -y, where: y .< 0)
    let flip = a .> 0.25
    let b = a.replacing(with: 0.5 - a, where: flip)
    let t = b * 6.28318530717958647692528676655900577
    let t2 = t * t
    var c = SIMD8<Float>(repeating: 1.0 / 479001600)
    c = c * t2 - 1.0 / 3628800
    c = c * t2 + 1.0 / 40320
    c = c * t2 - 1.0 / 720
    c = c * t2 + 1.0 / 24
    c = c * t2 - 0.5
    c = c * t2 + 1
    return c.replacing(with: -c, where: flip)
}
