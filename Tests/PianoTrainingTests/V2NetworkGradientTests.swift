import DDSPPiano
import Foundation
import PianoTestKit
import PianoTraining
import XCTest

/// v2's trainable networks (issue 16 item 1, first part): LayerNorm and FcStack backward passes,
/// then the FiLM context and monophonic networks composed, each against central finite
/// differences (float32 forward, Double loss), and the training forward against the engine's
/// frame-by-frame inference. Weights: StructuralV2 (seeded, the real layout), so every clone
/// runs these.
/// A LayerNorm alone is checked per entry and along a random direction (LayerGradientTests'
/// tolerances: 2e-2, 1e-3). Stacks of Fc layers have hundreds of leaky-ReLU units right after
/// a normalisation: a step of 1e-2 moves many across their kink (measured: per-entry errors up
/// to 1.0, directional 2e-2 to 8e-2, shrinking with the step, the mark of truncation, not of a
/// wrong gradient). They are checked along four random directions over each whole tensor with a
/// step of 1e-4 (few kinks crossed, float32 noise still far below the derivative): 1e-3 for a
/// stack, `networkTolerance` for the networks.
final class V2NetworkGradientTests: XCTestCase {
    let directionalTolerance = 1e-3

    func check<M>(_ name: String, _ model: M, _ path: WritableKeyPath<M, [Float]>, _ analytic: [Float], samples: Int = 24, eps: Float = 1e-2,
                  loss: (M) -> Double, file: StaticString = #filePath, line: UInt = #line) {
        checkLayerGradient(name, model, path, analytic, samples: samples, eps: eps, loss: loss, file: file, line: line)
    }

    /// Four random directions over the whole tensor, step 1e-4, each within `tolerance`.
    func checkDirections<M>(_ name: String, _ model: M, _ path: WritableKeyPath<M, [Float]>, _ analytic: [Float], tolerance: Double = 1e-3,
                            loss: (M) -> Double, file: StaticString = #filePath, line: UInt = #line) {
        let errors = [99, 7, 5, 3].map { directionalCheck(model, path, analytic: analytic, eps: 1e-4, seed: UInt64($0), loss: loss) }
        print(String(format: "gradient check %-42@ directional (4 directions, step 1e-4) %.1e %.1e %.1e %.1e", name as NSString,
                     errors[0], errors[1], errors[2], errors[3]))
        for e in errors { XCTAssertLessThan(e, tolerance, name, file: file, line: line) }
    }

    /// The whole networks: a dozen Fc layers of 32–64 units per row after normalisations, over
    /// 64–128 rows. Measured over 4 directions: 1e-6 to 6e-3 at a step of 1e-4; the largest
    /// (mono.pitch_stack.0.kernel, one input channel normalised over 64) falls with the step
    /// (5e-2 at 3e-3, 1.7e-2 at 3e-4, 3e-3 at 3e-5: crossings of the leaky kinks), as a correct
    /// gradient's does; a wrong term would not.
    let networkTolerance = 1e-2

    func testLayerNorm() {
        for leaky in [false, true] {
            var rng = SplitMix64(seed: 11)
            let rows = 5, C = 12
            let layer = LayerNormTraining(gamma: (0..<C).map { _ in 1 + rng.uniform(0.3) }, beta: rng.array(C, 0.2), leaky: leaky)
            let x = rng.array(rows * C, 2), w = rng.array(rows * C)
            var trained = layer
            let (_, cache) = trained.forward(x, rows: rows)
            let dx = trained.backward(w, cache: cache)
            let loss = { (m: WithInput<LayerNormTraining>) in weightedSum(m.layer.forward(m.input, rows: rows).output, w) }
            let m = WithInput(layer: layer, input: x)
            let tag = leaky ? "leaky" : "plain"
            check("layer_norm(\(tag)).gamma", m, \.layer.gamma, trained.gammaGrad, loss: loss)
            check("layer_norm(\(tag)).beta", m, \.layer.beta, trained.betaGrad, loss: loss)
            check("layer_norm(\(tag)).input", m, \.input, dx, samples: 40, eps: 3e-3, loss: loss)
        }
    }

    func testLayerNormForwardIsTheEngineKernel() {
        var rng = SplitMix64(seed: 12)
        let rows = 9, C = 64
        let gamma = rng.array(C, 1), beta = rng.array(C, 0.3), x = rng.array(rows * C, 3)
        let training = LayerNormTraining(gamma: gamma, beta: beta, leaky: true).forward(x, rows: rows).output
        var engine = [Float](repeating: 0, count: rows * C)
        LayerNorm(gamma: Tensor(shape: [C], values: gamma), beta: Tensor(shape: [C], values: beta)).forward(x, rows: rows, into: &engine, leaky: true)
        XCTAssertEqual(training, engine, "the training forward is the engine's LayerNorm")
    }

    func testFcStack() {
        let w = StructuralV2.weights()
        var rng = SplitMix64(seed: 13)
        let stack = FcStackTraining(weights: w, name: "mono.conditioning_stack", layers: 3)
        let rows = 6
        let x = rng.array(rows * stack.inputs), g = rng.array(rows * stack.width)
        var trained = stack
        let (_, cache) = trained.forward(x, rows: rows)
        let dx = trained.backward(g, cache: cache)
        let loss = { (m: WithInput<FcStackTraining>) in weightedSum(m.layer.forward(m.input, rows: rows).output, g) }
        let m = WithInput(layer: stack, input: x)
        checkDirections("fc_stack.0.kernel", m, \.layer.dense[0].kernel, trained.dense[0].kernelGrad, loss: loss)
        checkDirections("fc_stack.1.gamma", m, \.layer.norms[1].gamma, trained.norms[1].gammaGrad, loss: loss)
        checkDirections("fc_stack.1.beta", m, \.layer.norms[1].beta, trained.norms[1].betaGrad, loss: loss)
        checkDirections("fc_stack.2.bias", m, \.layer.dense[2].bias, trained.dense[2].biasGrad, loss: loss)
        checkDirections("fc_stack.input", m, \.input, dx, loss: loss)
    }

    /// Two elements (pianos 3 and 7), `frames` frames: notes on some voices, releases, pedals.
    func batch(frames: Int, seed: UInt64) -> SegmentBatch {
        var rng = SplitMix64(seed: seed)
        let V = V2Weights.voices, B = 2
        var conditioning = [Float](repeating: 0, count: B * frames * V * 2), pedal = [Float](repeating: 0, count: B * frames * 4)
        for b in 0..<B {
            for v in 0..<6 {
                let pitch = Float(40 + Int(rng.next() % 40)), velocity = 0.3 + 0.3 * (rng.uniform() + 1)
                let start = Int(rng.next() % UInt64(frames / 2)), end = min(frames, start + 2 + Int(rng.next() % UInt64(frames / 2)))
                for t in start..<end {
                    conditioning[((b * frames + t) * V + v) * 2] = pitch
                    conditioning[((b * frames + t) * V + v) * 2 + 1] = velocity
                }
            }
            for t in 0..<frames { for p in 0..<4 { pedal[(b * frames + t) * 4 + p] = t > frames / 3 && p == 0 ? 1 : 0.5 * (rng.uniform() + 1) * 0.2 } }
        }
        return SegmentBatch(batch: B, frames: frames, voices: V, conditioning: conditioning, pedal: pedal, instruments: [3, 7])
    }

    func testTrainingForwardMatchesTheEngine() {
        let w = StructuralV2.weights()
        let frames = 60
        let seg = batch(frames: frames, seed: 21)
        let (out, _) = V2NetworkTraining(weights: w).forward(seg)
        let V = V2Weights.voices, O = V2Weights.monoOutputs
        var worst: Float = 0, scale: Float = 0, worstContext: Float = 0
        for b in 0..<seg.batch {
            var net = V2Network(weights: w, instrument: seg.instruments[b])
            for t in 0..<frames {
                let c = Array(seg.conditioning[((b * frames + t) * V * 2)..<((b * frames + t + 1) * V * 2)])
                let p = Array(seg.pedal[((b * frames + t) * 4)..<((b * frames + t + 1) * 4)])
                net.step(conditioning: c, pedal: p)
                for i in 0..<V2Weights.contextUnits {
                    worstContext = max(worstContext, abs(net.contextVector[i] - out.context[(b * frames + t) * V2Weights.contextUnits + i]))
                }
                for v in 0..<V {
                    XCTAssertEqual(net.extendedPitch[v], out.extendedPitch[(b * V + v) * frames + t])
                    for k in 0..<O {
                        let e = net.raw[v * O + k], r = out.raw[((b * V + v) * frames + t) * O + k]
                        worst = max(worst, abs(e - r)); scale = max(scale, abs(e))
                    }
                }
            }
        }
        print("v2 training forward against the engine, 2 × \(frames) frames: context max |Δ| \(worstContext), raw max |Δ| \(worst) of max |raw| \(scale)")
        // The engine's packed products, its FiLM in Double and its shared context row round
        // differently (float32, ~1e-7 relative per operation, through two GRUs).
        XCTAssertLessThan(worstContext, 1e-4)
        XCTAssertLessThan(worst, 1e-4 * max(1, scale))
    }

    func testContextNetworkGradients() {
        let w = StructuralV2.weights()
        let seg = batch(frames: 8, seed: 22)
        let net = V2ContextNetworkTraining(weights: w)
        var rng = SplitMix64(seed: 23)
        let (out, cache) = net.forward(conditioning: seg.conditioning, pedal: seg.pedal, instruments: seg.instruments, batch: seg.batch, time: seg.frames)
        let g = rng.array(out.count)
        var trained = net
        trained.backward(g, cache: cache)
        var grads: [String: [Float]] = [:]
        trained.forEachParameter { name, _, grad in grads[name] = grad }
        let loss = { (m: V2ContextNetworkTraining) in
            weightedSum(m.forward(conditioning: seg.conditioning, pedal: seg.pedal, instruments: seg.instruments, batch: seg.batch, time: seg.frames).output, g)
        }
        let paths: [(String, WritableKeyPath<V2ContextNetworkTraining, [Float]>)] = [
            ("context.conditioning_head.0.kernel", \.conditioningHead.dense[0].kernel),
            ("context.conditioning_head.1.gamma", \.conditioningHead.norms[1].gamma),
            ("context.pedal_head.0.kernel", \.pedalHead.dense[0].kernel),
            ("context.pedal_head.1.beta", \.pedalHead.norms[1].beta),
            ("context.piano_embedding", \.embedding),
            ("context.dense_in.kernel", \.denseIn.kernel),
            ("context.gru.kernel", \.gru.kernel),
            ("context.gru.recurrent_kernel", \.gru.recurrentKernel),
            ("context.gru.recurrent_bias", \.gru.recurrentBias),
            ("context.dense_out.bias", \.denseOut.bias),
            ("context.norm.gamma", \.norm.gamma),
            ("context.norm.beta", \.norm.beta),
            ("context.film.kernel", \.film.kernel),
            ("context.film.bias", \.film.bias),
            ("context.output.0.kernel", \.output.dense[0].kernel),
            ("context.output.1.beta", \.output.norms[1].beta),
        ]
        for (name, path) in paths { checkDirections(name, net, path, grads[name]!, tolerance: networkTolerance, loss: loss) }
        // Only the elements' pianos (3 and 7) have an embedding gradient.
        let d = net.embedding.count / w.instruments.count
        for p in 0..<w.instruments.count {
            let nonzero = grads["context.piano_embedding"]![(p * d)..<((p + 1) * d)].contains { $0 != 0 }
            XCTAssertEqual(nonzero, p == 3 || p == 7, "piano \(p)")
        }
    }

    func testMonophonicNetworkGradients() {
        let w = StructuralV2.weights()
        let seg = batch(frames: 4, seed: 24)
        let (ctx, _) = V2ContextNetworkTraining(weights: w).forward(conditioning: seg.conditioning, pedal: seg.pedal,
                                                                   instruments: seg.instruments, batch: seg.batch, time: seg.frames)
        let full = V2NetworkTraining(weights: w)
        let ext = full.extendedPitch(seg)
        let V = seg.voices, T = seg.frames
        var pitch = [Float](repeating: 0, count: seg.batch * V * T), cond = [Float](repeating: 0, count: 2 * pitch.count)
        for b in 0..<seg.batch { for v in 0..<V { for t in 0..<T {
            let s = (b * V + v) * T + t, c = ((b * T + t) * V + v) * 2
            pitch[s] = ext[s] / 128; cond[2 * s] = seg.conditioning[c] / 128; cond[2 * s + 1] = seg.conditioning[c + 1]
        }}}
        let net = V2MonophonicNetworkTraining(weights: w)
        var rng = SplitMix64(seed: 25)
        let (out, cache) = net.forward(pitch: pitch, conditioning: cond, context: ctx, batch: seg.batch, voices: V, time: T)
        let g = rng.array(out.count)
        var trained = net
        let dContext = trained.backward(g, cache: cache)
        var grads: [String: [Float]] = [:]
        trained.forEachParameter { name, _, grad in grads[name] = grad }
        let loss = { (m: WithInput<V2MonophonicNetworkTraining>) in
            weightedSum(m.layer.forward(pitch: pitch, conditioning: cond, context: m.input, batch: seg.batch, voices: V, time: T).output, g)
        }
        let m = WithInput(layer: net, input: ctx)
        let paths: [(String, WritableKeyPath<WithInput<V2MonophonicNetworkTraining>, [Float]>)] = [
            ("mono.pitch_stack.0.kernel", \.layer.pitchStack.dense[0].kernel),
            ("mono.pitch_stack.2.gamma", \.layer.pitchStack.norms[2].gamma),
            ("mono.conditioning_stack.0.kernel", \.layer.conditioningStack.dense[0].kernel),
            ("mono.conditioning_stack.2.beta", \.layer.conditioningStack.norms[2].beta),
            ("mono.context_stack.0.kernel", \.layer.contextStack.dense[0].kernel),
            ("mono.context_stack.1.gamma", \.layer.contextStack.norms[1].gamma),
            ("mono.gru.kernel", \.layer.gru.kernel),
            ("mono.gru.recurrent_kernel", \.layer.gru.recurrentKernel),
            ("mono.gru.input_bias", \.layer.gru.inputBias),
            ("mono.out_stack.0.kernel", \.layer.outStack.dense[0].kernel),
            ("mono.out_stack.2.gamma", \.layer.outStack.norms[2].gamma),
            ("mono.dense_out.kernel", \.layer.denseOut.kernel),
            ("mono.dense_out.bias", \.layer.denseOut.bias),
        ]
        for (name, path) in paths { checkDirections(name, m, path, grads[name]!, tolerance: networkTolerance, loss: loss) }
        checkDirections("mono: context input (summed over voices)", m, \.input, dContext, tolerance: networkTolerance, loss: loss)
    }

    func testV2NetworkComposesAndWritesBack() {
        let w = StructuralV2.weights()
        let seg = batch(frames: 6, seed: 26)
        let net = V2NetworkTraining(weights: w)
        var rng = SplitMix64(seed: 27)
        let (out, cache) = net.forward(seg)
        let g = rng.array(out.raw.count)
        var trained = net
        trained.backward(g, cache: cache)
        // Every trainable network tensor of the layout has a gradient of its shape, once.
        var names: [String] = []
        trained.forEachParameter { name, value, grad in names.append(name); XCTAssertEqual(value.count, grad.count, name) }
        let layout = V2Weights.layout(instruments: w.instruments.count).map(\.name).filter { $0.hasPrefix("context.") || $0.hasPrefix("mono.") }
        XCTAssertEqual(Set(names), Set(layout))
        XCTAssertEqual(names.count, layout.count)
        // A small step against the gradient lowers the loss; the step is written back under
        // the same names, and the engine plays the result.
        let loss = { (m: V2NetworkTraining) in weightedSum(m.forward(seg).output.raw, g) }
        var moved = trained
        moved.forEachParameter { _, value, grad in for i in value.indices { value[i] -= 1e-4 * grad[i] } }
        let before = loss(net), after = loss(moved)
        print("loss \(before) → \(after) after a step of 1e-4 against the gradient")
        XCTAssertLessThan(after, before)
        let updated = moved.weights(updating: w)
        XCTAssertNotEqual(updated["mono.gru.kernel"].values, w["mono.gru.kernel"].values)
        XCTAssertEqual(updated["reverb.early_ir"].values, w["reverb.early_ir"].values)
        var engine = V2Network(weights: updated, instrument: 3)
        engine.step(conditioning: Array(seg.conditioning[0..<(2 * seg.voices)]), pedal: Array(seg.pedal[0..<4]))
        let (again, _) = V2NetworkTraining(weights: updated).forward(seg)
        var worst: Float = 0
        for v in 0..<seg.voices { for k in 0..<V2Weights.monoOutputs {
            worst = max(worst, abs(engine.raw[v * V2Weights.monoOutputs + k] - again.raw[(v * seg.frames) * V2Weights.monoOutputs + k]))
        }}
        XCTAssertLessThan(worst, 1e-4, "the written weights play as trained")
    }
}
