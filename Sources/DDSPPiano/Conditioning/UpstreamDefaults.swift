/// Upstream's defaults (`synthesize_midi_file.py`), in one place: every front end (render,
/// daemon, bench, plugin) and the engine take them from here.
public enum UpstreamDefaults {
    /// `--piano_type 9`: the 2018 piano of the ten MAESTRO years.
    public static let piano = 9
    /// Seconds of silent input rendered before the music (`warm_up_duration`).
    public static let warmUpSeconds = 0.5
    /// Model frames per second of both architectures.
    public static let frameRate = 250

    /// The warm-up in frames, as upstream counts it: int(warm_up · frame_rate).
    public static func warmUpFrames(seconds: Double = warmUpSeconds, frameRate: Int = frameRate) -> Int {
        Int(seconds * Double(frameRate))
    }

    /// The default piano of a weight file with `count` pianos: 9, or the last one of a file with fewer.
    public static func piano(count: Int) -> Int { min(piano, max(0, count - 1)) }
}
