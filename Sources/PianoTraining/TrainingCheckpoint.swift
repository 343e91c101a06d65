import DDSPPiano
import Foundation
import PianoFormats
import PianoIO

/// Everything needed to continue a training run exactly: the parameters (a complete weight
/// file, so a checkpoint can also be exported or rendered with), Adam's step count, moments and
/// settings, the phase, and free-form run state (data order, seeds, loss history...).
/// One safetensors file: the weight tensors under their usual names, the moments as
/// `adam.m.<name>` / `adam.v.<name>`, the rest as metadata under `train.`.
public struct TrainingCheckpoint: Sendable {
    /// The parameters, either architecture.
    public var file: WeightFile
    public var adam: Adam
    public var phase: Int
    public var state: [String: String]

    public init(file: WeightFile, adam: Adam, phase: Int, state: [String: String] = [:]) {
        self.file = file; self.adam = adam; self.phase = phase; self.state = state
    }

    public init(weights: PianoWeights, adam: Adam, phase: Int, state: [String: String] = [:]) {
        self.init(file: .dafx22(weights), adam: adam, phase: phase, state: state)
    }

    /// The dafx22 parameters; nil for a v2 checkpoint.
    public var weights: PianoWeights? {
        if case .dafx22(let w) = file { return w }
        return nil
    }

    static let prefix = "train."

    public func serialized() -> [UInt8] {
        var file = self.file.safetensors()
        for (name, m) in adam.m {
            let shape = file.tensors[name]?.shape ?? [m.count]
            file.tensors["adam.m." + name] = Tensor(shape: shape, values: m)
            file.tensors["adam.v." + name] = Tensor(shape: shape, values: adam.v[name]!)
        }
        // Doubles as their exact bit patterns: a resumed run must not drift by a rounding.
        func bits(_ x: Double) -> String { String(x.bitPattern, radix: 16) }
        file.metadata[Self.prefix + "format"] = "ddsp-piano-train-checkpoint-1"
        file.metadata[Self.prefix + "phase"] = String(phase)
        file.metadata[Self.prefix + "adam.step"] = String(adam.step)
        file.metadata[Self.prefix + "adam.learning_rate"] = bits(adam.learningRate)
        file.metadata[Self.prefix + "adam.beta1"] = bits(adam.beta1)
        file.metadata[Self.prefix + "adam.beta2"] = bits(adam.beta2)
        file.metadata[Self.prefix + "adam.epsilon"] = bits(adam.epsilon)
        file.metadata[Self.prefix + "adam.decay_steps"] = bits(adam.decaySteps)
        file.metadata[Self.prefix + "adam.decay_rate"] = bits(adam.decayRate)
        file.metadata[Self.prefix + "adam.clip_norm"] = adam.clipNorm.map(bits) ?? "none"
        for (k, v) in state { file.metadata[Self.prefix + "state." + k] = v }
        return file.serialized()
    }

    public init(bytes: [UInt8]) throws {
        var file = try Safetensors(bytes: bytes)
        let meta = file.metadata
        guard meta[Self.prefix + "format"] == "ddsp-piano-train-checkpoint-1" else {
            throw TrainingDataError("not a ddsp-piano-train checkpoint (a weight file can start a run with --init instead)")
        }
        func int(_ key: String) throws -> Int {
            guard let s = meta[Self.prefix + key], let v = Int(s) else { throw TrainingDataError("checkpoint metadata '\(key)' is missing or invalid") }
            return v
        }
        func double(_ key: String) throws -> Double {
            guard let s = meta[Self.prefix + key], let b = UInt64(s, radix: 16) else { throw TrainingDataError("checkpoint metadata '\(key)' is missing or invalid") }
            return Double(bitPattern: b)
        }
        var adam = Adam(learningRate: try double("adam.learning_rate"))
        adam.beta1 = try double("adam.beta1"); adam.beta2 = try double("adam.beta2"); adam.epsilon = try double("adam.epsilon")
        adam.decaySteps = try double("adam.decay_steps"); adam.decayRate = try double("adam.decay_rate")
        adam.clipNorm = meta[Self.prefix + "adam.clip_norm"] == "none" ? nil : try double("adam.clip_norm")
        adam.step = try int("adam.step")
        for (key, t) in file.tensors where key.hasPrefix("adam.m.") {
            let name = String(key.dropFirst("adam.m.".count))
            guard let v = file.tensors["adam.v." + name], v.count == t.count else { throw TrainingDataError("checkpoint has adam.m.\(name) without a matching adam.v") }
            guard t.values.allSatisfy(\.isFinite), v.values.allSatisfy(\.isFinite) else { throw TrainingDataError("checkpoint's Adam moments for \(name) are not finite") }
            adam.m[name] = t.values; adam.v[name] = v.values
        }
        let phase = try int("phase")
        var state: [String: String] = [:]
        for (k, v) in meta where k.hasPrefix(Self.prefix + "state.") { state[String(k.dropFirst((Self.prefix + "state.").count))] = v }
        file.tensors = file.tensors.filter { !$0.key.hasPrefix("adam.") }
        file.metadata = meta.filter { !$0.key.hasPrefix(Self.prefix) }
        self.init(file: try WeightFile(safetensors: file), adam: adam, phase: phase, state: state)
    }

    /// Written to a temporary file and renamed: the previous checkpoint survives a failed save.
    public func save(to url: URL) throws { try WeightStore.writeAtomically(serialized(), to: url) }

    public static func load(_ url: URL) throws -> TrainingCheckpoint {
        try TrainingCheckpoint(bytes: try WeightStore.readBytes(url, limit: Int.max))
    }
}
