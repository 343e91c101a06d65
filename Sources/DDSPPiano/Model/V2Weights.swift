import Foundation

/// Every stored value of upstream's v2 model (`maestro-v2.gin`, JAES 2023): 24 kHz, FiLM context
/// network, FcStack/GRU monophonic network, parametric inharmonicity and tuning per piano,
/// feedback-delay-network reverb per piano. Readable names; the mapping from upstream's
/// TensorFlow keys, and every layout change, is in `layout` and nowhere else.
///
/// FcStack layers are stored as `<stack>.<i>.{kernel,bias,gamma,beta}` (Dense then LayerNorm).
/// Kernels keep Keras' [in, out] layout; GRU `bias` [2, 3u] is split into its rows; per-piano
/// `[n, 1]` embeddings are flattened to `[n]`; the scalar release time becomes `[1]`.
public struct V2Weights: Sendable {
    public static let architecture = "v2"
    public static let sampleRate = 24_000
    public static let frameRate = 250
    public static let voices = 16
    public static let harmonics = 128
    public static let noiseBands = 96
    /// ddsp's FeedbackDelayNetwork samples its response at 2·sample_rate points: a 2-s IR.
    public static let reverbLength = 2 * sampleRate
    public static let contextUnits = 32
    public static let monoOutputs = 1 + harmonics + noiseBands    // 225
    /// Upstream's piano types for v2: the ten MAESTRO years, as for dafx22.
    public static let defaultInstruments = PianoWeights.dafx22Instruments

    public var instruments: [String]
    public var provenance: [String: String]
    public var tensors: [String: Tensor]

    public struct Entry: Sendable {
        public var name: String
        /// Upstream key without `/.ATTRIBUTES/VARIABLE_VALUE`; `#k` selects row k of a [2, w] tensor.
        public var upstream: String
        public var shape: [Int]
    }

    /// Every tensor of a v2 weight file for `n` pianos, in file order.
    public static func layout(instruments n: Int) -> [Entry] {
        var e: [Entry] = []
        func add(_ name: String, _ upstream: String, _ shape: [Int]) { e.append(Entry(name: name, upstream: upstream, shape: shape)) }
        /// ddsp FcStack: `layers` × (Dense → LayerNorm → leaky ReLU).
        func fcStack(_ name: String, _ tf: String, layers: Int, inputs: Int, width: Int) {
            for i in 0..<layers {
                let t = "\(tf)/layer_with_weights-\(i)"
                add("\(name).\(i).kernel", "\(t)/layer_with_weights-0/kernel", [i == 0 ? inputs : width, width])
                add("\(name).\(i).bias", "\(t)/layer_with_weights-0/bias", [width])
                add("\(name).\(i).gamma", "\(t)/layer_with_weights-1/gamma", [width])
                add("\(name).\(i).beta", "\(t)/layer_with_weights-1/beta", [width])
            }
        }
        func gru(_ name: String, _ tf: String, inputs: Int, units: Int) {
            add("\(name).kernel", "\(tf)/kernel", [inputs, 3 * units])
            add("\(name).recurrent_kernel", "\(tf)/recurrent_kernel", [units, 3 * units])
            add("\(name).input_bias", "\(tf)/bias#0", [3 * units])
            add("\(name).recurrent_bias", "\(tf)/bias#1", [3 * units])
        }
        let c = "model/context_network"
        fcStack("context.conditioning_head", "\(c)/conditioning_head", layers: 2, inputs: 2 * voices, width: 32)
        fcStack("context.pedal_head", "\(c)/pedal_head", layers: 2, inputs: 4, width: 16)
        add("context.piano_embedding", "\(c)/piano_id_head/embeddings", [n, 32])
        add("context.dense_in.kernel", "\(c)/main_model/layer_with_weights-0/kernel", [48, 64])
        add("context.dense_in.bias", "\(c)/main_model/layer_with_weights-0/bias", [64])
        gru("context.gru", "\(c)/main_model/layer_with_weights-1/cell", inputs: 64, units: 64)
        add("context.dense_out.kernel", "\(c)/main_model/layer_with_weights-2/kernel", [64, 64])
        add("context.dense_out.bias", "\(c)/main_model/layer_with_weights-2/bias", [64])
        add("context.norm.gamma", "\(c)/main_model/layer_with_weights-3/gamma", [64])
        add("context.norm.beta", "\(c)/main_model/layer_with_weights-3/beta", [64])
        add("context.film.kernel", "\(c)/film_input_reshape/kernel", [32, 128])
        add("context.film.bias", "\(c)/film_input_reshape/bias", [128])
        fcStack("context.output", "\(c)/output_layer", layers: 2, inputs: 64, width: contextUnits)
        let m = "model/monophonic_network"
        fcStack("mono.pitch_stack", "\(m)/input_stacks/0", layers: 3, inputs: 1, width: 64)
        fcStack("mono.conditioning_stack", "\(m)/input_stacks/1", layers: 3, inputs: 2, width: 64)
        fcStack("mono.context_stack", "\(m)/input_stacks/2", layers: 3, inputs: contextUnits, width: 64)
        gru("mono.gru", "\(m)/model/layer_with_weights-0/rnn/cell", inputs: 192, units: 192)
        fcStack("mono.out_stack", "\(m)/out_stack", layers: 3, inputs: 384, width: 64)
        add("mono.dense_out.kernel", "\(m)/dense_out/kernel", [64, monoOutputs])
        add("mono.dense_out.bias", "\(m)/dense_out/bias", [monoOutputs])
        add("note_release.duration", "model/note_release/layer/cell/release_duration", [1])
        for p in tuningParameters {
            add("tuning.\(p)", "model/inharm_model/\(p)/embeddings", [n])
        }
        let r = "model/reverb_model"
        add("reverb.input_gain", "\(r)/_input_gain/embeddings", [n, 8])
        add("reverb.output_gain", "\(r)/_output_gain/embeddings", [n, 8])
        add("reverb.gain_allpass", "\(r)/_gain_allpass/embeddings", [n, 32])
        add("reverb.delays_allpass", "\(r)/_delays_allpass/embeddings", [n, 32])
        add("reverb.time_rev_0_sec", "\(r)/_time_rev_0_sec/embeddings", [n])
        add("reverb.alpha_tone", "\(r)/_alpha_tone/embeddings", [n])
        add("reverb.early_ir", "\(r)/_early_ir/embeddings", [n, 200])
        return e
    }

    /// JointParametricInharmTuning's seven per-piano values (Rigaud et al.; `maestro-v2.gin`).
    public static let tuningParameters = ["alpha_b", "beta_b", "alpha_t", "beta_t", "pitch_ref", "K", "alpha"]

    public subscript(name: String) -> Tensor {
        guard let t = tensors[name] else { preconditionFailure("v2 weights have no tensor '\(name)'") }
        return t
    }

    public var releaseDuration: Float { self["note_release.duration"].values[0] }

    public var parameterCount: Int { Self.layout(instruments: instruments.count).reduce(0) { $0 + (tensors[$1.name]?.count ?? 0) } }

    /// The synthesiser's dimensions (the fields the dafx22 networks use keep their defaults).
    public static var synthHyper: PianoWeights.Hyper {
        var h = PianoWeights.Hyper()
        h.sampleRate = sampleRate
        h.frameRate = frameRate
        h.voices = voices
        h.harmonics = harmonics
        h.noiseBands = noiseBands
        h.substrings = 1
        h.reverbLength = reverbLength
        return h
    }

    /// Zero-filled weights of the right shapes.
    public init(instruments: [String]) {
        self.instruments = instruments
        provenance = [:]
        tensors = [:]
        for e in Self.layout(instruments: instruments.count) { tensors[e.name] = Tensor(shape: e.shape) }
    }

    // MARK: - Upstream TensorFlow checkpoint

    /// Whether checkpoint keys are those of a v2 model (its FiLM context network and FDN reverb).
    public static func recognises(upstreamKeys keys: some Sequence<String>) -> Bool {
        var film = false, fdn = false
        for k in keys {
            if k.hasPrefix("model/context_network/film_input_reshape/") { film = true }
            if k.hasPrefix("model/reverb_model/_time_rev_0_sec/") { fdn = true }
        }
        return film && fdn
    }
}
