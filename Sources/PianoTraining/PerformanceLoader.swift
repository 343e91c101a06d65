import DDSPPiano
import Foundation
import PianoIO
import PianoStudy

/// One recorded performance ready to be cut into segments: mono audio at the model's rate and
/// the MIDI through the engine's conditioning (upstream's load_data: note_seq with sustain, no
/// warm-up).
public struct Performance: Sendable {
    public var audio: [Float]                  // [samples] at the model's sample rate
    public var conditioning: FrameConditioning
    public var polyphony: [Int]                // [frames]: notes sounding (before the 16-voice allocation)
}

public enum PerformanceLoader {
    /// Audio and MIDI lengths may differ by this much (a recording's silent tail, a MIDI file's
    /// last pedal release) before the pair is taken for a mismatch.
    public static let lengthTolerance = 10.0
    /// Samples this close to full scale count as clipped.
    public static let clipLevel: Float = 0.999

    /// Reads a pair; throws a `TrainingDataError` saying why a pair is unusable: unreadable
    /// audio or MIDI, silent audio, MIDI without notes, lengths that do not match.
    /// An audio file's samples mixed to mono and resampled to `sampleRate` (libsndfile, then
    /// libsoxr), and its duration; `check` sees the mono samples at the file's own rate first.
    /// Errors are one line naming the file.
    public static func monoAudio(_ url: URL, sampleRate: Int, check: (([Float]) throws -> Void)? = nil) throws -> (samples: [Float], duration: Double) {
        let data: AudioData
        do { data = try AudioFile.read(url) } catch { throw TrainingDataError("\(error)") }
        guard data.frames > 0, data.sampleRate > 0 else { throw TrainingDataError("\(url.path): no audio") }
        var mono = data.mono()
        try check?(mono)
        if data.sampleRate != sampleRate {
            do { mono = try OfflineResampler.resample(mono, from: Double(data.sampleRate), to: Double(sampleRate)) }
            catch { throw TrainingDataError("\(url.path): \(error)") }
        }
        return (mono, data.duration)
    }

    public static func load(audio audioURL: URL, midi midiURL: URL, sampleRate: Int = PianoWeights.Hyper.dafx22.sampleRate, frameRate: Int = UpstreamDefaults.frameRate,
                            voices: Int = 16) throws -> Performance {
        let (resampled, duration) = try monoAudio(audioURL, sampleRate: sampleRate) { mono in
            guard let peak = mono.map({ abs($0) }).max(), peak > 0 else { throw TrainingDataError("\(audioURL.path): silent") }
            guard mono.allSatisfy({ $0.isFinite }) else { throw TrainingDataError("\(audioURL.path): non-finite samples") }
            // A clipped recording teaches the model distortion: refuse it (0.1 % of samples at full scale).
            let clipped = mono.reduce(0) { $0 + (abs($1) >= clipLevel ? 1 : 0) }
            if peak >= clipLevel, clipped * 1000 >= mono.count {
                throw TrainingDataError(String(format: "%@: clipped (%d samples at full scale, %.2f %%)", audioURL.path, clipped, 100 * Double(clipped) / Double(mono.count)))
            }
        }
        var mono = resampled
        // As upstream: int(duration · rate) samples, zero-padded or trimmed.
        let expected = Int(duration * Double(sampleRate))
        if mono.count > expected { mono.removeLast(mono.count - expected) }
        else if mono.count < expected { mono += [Float](repeating: 0, count: expected - mono.count) }

        let midi: MIDIFile
        do { midi = try MIDIFile(bytes: [UInt8](try Data(contentsOf: midiURL))) }
        catch { throw TrainingDataError("\(midiURL.path): \(error)") }
        let sequence = NoteSequence(midi: midi).applyingSustain()
        guard sequence.notes.contains(where: { $0.pitch >= UpstreamConditioning.minPitch && $0.pitch <= UpstreamConditioning.maxPitch && !$0.isDrum }) else {
            throw TrainingDataError("\(midiURL.path): no piano notes")
        }
        let audioSeconds = Double(mono.count) / Double(sampleRate)
        guard abs(sequence.totalTime - audioSeconds) <= lengthTolerance else {
            throw TrainingDataError(String(format: "%@: MIDI lasts %.1f s but the audio %.1f s (%@)", midiURL.path, sequence.totalTime, audioSeconds, audioURL.path))
        }
        let conditioning = UpstreamConditioning.make(sequence: sequence, warmUp: 0, voices: voices, frameRate: frameRate)
        let polyphony = Segmenter.polyphony(sequence, frames: conditioning.frames, frameRate: frameRate)
        return Performance(audio: mono, conditioning: conditioning, polyphony: polyphony)
    }
}
