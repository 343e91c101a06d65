import DDSPPiano
import Foundation

/// The whole DDSP-Piano model in training mode, as upstream's PianoModel with the dafx22 losses:
/// networks → synthesiser controls → additive + filtered noise (summed over voices) → reverb →
/// multi-scale spectral loss against the target audio, plus the reverb regulariser and the
/// inharmonicity modifiers' L1 regulariser (upstream's total_loss sums all three).
/// `step` runs forward and backward over one batch and accumulates every parameter's gradient
/// in `network` (call `network.zeroGrad()` between optimiser steps).
// @unchecked Sendable: one per worker thread; gradients are summed after the workers joined.
public final class PianoModelTraining: @unchecked Sendable {
    public var network: PianoNetworkTraining
    public let controls: SynthControlsTraining
    public let additive: AdditiveSynthTraining
    public let noise: FilteredNoiseTraining
    public let spectralLoss: MultiScaleSpectralLoss
    public var reverbWeight: Float = ReverbRegularizer.defaultWeight
    private var reverbs: [Int: ReverbTraining] = [:]   // by segment length

    public init(weights w: PianoWeights, lossSizes: [Int] = [2048, 1024, 512, 256, 128, 64],
                magnitudeWeight: Float = 1, logMagnitudeWeight: Float = 1) {
        network = PianoNetworkTraining(weights: w)
        controls = SynthControlsTraining(harmonics: w.hyper.harmonics, bands: w.hyper.noiseBands, sampleRate: w.hyper.sampleRate)
        additive = AdditiveSynthTraining(frameSize: w.hyper.samplesPerFrame, sampleRate: w.hyper.sampleRate)
        noise = FilteredNoiseTraining(bands: w.hyper.noiseBands, frameSize: w.hyper.samplesPerFrame)
        spectralLoss = MultiScaleSpectralLoss(sizes: lossSizes, magnitudeWeight: magnitudeWeight, logMagnitudeWeight: logMagnitudeWeight)
    }

    public struct Losses: Sendable, Equatable {
        public var spectral: Double
        public var reverb: Double
        public var inharmonicityL1: Double
        public var total: Double { spectral + reverb + inharmonicityL1 }
    }

    /// White noise for every voice of the batch, [batch·voices, samples], reproducible from `seed`.
    public func noiseSignal(sequences: Int, samples: Int, seed: UInt64) -> [Float] {
        var g = NoiseGenerator(seed: seed)
        var x = [Float](repeating: 0, count: sequences * samples)
        x.withUnsafeMutableBufferPointer { g.fill($0.baseAddress!, count: $0.count) }
        return x
    }

    private func reverb(samples: Int) -> ReverbTraining {
        if let r = reverbs[samples] { return r }
        let r = ReverbTraining(samples: samples, irLength: network.hyper.reverbLength)
        reverbs[samples] = r
        return r
    }

    /// Forward over `batch` against `target` [batch, frames·samplesPerFrame]; with `gradients`,
    /// also the backward pass. Returns the losses and the model's audio [batch, samples].
    public func step(_ batch: SegmentBatch, target: [Float], noiseSeed: UInt64, gradients: Bool = true) -> (losses: Losses, audio: [Float]) {
        let h = network.hyper, B = batch.batch, V = batch.voices, T = batch.frames, H = h.harmonics
        let n = T * h.samplesPerFrame
        precondition(target.count == B * n, "target has \(target.count) samples, expected \(B) × \(n)")
        let (out, netCache) = network.forward(batch)
        let S = out.substrings
        let (c, cCache) = controls.forward(raw: out.raw, f0: out.f0, inharm: out.inharm, sequences: B * V, frames: T, substrings: S)
        let harmonic = additive.forward(harmonicAmplitude: c.harmonicAmplitude, harmonicFrequency: c.harmonicFrequency,
                                        batch: B, voices: V, frames: T, substrings: S, harmonics: H)
        let x = noiseSignal(sequences: B * V, samples: n, seed: noiseSeed)
        let noisy = noise.forward(magnitudes: c.magnitudes, noise: x, batch: B, voices: V, frames: T)
        var dry = harmonic
        for i in dry.indices { dry[i] += noisy[i] }
        let ir = network.reverb.forward(batch.instruments)
        let rv = reverb(samples: n)
        let wet = rv.forward(dry: dry, ir: ir, batch: B)

        var dWet = [Float](repeating: 0, count: B * n)
        let spectral = gradients
            ? dWet.withUnsafeMutableBufferPointer { spectralLoss.loss(target: target, audio: wet, batch: B, samples: n, gradient: $0.baseAddress!) }
            : spectralLoss.loss(target: target, audio: wet, batch: B, samples: n)
        let reverbLoss: Double
        if gradients {
            reverbLoss = ReverbRegularizer.apply(to: &network.reverb, instruments: batch.instruments, weight: reverbWeight)
        } else {
            var probe = network.reverb   // the value only: gradients land in a copy
            reverbLoss = ReverbRegularizer.apply(to: &probe, instruments: batch.instruments, weight: reverbWeight)
        }
        let l1 = network.inharmonicity.regularizer(accumulateGradient: gradients)
        let losses = Losses(spectral: spectral, reverb: reverbLoss, inharmonicityL1: l1)
        guard gradients else { return (losses, wet) }

        let (dDry, dIR) = rv.backward(dWet, dry: dry, ir: ir, batch: B)
        network.reverb.backward(dIR, indices: batch.instruments)
        let (dA, dF) = additive.backward(dDry, harmonicAmplitude: c.harmonicAmplitude, harmonicFrequency: c.harmonicFrequency,
                                         batch: B, voices: V, frames: T, substrings: S, harmonics: H)
        let dM = noise.backward(dDry, noise: x, batch: B, voices: V, frames: T)
        let (dRaw, dF0, dInharm) = controls.backward(dHarmonicAmplitude: dA, dHarmonicFrequency: dF, dMagnitudes: dM, cache: cCache)
        network.backward(dRaw: dRaw, dF0: dF0, dInharm: dInharm, outputs: out, cache: netCache)
        return (losses, wet)
    }
}
