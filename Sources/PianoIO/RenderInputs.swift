import Foundation
import DDSPPiano

/// Where `render` gets its MIDI conditioning from. Kept apart from RenderJob so the MIDI
/// reader plugs in here and nowhere else.
enum RenderInputs {
    /// Parses the MIDI bytes and checks that there is something of sane length to render.
    /// Returns the reader's tolerated problems as warnings; a truncated file is an error here,
    /// because rendering part of a piece without failing would look like success.
    static func midi(midiBytes: [UInt8], warmUp: Double, duration: Double?) throws -> (MIDIFile, warnings: [String]) {
        // Tempo from the first track only, as pretty_midi reads it for upstream: the SMF rule for
        // format 1, and the one that keeps renders of odd files identical to upstream's.
        let midi = try MIDIFile(bytes: midiBytes, tempoSource: .firstTrack)
        if let truncation = midi.truncation {
            throw MIDIError("truncated MIDI file (\(truncation))")
        }
        // Check the length before allocating: a corrupt file can put a note hours away.
        let frames = UpstreamConditioning.frameCount(midi: midi, warmUp: warmUp, duration: duration)
        let warmUpFrames = UpstreamDefaults.warmUpFrames(seconds: warmUp)
        guard frames > warmUpFrames else {
            throw MIDIError("no notes to play (the piece is 0 s long; --duration sets a length)")
        }
        let seconds = Double(frames - warmUpFrames) / Double(UpstreamDefaults.frameRate)
        guard seconds <= maxSeconds else {
            throw MIDIError(String(format: "the piece would last %.0f s, more than the %.0f s this command renders (corrupt file? --duration limits it)", seconds, maxSeconds))
        }
        return (midi, midi.warnings)
    }

    /// Four hours: far beyond any real piece, so a corrupt file cannot start a render of days.
    static let maxSeconds: Double = 4 * 3600
}
