import DDSPPiano
import Foundation

/// Offline renders with causal normalisation: the same network and synthesiser as
/// `OfflineRenderer`, one frame at a time, normalising each frame with the estimator's
/// statistics from before it and then showing it the frame. Used to measure what streaming
/// costs against `--exact` (docs/NORMALIZATION.md).
public enum CausalRender {
    /// What `render` returns: `RenderOutput`'s fields (the engine keeps that type's memberwise
    /// initialiser to itself).
    public struct Output: Sendable {
        public var sampleRate: Int
        /// Model output (dry + reverb), warm-up removed.
        public var wet: [Float]
        /// The unreverbed mix, warm-up removed.
        public var dry: [Float]
    }

    public enum Normalization: Sendable {
        case estimator(NormalizationEstimator)
        /// Statistics of the current frame alone (over channels only): the naive baseline.
        case perFrame
    }

    public static func render(conditioning c: FrameConditioning, weights: PianoWeights, settings: RenderSettings,
                              normalization: Normalization) throws -> Output {
        guard settings.instrument >= 0 && settings.instrument < weights.instruments.count else {
            throw WeightsError("instrument \(settings.instrument) is out of range 0..<\(weights.instruments.count)")
        }
        let h = weights.hyper, V = c.voices, N = h.samplesPerFrame
        let warmUpFrames = Int((settings.warmUp * Double(h.frameRate)).rounded())
        var network = PianoNetwork(weights: weights, instrument: settings.instrument)
        let synth = PianoSynth(weights: weights, instrument: settings.instrument, seed: settings.seed, noise: settings.noise)
        var dry = [Float](repeating: 0, count: c.frames * N)
        var wet = dry
        guard c.frames > 0 else { return Output(sampleRate: h.sampleRate, wet: [], dry: []) }
        var estimator: NormalizationEstimator? = nil
        if case .estimator(let e) = normalization { estimator = e }
        var perFrame = NormalizationStatistics(voices: V)
        let width = network.mono.hidden.outputs
        var current = SynthControls(hyper: h)
        var next = SynthControls(hyper: h)
        func moments(_ p: UnsafePointer<Float>, _ n: Int) -> (Float, Float) {
            var acc = MomentAccumulator()
            acc.add(p, count: n)
            return (acc.mean, acc.variance)
        }
        c.conditioning.withUnsafeBufferPointer { cond in
        c.pedal.withUnsafeBufferPointer { ped in
        dry.withUnsafeMutableBufferPointer { d in
        wet.withUnsafeMutableBufferPointer { w in
            func compute(_ t: Int, into controls: inout SynthControls) {
                let x = cond.baseAddress! + t * V * 2, p = ped.baseAddress! + t * 4
                if estimator != nil {
                    network.step(conditioning: x, pedal: p, statistics: estimator!.statistics)
                    estimator!.observe(network)
                } else {
                    // The context statistics of this frame need its GRU output before the
                    // network steps: a throw-away copy computes it (study code, allocates).
                    var probe = network
                    probe.stepContextToNorm(conditioning: x, pedal: p)
                    (perFrame.contextMean, perFrame.contextVariance) = probe.context.preNorm.withUnsafeBufferPointer { moments($0.baseAddress!, $0.count) }
                    network.step(conditioning: x, pedal: p, statistics: perFrame, stage: .monoToNorm)
                    network.mono.preNorm.withUnsafeBufferPointer { m in
                        for v in 0..<V { (perFrame.monoMeans[v], perFrame.monoVariances[v]) = moments(m.baseAddress! + v * width, width) }
                    }
                    perFrame.monoMeans.withUnsafeBufferPointer { m in
                        perFrame.monoVariances.withUnsafeBufferPointer { va in
                            network.mono.finish(means: m.baseAddress!, variances: va.baseAddress!)
                        }
                    }
                }
                network.mono.raw.withUnsafeBufferPointer { raw in
                network.f0.withUnsafeBufferPointer { f0 in
                network.inharmCoefficient.withUnsafeBufferPointer { b in
                    controls.update(raw: raw.baseAddress!, f0: f0.baseAddress!, inharm: b.baseAddress!, sampleRate: h.sampleRate)
                }}}
            }
            compute(0, into: &current)
            for t in 0..<c.frames {
                if t + 1 < c.frames { compute(t + 1, into: &next) } else { next = current }
                synth.render(current: current, next: next, dry: d.baseAddress! + t * N, wet: w.baseAddress! + t * N)
                swap(&current, &next)
            }
        }}}}
        let crop = min(dry.count, warmUpFrames * N)
        return Output(sampleRate: h.sampleRate, wet: Array(wet[crop...]), dry: Array(dry[crop...]))
    }
}
