import Foundation

/// Every trainable or stored value of the DDSP-Piano model, under readable names.
///
/// Layouts follow Keras: a dense kernel is `[in, out]` (y = x·K + b), GRU kernels are
/// `[in, 3·units]` with the gate columns ordered (update z, reset r, candidate h).
/// The mapping from upstream TensorFlow checkpoint keys, and every layout change, is in
/// `upstreamKeys` below and `init(upstreamCheckpoint:)` (PianoFormats) and nowhere else; the
/// weight file format (`init(safetensors:)`, `safetensors()`) is in PianoFormats too.
public struct PianoWeights: Sendable {
    public struct Hyper: Sendable, Equatable {
        public var sampleRate = 16_000
        public var frameRate = 250
        public var voices = 16
        public var zDim = 16
        public var contextUnits = 32      // context dense_in and dense_out width
        public var contextGRUUnits = 64
        public var monoDenseUnits = 128
        public var monoGRUUnits = 192
        public var monoHiddenUnits = 192
        public var harmonics = 96
        public var noiseBands = 64
        public var substrings = 2
        public var reverbLength = 24_000
        public init() {}
        /// The dafx22 architecture's values (what training builds and what `init()` gives).
        public static let dafx22 = Hyper()
        public var samplesPerFrame: Int { sampleRate / frameRate }
        public var contextInputs: Int { 2 * voices + 4 + zDim }      // 52
        public var monoInputs: Int { 3 + contextUnits }             // 35
        public var monoOutputs: Int { 1 + harmonics + noiseBands }  // 161
    }

    public var hyper: Hyper
    public var instruments: [String]
    /// Free-form provenance written into the file's metadata (source, training steps, ...).
    public var provenance: [String: String]

    public var zEmbedding: Tensor            // [instruments, zDim]
    public var inharmonicityEmbedding: Tensor // [instruments, 1]
    public var detuningEmbedding: Tensor      // [instruments, 1]

    public var contextDenseKernel: Tensor     // [52, 32]
    public var contextDenseBias: Tensor       // [32]
    public var contextGRUKernel: Tensor       // [32, 3·64]
    public var contextGRURecurrentKernel: Tensor // [64, 3·64]
    public var contextGRUInputBias: Tensor    // [3·64]
    public var contextGRURecurrentBias: Tensor // [3·64]
    public var contextNormScale: Tensor       // [64]
    public var contextNormShift: Tensor       // [64]
    public var contextOutKernel: Tensor       // [64, 32]
    public var contextOutBias: Tensor         // [32]

    public var releaseDuration: Tensor        // [1], seconds

    public var inharmSlopes: Tensor           // [2] (treble, bass), fixed (Rigaud et al.)
    public var inharmSlopesModifier: Tensor   // [2]
    public var inharmOffsets: Tensor          // [2], fixed
    public var inharmOffsetsModifier: Tensor  // [2]
    public var inharmModelSpecificWeight: Tensor // [1]

    public var detunerKernel: Tensor          // [1, substrings]
    public var detunerBias: Tensor            // [substrings]

    public var monoDenseKernel: Tensor        // [35, 128]
    public var monoDenseBias: Tensor          // [128]
    public var monoGRUKernel: Tensor          // [128, 3·192]
    public var monoGRURecurrentKernel: Tensor // [192, 3·192]
    public var monoGRUInputBias: Tensor       // [3·192]
    public var monoGRURecurrentBias: Tensor   // [3·192]
    public var monoHiddenKernel: Tensor       // [192, 192]
    public var monoHiddenBias: Tensor         // [192]
    public var monoNormScale: Tensor          // [192]
    public var monoNormShift: Tensor          // [192]
    public var monoOutKernel: Tensor          // [192, 161]
    public var monoOutBias: Tensor            // [161]

    public var reverbImpulseResponses: Tensor // [instruments, 24000]

    /// Optional Normalize statistics measured on real music (`weights calibrate`): the prior of
    /// the streaming estimator. Stored as extra `calibration.*` tensors; nil when absent.
    public var calibration: NormalizationCalibration? = nil

    public static let dafx22Instruments = ["2004", "2006", "2008", "2009", "2011", "2013", "2014", "2015", "2017", "2018"]

    /// The readable tensor names of our weight files, with a key path and expected shape.
    public static func layout(_ h: Hyper, instruments n: Int) -> [(name: String, path: WritableKeyPath<PianoWeights, Tensor>, shape: [Int])] {
        [
            ("z_encoder.embedding", \.zEmbedding, [n, h.zDim]),
            ("z_encoder.inharmonicity", \.inharmonicityEmbedding, [n, 1]),
            ("z_encoder.detuning", \.detuningEmbedding, [n, 1]),
            ("context.dense_in.kernel", \.contextDenseKernel, [h.contextInputs, h.contextUnits]),
            ("context.dense_in.bias", \.contextDenseBias, [h.contextUnits]),
            ("context.gru.kernel", \.contextGRUKernel, [h.contextUnits, 3 * h.contextGRUUnits]),
            ("context.gru.recurrent_kernel", \.contextGRURecurrentKernel, [h.contextGRUUnits, 3 * h.contextGRUUnits]),
            ("context.gru.input_bias", \.contextGRUInputBias, [3 * h.contextGRUUnits]),
            ("context.gru.recurrent_bias", \.contextGRURecurrentBias, [3 * h.contextGRUUnits]),
            ("context.norm.scale", \.contextNormScale, [h.contextGRUUnits]),
            ("context.norm.shift", \.contextNormShift, [h.contextGRUUnits]),
            ("context.dense_out.kernel", \.contextOutKernel, [h.contextGRUUnits, h.contextUnits]),
            ("context.dense_out.bias", \.contextOutBias, [h.contextUnits]),
            ("note_release.duration", \.releaseDuration, [1]),
            ("inharmonicity.slopes", \.inharmSlopes, [2]),
            ("inharmonicity.slopes_modifier", \.inharmSlopesModifier, [2]),
            ("inharmonicity.offsets", \.inharmOffsets, [2]),
            ("inharmonicity.offsets_modifier", \.inharmOffsetsModifier, [2]),
            ("inharmonicity.model_specific_weight", \.inharmModelSpecificWeight, [1]),
            ("detuner.kernel", \.detunerKernel, [1, h.substrings]),
            ("detuner.bias", \.detunerBias, [h.substrings]),
            ("mono.dense_in.kernel", \.monoDenseKernel, [h.monoInputs, h.monoDenseUnits]),
            ("mono.dense_in.bias", \.monoDenseBias, [h.monoDenseUnits]),
            ("mono.gru.kernel", \.monoGRUKernel, [h.monoDenseUnits, 3 * h.monoGRUUnits]),
            ("mono.gru.recurrent_kernel", \.monoGRURecurrentKernel, [h.monoGRUUnits, 3 * h.monoGRUUnits]),
            ("mono.gru.input_bias", \.monoGRUInputBias, [3 * h.monoGRUUnits]),
            ("mono.gru.recurrent_bias", \.monoGRURecurrentBias, [3 * h.monoGRUUnits]),
            ("mono.dense_hidden.kernel", \.monoHiddenKernel, [h.monoGRUUnits, h.monoHiddenUnits]),
            ("mono.dense_hidden.bias", \.monoHiddenBias, [h.monoHiddenUnits]),
            ("mono.norm.scale", \.monoNormScale, [h.monoHiddenUnits]),
            ("mono.norm.shift", \.monoNormShift, [h.monoHiddenUnits]),
            ("mono.dense_out.kernel", \.monoOutKernel, [h.monoHiddenUnits, h.monoOutputs]),
            ("mono.dense_out.bias", \.monoOutBias, [h.monoOutputs]),
            ("reverb.impulse_responses", \.reverbImpulseResponses, [n, h.reverbLength]),
        ]
    }

    /// All names in file order, for `weights info` and tests.
    public static var tensorNames: [String] { layout(Hyper(), instruments: 1).map(\.name) }

    public var parameterCount: Int {
        Self.layout(hyper, instruments: instruments.count).reduce(0) { $0 + self[keyPath: $1.path].count }
    }

    /// Zero-filled weights of the right shapes (for building and training from scratch).
    public init(hyper: Hyper = Hyper(), instruments: [String]) {
        self.hyper = hyper
        self.instruments = instruments
        self.provenance = [:]
        let empty = Tensor(shape: [0], values: [])
        zEmbedding = empty; inharmonicityEmbedding = empty; detuningEmbedding = empty
        contextDenseKernel = empty; contextDenseBias = empty; contextGRUKernel = empty
        contextGRURecurrentKernel = empty; contextGRUInputBias = empty; contextGRURecurrentBias = empty
        contextNormScale = empty; contextNormShift = empty; contextOutKernel = empty; contextOutBias = empty
        releaseDuration = empty
        inharmSlopes = empty; inharmSlopesModifier = empty; inharmOffsets = empty; inharmOffsetsModifier = empty
        inharmModelSpecificWeight = empty
        detunerKernel = empty; detunerBias = empty
        monoDenseKernel = empty; monoDenseBias = empty; monoGRUKernel = empty; monoGRURecurrentKernel = empty
        monoGRUInputBias = empty; monoGRURecurrentBias = empty; monoHiddenKernel = empty; monoHiddenBias = empty
        monoNormScale = empty; monoNormShift = empty; monoOutKernel = empty; monoOutBias = empty
        reverbImpulseResponses = empty
        for entry in Self.layout(hyper, instruments: instruments.count) {
            self[keyPath: entry.path] = Tensor(shape: entry.shape)
        }
    }

    /// Resolves `--piano` text: an index ("9") or an instrument name ("2018").
    public func instrumentIndex(_ text: String) -> Int? {
        if let i = instruments.firstIndex(of: text) { return i }
        if let i = Int(text), i >= 0, i < instruments.count { return i }
        return nil
    }

    // MARK: - Upstream TensorFlow checkpoint (the only place that knows its keys)

    /// Upstream key (without the `/.ATTRIBUTES/VARIABLE_VALUE` suffix) for each readable name.
    /// Layout changes: GRU `bias` [2, 3u] is split into its rows (row 0 input bias, row 1
    /// recurrent bias); Normalize `scale`/`shift` [1,1,1,C] are flattened to [C]; the scalar
    /// `release_duration` becomes [1]. Kernels keep Keras' [in, out] layout.
    public static let upstreamKeys: [String: String] = [
        "z_encoder.embedding": "model/z_encoder/embedding/embeddings",
        "z_encoder.inharmonicity": "model/z_encoder/inharm_embedding/embeddings",
        "z_encoder.detuning": "model/z_encoder/detune_embedding/embeddings",
        "context.dense_in.kernel": "model/context_network/model/layer_with_weights-0/kernel",
        "context.dense_in.bias": "model/context_network/model/layer_with_weights-0/bias",
        "context.gru.kernel": "model/context_network/model/layer_with_weights-1/cell/kernel",
        "context.gru.recurrent_kernel": "model/context_network/model/layer_with_weights-1/cell/recurrent_kernel",
        "context.gru.input_bias": "model/context_network/model/layer_with_weights-1/cell/bias#0",
        "context.gru.recurrent_bias": "model/context_network/model/layer_with_weights-1/cell/bias#1",
        "context.norm.scale": "model/context_network/model/layer_with_weights-2/scale",
        "context.norm.shift": "model/context_network/model/layer_with_weights-2/shift",
        "context.dense_out.kernel": "model/context_network/dense_out/kernel",
        "context.dense_out.bias": "model/context_network/dense_out/bias",
        "note_release.duration": "model/note_release/layer/cell/release_duration",
        "inharmonicity.slopes": "model/inharm_model/slopes",
        "inharmonicity.slopes_modifier": "model/inharm_model/slopes_modifier",
        "inharmonicity.offsets": "model/inharm_model/offsets",
        "inharmonicity.offsets_modifier": "model/inharm_model/offsets_modifier",
        "inharmonicity.model_specific_weight": "model/inharm_model/model_specific_weight",
        "detuner.kernel": "model/detuner/layer/kernel",
        "detuner.bias": "model/detuner/layer/bias",
        "mono.dense_in.kernel": "model/monophonic_network/model/layer_with_weights-0/kernel",
        "mono.dense_in.bias": "model/monophonic_network/model/layer_with_weights-0/bias",
        "mono.gru.kernel": "model/monophonic_network/model/layer_with_weights-1/cell/kernel",
        "mono.gru.recurrent_kernel": "model/monophonic_network/model/layer_with_weights-1/cell/recurrent_kernel",
        "mono.gru.input_bias": "model/monophonic_network/model/layer_with_weights-1/cell/bias#0",
        "mono.gru.recurrent_bias": "model/monophonic_network/model/layer_with_weights-1/cell/bias#1",
        "mono.dense_hidden.kernel": "model/monophonic_network/model/layer_with_weights-2/kernel",
        "mono.dense_hidden.bias": "model/monophonic_network/model/layer_with_weights-2/bias",
        "mono.norm.scale": "model/monophonic_network/model/layer_with_weights-3/scale",
        "mono.norm.shift": "model/monophonic_network/model/layer_with_weights-3/shift",
        "mono.dense_out.kernel": "model/monophonic_network/dense_out/kernel",
        "mono.dense_out.bias": "model/monophonic_network/dense_out/bias",
        "reverb.impulse_responses": "model/reverb_model/reverb_dict/layer_with_weights-0/embeddings",
    ]

    public static let upstreamSuffix = "/.ATTRIBUTES/VARIABLE_VALUE"
}

public struct WeightsError: CodedError, CustomStringConvertible, Sendable {
    public var description: String
    public var code: ErrorCode
    public init(_ description: String, code: ErrorCode = .badWeights) { self.description = description; self.code = code }
}
