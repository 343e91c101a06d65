import DDSPPiano
import Foundation

/// What the trainer needs of a model in training, whichever architecture: one forward and
/// backward over a batch, its tensors by name and phase group, the phase's configuration, and
/// its values as a weight file. dafx22: `PianoModelTraining`; v2: `V2ModelTraining`.
public protocol TrainingModel: AnyObject {
    func zeroGrad()
    /// Forward over `batch` against `target`; with `gradients`, also backward (accumulated).
    func trainingStep(_ batch: SegmentBatch, target: [Float], noiseSeed: UInt64, gradients: Bool) -> (losses: PianoModelTraining.Losses, audio: [Float])
    /// Every trainable tensor: name (the weight file's), upstream phase group, value, gradient.
    func forEachParameter(_ body: (_ name: String, _ group: PianoNetworkTraining.Group, _ value: inout [Float], _ grad: inout [Float]) -> Void)
    func configure(_ phase: TrainingPhase)
    /// The current values written into `base` (the weight file the run started from).
    func weightFile(updating base: WeightFile) throws -> WeightFile
}

extension PianoModelTraining: TrainingModel {
    public func zeroGrad() { network.zeroGrad() }

    public func trainingStep(_ batch: SegmentBatch, target: [Float], noiseSeed: UInt64, gradients: Bool) -> (losses: Losses, audio: [Float]) {
        step(batch, target: target, noiseSeed: noiseSeed, gradients: gradients)
    }

    public func forEachParameter(_ body: (String, PianoNetworkTraining.Group, inout [Float], inout [Float]) -> Void) {
        network.forEachParameter(body)
    }

    public func configure(_ phase: TrainingPhase) { phase.configure(&network) }

    public func weightFile(updating base: WeightFile) throws -> WeightFile {
        guard case .dafx22(let w) = base else { throw TrainingDataError("a dafx22 model cannot update \(base.architecture) weights") }
        return .dafx22(try network.weights(updating: w))
    }
}

extension V2ModelTraining: TrainingModel {
    public func trainingStep(_ batch: SegmentBatch, target: [Float], noiseSeed: UInt64, gradients: Bool) -> (losses: PianoModelTraining.Losses, audio: [Float]) {
        let (loss, audio) = step(batch, target: target, noiseSeed: noiseSeed, gradients: gradients)
        return (PianoModelTraining.Losses(spectral: loss, reverb: 0, inharmonicityL1: 0), audio)
    }

    /// Every tensor is in upstream's odd phases' group: v2's only frequency parts, the
    /// parametric tuning, are frozen (not trainable), so its even phases train nothing.
    public func forEachParameter(_ body: (String, PianoNetworkTraining.Group, inout [Float], inout [Float]) -> Void) {
        forEachParameter { name, value, grad in body(name, .other, &value, &grad) }
    }

    public func configure(_ phase: TrainingPhase) {}

    public func weightFile(updating base: WeightFile) throws -> WeightFile { .v2(weights()) }
}

extension WeightFile {
    /// A model in training with these values.
    public func trainingModel(lossSizes: [Int]) -> any TrainingModel {
        switch self {
        case .dafx22(let w): PianoModelTraining(weights: w, lossSizes: lossSizes)
        case .v2(let w): V2ModelTraining(weights: w, lossSizes: lossSizes)
        }
    }
}
