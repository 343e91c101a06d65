import DDSPPiano
import Foundation
import PianoTestKit
import PianoTraining
import XCTest

/// Synthesiser backward passes against finite differences, and their forward passes against the
/// engine's.
final class SynthGradientTests: XCTestCase {
    func check<M>(_ name: String, _ model: M, _ path: WritableKeyPath<M, [Float]>, _ analytic: [Float], eps: Float,
                  entryTolerance: Double = 2e-2, directionalTolerance: Double = 1e-3, loss: (M) -> Double,
                  file: StaticString = #filePath, line: UInt = #line) {
        let entry = gradientCheck(model, path, analytic: analytic, eps: eps, samples: 40, loss: loss)
        let directional = directionalCheck(model, path, analytic: analytic, eps: eps, loss: loss)
        print(String(format: "gradient check %-36@ entries max rel err %.2e, directional %.2e", name as NSString, entry, directional))
        XCTAssertLessThan(entry, entryTolerance, name, file: file, line: line)
        XCTAssertLessThan(directional, directionalTolerance, name, file: file, line: line)
    }

    struct ControlInputs { var raw: [Float]; var f0: [Float]; var inharm: [Float] }

    func testControlsGradient() {
        var rng = SplitMix64(seed: 51)
        let H = 8, bands = 3, S = 2, Q = 2, T = 3, O = 1 + H + bands
        let controls = SynthControlsTraining(harmonics: H, bands: bands, sampleRate: 16000)
        // Voice 0 low (all partials below Nyquist); voice 1 at ~1500 Hz (partials 6..8 cut);
        // frame 2 of voice 1 at 15 Hz (gated off); negative B on one frame (clamped to 0).
        let f0: [Float] = [110, 111, 220, 221, 330, 331, 1500, 1502, 1480, 1481, 15, 15.1]
        let inharm: [Float] = [1e-3, 2e-4, -1e-4, 5e-4, 3e-4, 1e-4]
        let input = ControlInputs(raw: rng.array(Q * T * O, 2), f0: f0, inharm: inharm)
        let (out, cache) = controls.forward(raw: input.raw, f0: input.f0, inharm: input.inharm, sequences: Q, frames: T, substrings: S)
        let wA = rng.array(out.harmonicAmplitude.count), wF = rng.array(out.harmonicFrequency.count, 1e-3), wM = rng.array(out.magnitudes.count, 100)
        let (dRaw, dF0, dB) = controls.backward(dHarmonicAmplitude: wA, dHarmonicFrequency: wF, dMagnitudes: wM, cache: cache)
        let loss = { (x: ControlInputs) -> Double in
            let (o, _) = controls.forward(raw: x.raw, f0: x.f0, inharm: x.inharm, sequences: Q, frames: T, substrings: S)
            return weightedSum(o.harmonicAmplitude, wA) + weightedSum(o.harmonicFrequency, wF) + weightedSum(o.magnitudes, wM)
        }
        check("controls.raw", input, \.raw, dRaw, eps: 1e-2, loss: loss)
        // f0 is ~100..1500 Hz: a step of 1e-2 is lost in the float32 rounding of the partial
        // frequencies (~1e-3 Hz); the controls are linear in f0 away from the masks.
        check("controls.f0", input, \.f0, dF0, eps: 0.5, loss: loss)
        check("controls.inharm", input, \.inharm, dB, eps: 1e-5, loss: loss)
        XCTAssertEqual(dB[2], 0)   // B < 0 is clamped: no gradient
        for k in 0..<H { XCTAssertEqual(dRaw[(1 * T + 0) * O + 1 + k] == 0, k >= 5, "partial \(k + 1) above Nyquist has no gradient") }
    }

    /// Same controls as the engine's `SynthControls` (dafx22 sizes, random outputs).
    func testControlsMatchInference() {
        let h = PianoWeights.Hyper()
        var rng = SplitMix64(seed: 52)
        let V = h.voices, O = h.monoOutputs, S = h.substrings, H = h.harmonics, T = 2
        let raw = rng.array(V * T * O, 3)
        let f0 = (0..<(V * T * S)).map { i in Float(30 + (i * 37) % 3000) }
        let inharm = rng.array(V * T, 1e-3)
        let (out, _) = SynthControlsTraining(harmonics: H, bands: h.noiseBands, sampleRate: h.sampleRate)
            .forward(raw: raw, f0: f0, inharm: inharm, sequences: V, frames: T, substrings: S)
        var ref = SynthControls(hyper: h)
        var worst: Float = 0
        for t in 0..<T {
            var r = [Float](), f = [Float](), b = [Float]()
            for v in 0..<V {
                r += raw[((v * T + t) * O)..<((v * T + t + 1) * O)]
                f += f0[((v * T + t) * S)..<((v * T + t + 1) * S)]
                b.append(inharm[v * T + t])
            }
            ref.update(raw: r, f0: f, inharm: b, sampleRate: h.sampleRate)
            for v in 0..<V {
                for k in 0..<H {
                    worst = max(worst, abs(ref.harmonicAmplitude[v * H + k] - out.harmonicAmplitude[(v * T + t) * H + k]) / max(1e-6, ref.harmonicAmplitude[v * H + k]))
                    for s in 0..<S {
                        let a = ref.harmonicFrequency[(v * S + s) * H + k], c = out.harmonicFrequency[((v * T + t) * S + s) * H + k]
                        worst = max(worst, abs(a - c) / a)
                    }
                }
                for j in 0..<h.noiseBands { worst = max(worst, abs(ref.magnitudes[v * h.noiseBands + j] - out.magnitudes[(v * T + t) * h.noiseBands + j]) / ref.magnitudes[v * h.noiseBands + j]) }
            }
        }
        print("controls vs inference: max rel diff \(worst)")
        XCTAssertLessThan(worst, 1e-5)
    }

    struct OscillatorInputs { var amplitude: [Float]; var frequency: [Float] }

    func testAdditiveGradient() {
        var rng = SplitMix64(seed: 53)
        let B = 1, V = 2, T = 4, S = 2, H = 3
        let synth = AdditiveSynthTraining(frameSize: 64, sampleRate: 16000)
        var amp = rng.array(B * V * T * H).map { abs($0) }
        for k in 0..<H { amp[(1 * T + 0) * H + k] = 0 }   // a voice starting silent
        var freq = [Float](repeating: 0, count: B * V * T * S * H)
        for q in 0..<(B * V) { for t in 0..<T { for s in 0..<S { for k in 0..<H {
            freq[((q * T + t) * S + s) * H + k] = Float(200 * (q + 1) * (k + 1)) + Float(s) * 1.5 + Float(t) * 7 + rng.uniform(3)
        }}}}
        // One partial crosses Nyquist inside the segment: its cut samples carry no gradient.
        freq[((1 * T + 2) * S + 0) * H + 2] = 8100
        var input = OscillatorInputs(amplitude: amp, frequency: freq)
        let w = rng.array(T * 64)
        func loss(_ x: OscillatorInputs) -> Double {
            weightedSum(synth.forward(harmonicAmplitude: x.amplitude, harmonicFrequency: x.frequency, batch: B, voices: V, frames: T, substrings: S, harmonics: H), w)
        }
        func grads(_ x: OscillatorInputs) -> (dAmplitude: [Float], dFrequency: [Float]) {
            synth.backward(w, harmonicAmplitude: x.amplitude, harmonicFrequency: x.frequency, batch: B, voices: V, frames: T, substrings: S, harmonics: H)
        }
        check("additive.harmonic_amplitude", input, \.amplitude, grads(input).dAmplitude, eps: 1e-2, loss: loss)
        // A partial silent over frame 1 (amplitude 0 at frames 1 and 2): its phase advances in
        // closed form there, and the frequency gradient crosses the gap. In Hz: at 1e-2 the float32
        // audio's rounding dominates (a 440 Hz partial over 3 frames: analytic -0.0164194, numeric
        // -0.0164196 / -0.0164328 / -0.0164559 at 0.1 / 0.01 / 0.001).
        input.amplitude[(0 * T + 1) * H + 0] = 0; input.amplitude[(0 * T + 2) * H + 0] = 0
        let g = grads(input)
        check("additive.frequency", input, \.frequency, g.dFrequency, eps: 0.2, loss: loss)
        // Where the synthesiser is silent (a zero amplitude at both ends of a frame) the
        // amplitudes get no gradient from that frame (documented: only the f0 gate and the
        // Nyquist mask make exact zeros, and they pass no gradient on).
        var probe = input
        probe.amplitude[(0 * T + 1) * H + 0] = 1e-30   // not silent: the same frame now counts
        XCTAssertNotEqual(grads(probe).dAmplitude[(0 * T + 1) * H + 0], g.dAmplitude[(0 * T + 1) * H + 0])
    }

    /// Same audio as the engine's `AdditiveSynth` over a segment shorter than its 1000-sample
    /// phase chunk (where upstream's angular_cumsum and plain cumsum agree).
    func testAdditiveMatchesInference() {
        let h = PianoWeights.Hyper()
        var rng = SplitMix64(seed: 54)
        let V = h.voices, O = h.monoOutputs, S = h.substrings, H = h.harmonics, T = 6
        let raw = rng.array(V * T * O, 3)
        var f0 = [Float](repeating: 0, count: V * T * S)
        for v in 0..<V { for t in 0..<T { for s in 0..<S { f0[(v * T + t) * S + s] = v < 12 ? 60 + Float(v) * 70 + Float(t) + Float(s) * 0.7 : 8 } } }
        let inharm = rng.array(V * T, 1e-4).map { abs($0) }
        let (c, _) = SynthControlsTraining(harmonics: H, bands: h.noiseBands, sampleRate: h.sampleRate)
            .forward(raw: raw, f0: f0, inharm: inharm, sequences: V, frames: T, substrings: S)
        let audio = AdditiveSynthTraining(frameSize: h.samplesPerFrame, sampleRate: h.sampleRate)
            .forward(harmonicAmplitude: c.harmonicAmplitude, harmonicFrequency: c.harmonicFrequency, batch: 1, voices: V, frames: T, substrings: S, harmonics: H)
        var controls = (0..<T).map { _ in SynthControls(hyper: h) }
        for t in 0..<T {
            var r = [Float](), f = [Float](), b = [Float]()
            for v in 0..<V {
                r += raw[((v * T + t) * O)..<((v * T + t + 1) * O)]
                f += f0[((v * T + t) * S)..<((v * T + t + 1) * S)]
                b.append(inharm[v * T + t])
            }
            controls[t].update(raw: r, f0: f, inharm: b, sampleRate: h.sampleRate)
        }
        var synth = AdditiveSynth(hyper: h)
        let N = h.samplesPerFrame
        var ref = [Float](repeating: 0, count: T * N)
        for t in 0..<T {
            ref.withUnsafeMutableBufferPointer { synth.render(current: controls[t], next: controls[min(t + 1, T - 1)], into: $0.baseAddress! + t * N) }
        }
        var worst: Float = 0, peak: Float = 0
        for i in ref.indices { worst = max(worst, abs(ref[i] - audio[i])); peak = max(peak, abs(ref[i])) }
        print("additive vs inference: max abs diff \(worst), peak \(peak)")
        XCTAssertGreaterThan(peak, 0.1)
        // The engine accumulates phase in float32 (as upstream), this in Double: partials near
        // 7 kHz reach ~1000 rad in 384 samples, where float32's spacing is 6e-5 rad.
        XCTAssertLessThan(worst, 1e-3 * max(1, peak))
    }
}
