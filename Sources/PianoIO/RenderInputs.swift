import Foundation
import DDSPPiano

/// Where `render` gets its MIDI conditioning and default weights from. Kept apart from
/// RenderJob so the MIDI reader and WeightStore plug in here and nowhere else.
enum RenderInputs {
    struct MIDIProblem: Error, CustomStringConvertible { var description: String }

    /// Parses the MIDI bytes and builds the model input exactly as upstream does.
    static func conditioning(midiBytes: [UInt8], warmUp: Double, duration: Double?) throws -> FrameConditioning {
        // The MIDI reader (MIDIFile / UpstreamConditioning) is not in the package yet.
        _ = (midiBytes, warmUp, duration)
        throw MIDIProblem(description: "cannot read MIDI: this build has no MIDI reader yet")
    }

    /// The weights used without --weights: $DDSP_PIANO_WEIGHTS, else the first existing
    /// of the fetched dafx22 file and the bundled file (until WeightStore takes over).
    static func defaultWeights() -> URL? {
        let env = ProcessInfo.processInfo.environment
        if let w = env["DDSP_PIANO_WEIGHTS"], !w.isEmpty { return URL(fileURLWithPath: w) }
        let data = env["XDG_DATA_HOME"].flatMap { $0.isEmpty ? nil : URL(fileURLWithPath: $0) }
            ?? FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".local/share")
        let candidates = [data.appendingPathComponent("ddsp-piano/weights/dafx22.safetensors"),
                          URL(fileURLWithPath: "weights/ddsp-piano.safetensors")]
        return candidates.first { FileManager.default.fileExists(atPath: $0.path) }
    }

    static let defaultWeightsHelp = "no weight file found; pass --weights FILE or run 'ddsp-piano weights fetch dafx22'"
}
