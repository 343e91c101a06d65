import DDSPPiano
import Foundation

// Training-mode composition of `V2Network`'s networks (mirrors Sources/DDSPPiano/Model/V2Network.swift):
// the FiLM context network, the note release (frozen: upstream's release_duration is not
// trained) and the monophonic network. The parametric tuning (f0, inharmonicity) is frozen as
// upstream's and belongs to the synthesis.

/// The v2 networks over whole segments: conditioning [b, T, 16, 2], pedal [b, T, 4] and each
/// element's piano → raw [b·16, T, 225] (sequence s = b·16 + v) and the extended pitch [b·16, T].
public struct V2NetworkTraining: Sendable {
    public var context: V2ContextNetworkTraining
    public var mono: V2MonophonicNetworkTraining
    public let releaseDuration: Float

    public init(weights w: V2Weights) {
        context = V2ContextNetworkTraining(weights: w)
        mono = V2MonophonicNetworkTraining(weights: w)
        releaseDuration = w.releaseDuration
    }

    public struct Cache: Sendable {
        public var context: V2ContextNetworkTraining.Cache
        public var mono: V2MonophonicNetworkTraining.Cache
    }

    public struct Output: Sendable {
        public var raw: [Float]             // [b·V, T, 225]
        public var extendedPitch: [Float]   // [b·V, T], MIDI pitch held through the release
        public var context: [Float]         // [b, T, 32]
    }

    /// The note release of every voice of every element, each from a zero state at the
    /// segment's start (upstream's RNN over the segment): [b·V, T].
    public func extendedPitch(_ batch: SegmentBatch) -> [Float] {
        let V = batch.voices, T = batch.frames
        var out = [Float](repeating: 0, count: batch.batch * V * T)
        for b in 0..<batch.batch {
            var release = NoteRelease(releaseDuration: releaseDuration, frameRate: V2Weights.frameRate, voices: V)
            for t in 0..<T {
                for v in 0..<V {
                    out[(b * V + v) * T + t] = release.forward(pitch: batch.conditioning[((b * T + t) * V + v) * 2], voice: v)
                }
            }
        }
        return out
    }

    public func forward(_ batch: SegmentBatch) -> (output: Output, cache: Cache) {
        let V = batch.voices, T = batch.frames, B = batch.batch
        let (ctx, cc) = context.forward(conditioning: batch.conditioning, pedal: batch.pedal, instruments: batch.instruments, batch: B, time: T)
        let ext = extendedPitch(batch)
        var pitch = [Float](repeating: 0, count: B * V * T), cond = [Float](repeating: 0, count: B * V * T * 2)
        for b in 0..<B {
            for v in 0..<V {
                for t in 0..<T {
                    let s = (b * V + v) * T + t, c = ((b * T + t) * V + v) * 2
                    pitch[s] = ext[s] / 128
                    cond[2 * s] = batch.conditioning[c] / 128
                    cond[2 * s + 1] = batch.conditioning[c + 1]
                }
            }
        }
        let (raw, mc) = mono.forward(pitch: pitch, conditioning: cond, context: ctx, batch: B, voices: V, time: T)
        return (Output(raw: raw, extendedPitch: ext, context: ctx), Cache(context: cc, mono: mc))
    }

    /// Accumulates every gradient from dL/draw [b·V, T, 225].
    public mutating func backward(_ dRaw: [Float], cache: Cache) {
        let dContext = mono.backward(dRaw, cache: cache.mono)
        context.backward(dContext, cache: cache.context)
    }

    public mutating func zeroGrad() { context.zeroGrad(); mono.zeroGrad() }

    /// The networks' trainable tensors under their weight-file names.
    public mutating func forEachParameter(_ body: (_ name: String, _ value: inout [Float], _ grad: inout [Float]) -> Void) {
        context.forEachParameter(body)
        mono.forEachParameter(body)
    }

    /// `base` with these networks' current values.
    public func weights(updating base: V2Weights) -> V2Weights {
        var w = base
        var copy = self
        copy.forEachParameter { name, value, _ in
            guard let t = w.tensors[name] else { preconditionFailure("v2 weights have no tensor '\(name)'") }
            precondition(t.count == value.count)
            w.tensors[name] = Tensor(shape: t.shape, values: value)
        }
        return w
    }
}
