/// Holds a voice's last pitch for `releaseDuration` seconds after its key goes silent
/// ("extended pitch"), unless a new pitch arrives. Mirrors upstream's F0ProcessorCell,
/// including its exact arithmetic, so the hold lasts 250·R + 1 frames.
public struct NoteRelease: Sendable {
    public var releaseFrames: Float   // release_duration · frame rate
    /// Explicit state per voice: the last output pitch and the frames spent in release.
    public var previousPitch: [Float]
    public var releaseSteps: [Float]

    public init(releaseDuration: Float, frameRate: Int, voices: Int) {
        releaseFrames = releaseDuration * Float(frameRate)
        previousPitch = [Float](repeating: 0, count: voices)
        releaseSteps = [Float](repeating: 0, count: voices)
    }

    public mutating func reset() {
        for v in previousPitch.indices { previousPitch[v] = 0; releaseSteps[v] = 0 }
    }

    @inline(__always)
    public mutating func forward(pitch: Float, voice v: Int) -> Float {
        let active = min(max(pitch, 0), 1)
        let ended = min(max(releaseSteps[v] - releaseFrames, 0), 1)
        let out = active * pitch + (1 - active) * previousPitch[v] * (1 - ended)
        releaseSteps[v] = (releaseSteps[v] + 1) * (1 - active) * (1 - ended)
        previousPitch[v] = out
        return out
    }
}
