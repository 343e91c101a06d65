import DDSPPiano
import Foundation
import PianoTestKit
import PianoTraining
import XCTest

/// Every training layer's backward pass against central finite differences (float32 forward,
/// Double loss, eps 1e-2): per entry (error as in `gradientCheck`, tolerance 2e-2) and along a
/// random direction over each whole tensor (`directionalCheck`, tolerance 1e-3). eps balances
/// float32 noise against truncation: the inharmonicity's exponentials (slopes ~12) use 3e-3, the
/// detuner (f0 in Hz, rounded to ~6e-8 relative, but nearly linear in its parameters) 5e-2.
final class LayerGradientTests: XCTestCase {
    let directionalTolerance = 1e-3

    func check<M>(_ name: String, _ model: M, _ path: WritableKeyPath<M, [Float]>, _ analytic: [Float], samples: Int = 24, eps: Float = 1e-2,
                  loss: (M) -> Double, file: StaticString = #filePath, line: UInt = #line) {
        checkLayerGradient(name, model, path, analytic, samples: samples, eps: eps, loss: loss, file: file, line: line)
    }

    func testDense() {
        for activation in [Dense.Activation.leakyReLU, .linear] {
            var rng = SplitMix64(seed: 1)
            let rows = 7, inputs = 5, outputs = 4
            let layer = DenseTraining(kernel: rng.array(inputs * outputs, 0.5), bias: rng.array(outputs, 0.3), activation: activation)
            let x = rng.array(rows * inputs), w = rng.array(rows * outputs)
            var trained = layer
            let cache = trained.forward(x, rows: rows)
            let dx = trained.backward(w, cache: cache)
            let loss = { (m: WithInput<DenseTraining>) in weightedSum(m.layer.forward(m.input, rows: rows).output, w) }
            let m = WithInput(layer: layer, input: x)
            let tag = activation == .linear ? "linear" : "leaky"
            check("dense(\(tag)).kernel", m, \.layer.kernel, trained.kernelGrad, samples: 40, loss: loss)
            check("dense(\(tag)).bias", m, \.layer.bias, trained.biasGrad, loss: loss)
            check("dense(\(tag)).input", m, \.input, dx, samples: 40, loss: loss)
        }
    }

    func testGRU() {
        var rng = SplitMix64(seed: 2)
        let batch = 2, time = 6, inputs = 3, units = 4
        let layer = GRUTraining(kernel: rng.array(inputs * 3 * units, 0.6), recurrentKernel: rng.array(units * 3 * units, 0.6),
                                inputBias: rng.array(3 * units, 0.3), recurrentBias: rng.array(3 * units, 0.3))
        let x = rng.array(batch * time * inputs), w = rng.array(batch * time * units)
        var trained = layer
        let cache = trained.forward(x, batch: batch, time: time)
        let dx = trained.backward(w, cache: cache)
        let loss = { (m: WithInput<GRUTraining>) in weightedSum(m.layer.forward(m.input, batch: batch, time: time).output, w) }
        let m = WithInput(layer: layer, input: x)
        check("gru.kernel", m, \.layer.kernel, trained.kernelGrad, samples: 36, loss: loss)
        check("gru.recurrent_kernel", m, \.layer.recurrentKernel, trained.recurrentKernelGrad, samples: 48, loss: loss)
        check("gru.input_bias", m, \.layer.inputBias, trained.inputBiasGrad, loss: loss)
        check("gru.recurrent_bias", m, \.layer.recurrentBias, trained.recurrentBiasGrad, loss: loss)
        check("gru.input (BPTT)", m, \.input, dx, samples: 36, loss: loss)
    }

    func testNormalize() {
        var rng = SplitMix64(seed: 3)
        let batch = 2, time = 5, channels = 3
        let layer = NormalizeTraining(scale: rng.array(channels).map { $0 + 1.5 }, shift: rng.array(channels))
        // Offset and scaled input: the statistics matter.
        let x = rng.array(batch * time * channels, 2).map { $0 + 0.7 }, w = rng.array(batch * time * channels)
        var trained = layer
        let (_, cache) = trained.forward(x, batch: batch, time: time)
        let dx = trained.backward(w, cache: cache)
        let loss = { (m: WithInput<NormalizeTraining>) in weightedSum(m.layer.forward(m.input, batch: batch, time: time).output, w) }
        let m = WithInput(layer: layer, input: x)
        check("normalize.scale", m, \.layer.scale, trained.scaleGrad, loss: loss)
        check("normalize.shift", m, \.layer.shift, trained.shiftGrad, loss: loss)
        check("normalize.input (through mean, var)", m, \.input, dx, samples: 30, loss: loss)
    }

    func testEmbedding() {
        var rng = SplitMix64(seed: 4)
        let layer = EmbeddingTraining(table: rng.array(4 * 3), width: 3)
        let indices = [2, 0, 2]   // a repeated index must get both rows' gradients
        let w = rng.array(indices.count * 3)
        var trained = layer
        trained.backward(w, indices: indices)
        let loss = { (m: EmbeddingTraining) in weightedSum(m.forward(indices), w) }
        check("embedding.table", layer, \.table, trained.tableGrad, loss: loss)
    }

    func testInharmonicity() {
        var rng = SplitMix64(seed: 5)
        // Rigaud et al.'s lines as upstream builds them (pitch normalised by 128).
        let slopes: [Float] = [9.26e-2 * 128, -8.47e-2 * 128], offsets: [Float] = [-13.64 / (128 * 9.26e-2), -5.82 / (128 * -8.47e-2)]
        let layer = InharmonicityTraining(slopes: slopes, offsets: offsets, slopesModifier: rng.array(2, 0.1),
                                          offsetsModifier: rng.array(2, 0.05), modelSpecificWeight: [0.3])
        let pitches: [Float] = [21, 40, 60, 60, 88, 108, 0, 72]
        let g = rng.array(pitches.count, 0.2)
        // B is ~1e-4..1e-2: weight it up so the loss is O(1).
        let w = rng.array(pitches.count).map { $0 * 1000 }
        var trained = layer
        let dg = trained.backward(w, extendedPitch: pitches, instrumentInharm: g)
        let loss = { (m: WithInput<InharmonicityTraining>) in weightedSum(m.layer.forward(extendedPitch: pitches, instrumentInharm: m.input), w) }
        let m = WithInput(layer: layer, input: g)
        check("inharmonicity.slopes_modifier", m, \.layer.slopesModifier, trained.slopesModifierGrad, eps: 3e-3, loss: loss)
        check("inharmonicity.offsets_modifier", m, \.layer.offsetsModifier, trained.offsetsModifierGrad, eps: 3e-3, loss: loss)
        check("inharmonicity.model_specific_weight", m, \.layer.modelSpecificWeight, trained.modelSpecificWeightGrad, eps: 3e-3, loss: loss)
        check("inharmonicity.instrument_inharm", m, \.input, dg, eps: 3e-3, loss: loss)

        // The L1 regulariser: 0.1·Σ|modifiers| and its sign gradient.
        var r = layer
        r.zeroGrad()
        let value = r.regularizer()
        let expected = 0.1 * (layer.slopesModifier + layer.offsetsModifier).reduce(0.0) { $0 + Double(abs($1)) }
        XCTAssertEqual(value, expected, accuracy: 1e-7)
        XCTAssertEqual(r.slopesModifierGrad, layer.slopesModifier.map { $0 > 0 ? 0.1 : -0.1 })
    }

    func testDetuner() {
        var rng = SplitMix64(seed: 6)
        let layer = DetunerTraining(kernel: rng.array(2, 0.5), bias: rng.array(2, 0.2))
        let pitches: [Float] = [21, 45, 60, 69, 100]
        let d = rng.array(pitches.count, 0.3)
        let w = rng.array(pitches.count * 2).map { $0 / 100 }   // f0 is in Hz
        var trained = layer
        let f0 = trained.forward(extendedPitch: pitches, instrumentDetuning: d)
        let dd = trained.backward(w, f0: f0, extendedPitch: pitches, instrumentDetuning: d)
        let loss = { (m: WithInput<DetunerTraining>) in weightedSum(m.layer.forward(extendedPitch: pitches, instrumentDetuning: m.input), w) }
        let m = WithInput(layer: layer, input: d)
        check("detuner.kernel", m, \.layer.kernel, trained.kernelGrad, eps: 5e-2, loss: loss)
        check("detuner.bias", m, \.layer.bias, trained.biasGrad, eps: 5e-2, loss: loss)
        check("detuner.instrument_detuning", m, \.input, dd, eps: 5e-2, loss: loss)
        // The inference layer computes the same f0.
        var w0 = PianoWeights(instruments: ["a"])
        w0.detunerKernel = Tensor(shape: [1, 2], values: layer.kernel)
        w0.detunerBias = Tensor(shape: [2], values: layer.bias)
        let inference = Detuner(weights: w0)
        for (i, p) in pitches.enumerated() {
            for s in 0..<2 { XCTAssertEqual(f0[i * 2 + s], inference.f0(extendedPitch: p, substring: s, instrumentDetuning: d[i]), accuracy: 1e-3) }
        }
        // Phase 1: no detuning, one substring at midi_to_hz(pitch).
        var off = layer
        off.useDetune = false
        XCTAssertEqual(off.forward(extendedPitch: [69], instrumentDetuning: [0.5]), [440])
    }
}
