import Foundation
import DDSPPiano

/// Where `render` gets its MIDI conditioning from. Kept apart from RenderJob so the MIDI
/// reader plugs in here and nowhere else.
enum RenderInputs {
    struct MIDIProblem: Error, CustomStringConvertible { var description: String }

    /// Parses the MIDI bytes and builds the model input exactly as upstream does.
    /// Returns the reader's tolerated problems as warnings; a truncated file is an error here,
    /// because rendering part of a piece without failing would look like success.
    static func conditioning(midiBytes: [UInt8], warmUp: Double, duration: Double?) throws -> (FrameConditioning, warnings: [String]) {
        let midi = try MIDIFile(bytes: midiBytes)
        if let cut = midi.warnings.first(where: isTruncation) {
            throw MIDIProblem(description: "truncated MIDI file (\(cut))")
        }
        // UpstreamConditioning (MIDI -> frames) is not in the package yet.
        _ = (warmUp, duration)
        throw MIDIProblem(description: "cannot build the model input: this build has no MIDI conditioning yet")
    }

    static func isTruncation(_ warning: String) -> Bool {
        ["truncated", "remain", "file holds"].contains { warning.contains($0) }
    }
}
