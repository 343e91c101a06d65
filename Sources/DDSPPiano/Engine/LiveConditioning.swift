/// The upstream input semantics, made live: MIDI messages in, one frame of model conditioning
/// out ([16 voices × (pitch, onset velocity)] and the 4 pedal events), frame by frame.
///
/// Offline, upstream paints a piano roll over the whole file. Here the same rules are applied
/// as events arrive; every event takes effect on the frame after the one it falls in, so a
/// frame's input is complete when it is computed (durations and order are kept exactly).
/// - Sustain (CC64 ≥ 64) keeps released notes sounding until the pedal goes up or the pitch is
///   struck again.
/// - Onset velocity (velocity/127) on the note's first two frames, where it sounds.
///   (Upstream also marks the frame before a legato re-strike; that frame is in the past here.)
/// - CC64…67: (value + 1)/128 on the frame of the change, 0 otherwise (an event, not a level).
/// - The 16 highest sounding pitches get voices, through the same `VoiceAllocator` as offline.
/// Nothing here allocates after `init`.
public struct LiveConditioning: Sendable {
    public static let lowestPitch = 21, highestPitch = 108
    public let voices: Int

    private var keyDown: [Bool]          // [128]
    private var sounding: [Bool]         // [128]
    private var velocity: [Float]        // [128] velocity/127 of the sounding note
    private var onsetFrames: [Int8]      // [128] frames of onset velocity left
    private var releaseAfterFrame: [Bool] // [128] released during this frame: sounds to its end
    public private(set) var sustain = false
    /// Whether CC64 holds released notes. Off when the notes arrive already lengthened (the
    /// offline renderer applies upstream's per-track sustain first); the pedal events still
    /// reach the model's pedal input either way.
    public var sustainPedalHolds: Bool
    private var pedalEvents: [Float]     // [4] this frame's CC64…67 event values
    private var allocator: VoiceAllocator
    private var kept: [Int]              // [voices] scratch for the allocator
    public private(set) var droppedNotes = 0

    public init(voices: Int = 16, sustainPedalHolds: Bool = true) {
        self.voices = voices
        self.sustainPedalHolds = sustainPedalHolds
        keyDown = [Bool](repeating: false, count: 128)
        sounding = keyDown
        velocity = [Float](repeating: 0, count: 128)
        onsetFrames = [Int8](repeating: 0, count: 128)
        releaseAfterFrame = keyDown
        pedalEvents = [Float](repeating: 0, count: 4)
        allocator = VoiceAllocator(voices: voices)
        kept = [Int](repeating: 0, count: voices)
    }

    /// Number of pitches currently sounding (held or sustained), for status displays.
    public var soundingCount: Int { sounding.reduce(0) { $0 + ($1 ? 1 : 0) } }

    /// A note starts (velocity 1…127; a velocity-0 note-on is a release, `ReleasePolicy.endsNote`,
    /// which the engine turns into `noteOff` before calling this).
    /// `fraction` (0 ≤ f < 1, from CC88 high-resolution velocity) is added to the velocity.
    public mutating func noteOn(pitch: Int, velocity v: Int, fraction: Float = 0) {
        guard !ReleasePolicy.endsNote(status: 0x90, velocity: UInt8(clamping: v)) else { noteOff(pitch: pitch); return }
        guard pitch >= Self.lowestPitch && pitch <= Self.highestPitch else { return }
        keyDown[pitch] = true
        sounding[pitch] = true
        velocity[pitch] = fraction == 0 ? Float(Double(min(v, 127)) / 127) : min(1, (Float(min(v, 127)) + fraction) / 127)
        onsetFrames[pitch] = 2
        releaseAfterFrame[pitch] = false
    }

    /// `atFrameStart`: the release falls exactly on the boundary before this frame, so the note
    /// does not touch the frame at all (upstream: ceil(250·end) is then that frame).
    public mutating func noteOff(pitch: Int, atFrameStart: Bool = false) {
        guard pitch >= 0 && pitch < 128 else { return }
        keyDown[pitch] = false
        if sustain { return }
        end(pitch, atFrameStart: atFrameStart)
    }

    /// Upstream's roll counts every frame a note touches ([floor(250·start), ceil(250·end))), so a
    /// note released during a frame still sounds in that frame and stops after it.
    private mutating func end(_ pitch: Int, atFrameStart: Bool) {
        guard sounding[pitch] else { return }
        if atFrameStart {
            sounding[pitch] = false
            onsetFrames[pitch] = 0
        } else {
            releaseAfterFrame[pitch] = true
        }
    }

    public mutating func controlChange(_ controller: Int, value: Int, atFrameStart: Bool = false) {
        switch controller {
        case 64:
            let down = value >= 64 && sustainPedalHolds
            if sustain && !down {
                for p in 0..<128 where sounding[p] && !keyDown[p] { end(p, atFrameStart: atFrameStart) }
            }
            sustain = down
            pedalEvents[0] = Float(value + 1) / 128
        case 65, 66, 67:
            pedalEvents[controller - 64] = Float(value + 1) / 128
        case 120:   // all sound off: silence now, sustain ignored
            for p in 0..<128 { keyDown[p] = false; sounding[p] = false; onsetFrames[p] = 0; releaseAfterFrame[p] = false }
        case 121:   // reset all controllers: the sustain pedal goes up
            if sustain { controlChange(64, value: 0, atFrameStart: atFrameStart) }
        case 123:   // all notes off: keys up, the sustain pedal still holds them
            for p in 0..<128 where keyDown[p] { noteOff(pitch: p, atFrameStart: atFrameStart) }
        default:
            break
        }
    }

    /// Writes the conditioning of the frame that the events since the last call belong to:
    /// `conditioning` [voices, 2], `pedal` [4]; then advances to the next frame.
    public mutating func nextFrame(conditioning: UnsafeMutablePointer<Float>, pedal: UnsafeMutablePointer<Float>) {
        // The `voices` highest sounding pitches, ascending, zeros first (upstream's layout).
        var count = 0
        var p = Self.highestPitch
        while p >= Self.lowestPitch && count < voices {
            if sounding[p] { count += 1; kept[voices - count] = p }
            p -= 1
        }
        var dropped = 0
        while p >= Self.lowestPitch { if sounding[p] { dropped += 1 }; p -= 1 }
        droppedNotes = dropped
        for i in 0..<(voices - count) { kept[i] = 0 }
        allocator.step(kept: kept)
        for s in 0..<voices {
            let pitch = kept[allocator.slotSources[s]]
            conditioning[2 * s] = Float(pitch)
            conditioning[2 * s + 1] = pitch > 0 && onsetFrames[pitch] > 0 ? velocity[pitch] : 0
        }
        for i in 0..<4 { pedal[i] = pedalEvents[i]; pedalEvents[i] = 0 }
        for q in Self.lowestPitch...Self.highestPitch {
            if onsetFrames[q] > 0 { onsetFrames[q] -= 1 }
            if releaseAfterFrame[q] {
                releaseAfterFrame[q] = false
                sounding[q] = false
                onsetFrames[q] = 0
            }
        }
    }
}
