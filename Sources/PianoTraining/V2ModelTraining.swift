import DDSPPiano
import Foundation

/// v2's per-piano reverb parameters for training, in the weight file's layout (a row per piano),
/// with their gradients; each piano's 2-s impulse response and its backward pass are
/// `FDNReverb`'s (`impulseResponse`, `parameterGradient`).
public struct V2ReverbTraining: Sendable {
    public static let names = ["reverb.input_gain", "reverb.output_gain", "reverb.gain_allpass", "reverb.delays_allpass",
                               "reverb.time_rev_0_sec", "reverb.alpha_tone", "reverb.early_ir"]
    public var values: [[Float]]      // per name: [instruments, width]
    public var grads: [[Float]]
    public let instruments: Int

    public init(weights w: V2Weights) {
        instruments = w.instruments.count
        values = Self.names.map { w[$0].values }
        grads = values.map { $0.zeroed }
    }

    func width(_ i: Int) -> Int { values[i].count / instruments }

    func row(_ i: Int, _ p: Int) -> [Float] { Array(values[i][(p * width(i))..<((p + 1) * width(i))]) }

    public func parameters(_ p: Int) -> FDNReverb.Parameters {
        FDNReverb.Parameters(inputGain: row(0, p), outputGain: row(1, p), gainAllpass: row(2, p), delaysAllpass: row(3, p),
                             timeRev: row(4, p)[0], alphaTone: row(5, p)[0], earlyIR: row(6, p))
    }

    public func impulseResponse(_ p: Int) -> [Float] { FDNReverb.impulseResponse(parameters(p)) }

    /// Accumulates piano `p`'s parameter gradients from dL/dIR [48000].
    public mutating func backward(_ dIR: [Float], instrument p: Int) {
        let d = FDNReverb.parameterGradient(parameters(p), dIR: dIR)
        let rows: [[Float]] = [d.inputGain, d.outputGain, d.gainAllpass, d.delaysAllpass, [d.timeRev], [d.alphaTone], d.earlyIR]
        for i in rows.indices {
            let w = width(i)
            for j in 0..<w { grads[i][p * w + j] += rows[i][j] }
        }
    }

    public mutating func zeroGrad() { for i in grads.indices { grads[i].setZero() } }

    public mutating func forEachParameter(_ body: (_ name: String, _ value: inout [Float], _ grad: inout [Float]) -> Void) {
        for i in Self.names.indices { body(Self.names[i], &values[i], &grads[i]) }
    }
}

/// The whole v2 model in training mode, as upstream's PianoModel with `maestro-v2.gin`: the
/// networks (FiLM context, frozen note release, monophonic) → the frozen parametric tuning's f0
/// and inharmonicity → synthesiser controls → additive (128 partials, one substring) + filtered
/// noise (96 bands), summed over voices → reverb (each piano's FDN impulse response) → the
/// multi-scale spectral loss, v2's only loss. `step` runs forward and backward over one batch
/// and accumulates every gradient (call `zeroGrad` between optimiser steps).
// @unchecked Sendable: one per worker thread; gradients are summed after the workers joined.
public final class V2ModelTraining: @unchecked Sendable {
    public var network: V2NetworkTraining
    public var reverb: V2ReverbTraining
    public let base: V2Weights
    public let tunings: [ParametricTuning]   // frozen, per piano (upstream's are not trainable)
    public let controls: SynthControlsTraining
    public let additive: AdditiveSynthTraining
    public let noise: FilteredNoiseTraining
    public let spectralLoss: MultiScaleSpectralLoss
    private var reverbs: [Int: ReverbTraining] = [:]   // by segment length
    public static let frameSize = V2Weights.sampleRate / V2Weights.frameRate

    public init(weights w: V2Weights, lossSizes: [Int] = [2048, 1024, 512, 256, 128, 64],
                magnitudeWeight: Float = 1, logMagnitudeWeight: Float = 1) {
        base = w
        network = V2NetworkTraining(weights: w)
        reverb = V2ReverbTraining(weights: w)
        tunings = (0..<w.instruments.count).map { ParametricTuning(weights: w, instrument: $0) }
        controls = SynthControlsTraining(harmonics: V2Weights.harmonics, bands: V2Weights.noiseBands, sampleRate: V2Weights.sampleRate)
        additive = AdditiveSynthTraining(frameSize: Self.frameSize, sampleRate: V2Weights.sampleRate)
        noise = FilteredNoiseTraining(bands: V2Weights.noiseBands, frameSize: Self.frameSize)
        spectralLoss = MultiScaleSpectralLoss(sizes: lossSizes, magnitudeWeight: magnitudeWeight, logMagnitudeWeight: logMagnitudeWeight)
    }

    public func zeroGrad() { network.zeroGrad(); reverb.zeroGrad() }

    /// Every trainable tensor under its weight-file name (all of them in upstream's odd phases;
    /// the tuning and the release duration are not trainable).
    public func forEachParameter(_ body: (_ name: String, _ value: inout [Float], _ grad: inout [Float]) -> Void) {
        network.forEachParameter(body)
        reverb.forEachParameter(body)
    }

    /// The current parameters as v2 weights.
    public func weights() -> V2Weights {
        var w = network.weights(updating: base)
        var r = reverb
        r.forEachParameter { name, value, _ in w.tensors[name] = Tensor(shape: w[name].shape, values: value) }
        return w
    }

    private func reverbConvolution(samples: Int) -> ReverbTraining {
        if let r = reverbs[samples] { return r }
        let r = ReverbTraining(samples: samples, irLength: V2Weights.reverbLength)
        reverbs[samples] = r
        return r
    }

    /// Forward over `batch` (v2's 24 kHz, 250 Hz frames) against `target` [batch, frames·96];
    /// with `gradients`, also the backward pass. Returns the spectral loss and the audio.
    public func step(_ batch: SegmentBatch, target: [Float], noiseSeed: UInt64, gradients: Bool = true) -> (loss: Double, audio: [Float]) {
        let B = batch.batch, V = batch.voices, T = batch.frames, H = V2Weights.harmonics, n = T * Self.frameSize
        precondition(target.count == B * n, "target has \(target.count) samples, expected \(B) × \(n)")
        let (out, netCache) = network.forward(batch)
        // f0 and B from the frozen tuning of each element's piano.
        var f0 = [Float](repeating: 0, count: B * V * T), inharm = f0
        for b in 0..<B {
            let tuning = tunings[batch.instruments[b]]
            for i in (b * V * T)..<((b + 1) * V * T) {
                let m = out.extendedPitch[i]
                inharm[i] = tuning.inharmonicity(m)
                f0[i] = tuning.f0(m, inharm: inharm[i])
            }
        }
        let (c, cCache) = controls.forward(raw: out.raw, f0: f0, inharm: inharm, sequences: B * V, frames: T, substrings: 1)
        let harmonic = additive.forward(harmonicAmplitude: c.harmonicAmplitude, harmonicFrequency: c.harmonicFrequency,
                                        batch: B, voices: V, frames: T, substrings: 1, harmonics: H)
        var g = NoiseGenerator(seed: noiseSeed)
        var x = [Float](repeating: 0, count: B * V * n)
        x.withUnsafeMutableBufferPointer { g.fill($0.baseAddress!, count: $0.count) }
        let noisy = noise.forward(magnitudes: c.magnitudes, noise: x, batch: B, voices: V, frames: T)
        var dry = harmonic
        for i in dry.indices { dry[i] += noisy[i] }
        // One impulse response per piano of the batch.
        var irs: [Int: [Float]] = [:]
        var ir = [Float]()
        ir.reserveCapacity(B * V2Weights.reverbLength)
        for p in batch.instruments {
            if irs[p] == nil { irs[p] = reverb.impulseResponse(p) }
            ir += irs[p]!
        }
        let rv = reverbConvolution(samples: n)
        let wet = rv.forward(dry: dry, ir: ir, batch: B)
        var dWet = [Float](repeating: 0, count: B * n)
        let loss = gradients
            ? dWet.withUnsafeMutableBufferPointer { spectralLoss.loss(target: target, audio: wet, batch: B, samples: n, gradient: $0.baseAddress!) }
            : spectralLoss.loss(target: target, audio: wet, batch: B, samples: n)
        guard gradients else { return (loss, wet) }

        let (dDry, dIR) = rv.backward(dWet, dry: dry, ir: ir, batch: B)
        // The responses' gradients summed per piano (dL/dθ is linear in dL/dIR: one backward per piano).
        var perPiano: [Int: [Float]] = [:]
        let L = V2Weights.reverbLength
        for (b, p) in batch.instruments.enumerated() {
            var d = perPiano[p] ?? [Float](repeating: 0, count: L)
            for i in 0..<L { d[i] += dIR[b * L + i] }
            perPiano[p] = d
        }
        for p in perPiano.keys.sorted() { reverb.backward(perPiano[p]!, instrument: p) }
        let (dA, dF) = additive.backward(dDry, harmonicAmplitude: c.harmonicAmplitude, harmonicFrequency: c.harmonicFrequency,
                                         batch: B, voices: V, frames: T, substrings: 1, harmonics: H)
        _ = dF   // the partial frequencies come from the frozen tuning: no gradient to take further
        let dM = noise.backward(dDry, noise: x, batch: B, voices: V, frames: T)
        let (dRaw, _, _) = controls.backward(dHarmonicAmplitude: dA, dHarmonicFrequency: [], dMagnitudes: dM, cache: cCache)
        network.backward(dRaw, cache: netCache)
        return (loss, wet)
    }
}
