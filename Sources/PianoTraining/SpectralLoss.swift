import CKissFFT
import DDSPPiano
import Foundation

/// A short-time Fourier transform with its adjoint, as tf.signal.stft in ddsp's
/// `spectral_ops.stft(pad_end=True)`: periodic Hann window of `size`, hop `size/4`, FFT length
/// `size` (a power of two), frames at 0, hop, 2·hop, … while the frame starts inside the signal,
/// ceil(N / hop) frames, zero padding at the end.
// @unchecked Sendable: holds KissFFT plans and scratch: one thread at a time (each trainer worker has its own).
public final class DifferentiableSTFT: @unchecked Sendable {
    public let size: Int
    public let hop: Int
    public var bins: Int { size / 2 + 1 }
    private let forwardCfg: kiss_fftr_cfg
    private let inverseCfg: kiss_fftr_cfg
    let window: [Float]                      // [size]
    private var frame: [Float]               // [size] scratch
    private var spectrum: [kiss_fft_cpx]     // [bins] scratch

    public init(size: Int, overlap: Double = 0.75) {
        precondition(size >= 4 && size & (size - 1) == 0, "FFT size must be a power of two")
        self.size = size
        hop = Int(Double(size) * (1 - overlap))
        precondition(hop > 0)
        forwardCfg = kiss_fftr_alloc(Int32(size), 0, nil, nil)
        inverseCfg = kiss_fftr_alloc(Int32(size), 1, nil, nil)
        window = (0..<size).map { Float(0.5 - 0.5 * cos(2 * Double.pi * Double($0) / Double(size))) }
        frame = [Float](repeating: 0, count: size)
        spectrum = [kiss_fft_cpx](repeating: kiss_fft_cpx(r: 0, i: 0), count: size / 2 + 1)
    }

    deinit { ckiss_fftr_free(forwardCfg); ckiss_fftr_free(inverseCfg) }

    public func frameCount(samples n: Int) -> Int { (n + hop - 1) / hop }

    /// Complex spectrum [frames, bins] as (real, imaginary) pairs.
    public func forward(_ x: UnsafePointer<Float>, count n: Int) -> [Float] {
        let F = frameCount(samples: n), K = bins
        var out = [Float](repeating: 0, count: F * K * 2)
        for f in 0..<F {
            let start = f * hop
            for i in 0..<size { let j = start + i; frame[i] = j < n ? x[j] * window[i] : 0 }
            frame.withUnsafeBufferPointer { t in spectrum.withUnsafeMutableBufferPointer { s in kiss_fftr(forwardCfg, t.baseAddress, s.baseAddress) } }
            for k in 0..<K { out[(f * K + k) * 2] = spectrum[k].r; out[(f * K + k) * 2 + 1] = spectrum[k].i }
        }
        return out
    }

    /// The adjoint: given dL/dRe X and dL/dIm X [frames, bins, 2] (X = Σₙ wₙ x e^{−iθkn}),
    /// adds dL/dx [n]. For a real a: ∂Re X/∂a = cos θkn, ∂Im X/∂a = −sin θkn, so
    /// dL/daₙ = Re(Σₖ Gₖ e^{iθkn}) with Gₖ = dRe + i·dIm: one inverse real FFT per frame, the
    /// bins strictly between DC and Nyquist halved (the inverse adds their mirror images).
    public func backward(_ dSpectrum: [Float], count n: Int, into dx: UnsafeMutablePointer<Float>) {
        let F = frameCount(samples: n), K = bins
        precondition(dSpectrum.count == F * K * 2)
        for f in 0..<F {
            for k in 0..<K {
                let half: Float = (k == 0 || k == K - 1) ? 1 : 0.5
                spectrum[k] = kiss_fft_cpx(r: dSpectrum[(f * K + k) * 2] * half, i: dSpectrum[(f * K + k) * 2 + 1] * half)
            }
            spectrum.withUnsafeBufferPointer { s in frame.withUnsafeMutableBufferPointer { t in kiss_fftri(inverseCfg, s.baseAddress, t.baseAddress) } }
            let start = f * hop
            for i in 0..<size { let j = start + i; if j < n { dx[j] += frame[i] * window[i] } }
        }
    }
}

/// ddsp's SpectralLoss as configured by dafx22.gin: for each FFT size (2048 … 64, 75 % overlap),
/// mean over (batch, frames, bins) of |S_target − S| plus mean of |safe_log S_target − safe_log S|,
/// S the STFT magnitude and safe_log(x) = log(x), or log(1e-5) where x ≤ 0; summed over sizes.
/// The gradient w.r.t. the audio follows TensorFlow's: d|X| = Re(conj(X)/|X|·dX), 0 where |X| = 0
/// (div_no_nan), and sign(0) = 0 for the L1.
// @unchecked Sendable: holds FFT plans and scratch: one thread at a time (each trainer worker has its own).
public final class MultiScaleSpectralLoss: @unchecked Sendable {
    public let sizes: [Int]
    public let magnitudeWeight: Float
    public let logMagnitudeWeight: Float
    public static let logEpsilon: Float = 1e-5
    private let stfts: [DifferentiableSTFT]

    public init(sizes: [Int] = [2048, 1024, 512, 256, 128, 64], magnitudeWeight: Float = 1, logMagnitudeWeight: Float = 1) {
        self.sizes = sizes
        self.magnitudeWeight = magnitudeWeight
        self.logMagnitudeWeight = logMagnitudeWeight
        stfts = sizes.map { DifferentiableSTFT(size: $0) }
    }

    static func safeLog(_ x: Float) -> Float { x <= 0 ? logf(logEpsilon) : logf(x) }

    /// Loss over a batch of clips, each `samples` long: target and audio are [batch, samples].
    /// With `gradient`, dL/daudio [batch, samples] is written there (overwritten).
    public func loss(target: [Float], audio: [Float], batch: Int, samples: Int, gradient: UnsafeMutablePointer<Float>? = nil) -> Double {
        precondition(target.count == batch * samples && audio.count == batch * samples)
        if let g = gradient { g.update(repeating: 0, count: batch * samples) }
        var total = 0.0
        for stft in stfts {
            let F = stft.frameCount(samples: samples), K = stft.bins
            let count = Double(batch * F * K)
            var lin = 0.0, log = 0.0
            for b in 0..<batch {
                let xt = target.withUnsafeBufferPointer { stft.forward($0.baseAddress! + b * samples, count: samples) }
                let xa = audio.withUnsafeBufferPointer { stft.forward($0.baseAddress! + b * samples, count: samples) }
                var dSpec = gradient == nil ? [] : [Float](repeating: 0, count: F * K * 2)
                for i in 0..<(F * K) {
                    let mt = (xt[2 * i] * xt[2 * i] + xt[2 * i + 1] * xt[2 * i + 1]).squareRoot()
                    let ma = (xa[2 * i] * xa[2 * i] + xa[2 * i + 1] * xa[2 * i + 1]).squareRoot()
                    let dl = ma - mt, dg = Self.safeLog(ma) - Self.safeLog(mt)
                    lin += Double(abs(dl)); log += Double(abs(dg))
                    if gradient != nil, ma > 0 {
                        // dL/d|X|: the log term's derivative is 1/|X| where |X| > 0 (where safe_log
                        // substitutes the constant, |X| = 0, and the magnitude's gradient is 0 anyway).
                        let dm = (magnitudeWeight * sign(dl) + logMagnitudeWeight * sign(dg) / ma) / Float(count)
                        dSpec[2 * i] = dm * xa[2 * i] / ma
                        dSpec[2 * i + 1] = dm * xa[2 * i + 1] / ma
                    }
                }
                if let g = gradient { stft.backward(dSpec, count: samples, into: g + b * samples) }
            }
            total += (Double(magnitudeWeight) * lin + Double(logMagnitudeWeight) * log) / count
        }
        return total
    }
}

/// Upstream's ReverbRegularizer (dafx22: L1, weight 0.01): weight · Σ|ir| over the batch's
/// impulse responses (one per segment, its instrument's) divided by the batch size.
public enum ReverbRegularizer {
    public static let defaultWeight: Float = 0.01

    /// Value, and the gradient added into `reverb.tableGrad`.
    public static func apply(to reverb: inout EmbeddingTraining, instruments: [Int], weight: Float = defaultWeight) -> Double {
        let L = reverb.width, scale = weight / Float(instruments.count)
        var total = 0.0
        for i in instruments {
            var s = 0.0
            for j in 0..<L {
                let v = reverb.table[i * L + j]
                s += Double(abs(v))
                reverb.tableGrad[i * L + j] += scale * sign(v)
            }
            total += s
        }
        return Double(weight) * total / Double(instruments.count)
    }
}

/// sign(0) = 0, like tf.sign (the L1 terms' subgradient).
@inline(__always) func sign(_ x: Float) -> Float { x > 0 ? 1 : (x < 0 ? -1 : 0) }
