/// A ddsp-piano weight file of either architecture, told apart by its `architecture` metadata
/// (files without it are dafx22: the format had one architecture before v2).
public enum WeightFile: Sendable {
    case dafx22(PianoWeights)
    case v2(V2Weights)

    public var architecture: String {
        switch self { case .dafx22: "dafx22"; case .v2: V2Weights.architecture }
    }

    public var instruments: [String] {
        switch self { case .dafx22(let w): w.instruments; case .v2(let w): w.instruments }
    }

    public var sampleRate: Int {
        switch self { case .dafx22(let w): w.hyper.sampleRate; case .v2: V2Weights.sampleRate }
    }

    public var parameterCount: Int {
        switch self { case .dafx22(let w): w.parameterCount; case .v2(let w): w.parameterCount }
    }

    public var provenance: [String: String] {
        switch self { case .dafx22(let w): w.provenance; case .v2(let w): w.provenance }
    }

    /// Resolves `--piano` text: an index ("9") or an instrument name ("2018").
    public func instrumentIndex(_ text: String) -> Int? {
        if let i = instruments.firstIndex(of: text) { return i }
        if let i = Int(text), i >= 0, i < instruments.count { return i }
        return nil
    }
}
