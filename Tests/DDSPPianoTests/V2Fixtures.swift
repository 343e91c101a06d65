import Foundation
import XCTest
import DDSPPiano
import PianoFormats

/// The v2 reference data in ../shared/reference/v2 (upstream's maestro-v2.gin model run on a
/// synthetic checkpoint): the weights and the cases that hold tensors.
enum V2Fixtures {
    static var directory: URL { Fixtures.reference.appendingPathComponent("v2") }

    /// The v2 reference folder, or a printed skip line (and XCTSkip) when it is absent.
    static func require(file: StaticString = #filePath, line: UInt = #line) throws -> URL {
        let d = directory
        guard FileManager.default.fileExists(atPath: d.appendingPathComponent("checkpoint_raw.safetensors").path) else {
            print("skipped: no reference fixtures (\(d.path))")
            throw XCTSkip("skipped: no reference fixtures at \(d.path)", file: file, line: line)
        }
        return d
    }

    /// The reference checkpoint's weights (synthetic values, real layout).
    static func weights() throws -> V2Weights {
        let raw = try Fixtures.safetensors(try require().appendingPathComponent("checkpoint_raw.safetensors"))
        return try V2Weights(upstreamCheckpoint: raw.tensors)
    }

    struct Case {
        let name: String
        let tensors: [String: Tensor]
        let frames: Int
        let piano: Int
        /// [w0, w1): the frames of the windowed tensors.
        let window: Range<Int>

        subscript(_ name: String) -> Tensor {
            guard let t = tensors[name] else { preconditionFailure("case \(self.name) has no tensor '\(name)'") }
            return t
        }
    }

    /// Every case folder with `tensors.safetensors` (all but the audio-only performance case).
    static func cases() throws -> [Case] {
        let dir = try require().appendingPathComponent("cases")
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
        var out: [Case] = []
        for name in names {
            let url = dir.appendingPathComponent(name).appendingPathComponent("tensors.safetensors")
            guard FileManager.default.fileExists(atPath: url.path) else { continue }
            out.append(try load(url, name: name))
        }
        return out
    }

    /// One case. `piano_model` and `window_frames` are int32: Safetensors converts them to Float
    /// (exact for these small integers).
    static func load(_ url: URL, name: String) throws -> Case {
        let file = try Fixtures.safetensors(url)
        let t = file.tensors
        guard let c = t["conditioning"], c.shape.count == 3, c.shape[1] == V2Weights.voices, c.shape[2] == 2,
              let p = t["piano_model"], p.count == 1, let w = t["window_frames"], w.count == 2
        else { throw SafetensorsError("case \(name): missing or malformed conditioning / piano_model / window_frames") }
        return Case(name: name, tensors: t, frames: c.shape[0], piano: Int(p.values[0]),
                    window: Int(w.values[0])..<Int(w.values[1]))
    }
}
