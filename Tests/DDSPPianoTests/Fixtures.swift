import Foundation
import XCTest
import DDSPPiano
import PianoFormats
import PianoTestKit

/// The reference fixtures and weights these tests use. The ../shared lookup itself is
/// PianoTestKit's (`TestKit`); the names here stay for the tests that use them.
enum Fixtures {
    static var packageRoot: URL { TestKit.packageRoot }
    static var shared: URL { TestKit.shared }
    static var reference: URL { TestKit.reference }

    /// The reference folder, or a printed skip line (and XCTSkip) when it is absent.
    static func requireReference(file: StaticString = #filePath, line: UInt = #line) throws -> URL {
        try TestKit.requireReference(file: file, line: line)
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

    /// The models the real-time and structural guarantees are checked on: the bundled dafx22
    /// model and a seeded v2 model always (no ../shared needed), and upstream's dafx22 and the
    /// v2 reference checkpoint too when the fixtures are there.
    static func structuralWeights() throws -> [(name: String, weights: PianoModel)] {
        var list = [("bundled soundfont-grands", PianoModel(weights: try bundledWeights())),
                    ("structural v2", StructuralV2.model())]
        if FileManager.default.fileExists(atPath: reference.appendingPathComponent("dafx22").path) {
            list.append(("dafx22", PianoModel(weights: try dafx22Weights())))
        } else {
            print("dafx22 part skipped: no reference fixtures (\(reference.path)); the bundled model is checked")
        }
        if let v2 = try? v2ReferenceModel() {
            list.append(("v2 reference checkpoint", v2))
        } else {
            print("v2 reference part skipped: no reference fixtures (\(reference.path)); the structural v2 model is checked")
        }
        return list
    }

    /// The v2 reference checkpoint (synthetic weights, real layout), or nil without ../shared.
    static func v2ReferenceModel() throws -> PianoModel? {
        let url = reference.appendingPathComponent("v2/checkpoint_raw.safetensors")
        guard FileManager.default.fileExists(atPath: url.path) else { return nil }
        return try PianoModel(.v2(try V2Weights(upstreamCheckpoint: try safetensors(url).tensors)))
    }

    static func meta(_ caseDir: URL) throws -> [String: Any] {
        let data = try Data(contentsOf: caseDir.appendingPathComponent("meta.json"))
        return (try JSONSerialization.jsonObject(with: data) as? [String: Any]) ?? [:]
    }
}
