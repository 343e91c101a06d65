import DDSPPiano
import Foundation
import PianoTestKit
import PianoTraining
import XCTest

final class LossTests: XCTestCase {
    /// The STFT's backward is its exact adjoint: <STFT x, y> = <x, STFTᵀ y>.
    func testSTFTAdjoint() {
        for size in [64, 32] {
            var rng = SplitMix64(seed: UInt64(size))
            let stft = DifferentiableSTFT(size: size)
            let n = 150
            let x = rng.array(n)
            let spec = x.withUnsafeBufferPointer { stft.forward($0.baseAddress!, count: n) }
            let y = rng.array(spec.count)
            var xt = [Float](repeating: 0, count: n)
            xt.withUnsafeMutableBufferPointer { stft.backward(y, count: n, into: $0.baseAddress!) }
            let lhs = weightedSum(spec, y), rhs = weightedSum(x, xt)
            print("STFT \(size) adjoint: <Sx,y> = \(lhs), <x,Sᵀy> = \(rhs)")
            XCTAssertEqual(lhs, rhs, accuracy: 1e-5 * max(1, abs(lhs)))
        }
    }

    /// Framing as tf.signal.stft(pad_end=True): ceil(n/hop) frames, periodic Hann, zero padding.
    func testSTFTMatchesDirectDFT() {
        var rng = SplitMix64(seed: 5)
        let size = 32, n = 70
        let stft = DifferentiableSTFT(size: size)
        XCTAssertEqual(stft.hop, 8)
        XCTAssertEqual(stft.frameCount(samples: n), 9)   // ceil(70 / 8)
        let x = rng.array(n)
        let spec = x.withUnsafeBufferPointer { stft.forward($0.baseAddress!, count: n) }
        var worst = 0.0
        for f in 0..<9 {
            for k in 0...(size / 2) {
                var re = 0.0, im = 0.0
                for i in 0..<size where f * 8 + i < n {
                    let w = 0.5 - 0.5 * cos(2 * Double.pi * Double(i) / Double(size))
                    let a = w * Double(x[f * 8 + i]), th = 2 * Double.pi * Double(k * i) / Double(size)
                    re += a * cos(th); im -= a * sin(th)
                }
                let idx = (f * (size / 2 + 1) + k) * 2
                worst = max(worst, abs(re - Double(spec[idx])), abs(im - Double(spec[idx + 1])))
            }
        }
        XCTAssertLessThan(worst, 1e-5)
    }

    /// The loss value against a direct Double implementation of ddsp's definition.
    func testSpectralLossValue() {
        var rng = SplitMix64(seed: 6)
        let batch = 2, n = 120, sizes = [64, 16]
        let target = rng.array(batch * n, 0.5)
        var audio = rng.array(batch * n, 0.5)
        for i in 0..<10 { audio[i] = 0 }   // a silent stretch: |X| = 0 frames exercise safe_log
        for i in 0..<20 { audio[n + i] = 0; }
        let loss = MultiScaleSpectralLoss(sizes: sizes).loss(target: target, audio: audio, batch: batch, samples: n)
        XCTAssertEqual(MultiScaleSpectralLoss(sizes: sizes).loss(target: target, audio: target, batch: batch, samples: n), 0)
        func mags(_ x: ArraySlice<Float>, _ size: Int) -> [Double] {
            let hop = size / 4, frames = (x.count + hop - 1) / hop, base = x.startIndex
            var out: [Double] = []
            for f in 0..<frames {
                for k in 0...(size / 2) {
                    var re = 0.0, im = 0.0
                    for i in 0..<size where f * hop + i < x.count {
                        let a = (0.5 - 0.5 * cos(2 * Double.pi * Double(i) / Double(size))) * Double(x[base + f * hop + i])
                        re += a * cos(2 * Double.pi * Double(k * i) / Double(size)); im -= a * sin(2 * Double.pi * Double(k * i) / Double(size))
                    }
                    out.append((re * re + im * im).squareRoot())
                }
            }
            return out
        }
        func safeLog(_ x: Double) -> Double { x <= 0 ? log(1e-5) : log(x) }
        var expected = 0.0
        for size in sizes {
            var lin = 0.0, lg = 0.0, count = 0
            for b in 0..<batch {
                let mt = mags(target[(b * n)..<((b + 1) * n)], size), ma = mags(audio[(b * n)..<((b + 1) * n)], size)
                for i in mt.indices { lin += abs(mt[i] - ma[i]); lg += abs(safeLog(mt[i]) - safeLog(ma[i])) }
                count += mt.count
            }
            expected += lin / Double(count) + lg / Double(count)
        }
        print("spectral loss \(loss), direct Double implementation \(expected)")
        XCTAssertEqual(loss, expected, accuracy: 1e-4 * expected)
    }

    /// dL/daudio against finite differences (eps 1e-3 on samples of ±0.5).
    func testSpectralLossGradient() {
        var rng = SplitMix64(seed: 7)
        let batch = 2, n = 96
        let lossFn = MultiScaleSpectralLoss(sizes: [64, 32, 16])
        let target = rng.array(batch * n, 0.5)
        let audio = rng.array(batch * n, 0.5)
        var grad = [Float](repeating: 0, count: batch * n)
        _ = grad.withUnsafeMutableBufferPointer { lossFn.loss(target: target, audio: audio, batch: batch, samples: n, gradient: $0.baseAddress!) }
        let f = { (a: [Float]) in lossFn.loss(target: target, audio: a, batch: batch, samples: n) }
        let entry = gradientCheck(audio, \.self, analytic: grad, eps: 1e-3, samples: 48, loss: f)
        let directional = directionalCheck(audio, \.self, analytic: grad, eps: 1e-4, loss: f)
        print(String(format: "spectral loss dL/daudio: entries max rel err %.2e, directional %.2e", entry, directional))
        XCTAssertLessThan(entry, 2e-2)
        XCTAssertLessThan(directional, 1e-2)
    }

    func testReverbRegularizer() {
        var reverb = EmbeddingTraining(table: [0.5, -1, 0, 2, 3, -4], width: 3)
        // Instrument 0 twice, 1 once: 0.01·(1.5 + 1.5 + 9)/3.
        let value = ReverbRegularizer.apply(to: &reverb, instruments: [0, 0, 1])
        XCTAssertEqual(value, 0.01 * 12 / 3, accuracy: 1e-9)
        let s: Float = 0.01 / 3
        XCTAssertEqual(reverb.tableGrad, [2 * s, -2 * s, 0, s, s, -s])
    }
}
