import CKissFFT
import Foundation

/// Magnitude short-time Fourier transform with a periodic Hann window (KissFFT real FFT).
/// Used for comparing renders (multi-scale spectral distance, per-band energies) and by the
/// trainer's spectral loss.
// @unchecked Sendable: holds a KissFFT plan and scratch: one thread at a time.
public final class STFT: @unchecked Sendable {
    public let size: Int
    public let hop: Int
    public var bins: Int { size / 2 + 1 }
    private let cfg: kiss_fftr_cfg
    private let window: [Float]
    private var frame: [Float]
    private var spectrum: [kiss_fft_cpx]

    public init(size: Int, hop: Int) {
        precondition(size >= 4 && size % 2 == 0 && hop > 0)
        self.size = size
        self.hop = hop
        cfg = kiss_fftr_alloc(Int32(size), 0, nil, nil)
        window = (0..<size).map { Float(0.5 - 0.5 * cos(2 * Double.pi * Double($0) / Double(size))) }
        frame = [Float](repeating: 0, count: size)
        spectrum = [kiss_fft_cpx](repeating: kiss_fft_cpx(r: 0, i: 0), count: size / 2 + 1)
    }

    deinit { ckiss_fftr_free(cfg) }

    /// Frames start at 0, hop apart, while a whole frame fits (at least one frame, zero-padded).
    public func frameCount(samples: Int) -> Int { samples < size ? 1 : 1 + (samples - size) / hop }

    /// Magnitudes [frames, bins].
    public func magnitudes(_ x: [Float]) -> [Float] {
        let frames = frameCount(samples: x.count), K = bins
        var out = [Float](repeating: 0, count: frames * K)
        for f in 0..<frames {
            let start = f * hop
            for i in 0..<size {
                let n = start + i
                frame[i] = n < x.count ? x[n] * window[i] : 0
            }
            frame.withUnsafeBufferPointer { t in
                spectrum.withUnsafeMutableBufferPointer { s in kiss_fftr(cfg, t.baseAddress, s.baseAddress) }
            }
            for k in 0..<K {
                let c = spectrum[k]
                out[f * K + k] = (c.r * c.r + c.i * c.i).squareRoot()
            }
        }
        return out
    }
}

public enum SpectralMetrics {
    /// Multi-scale spectral distance as in DDSP's spectral loss: for FFT sizes 2048…64 with 75 %
    /// overlap, mean |S_a − S_b| + mean |log(S_a + ε) − log(S_b + ε)|, summed over scales.
    public static func multiScaleDistance(_ a: [Float], _ b: [Float], sizes: [Int] = [2048, 1024, 512, 256, 128, 64]) -> Double {
        let n = min(a.count, b.count)
        let x = Array(a[..<n]), y = Array(b[..<n])
        var total = 0.0
        for size in sizes {
            let stft = STFT(size: size, hop: size / 4)
            let ma = stft.magnitudes(x), mb = stft.magnitudes(y)
            var lin = 0.0, log = 0.0
            for i in ma.indices {
                lin += Double(abs(ma[i] - mb[i]))
                log += abs(Foundation.log(Double(ma[i]) + 1e-7) - Foundation.log(Double(mb[i]) + 1e-7))
            }
            total += (lin + log) / Double(max(1, ma.count))
        }
        return total
    }

    /// Energy in dB per (frame, band): power spectra of `size`-sample Hann frames, summed over
    /// `bands` equal-width bands from 0 Hz to Nyquist. Returns [frames, bands].
    public static func bandEnergies(_ x: [Float], size: Int = 2048, hop: Int = 1024, bands: Int = 16) -> (frames: Int, db: [Double]) {
        let stft = STFT(size: size, hop: hop)
        let m = stft.magnitudes(x), K = stft.bins, F = stft.frameCount(samples: x.count)
        var out = [Double](repeating: 0, count: F * bands)
        for f in 0..<F {
            for k in 1..<K {   // skip DC so each band has the same number of bins
                let band = min(bands - 1, (k - 1) * bands / (K - 1))
                out[f * bands + band] += Double(m[f * K + k]) * Double(m[f * K + k])
            }
            for b in 0..<bands { out[f * bands + b] = 10 * log10(out[f * bands + b] + 1e-20) }
        }
        return (F, out)
    }
}
