import DDSPPiano
import Foundation
import PianoTestKit
import PianoTraining
import XCTest

final class NoiseReverbGradientTests: XCTestCase {
    func check<M>(_ name: String, _ model: M, _ path: WritableKeyPath<M, [Float]>, _ analytic: [Float], eps: Float,
                  loss: (M) -> Double, file: StaticString = #filePath, line: UInt = #line) {
        let entry = gradientCheck(model, path, analytic: analytic, eps: eps, samples: 40, loss: loss)
        let directional = directionalCheck(model, path, analytic: analytic, eps: eps, loss: loss)
        print(String(format: "gradient check %-36@ entries max rel err %.2e, directional %.2e", name as NSString, entry, directional))
        XCTAssertLessThan(entry, 2e-2, name, file: file, line: line)
        XCTAssertLessThan(directional, 1e-3, name, file: file, line: line)
    }

    func noise(_ count: Int, seed: UInt64) -> [Float] {
        var g = NoiseGenerator(seed: seed)
        return (0..<count).map { _ in g.nextFloat() }
    }

    func testFilteredNoiseGradient() {
        var rng = SplitMix64(seed: 61)
        let B = 2, V = 2, T = 3, K = 9, N = 16
        let synth = FilteredNoiseTraining(bands: K, frameSize: N)
        let mags = rng.array(B * V * T * K).map { abs($0) }
        let x = noise(B * V * T * N, seed: 1)
        let w = rng.array(B * T * N)
        let dM = synth.backward(w, noise: x, batch: B, voices: V, frames: T)
        check("noise.magnitudes", mags, \.self, dM, eps: 1e-2) { m in
            weightedSum(synth.forward(magnitudes: m, noise: x, batch: B, voices: V, frames: T), w)
        }
    }

    /// Same audio as the engine's FilteredNoise (dafx22 sizes) given the same noise, except the
    /// last frame: streaming reads 61 samples into the next frame's noise, a segment has none.
    func testFilteredNoiseMatchesInference() {
        let h = PianoWeights.Hyper()
        var rng = SplitMix64(seed: 62)
        let V = h.voices, T = 5, N = h.samplesPerFrame, K = h.noiseBands, O = h.monoOutputs
        let raw = rng.array(V * T * O, 3)
        var controls = (0..<T).map { _ in SynthControls(hyper: h) }
        let f0 = [Float](repeating: 100, count: V * h.substrings), inharm = [Float](repeating: 0, count: V)
        for t in 0..<T {
            var r = [Float]()
            for v in 0..<V { r += raw[((v * T + t) * O)..<((v * T + t + 1) * O)] }
            controls[t].update(raw: r, f0: f0, inharm: inharm, sampleRate: h.sampleRate)
        }
        var mags = [Float](repeating: 0, count: V * T * K)
        for v in 0..<V { for t in 0..<T { for k in 0..<K { mags[(v * T + t) * K + k] = controls[t].magnitudes[v * K + k] } } }
        // The engine draws frame by frame, voice by voice.
        let stream = noise(V * (T + 1) * N, seed: 7)
        var x = [Float](repeating: 0, count: V * T * N)
        for t in 0..<T { for v in 0..<V { for r in 0..<N { x[v * T * N + t * N + r] = stream[(t * V + v) * N + r] } } }
        let audio = FilteredNoiseTraining(bands: K, frameSize: N).forward(magnitudes: mags, noise: x, batch: 1, voices: V, frames: T)
        var engine = FilteredNoise(hyper: h, seed: 7)
        var ref = [Float](repeating: 0, count: T * N)
        for t in 0..<T {
            ref.withUnsafeMutableBufferPointer { engine.render(current: controls[t], next: controls[min(t + 1, T - 1)], into: $0.baseAddress! + t * N) }
        }
        var worst: Float = 0, peak: Float = 0
        for i in 0..<((T - 1) * N) { worst = max(worst, abs(ref[i] - audio[i])); peak = max(peak, abs(ref[i])) }
        print("filtered noise vs inference: max abs diff \(worst), peak \(peak)")
        XCTAssertGreaterThan(peak, 1e-3)
        XCTAssertLessThan(worst, 1e-5 * max(1, peak))
    }

    struct ReverbInputs { var dry: [Float]; var ir: [Float] }

    func testReverbGradient() {
        var rng = SplitMix64(seed: 63)
        let B = 2, n = 50, L = 20
        let reverb = ReverbTraining(samples: n, irLength: L)
        let input = ReverbInputs(dry: rng.array(B * n), ir: rng.array(B * L, 0.3))
        let wet = reverb.forward(dry: input.dry, ir: input.ir, batch: B)
        // Direct sum, first IR sample zeroed.
        var worst: Float = 0
        for b in 0..<B {
            for i in 0..<n {
                var s = input.dry[b * n + i]
                for m in 1..<min(L, i + 1) { s += input.ir[b * L + m] * input.dry[b * n + i - m] }
                worst = max(worst, abs(s - wet[b * n + i]))
            }
        }
        XCTAssertLessThan(worst, 1e-5)
        let w = rng.array(B * n)
        let (dDry, dIR) = reverb.backward(w, dry: input.dry, ir: input.ir, batch: B)
        XCTAssertEqual(dIR[0], 0); XCTAssertEqual(dIR[L], 0)
        let loss = { (x: ReverbInputs) in weightedSum(reverb.forward(dry: x.dry, ir: x.ir, batch: B), w) }
        check("reverb.dry", input, \.dry, dDry, eps: 1e-2, loss: loss)
        check("reverb.impulse_response", input, \.ir, dIR, eps: 1e-2, loss: loss)
    }

    /// Same output as the engine's partitioned reverb (dafx22 length, 0.3 s of audio).
    func testReverbMatchesInference() {
        var rng = SplitMix64(seed: 64)
        let L = 24_000, n = 4_800, block = 64
        let ir = rng.array(L, 0.01), dry = rng.array(n)
        let wet = ReverbTraining(samples: n, irLength: L).forward(dry: dry, ir: ir, batch: 1)
        let engine = ir.withUnsafeBufferPointer { Reverb(impulseResponse: $0, blockSize: block) }
        var ref = [Float](repeating: 0, count: n)
        dry.withUnsafeBufferPointer { d in ref.withUnsafeMutableBufferPointer { o in
            for s in stride(from: 0, to: n, by: block) { engine.process(d.baseAddress! + s, into: o.baseAddress! + s) }
        }}
        var worst: Float = 0
        for i in 0..<n { worst = max(worst, abs(ref[i] - wet[i])) }
        print("reverb vs inference: max abs diff \(worst)")
        XCTAssertLessThan(worst, 1e-4)
    }
}
