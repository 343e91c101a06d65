import XCTest
import Foundation
import DDSPPiano
import PianoIO

/// Every failure a render can meet carries a code (`ErrorCode`) beside its one-line message, so
/// callers branch on the code, never on the text.
final class ErrorCodeTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("error-codes-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: dir)
    }

    private func write(_ name: String, _ bytes: [UInt8]) throws -> URL {
        let url = dir.appendingPathComponent(name)
        try Data(bytes).write(to: url)
        return url
    }

    /// `prepare()`'s error, with its code and message printed.
    private func failure(_ job: RenderJob) -> (ErrorCode, String)? {
        do {
            _ = try job.prepare()
            return nil
        } catch {
            print("\(error.errorCode.rawValue): \(error)")
            XCTAssertFalse("\(error)".contains("\n"), "one line")
            return (error.errorCode, "\(error)")
        }
    }

    func testRenderFailuresCarryTheirCodes() throws {
        let midi = try write("piece.mid", RenderStreamingTests.figureMIDI(seconds: 4))
        let weights = RenderStreamingTests.bundledWeights
        func job(_ midi: URL, _ output: URL? = nil) -> RenderJob {
            var j = RenderJob(midi: midi, output: output ?? dir.appendingPathComponent("out.wav"))
            j.weights = weights
            return j
        }
        // A sane job prepares.
        XCTAssertNil(failure(job(midi)))

        // Inputs that are not there, or not MIDI.
        XCTAssertEqual(failure(job(dir.appendingPathComponent("missing.mid")))?.0, .notFound)
        XCTAssertEqual(failure(job(dir))?.0, .unreadable)
        XCTAssertEqual(failure(job(try write("noise.mid", [UInt8](repeating: 0x55, count: 100))))?.0, .badMIDI)

        // A truncated file: the code, and the reader's line saying where it stops (no matching
        // of warning texts).
        let cut = try write("cut.mid", Array(RenderStreamingTests.figureMIDI(seconds: 4).dropLast(7)))
        let truncated = failure(job(cut))
        XCTAssertEqual(truncated?.0, .badMIDI)
        XCTAssertTrue(truncated?.1.contains("truncated MIDI file (track 0 is truncated at byte") ?? false, truncated?.1 ?? "")

        // Weights.
        var j = job(midi)
        j.weights = dir.appendingPathComponent("missing.safetensors")
        XCTAssertEqual(failure(j)?.0, .notFound)
        j.weights = try write("garbage.safetensors", [UInt8](repeating: 7, count: 1000))
        XCTAssertEqual(failure(j)?.0, .badWeights)
        j = job(midi)
        j.piano = "no such piano"
        XCTAssertEqual(failure(j)?.0, .notFound)

        // Options and outputs.
        j = job(midi)
        j.settings.warmUp = 100
        XCTAssertEqual(failure(j)?.0, .usage)
        j = job(midi)
        j.settings.blockSize = 0
        XCTAssertEqual(failure(j)?.0, .usage)
        XCTAssertEqual(failure(job(midi, midi))?.0, .usage)
        XCTAssertEqual(failure(job(midi, dir.appendingPathComponent("no/such/dir/out.wav")))?.0, .unwritable)
    }

    func testEveryCodeHasAStableName() {
        // The names are part of the interface (control replies, logs): distinct and kebab-free.
        let names = ErrorCode.allCases.map(\.rawValue)
        XCTAssertEqual(Set(names).count, names.count)
        for n in names { XCTAssertTrue(n.allSatisfy { $0.isLetter }, n) }
        struct Foreign: Error {}
        XCTAssertEqual(Foreign().errorCode, .internal)
        XCTAssertEqual(MIDIError("x").code, .badMIDI)
        XCTAssertEqual(WeightsError("x").code, .badWeights)
    }

    /// The control client's failures: no daemon is a system failure, a bad path a usage one.
    func testControlClientFailuresCarryTheirCodes() {
        let missing = dir.appendingPathComponent("nobody.sock").path
        XCTAssertThrowsError(try ControlClient.send("status", socket: missing, timeout: 1)) { error in
            print("\(error.errorCode.rawValue): \(error)")
            XCTAssertEqual(error.errorCode, .system)
        }
        let long = "/tmp/" + String(repeating: "x", count: 200) + ".sock"
        XCTAssertThrowsError(try ControlClient.send("status", socket: long, timeout: 1)) { error in
            print("\(error.errorCode.rawValue): \(error)")
            XCTAssertTrue("\(error)".contains("too long"))
            XCTAssertEqual(error.errorCode, .usage)
        }
    }

    /// Every error type the sources declare is a `CodedError` (a new one that is not fails here),
    /// apart from the MIDI reader's internal stop signal, which never leaves its parser.
    func testEveryErrorTypeHasACode() throws {
        let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Sources")
        let declaration = try NSRegularExpression(pattern: #"(struct|enum|class) (\w+)\s*:[^{]*Error\b[^{]*\{"#)
        var uncoded: [String] = [], coded = 0
        let files = FileManager.default.enumerator(atPath: sources.path)!.compactMap { $0 as? String }.filter { $0.hasSuffix(".swift") }
        for file in files {
            let text = try String(contentsOf: sources.appendingPathComponent(file), encoding: .utf8)
            for m in declaration.matches(in: text, range: NSRange(text.startIndex..., in: text)) {
                let decl = String(text[Range(m.range, in: text)!])
                let name = String(text[Range(m.range(at: 2), in: text)!])
                if decl.contains("CodedError") { coded += 1 } else if !(file.hasSuffix("MIDIFile.swift") && name == "Stop") { uncoded.append("\(file): \(name)") }
            }
        }
        print("error types with a code: \(coded); without: \(uncoded)")
        XCTAssertGreaterThan(coded, 15)
        XCTAssertEqual(uncoded, [])
    }
}
