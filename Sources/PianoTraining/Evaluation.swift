import DDSPPiano
import Foundation
import PianoIO
import PianoStudy

/// How close a model's renders of MIDI files are to recordings of the same files: the
/// multi-scale spectral distance (FFT sizes 2048…64, 75 % overlap, L1 on magnitude and log
/// magnitude, as the training loss) between `ddsp-piano render`'s output and the recording,
/// both at the model's rate (dafx22 16 kHz, v2 24 kHz), over their common length.
public enum Evaluation {
    public struct Item: Sendable {
        public var name: String
        public var instrument: String
        public var piano: Int
        public var seconds: Double
        public var distance: Double
    }

    /// One pair: the MIDI rendered with `weights`' instrument `piano` (`settings` otherwise),
    /// compared with the recording. `maxSeconds` limits both to their beginning.
    public static func distance(audio audioURL: URL, midi midiURL: URL, weights: PianoWeights, piano: Int,
                                settings base: RenderSettings = RenderSettings(), maxSeconds: Double? = nil) throws -> (distance: Double, seconds: Double) {
        try distance(audio: audioURL, midi: midiURL, model: PianoModel(.dafx22(weights)), piano: piano, settings: base, maxSeconds: maxSeconds)
    }

    /// `distance` with a model of either architecture (built once for many pairs), at `sampleRate`
    /// (default: the model's; another rate compares models of different rates on equal terms:
    /// the render, at the model's rate, and the recording are both resampled to it by libsoxr).
    public static func distance(audio audioURL: URL, midi midiURL: URL, model: PianoModel, piano: Int,
                                settings base: RenderSettings = RenderSettings(), maxSeconds: Double? = nil,
                                sampleRate: Int? = nil) throws -> (distance: Double, seconds: Double) {
        let rate = sampleRate ?? model.sampleRate
        let recording = try PerformanceLoader.monoAudio(audioURL, sampleRate: rate).samples
        let midi: MIDIFile
        do { midi = try MIDIFile(bytes: [UInt8](try Data(contentsOf: midiURL))) } catch { throw TrainingDataError("\(midiURL.path): \(error)") }
        var settings = base
        settings.instrument = piano
        settings.sampleRate = Double(model.sampleRate)
        if let m = maxSeconds { settings.duration = m }
        var rendered = try OfflineRenderer.render(midi: midi, model: model, settings: settings).wet
        if rate != model.sampleRate {
            do { rendered = try OfflineResampler.resample(rendered, from: Double(model.sampleRate), to: Double(rate)) }
            catch { throw TrainingDataError("\(midiURL.path): cannot resample the render (\(error))") }
        }
        var n = min(rendered.count, recording.count)
        if let m = maxSeconds { n = min(n, Int(m * Double(rate))) }
        guard n >= 2048 else { throw TrainingDataError("\(audioURL.path): too short to compare") }
        return (SpectralMetrics.multiScaleDistance(Array(rendered[..<n]), Array(recording[..<n])), Double(n) / Double(rate))
    }
}
