import DDSPPiano
import Foundation
import PianoFormats

// Training-mode composition of `PianoNetwork` (mirrors Sources/DDSPPiano/Model/PianoNetwork.swift):
// z-encoder → context network → per voice note release, inharmonicity, detuner, monophonic network,
// over a batch of whole segments, with the gradient back to every trainable tensor.

/// One batch of segments' conditioning.
public struct SegmentBatch: Sendable {
    public var batch: Int
    public var frames: Int
    public var voices: Int
    public var conditioning: [Float]   // [batch, frames, voices, 2]: (MIDI pitch or 0, onset velocity)
    public var pedal: [Float]          // [batch, frames, 4]
    public var instruments: [Int]      // [batch]

    public init(batch: Int, frames: Int, voices: Int, conditioning: [Float], pedal: [Float], instruments: [Int]) {
        precondition(conditioning.count == batch * frames * voices * 2 && pedal.count == batch * frames * 4 && instruments.count == batch)
        self.batch = batch; self.frames = frames; self.voices = voices
        self.conditioning = conditioning; self.pedal = pedal; self.instruments = instruments
    }
}

public struct PianoNetworkTraining: Sendable {
    public let hyper: PianoWeights.Hyper
    public var zEmbedding: EmbeddingTraining       // [instruments, zDim]
    public var inharmEmbedding: EmbeddingTraining  // [instruments, 1]
    public var detuneEmbedding: EmbeddingTraining  // [instruments, 1]
    public var context: ContextNetworkTraining
    public var mono: MonophonicNetworkTraining
    public var inharmonicity: InharmonicityTraining
    public var detuner: DetunerTraining
    /// Not trained (upstream's F0ProcessorCell is frozen and its clamps have no useful gradient).
    public let releaseDuration: Float
    /// Trained only through the reverb regulariser until the synthesiser's backward pass exists.
    public var reverb: EmbeddingTraining           // [instruments, reverbLength]

    public init(weights w: PianoWeights) {
        hyper = w.hyper
        zEmbedding = EmbeddingTraining(table: w.zEmbedding.values, width: w.hyper.zDim)
        inharmEmbedding = EmbeddingTraining(table: w.inharmonicityEmbedding.values, width: 1)
        detuneEmbedding = EmbeddingTraining(table: w.detuningEmbedding.values, width: 1)
        context = ContextNetworkTraining(weights: w)
        mono = MonophonicNetworkTraining(weights: w)
        inharmonicity = InharmonicityTraining(slopes: w.inharmSlopes.values, offsets: w.inharmOffsets.values,
                                              slopesModifier: w.inharmSlopesModifier.values, offsetsModifier: w.inharmOffsetsModifier.values,
                                              modelSpecificWeight: w.inharmModelSpecificWeight.values)
        detuner = DetunerTraining(kernel: w.detunerKernel.values, bias: w.detunerBias.values)
        releaseDuration = w.releaseDuration.values[0]
        reverb = EmbeddingTraining(table: w.reverbImpulseResponses.values, width: w.hyper.reverbLength)
    }

    /// The network outputs for one batch; voices are sequences (b, v) in that order.
    public struct Outputs: Sendable {
        public var raw: [Float]            // [batch, voices, frames, monoOutputs]
        public var f0: [Float]             // [batch, voices, frames, substrings]
        public var inharm: [Float]         // [batch, voices, frames]
        public var extendedPitch: [Float]  // [batch, voices, frames]
        public var substrings: Int
    }

    public struct Cache: Sendable {
        public var batch: SegmentBatch
        public var context: ContextNetworkTraining.Cache
        public var mono: MonophonicNetworkTraining.Cache
        public var instrumentInharm: [Float]   // [batch·voices·frames]
        public var instrumentDetune: [Float]   // [batch·voices·frames]
    }

    public func forward(_ s: SegmentBatch) -> (Outputs, Cache) {
        let B = s.batch, T = s.frames, V = s.voices, h = hyper
        precondition(V == h.voices)
        let zd = h.zDim, ci = h.contextInputs, cu = h.contextUnits, mi = h.monoInputs
        let z = zEmbedding.forward(s.instruments)
        let gInharm = inharmEmbedding.forward(s.instruments), gDetune = detuneEmbedding.forward(s.instruments)

        var ctxIn = [Float](repeating: 0, count: B * T * ci)
        for b in 0..<B {
            for t in 0..<T {
                let row = (b * T + t) * ci
                for i in 0..<(2 * V) { ctxIn[row + i] = s.conditioning[(b * T + t) * 2 * V + i] }
                for i in 0..<4 { ctxIn[row + 2 * V + i] = s.pedal[(b * T + t) * 4 + i] }
                for i in 0..<zd { ctxIn[row + 2 * V + 4 + i] = z[b * zd + i] }
            }
        }
        let (ctx, ctxCache) = context.forward(ctxIn, batch: B, time: T)

        // Note release from a zero state per segment, as upstream's RNN cell.
        var ext = [Float](repeating: 0, count: B * V * T)
        for b in 0..<B {
            var release = NoteRelease(releaseDuration: releaseDuration, frameRate: h.frameRate, voices: V)
            for t in 0..<T {
                for v in 0..<V {
                    ext[(b * V + v) * T + t] = release.forward(pitch: s.conditioning[((b * T + t) * V + v) * 2], voice: v)
                }
            }
        }
        var instInharm = [Float](repeating: 0, count: B * V * T), instDetune = instInharm
        for b in 0..<B { for i in 0..<(V * T) { instInharm[b * V * T + i] = gInharm[b]; instDetune[b * V * T + i] = gDetune[b] } }
        let inharm = inharmonicity.forward(extendedPitch: ext, instrumentInharm: instInharm)
        let f0 = detuner.forward(extendedPitch: ext, instrumentDetuning: instDetune)

        var monoIn = [Float](repeating: 0, count: B * V * T * mi)
        for b in 0..<B {
            for v in 0..<V {
                for t in 0..<T {
                    let row = ((b * V + v) * T + t) * mi, c = ((b * T + t) * V + v) * 2
                    monoIn[row] = ext[(b * V + v) * T + t] / 128
                    monoIn[row + 1] = s.conditioning[c] / 128
                    monoIn[row + 2] = s.conditioning[c + 1]
                    for i in 0..<cu { monoIn[row + 3 + i] = ctx[(b * T + t) * cu + i] }
                }
            }
        }
        let (raw, monoCache) = mono.forward(monoIn, sequences: B * V, time: T)
        let out = Outputs(raw: raw, f0: f0, inharm: inharm, extendedPitch: ext, substrings: detuner.outputSubstrings)
        return (out, Cache(batch: s, context: ctxCache, mono: monoCache, instrumentInharm: instInharm, instrumentDetune: instDetune))
    }

    /// Accumulates every parameter gradient from dL/d(raw, f0, inharm) (same shapes as `Outputs`).
    public mutating func backward(dRaw: [Float], dF0: [Float], dInharm: [Float], outputs: Outputs, cache: Cache) {
        let s = cache.batch, B = s.batch, T = s.frames, V = s.voices, h = hyper
        let zd = h.zDim, ci = h.contextInputs, cu = h.contextUnits, mi = h.monoInputs

        let dMonoIn = mono.backward(dRaw, cache: cache.mono)
        // The context feeds every voice: its gradient is the sum over voices.
        var dCtx = [Double](repeating: 0, count: B * T * cu)
        for b in 0..<B {
            for v in 0..<V {
                for t in 0..<T {
                    let row: Int = ((b * V + v) * T + t) * mi + 3
                    let dst: Int = (b * T + t) * cu
                    for i in 0..<cu { dCtx[dst + i] += Double(dMonoIn[row + i]) }
                }
            }
        }
        let dCtxIn = context.backward(dCtx.map { Float($0) }, cache: cache.context)
        var dz = [Double](repeating: 0, count: B * zd)
        for b in 0..<B {
            for t in 0..<T {
                let src: Int = (b * T + t) * ci + 2 * V + 4
                for i in 0..<zd { dz[b * zd + i] += Double(dCtxIn[src + i]) }
            }
        }
        zEmbedding.backward(dz.map { Float($0) }, indices: s.instruments)

        let dg = inharmonicity.backward(dInharm, extendedPitch: outputs.extendedPitch, instrumentInharm: cache.instrumentInharm)
        let dd = detuner.backward(dF0, f0: outputs.f0, extendedPitch: outputs.extendedPitch, instrumentDetuning: cache.instrumentDetune)
        var dgB = [Float](repeating: 0, count: B), ddB = dgB
        for b in 0..<B {
            var a = 0.0, c = 0.0
            for i in 0..<(V * T) { a += Double(dg[b * V * T + i]); c += Double(dd[b * V * T + i]) }
            dgB[b] = Float(a); ddB[b] = Float(c)
        }
        inharmEmbedding.backward(dgB, indices: s.instruments)
        detuneEmbedding.backward(ddB, indices: s.instruments)
    }

    public mutating func zeroGrad() {
        zEmbedding.zeroGrad(); inharmEmbedding.zeroGrad(); detuneEmbedding.zeroGrad()
        context.zeroGrad(); mono.zeroGrad(); inharmonicity.zeroGrad(); detuner.zeroGrad(); reverb.zeroGrad()
    }

    // MARK: - Parameters by name

    /// Which part of the model a tensor belongs to, for upstream's phase schedule.
    public enum Group: Sendable { case frequency, other }

    /// Every trainable tensor with its gradient, under the weight file's names. The fixed
    /// Rigaud slopes/offsets and the release duration are not listed (not trained upstream).
    public mutating func forEachParameter(_ body: (_ name: String, _ group: Group, _ value: inout [Float], _ grad: inout [Float]) -> Void) {
        body("z_encoder.embedding", .other, &zEmbedding.table, &zEmbedding.tableGrad)
        body("z_encoder.inharmonicity", .frequency, &inharmEmbedding.table, &inharmEmbedding.tableGrad)
        body("z_encoder.detuning", .frequency, &detuneEmbedding.table, &detuneEmbedding.tableGrad)
        body("context.dense_in.kernel", .other, &context.dense.kernel, &context.dense.kernelGrad)
        body("context.dense_in.bias", .other, &context.dense.bias, &context.dense.biasGrad)
        body("context.gru.kernel", .other, &context.gru.kernel, &context.gru.kernelGrad)
        body("context.gru.recurrent_kernel", .other, &context.gru.recurrentKernel, &context.gru.recurrentKernelGrad)
        body("context.gru.input_bias", .other, &context.gru.inputBias, &context.gru.inputBiasGrad)
        body("context.gru.recurrent_bias", .other, &context.gru.recurrentBias, &context.gru.recurrentBiasGrad)
        body("context.norm.scale", .other, &context.norm.scale, &context.norm.scaleGrad)
        body("context.norm.shift", .other, &context.norm.shift, &context.norm.shiftGrad)
        body("context.dense_out.kernel", .other, &context.out.kernel, &context.out.kernelGrad)
        body("context.dense_out.bias", .other, &context.out.bias, &context.out.biasGrad)
        body("inharmonicity.slopes_modifier", .frequency, &inharmonicity.slopesModifier, &inharmonicity.slopesModifierGrad)
        body("inharmonicity.offsets_modifier", .frequency, &inharmonicity.offsetsModifier, &inharmonicity.offsetsModifierGrad)
        body("inharmonicity.model_specific_weight", .frequency, &inharmonicity.modelSpecificWeight, &inharmonicity.modelSpecificWeightGrad)
        body("detuner.kernel", .frequency, &detuner.kernel, &detuner.kernelGrad)
        body("detuner.bias", .frequency, &detuner.bias, &detuner.biasGrad)
        body("mono.dense_in.kernel", .other, &mono.dense.kernel, &mono.dense.kernelGrad)
        body("mono.dense_in.bias", .other, &mono.dense.bias, &mono.dense.biasGrad)
        body("mono.gru.kernel", .other, &mono.gru.kernel, &mono.gru.kernelGrad)
        body("mono.gru.recurrent_kernel", .other, &mono.gru.recurrentKernel, &mono.gru.recurrentKernelGrad)
        body("mono.gru.input_bias", .other, &mono.gru.inputBias, &mono.gru.inputBiasGrad)
        body("mono.gru.recurrent_bias", .other, &mono.gru.recurrentBias, &mono.gru.recurrentBiasGrad)
        body("mono.dense_hidden.kernel", .other, &mono.hidden.kernel, &mono.hidden.kernelGrad)
        body("mono.dense_hidden.bias", .other, &mono.hidden.bias, &mono.hidden.biasGrad)
        body("mono.norm.scale", .other, &mono.norm.scale, &mono.norm.scaleGrad)
        body("mono.norm.shift", .other, &mono.norm.shift, &mono.norm.shiftGrad)
        body("mono.dense_out.kernel", .other, &mono.out.kernel, &mono.out.kernelGrad)
        body("mono.dense_out.bias", .other, &mono.out.bias, &mono.out.biasGrad)
        body("reverb.impulse_responses", .other, &reverb.table, &reverb.tableGrad)
    }

    /// The trained values written back into a copy of `base` (shapes, names, fixed tensors,
    /// metadata and calibration come from it).
    public mutating func weights(updating base: PianoWeights) throws -> PianoWeights {
        var tensors = base.safetensors()
        forEachParameter { name, _, value, _ in
            let shape = tensors.tensors[name]!.shape
            tensors.tensors[name] = Tensor(shape: shape, values: value)
        }
        // Through the validating reader: a trained tensor that went non-finite is an error here.
        return try PianoWeights(safetensors: tensors)
    }
}
