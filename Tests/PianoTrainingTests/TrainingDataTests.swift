import DDSPPiano
import Foundation
import PianoTraining
import XCTest

final class TrainingDataTests: XCTestCase {
    func testPairing() {
        let (pairs, skipped) = TrainingPairs.match(["x/a.wav", "x/a.mid", "b.FLAC", "b.midi", "c.wav", "d.mid",
                                                    "e.wav", "e.flac", "e.mid", "notes.txt"])
        XCTAssertEqual(pairs, [TrainingPairs.Pair(stem: "b", audio: "b.FLAC", midi: "b.midi"),
                               TrainingPairs.Pair(stem: "x/a", audio: "x/a.wav", midi: "x/a.mid")])
        let reasons = Dictionary(uniqueKeysWithValues: skipped.map { ($0.path, $0.reason) })
        XCTAssertEqual(Set(reasons.keys), ["c.wav", "d.mid", "e.wav", "e.flac", "e.mid", "notes.txt"])
        XCTAssertTrue(reasons["c.wav"]!.hasPrefix("no MIDI file"))
        XCTAssertTrue(reasons["d.mid"]!.hasPrefix("no audio file"))
        XCTAssertTrue(reasons["e.mid"]!.hasPrefix("ambiguous: several audio files"))
        XCTAssertTrue(reasons["notes.txt"]!.hasPrefix("neither audio"))
    }

    func testScanFolder() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ddsp-train-scan-\(getpid())")
        try? FileManager.default.removeItem(at: dir)
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("sub"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        for f in ["sub/p.wav", "sub/p.mid", "q.flac", ".hidden.wav"] {
            _ = FileManager.default.createFile(atPath: dir.appendingPathComponent(f).path, contents: Data())
        }
        let (pairs, skipped) = try TrainingPairs.scan(folder: dir)
        XCTAssertEqual(pairs.map { ($0.stem as NSString).lastPathComponent }, ["p"])
        XCTAssertEqual(skipped.map { ($0.path as NSString).lastPathComponent }, ["q.flac"])
        XCTAssertThrowsError(try TrainingPairs.scan(folder: dir.appendingPathComponent("missing")))
    }

    func testMaestroCSV() throws {
        let csv = "canonical_composer,canonical_title,split,year,midi_filename,audio_filename,duration\r\n"
            + "Alban Berg,Sonata Op. 1,train,2018,2018/a.midi,2018/a.wav,698.66\r\n"
            + "Frédéric Chopin,\"Ballade No. 1, \"\"G minor\"\"\",validation,2004,2004/b.midi,2004/b.wav,520.5\r\n"
        let rows = try MaestroCSV.parse(csv)
        XCTAssertEqual(rows.count, 2)
        XCTAssertEqual(rows[1].title, "Ballade No. 1, \"G minor\"")
        XCTAssertEqual(rows[1].split, "validation")
        XCTAssertEqual(rows[0].audioFilename, "2018/a.wav")
        XCTAssertEqual(rows[0].duration, 698.66)
        XCTAssertEqual(MaestroCSV.instrumentYears(rows), ["2004", "2018"])
        XCTAssertThrowsError(try MaestroCSV.parse("split,year\ntrain,2004\n")) { XCTAssertTrue("\($0)".contains("canonical_composer")) }
        XCTAssertThrowsError(try MaestroCSV.parse("canonical_composer,canonical_title,split,year,midi_filename,audio_filename,duration\na,b,train,2004,m,w,long\n"))
    }

    func testPolyphony() {
        let seq = NoteSequence(notes: [
            NoteSequence.Note(pitch: 60, velocity: 80, start: 0.0, end: 0.010),   // frames 0..<3
            NoteSequence.Note(pitch: 64, velocity: 80, start: 0.005, end: 0.0051), // frame 1 only (at least one frame)
            NoteSequence.Note(pitch: 10, velocity: 80, start: 0.0, end: 1),      // below the piano: not counted
        ])
        XCTAssertEqual(Segmenter.polyphony(seq, frames: 4), [1, 2, 1, 0])
    }

    func testSegments() {
        let sr = 16_000, fr = 250, V = 16
        let audio = (0..<(10 * sr)).map { Float($0) }
        var c = FrameConditioning(frames: 9 * fr, voices: V)   // conditioning shorter than the audio
        for i in c.conditioning.indices { c.conditioning[i] = Float(i) }
        for i in c.pedal.indices { c.pedal[i] = Float(i) }
        var poly = [Int](repeating: 3, count: c.frames)
        poly[760] = 17   // windows 1 (375..<1125) and 2 (750..<1500) are too polyphonic
        let (segments, dropped) = Segmenter.segments(audio: audio, conditioning: c, polyphony: poly)
        // Audio gives (160000 − 48000)/24000 + 1 = 5 windows, conditioning (2250 − 750)/375 + 1 = 5.
        XCTAssertEqual(segments.map(\.startFrame), [0, 1125, 1500])
        XCTAssertEqual(dropped, 2)
        let s = segments[1]
        XCTAssertEqual(s.audio.count, 48_000); XCTAssertEqual(s.audio.first, Float(3 * 24_000))
        XCTAssertEqual(s.conditioning.count, 750 * V * 2); XCTAssertEqual(s.conditioning.first, Float(1125 * V * 2))
        XCTAssertEqual(s.pedal.first, Float(1125 * 4))
        let batch = SegmentBatch(segments: Array(segments[0..<2]), instruments: [3, 4], voices: V)
        XCTAssertEqual(batch.batch, 2); XCTAssertEqual(batch.frames, 750)
        XCTAssertEqual(batch.conditioning[750 * V * 2], Float(1125 * V * 2))
    }
}
