/// The model's frame-rate input, as upstream builds it (250 frames per second).
public struct FrameConditioning: Sendable, Equatable {
    public var frames: Int
    public var voices: Int
    /// [frames, voices, 2]: per voice the active MIDI pitch (0 = silent) and the onset velocity in [0, 1].
    public var conditioning: [Float]
    /// [frames, 4]: CC64..CC67 event values, (value + 1) / 128 on the frame of each change, else 0.
    public var pedal: [Float]

    public init(frames: Int, voices: Int = 16) {
        self.frames = frames
        self.voices = voices
        conditioning = [Float](repeating: 0, count: frames * voices * 2)
        pedal = [Float](repeating: 0, count: frames * 4)
    }

    public func pitch(frame t: Int, voice v: Int) -> Float { conditioning[(t * voices + v) * 2] }
    public func velocity(frame t: Int, voice v: Int) -> Float { conditioning[(t * voices + v) * 2 + 1] }
}
