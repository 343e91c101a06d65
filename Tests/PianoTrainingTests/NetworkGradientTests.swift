import DDSPPiano
import Foundation
import PianoTestKit
import PianoTraining
import XCTest

/// Random weights of the given shapes: kernels ~ U(±1/√fan_in)·gain, Rigaud's inharmonicity
/// lines, a short note release (so the test segments see notes end and the hold expire).
func randomWeights(_ h: PianoWeights.Hyper, instruments n: Int, seed: UInt64, gain: Float = 1.5) -> PianoWeights {
    var rng = SplitMix64(seed: seed)
    var w = PianoWeights(hyper: h, instruments: (0..<n).map { "piano\($0)" })
    func fill(_ p: WritableKeyPath<PianoWeights, Tensor>, _ scale: Float, offset: Float = 0) {
        w[keyPath: p].values = rng.array(w[keyPath: p].count, scale).map { $0 + offset }
    }
    func kernel(_ p: WritableKeyPath<PianoWeights, Tensor>) { fill(p, gain / Float(w[keyPath: p].shape[0]).squareRoot()) }
    fill(\.zEmbedding, 0.5); fill(\.inharmonicityEmbedding, 0.2); fill(\.detuningEmbedding, 0.3)
    kernel(\.contextDenseKernel); fill(\.contextDenseBias, 0.1)
    // The context net sees raw MIDI numbers (up to 108): small weights on those rows keep it out
    // of saturation, as trained weights do (a saturated GRU has gradients below float32 noise).
    let cu = h.contextUnits
    for v in 0..<h.voices { for j in 0..<cu { w.contextDenseKernel.values[2 * v * cu + j] *= 0.02 } }
    kernel(\.contextGRUKernel); kernel(\.contextGRURecurrentKernel); fill(\.contextGRUInputBias, 0.2); fill(\.contextGRURecurrentBias, 0.2)
    fill(\.contextNormScale, 0.3, offset: 1); fill(\.contextNormShift, 0.2)
    kernel(\.contextOutKernel); fill(\.contextOutBias, 0.1)
    w.releaseDuration.values = [0.012]   // 3 frames
    w.inharmSlopes.values = [9.26e-2 * 128, -8.47e-2 * 128]
    w.inharmOffsets.values = [-13.64 / (128 * 9.26e-2), -5.82 / (128 * -8.47e-2)]
    fill(\.inharmSlopesModifier, 0.1); fill(\.inharmOffsetsModifier, 0.05); w.inharmModelSpecificWeight.values = [0.3]
    fill(\.detunerKernel, 0.5); fill(\.detunerBias, 0.2)
    kernel(\.monoDenseKernel); fill(\.monoDenseBias, 0.1)
    kernel(\.monoGRUKernel); kernel(\.monoGRURecurrentKernel); fill(\.monoGRUInputBias, 0.2); fill(\.monoGRURecurrentBias, 0.2)
    kernel(\.monoHiddenKernel); fill(\.monoHiddenBias, 0.1)
    fill(\.monoNormScale, 0.3, offset: 1); fill(\.monoNormShift, 0.2)
    kernel(\.monoOutKernel); fill(\.monoOutBias, 0.1)
    fill(\.reverbImpulseResponses, 1e-3)
    return w
}

/// Piano-like conditioning: notes that start (velocity on two frames), end, get re-struck.
func testBatch(_ h: PianoWeights.Hyper, batch: Int, frames: Int, instruments: [Int], seed: UInt64) -> SegmentBatch {
    var rng = SplitMix64(seed: seed)
    let V = h.voices
    var cond = [Float](repeating: 0, count: batch * frames * V * 2)
    for b in 0..<batch {
        for v in 0..<V {
            var t = Int(rng.next() % 3)
            while t < frames {
                let length = 2 + Int(rng.next() % UInt64(max(1, frames / 2)))
                let pitch = Float(21 + Int(rng.next() % 88)), velocity = 0.3 + abs(rng.uniform(0.6))
                for k in t..<min(frames, t + length) {
                    cond[((b * frames + k) * V + v) * 2] = pitch
                    if k < t + 2 { cond[((b * frames + k) * V + v) * 2 + 1] = velocity }
                }
                t += length + Int(rng.next() % 4)
            }
        }
    }
    var pedal = [Float](repeating: 0, count: batch * frames * 4)
    for i in stride(from: 0, to: pedal.count, by: 7) { pedal[i] = abs(rng.uniform()) }
    return SegmentBatch(batch: batch, frames: frames, voices: V, conditioning: cond, pedal: pedal, instruments: instruments)
}

/// One named tensor of the whole model, as a key-path-able property for `gradientCheck`.
struct NamedParameter {
    var model: PianoNetworkTraining
    let name: String
    var values: [Float] {
        get { var m = model, out: [Float] = []; m.forEachParameter { n, _, v, _ in if n == name { out = v } }; return out }
        set { model.forEachParameter { n, _, v, _ in if n == name { v = newValue } } }
    }
}

final class NetworkGradientTests: XCTestCase {
    func tinyHyper() -> PianoWeights.Hyper {
        var h = PianoWeights.Hyper()
        h.voices = 2; h.zDim = 3; h.contextUnits = 4; h.contextGRUUnits = 5; h.monoDenseUnits = 6
        h.monoGRUUnits = 5; h.monoHiddenUnits = 4; h.harmonics = 3; h.noiseBands = 2; h.reverbLength = 8
        return h
    }

    /// Finite-difference steps per tensor: the composition is far more curved than one layer
    /// (leaky ReLU kinks fed through GRUs and two Normalize layers; the context kernel's pitch rows
    /// multiply raw MIDI numbers ~100), so steps are smaller than in LayerGradientTests, down to the
    /// float32 noise floor (their kink crossings give errors linear in the step). context.dense_in.kernel:
    /// at 1e-2 / 1e-3 / 1e-4 a pitch-row entry gives
    /// 55.9 / 40.8 / 35.28 against the analytic 35.30.
    static func step(_ name: String) -> Float {
        switch name {
        case "context.dense_in.kernel": return 5e-5
        case "mono.dense_in.kernel": return 6e-4
        case "detuner.kernel", "detuner.bias", "z_encoder.detuning": return 5e-2
        case "inharmonicity.slopes_modifier", "inharmonicity.offsets_modifier", "inharmonicity.model_specific_weight",
             "z_encoder.inharmonicity": return 3e-3
        default: return 2e-3
        }
    }

    /// The whole network (z-encoder, context, note release, inharmonicity, detuner, mono net)
    /// against finite differences for every trainable tensor, on a loss mixing all outputs.
    /// Tolerances: per entry 5e-2 with a floor of 1e-2·max|g| (float32 noise through the
    /// composition), along a random direction 5e-3; LayerGradientTests hold each layer to 2e-2/1e-3.
    func testComposedNetwork() {
        let h = tinyHyper()
        let weights = randomWeights(h, instruments: 3, seed: 11)
        let batch = testBatch(h, batch: 2, frames: 9, instruments: [2, 0], seed: 12)
        let model = PianoNetworkTraining(weights: weights)
        let (out, cache) = model.forward(batch)
        var rng = SplitMix64(seed: 13)
        let wRaw = rng.array(out.raw.count), wF0 = rng.array(out.f0.count, 1e-2), wB = rng.array(out.inharm.count, 1e3)
        let loss = { (p: NamedParameter) -> Double in
            let (o, _) = p.model.forward(batch)
            return weightedSum(o.raw, wRaw) + weightedSum(o.f0, wF0) + weightedSum(o.inharm, wB)
        }
        var trained = model
        trained.backward(dRaw: wRaw, dF0: wF0, dInharm: wB, outputs: out, cache: cache)
        var grads: [(String, [Float])] = []
        trained.forEachParameter { name, _, _, g in grads.append((name, g)) }
        var worstEntry = 0.0, worstDirectional = 0.0
        for (name, g) in grads where name != "reverb.impulse_responses" {
            let p = NamedParameter(model: model, name: name)
            // Exponential parameters need a smaller step (see LayerGradientTests).
            let eps = Self.step(name)
            let entry = gradientCheck(p, \.values, analytic: g, eps: eps, samples: 12, floor: 1e-2, loss: loss)
            let directional = directionalCheck(p, \.values, analytic: g, eps: eps, loss: loss)
            print(String(format: "composed %-38@ entries %.2e directional %.2e", name as NSString, entry, directional))
            XCTAssertLessThan(entry, 5e-2, name)
            XCTAssertLessThan(directional, 5e-3, name)
            worstEntry = max(worstEntry, entry); worstDirectional = max(worstDirectional, directional)
        }
        print(String(format: "composed network: worst entry error %.2e, worst directional error %.2e", worstEntry, worstDirectional))
    }

    /// Phase 1 (no detuning): one f0 per voice at midi_to_hz(extended pitch), no detuner gradient.
    func testPhaseOneHasOneSubstring() {
        let h = tinyHyper()
        var model = PianoNetworkTraining(weights: randomWeights(h, instruments: 2, seed: 21))
        model.detuner.useDetune = false
        let batch = testBatch(h, batch: 1, frames: 6, instruments: [1], seed: 22)
        let (out, cache) = model.forward(batch)
        XCTAssertEqual(out.substrings, 1)
        XCTAssertEqual(out.f0.count, out.extendedPitch.count)
        for (i, p) in out.extendedPitch.enumerated() { XCTAssertEqual(out.f0[i], 440 * powf(2, (p - 69) / 12), accuracy: 1e-3) }
        model.backward(dRaw: out.raw.map { _ in 1 }, dF0: out.f0.map { _ in 1 }, dInharm: out.inharm.map { _ in 0 }, outputs: out, cache: cache)
        XCTAssertEqual(model.detuner.kernelGrad, [0, 0]); XCTAssertEqual(model.detuneEmbedding.tableGrad, [0, 0])
    }

    /// The training forward pass equals the engine's per-frame inference (dafx22 sizes, random
    /// weights) when the engine is given the segment's own Normalize statistics.
    func testTrainingForwardMatchesInference() {
        let h = PianoWeights.Hyper()
        let weights = randomWeights(h, instruments: 2, seed: 31, gain: 1)
        let frames = 24
        let batch = testBatch(h, batch: 1, frames: frames, instruments: [1], seed: 32)
        let (out, cache) = PianoNetworkTraining(weights: weights).forward(batch)
        let stats = NormalizationStatistics(contextMean: cache.context.norm.mean[0], contextVariance: cache.context.norm.variance[0],
                                            monoMeans: cache.mono.norm.mean, monoVariances: cache.mono.norm.variance)
        var net = PianoNetwork(weights: weights, instrument: 1)
        let V = h.voices, O = h.monoOutputs, S = h.substrings
        var worstRaw: Float = 0, worstF0: Float = 0, worstB: Float = 0
        for t in 0..<frames {
            batch.conditioning.withUnsafeBufferPointer { c in batch.pedal.withUnsafeBufferPointer { p in
                net.step(conditioning: c.baseAddress! + t * V * 2, pedal: p.baseAddress! + t * 4, statistics: stats)
            }}
            for v in 0..<V {
                for o in 0..<O { worstRaw = max(worstRaw, abs(net.mono.raw[v * O + o] - out.raw[(v * frames + t) * O + o])) }
                for s in 0..<S { worstF0 = max(worstF0, abs(net.f0[v * S + s] - out.f0[(v * frames + t) * S + s]) / max(1, net.f0[v * S + s])) }
                worstB = max(worstB, abs(net.inharmCoefficient[v] - out.inharm[v * frames + t]) / max(1e-12, net.inharmCoefficient[v]))
            }
        }
        print("training vs inference forward: raw max abs diff \(worstRaw), f0 max rel \(worstF0), B max rel \(worstB)")
        XCTAssertLessThan(worstRaw, 1e-3)
        XCTAssertLessThan(worstF0, 1e-5)
        XCTAssertLessThan(worstB, 1e-5)
    }
}
