import Foundation

/// Upstream's three-phase schedule (train_ddsp_piano.sh, PianoModel.alternate_training):
/// odd phases train everything except the partial-frequency parts (inharmonicity model,
/// detuner, the per-instrument inharmonicity and detuning scalars) and switch the detuning off
/// (one substring at midi_to_hz(pitch)); even phases train only those parts, with detuning.
/// The learning rate decays from its phase's start value (ExponentialDecay over the optimiser's
/// step count, which upstream carries from phase to phase through the checkpoint).
public struct TrainingPhase: Sendable, Equatable {
    public var number: Int
    public var batchSize: Int
    public var epochs: Int
    public var learningRate: Double
    /// Upstream's steps per epoch (train_ddsp_piano.sh).
    public static let upstreamStepsPerEpoch = 15_904

    public static let upstream: [TrainingPhase] = [
        TrainingPhase(number: 1, batchSize: 6, epochs: 7, learningRate: 1e-3),
        TrainingPhase(number: 2, batchSize: 3, epochs: 3, learningRate: 1e-5),
        TrainingPhase(number: 3, batchSize: 6, epochs: 10, learningRate: 1e-3),
    ]

    public init(number: Int, batchSize: Int, epochs: Int, learningRate: Double) {
        self.number = number; self.batchSize = batchSize; self.epochs = epochs; self.learningRate = learningRate
    }

    /// Phase 1's strategy (upstream's `first_phase = phase % 2 == 1`).
    public var isFirstPhaseStrategy: Bool { number % 2 == 1 }

    /// Whether a tensor is trained in this phase.
    public func trains(_ group: PianoNetworkTraining.Group) -> Bool {
        isFirstPhaseStrategy ? group == .other : group == .frequency
    }

    /// Even phases train only the partial-frequency parts, which v2 does not train.
    public var trainsNothingInV2: Bool { !isFirstPhaseStrategy }

    /// Sets the model up for the phase (detuning on only in even phases).
    public func configure(_ network: inout PianoNetworkTraining) {
        network.detuner.useDetune = !isFirstPhaseStrategy
    }
}
