import Foundation
import XCTest
import DDSPPiano

/// Locates ../shared beside the checkout (or $DDSP_PIANO_SHARED) for reference fixtures and MIDI.
enum Fixtures {
    static let packageRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static var shared: URL {
        if let env = ProcessInfo.processInfo.environment["DDSP_PIANO_SHARED"], !env.isEmpty {
            return URL(fileURLWithPath: env)
        }
        return packageRoot.deletingLastPathComponent().appendingPathComponent("shared")
    }

    static var reference: URL { shared.appendingPathComponent("reference") }

    /// The reference folder, or a printed skip line (and XCTSkip) when it is absent.
    static func requireReference(file: StaticString = #filePath, line: UInt = #line) throws -> URL {
        let r = reference
        guard FileManager.default.fileExists(atPath: r.appendingPathComponent("dafx22").path) else {
            print("skipped: no reference fixtures (\(r.path))")
            throw XCTSkip("skipped: no reference fixtures at \(r.path)", file: file, line: line)
        }
        return r
    }

    /// Reference case folders that hold tensors (all but the audio-only performance case).
    static func cases(withTensors: Bool = true) throws -> [URL] {
        let dir = try requireReference().appendingPathComponent("cases")
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
        return names.map { dir.appendingPathComponent($0) }.filter {
            !withTensors || FileManager.default.fileExists(atPath: $0.appendingPathComponent("tensors.safetensors").path)
        }
    }

    static func safetensors(_ url: URL) throws -> Safetensors {
        try Safetensors(bytes: [UInt8](try Data(contentsOf: url)))
    }

    /// The upstream dafx22 weights, converted from the raw checkpoint dump.
    static func dafx22Weights() throws -> PianoWeights {
        let raw = try safetensors(try requireReference().appendingPathComponent("dafx22/checkpoint_raw.safetensors"))
        return try PianoWeights(upstreamCheckpoint: raw.tensors)
    }

    /// The model bundled in every clone (weights/soundfont-grands.safetensors).
    static func bundledWeights() throws -> PianoWeights {
        let url = packageRoot.appendingPathComponent("weights/soundfont-grands.safetensors")
        return try PianoWeights(safetensors: try safetensors(url))
    }

    /// The weights the real-time and structural guarantees are checked on: the bundled model
    /// always (no ../shared needed), and upstream's dafx22 too when the fixtures are there.
    static func structuralWeights() throws -> [(name: String, weights: PianoWeights)] {
        var list = [("bundled soundfont-grands", try bundledWeights())]
        if FileManager.default.fileExists(atPath: reference.appendingPathComponent("dafx22").path) {
            list.append(("dafx22", try dafx22Weights()))
        } else {
            print("dafx22 part skipped: no reference fixtures (\(reference.path)); the bundled model is checked")
        }
        return list
    }

    static func meta(_ caseDir: URL) throws -> [String: Any] {
        let data = try Data(contentsOf: caseDir.appendingPathComponent("meta.json"))
        return (try JSONSerialization.jsonObject(with: data) as? [String: Any]) ?? [:]
    }
}
