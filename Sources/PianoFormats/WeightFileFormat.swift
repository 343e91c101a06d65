import DDSPPiano
import Foundation

// The ddsp-piano weight file: a safetensors container with our readable tensor names (the
// layouts are the engine's: `PianoWeights.layout`, `V2Weights.layout`) and metadata for the
// format, architecture, rates and instrument names; and the conversion of upstream's
// TensorFlow checkpoint tensors into it.

extension PianoWeights {
    public static let formatName = "ddsp-piano"
    public static let formatVersion = "1"

    /// Reads weights from a safetensors container with our readable names.
    /// Every tensor must be present, of the expected shape, and finite.
    public init(safetensors file: Safetensors) throws {
        let meta = file.metadata
        if let format = meta["format"], format != Self.formatName {
            throw WeightsError("not a ddsp-piano weight file (format '\(format)')")
        }
        var hyper = Hyper()
        func intMeta(_ key: String, _ target: inout Int) throws {
            guard let s = meta[key] else { return }
            guard let v = Int(s), v > 0, v < 10_000_000 else { throw WeightsError("metadata '\(key)' is not a positive integer: '\(s)'") }
            target = v
        }
        try intMeta("sample_rate", &hyper.sampleRate)
        try intMeta("frame_rate", &hyper.frameRate)
        try intMeta("n_synths", &hyper.voices)
        try intMeta("reverb_length", &hyper.reverbLength)
        guard hyper == Hyper() || (hyper.sampleRate == 16_000 && hyper.frameRate == 250) else {
            throw WeightsError("unsupported rates \(hyper.sampleRate) Hz / \(hyper.frameRate) fps (this engine runs the 16 kHz / 250 fps dafx22 architecture)")
        }
        guard hyper.voices == 16 else { throw WeightsError("unsupported n_synths \(hyper.voices) (expected 16)") }
        var instruments: [String]
        if let list = meta["instruments"] {
            instruments = list.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        } else if let z = file.tensors["z_encoder.embedding"], z.shape.count == 2 {
            instruments = (0..<z.shape[0]).map { String($0) }
        } else {
            throw WeightsError("missing tensor 'z_encoder.embedding'")
        }
        guard !instruments.isEmpty, instruments.allSatisfy({ !$0.isEmpty }) else { throw WeightsError("metadata 'instruments' is empty or has an empty name") }
        self.init(hyper: hyper, instruments: instruments)
        for entry in Self.layout(hyper, instruments: instruments.count) {
            guard let t = file.tensors[entry.name] else { throw WeightsError("missing tensor '\(entry.name)'") }
            guard t.shape == entry.shape else {
                throw WeightsError("tensor '\(entry.name)' has shape \(t.shape), expected \(entry.shape)")
            }
            if let bad = t.values.firstIndex(where: { !$0.isFinite }) {
                throw WeightsError("tensor '\(entry.name)' has a non-finite value (\(t.values[bad])) at index \(bad)")
            }
            self[keyPath: entry.path] = t
        }
        calibration = try NormalizationCalibration(tensors: file.tensors, instruments: instruments.count, voices: hyper.voices)
        provenance = meta.filter { !Self.reservedMetadata.contains($0.key) }
        guard releaseDuration.values[0] > 0, releaseDuration.values[0] < 60 else {
            throw WeightsError("note_release.duration \(releaseDuration.values[0]) s is out of range (0, 60)")
        }
    }

    static let reservedMetadata: Set<String> = ["format", "format_version", "architecture", "sample_rate", "frame_rate", "n_synths", "reverb_length", "instruments"]

    public func safetensors() -> Safetensors {
        var file = Safetensors()
        for entry in Self.layout(hyper, instruments: instruments.count) {
            file.tensors[entry.name] = self[keyPath: entry.path]
        }
        if let c = calibration { file.tensors.merge(c.tensors) { $1 } }
        file.metadata = provenance
        file.metadata["format"] = Self.formatName
        file.metadata["format_version"] = Self.formatVersion
        file.metadata["architecture"] = "dafx22"
        file.metadata["sample_rate"] = String(hyper.sampleRate)
        file.metadata["frame_rate"] = String(hyper.frameRate)
        file.metadata["n_synths"] = String(hyper.voices)
        file.metadata["reverb_length"] = String(hyper.reverbLength)
        file.metadata["instruments"] = instruments.joined(separator: ",")
        return file
    }

    // MARK: - Upstream TensorFlow checkpoint

    /// Builds weights from upstream checkpoint tensors keyed by full TF key
    /// (`model/.../.ATTRIBUTES/VARIABLE_VALUE`) or by the key without the suffix.
    public init(upstreamCheckpoint raw: [String: Tensor], instruments: [String] = PianoWeights.dafx22Instruments) throws {
        func lookup(_ key: String) -> Tensor? { raw[key + Self.upstreamSuffix] ?? raw[key] }
        var converted: [String: Tensor] = [:]
        for (name, source) in Self.upstreamKeys {
            let parts = source.split(separator: "#")
            let key = String(parts[0])
            guard var t = lookup(key) else { throw WeightsError("checkpoint has no variable '\(key)' (needed for \(name))") }
            if parts.count == 2 {
                // One row of a [2, 3u] GRU bias.
                guard t.shape.count == 2, t.shape[0] == 2 else { throw WeightsError("checkpoint variable '\(key)' has shape \(t.shape), expected [2, 3·units]") }
                let row = Int(parts[1])!, width = t.shape[1]
                t = Tensor(shape: [width], values: Array(t.values[(row * width)..<((row + 1) * width)]))
            } else if name.hasSuffix("norm.scale") || name.hasSuffix("norm.shift") || name == "note_release.duration" {
                t = Tensor(shape: [t.count], values: t.values)
            }
            converted[name] = t
        }
        var file = Safetensors(tensors: converted, metadata: ["instruments": instruments.joined(separator: ",")])
        file.metadata["format"] = Self.formatName
        try self.init(safetensors: file)
    }
}

extension V2Weights {
    /// Reads a v2 weight file: every tensor present, of the expected shape, finite.
    public init(safetensors file: Safetensors) throws {
        let meta = file.metadata
        if let format = meta["format"], format != PianoWeights.formatName {
            throw WeightsError("not a ddsp-piano weight file (format '\(format)')")
        }
        guard meta["architecture"] == Self.architecture else {
            throw WeightsError("not a v2 weight file (architecture '\(meta["architecture"] ?? "none")')")
        }
        for (key, expected) in [("sample_rate", Self.sampleRate), ("frame_rate", Self.frameRate), ("n_synths", Self.voices)] {
            if let s = meta[key], Int(s) != expected {
                throw WeightsError("metadata '\(key)' is '\(s)', the v2 architecture has \(expected)")
            }
        }
        let instruments: [String]
        if let list = meta["instruments"] {
            instruments = list.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        } else if let e = file.tensors["context.piano_embedding"], e.shape.count == 2 {
            instruments = (0..<e.shape[0]).map { String($0) }
        } else {
            throw WeightsError("missing tensor 'context.piano_embedding'")
        }
        guard !instruments.isEmpty, instruments.allSatisfy({ !$0.isEmpty }) else {
            throw WeightsError("metadata 'instruments' is empty or has an empty name")
        }
        self.init(instruments: instruments)
        for e in Self.layout(instruments: instruments.count) {
            guard let t = file.tensors[e.name] else { throw WeightsError("missing tensor '\(e.name)'") }
            guard t.shape == e.shape else { throw WeightsError("tensor '\(e.name)' has shape \(t.shape), expected \(e.shape)") }
            if let bad = t.values.firstIndex(where: { !$0.isFinite }) {
                throw WeightsError("tensor '\(e.name)' has a non-finite value (\(t.values[bad])) at index \(bad)")
            }
            tensors[e.name] = t
        }
        provenance = meta.filter { !PianoWeights.reservedMetadata.contains($0.key) }
        // Upstream's release cell only behaves for an integral number of frames (MAPPING.md §5);
        // any positive value is accepted, as upstream does.
        let r = releaseDuration
        guard r > 0, r < 60 else { throw WeightsError("note_release.duration \(r) s is out of range (0, 60)") }
    }

    public func safetensors() -> Safetensors {
        var file = Safetensors()
        for e in Self.layout(instruments: instruments.count) { file.tensors[e.name] = self[e.name] }
        file.metadata = provenance
        file.metadata["format"] = PianoWeights.formatName
        file.metadata["format_version"] = PianoWeights.formatVersion
        file.metadata["architecture"] = Self.architecture
        file.metadata["sample_rate"] = String(Self.sampleRate)
        file.metadata["frame_rate"] = String(Self.frameRate)
        file.metadata["n_synths"] = String(Self.voices)
        file.metadata["reverb_length"] = String(Self.reverbLength)
        file.metadata["instruments"] = instruments.joined(separator: ",")
        return file
    }

    // MARK: - Upstream TensorFlow checkpoint

    /// Builds v2 weights from checkpoint tensors keyed by full TF key or by the key without the
    /// suffix. Optimizer slots and other non-model entries are ignored.
    public init(upstreamCheckpoint raw: [String: Tensor], instruments: [String] = V2Weights.defaultInstruments) throws {
        func lookup(_ key: String) -> Tensor? { raw[key + PianoWeights.upstreamSuffix] ?? raw[key] }
        var converted: [String: Tensor] = [:]
        for e in Self.layout(instruments: instruments.count) {
            let parts = e.upstream.split(separator: "#")
            let key = String(parts[0])
            guard var t = lookup(key) else { throw WeightsError("checkpoint has no variable '\(key)' (needed for \(e.name))") }
            if parts.count == 2 {
                guard t.shape.count == 2, t.shape[0] == 2 else {
                    throw WeightsError("checkpoint variable '\(key)' has shape \(t.shape), expected [2, 3·units]")
                }
                let row = Int(parts[1])!, width = t.shape[1]
                t = Tensor(shape: [width], values: Array(t.values[(row * width)..<((row + 1) * width)]))
            } else if t.count == e.shape.reduce(1, *), t.shape != e.shape {
                // [n, 1] embeddings → [n]; the scalar release time → [1].
                t = Tensor(shape: e.shape, values: t.values)
            }
            guard t.shape == e.shape else {
                throw WeightsError("checkpoint variable '\(key)' has shape \(t.shape), expected \(e.shape) for \(e.name)")
            }
            converted[e.name] = t
        }
        var file = Safetensors(tensors: converted, metadata: ["instruments": instruments.joined(separator: ",")])
        file.metadata["format"] = PianoWeights.formatName
        file.metadata["architecture"] = Self.architecture
        try self.init(safetensors: file)
    }
}

extension WeightFile {
    public init(safetensors file: Safetensors) throws {
        switch file.metadata["architecture"] {
        case nil, "dafx22": self = .dafx22(try PianoWeights(safetensors: file))
        case V2Weights.architecture: self = .v2(try V2Weights(safetensors: file))
        case let other?: throw WeightsError("unknown architecture '\(other)' (this version plays 'dafx22' and 'v2')")
        }
    }

    public func safetensors() -> Safetensors {
        switch self { case .dafx22(let w): w.safetensors(); case .v2(let w): w.safetensors() }
    }
}
