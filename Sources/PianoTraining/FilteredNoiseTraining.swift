import DDSPPiano
import Foundation

// Training-mode forward and backward of the filtered noise synthesiser (mirrors
// Sources/DDSPPiano/Synth/FilteredNoise.swift: ddsp FilteredNoise / frequency_filter with
// window_size 257; the backward pass should move next to the forward pass once that file is
// free to edit).

/// Per voice and frame, the `bands` magnitudes define a 2·(bands − 1)-tap linear-phase FIR (the
/// frequency-sampling design is linear in the magnitudes: IR = M·D); the frame's white noise is
/// convolved with it, frames are overlap-added and the output read `delay` = (taps − 1)/2 − 1
/// samples late (ddsp fft_convolve, padding 'same'), over a whole segment. The noise is an input
/// (the caller draws it, e.g. with the engine's `NoiseGenerator`) and is needed again by backward.
public struct FilteredNoiseTraining: Sendable {
    public let bands: Int
    public let frameSize: Int
    public let taps: Int
    public let delay: Int
    let design: [Float]   // [bands, taps]: the same frequency-sampling design as FilteredNoise

    public init(bands: Int, frameSize: Int) {
        self.bands = bands; self.frameSize = frameSize
        let n = 2 * (bands - 1)
        taps = n
        delay = (n - 1) / 2 - 1
        design = FilteredNoise.designMatrix(bands: bands)
    }

    /// `magnitudes` [batch·voices, frames, bands], `noise` [batch·voices, frames·frameSize] → audio [batch, frames·frameSize].
    public func forward(magnitudes M: [Float], noise: [Float], batch B: Int, voices V: Int, frames T: Int) -> [Float] {
        let N = frameSize, n = T * N, K = bands, L = taps
        precondition(M.count == B * V * T * K && noise.count == B * V * n)
        var out = [Double](repeating: 0, count: B * n)
        var ir = [Float](repeating: 0, count: L)
        for q in 0..<(B * V) {
            let b = q / V
            for F in 0..<T {
                for i in 0..<L {
                    var s: Float = 0
                    for k in 0..<K { s += M[(q * T + F) * K + k] * design[k * L + i] }
                    ir[i] = s
                }
                for r in 0..<N {
                    let x = Double(noise[q * n + F * N + r])
                    let base = F * N + r - delay
                    for i in max(0, -base)..<min(L, n - base) { out[b * n + base + i] += x * Double(ir[i]) }
                }
            }
        }
        return out.map { Float($0) }
    }

    /// dL/dmagnitudes [batch·voices, frames, bands] from dL/daudio [batch, frames·frameSize].
    public func backward(_ dAudio: [Float], noise: [Float], batch B: Int, voices V: Int, frames T: Int) -> [Float] {
        let N = frameSize, n = T * N, K = bands, L = taps
        precondition(dAudio.count == B * n && noise.count == B * V * n)
        var dM = [Float](repeating: 0, count: B * V * T * K)
        var dIR = [Double](repeating: 0, count: L)
        for q in 0..<(B * V) {
            let b = q / V
            for F in 0..<T {
                for i in 0..<L { dIR[i] = 0 }
                for r in 0..<N {
                    let x = Double(noise[q * n + F * N + r])
                    let base = F * N + r - delay
                    for i in max(0, -base)..<min(L, n - base) { dIR[i] += x * Double(dAudio[b * n + base + i]) }
                }
                for k in 0..<K {
                    var s = 0.0
                    for i in 0..<L { s += Double(design[k * L + i]) * dIR[i] }
                    dM[(q * T + F) * K + k] = Float(s)
                }
            }
        }
        return dM
    }
}
