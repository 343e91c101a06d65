import Foundation
import DDSPPiano

/// Where `render` gets its MIDI conditioning from. Kept apart from RenderJob so the MIDI
/// reader plugs in here and nowhere else.
enum RenderInputs {
    struct MIDIProblem: Error, CustomStringConvertible { var description: String }

    /// Parses the MIDI bytes and checks that there is something of sane length to render.
    /// Returns the reader's tolerated problems as warnings; a truncated file is an error here,
    /// because rendering part of a piece without failing would look like success.
    static func midi(midiBytes: [UInt8], warmUp: Double, duration: Double?) throws -> (MIDIFile, warnings: [String]) {
        // Tempo from the first track only, as pretty_midi reads it for upstream: the SMF rule for
        // format 1, and the one that keeps renders of odd files identical to upstream's.
        let midi = try MIDIFile(bytes: midiBytes, tempoSource: .firstTrack)
        if midi.isTruncated {
            let detail = (midi.warnings.first { $0.contains("truncated") } ?? midi.warnings.first(where: isTruncation))?
                .replacingOccurrences(of: "; reading what is there", with: "") ?? "the file ends early"
            throw MIDIProblem(description: "truncated MIDI file (\(detail))")
        }
        // Check the length before allocating: a corrupt file can put a note hours away.
        let frames = UpstreamConditioning.frameCount(midi: midi, warmUp: warmUp, duration: duration)
        let warmUpFrames = UpstreamDefaults.warmUpFrames(seconds: warmUp)
        guard frames > warmUpFrames else {
            throw MIDIProblem(description: "no notes to play (the piece is 0 s long; --duration sets a length)")
        }
        let seconds = Double(frames - warmUpFrames) / Double(UpstreamDefaults.frameRate)
        guard seconds <= maxSeconds else {
            throw MIDIProblem(description: String(format: "the piece would last %.0f s, more than the %.0f s this command renders (corrupt file? --duration limits it)", seconds, maxSeconds))
        }
        return (midi, midi.warnings)
    }

    /// Four hours: far beyond any real piece, well within memory (about 1 GB of audio buffers).
    static let maxSeconds: Double = 4 * 3600

    /// Picks the reader's warning that says where the file was cut, for the message.
    static func isTruncation(_ warning: String) -> Bool {
        ["truncated", "remain", "file holds"].contains { warning.contains($0) }
    }
}
