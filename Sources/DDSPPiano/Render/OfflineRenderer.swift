/// What `ddsp-piano render` asks of the engine.
public struct RenderSettings: Sendable {
    public var instrument: Int = 9
    /// Seconds of silent input rendered first and cropped from the output, like upstream.
    public var warmUp: Double = 0.5
    /// Seconds of MIDI to render (nil: to the end of the last note, rounded up like upstream).
    public var duration: Double? = nil
    public var seed: UInt64 = 0
    public var noise: Bool = true
    /// Two-pass whole-sequence normalisation, reproducing upstream.
    public var exact: Bool = false
    public init() {}
}

public struct RenderOutput: Sendable {
    public var sampleRate: Int
    /// Model output (dry + reverb), warm-up removed.
    public var wet: [Float]
    /// The unreverbed mix, warm-up removed.
    public var dry: [Float]
}

public enum OfflineRenderer {
    /// Renders a whole performance. `progress` gets the fraction done (0...1), now and then.
    public static func render(conditioning: FrameConditioning, weights: PianoWeights, settings: RenderSettings,
                              progress: ((Double) -> Void)? = nil) throws -> RenderOutput {
        // Placeholder until the model lands: silence of the right length.
        let warmUpSamples = Int((settings.warmUp * Double(weights.hyper.frameRate)).rounded()) * weights.hyper.samplesPerFrame
        let n = max(0, conditioning.frames * weights.hyper.samplesPerFrame - warmUpSamples)
        progress?(1)
        return RenderOutput(sampleRate: weights.hyper.sampleRate, wet: [Float](repeating: 0, count: n), dry: [Float](repeating: 0, count: n))
    }
}
