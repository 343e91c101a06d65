import DDSPPiano
import Foundation
import PianoIO
import PianoTraining
import XCTest

final class PerformanceLoaderTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("ddsp-train-loader-\(getpid())-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(at: dir) }

    /// A format-0 MIDI file (480 ticks per beat, 120 bpm): `notes` as (pitch, start tick, end tick).
    func midiBytes(_ notes: [(UInt8, Int, Int)]) -> [UInt8] {
        var events: [(Int, [UInt8])] = []
        for (p, s, e) in notes { events.append((s, [0x90, p, 100])); events.append((e, [0x80, p, 0])) }
        events.sort { $0.0 < $1.0 }
        var track: [UInt8] = [], now = 0
        func vlq(_ v: Int) -> [UInt8] {
            var out = [UInt8(v & 0x7F)], x = v >> 7
            while x > 0 { out.insert(UInt8(x & 0x7F) | 0x80, at: 0); x >>= 7 }
            return out
        }
        for (t, bytes) in events { track += vlq(t - now) + bytes; now = t }
        track += [0x00, 0xFF, 0x2F, 0x00]
        let n = track.count
        return Array("MThd".utf8) + [0, 0, 0, 6, 0, 0, 0, 1, 0x01, 0xE0] + Array("MTrk".utf8)
            + [UInt8(n >> 24), UInt8((n >> 16) & 0xFF), UInt8((n >> 8) & 0xFF), UInt8(n & 0xFF)] + track
    }

    func write(_ name: String, seconds: Double, rate: Int = 44_100, silent: Bool = false) throws -> URL {
        let url = dir.appendingPathComponent(name)
        let frames = Int(seconds * Double(rate))
        var stereo = [Float](repeating: 0, count: 2 * frames)
        if !silent { for i in 0..<frames { let v = Float(0.3 * sin(2 * Double.pi * 440 * Double(i) / Double(rate))); stereo[2 * i] = v; stereo[2 * i + 1] = v } }
        try AudioFile.write(stereo, channels: 2, sampleRate: rate, format: .s16, to: url)
        return url
    }

    func testLoadsAndResamples() throws {
        let audio = try write("a.wav", seconds: 2)
        let midi = dir.appendingPathComponent("a.mid")
        try Data(midiBytes([(60, 0, 960)])).write(to: midi)   // C4 for 1 s
        let p = try PerformanceLoader.load(audio: audio, midi: midi)
        XCTAssertEqual(p.audio.count, 32_000)
        // A 440 Hz sine survives resampling: RMS 0.3/√2.
        let rms = (p.audio[1000..<31000].reduce(0.0) { $0 + Double($1 * $1) } / 30_000).squareRoot()
        XCTAssertEqual(rms, 0.3 / 2.0.squareRoot(), accuracy: 2e-3)
        XCTAssertEqual(p.conditioning.frames, 250)   // ceil(1 s) at 250 fps, no warm-up
        XCTAssertEqual((0..<16).map { p.conditioning.pitch(frame: 10, voice: $0) }.filter { $0 > 0 }, [60])
        XCTAssertEqual(p.polyphony[10], 1); XCTAssertEqual(p.polyphony[249], 1)
    }

    func testRejectsBadPairs() throws {
        let midi = dir.appendingPathComponent("m.mid")
        try Data(midiBytes([(60, 0, 960)])).write(to: midi)
        let silent = try write("s.wav", seconds: 1, silent: true)
        XCTAssertThrowsError(try PerformanceLoader.load(audio: silent, midi: midi)) { XCTAssertTrue("\($0)".hasSuffix("silent"), "\($0)") }
        let clippedURL = dir.appendingPathComponent("c.wav")
        try AudioFile.write((0..<16_000).map { Float(max(-1, min(1, 3 * sin(Double($0) * 0.1)))) }, channels: 1, sampleRate: 16_000, format: .f32, to: clippedURL)
        XCTAssertThrowsError(try PerformanceLoader.load(audio: clippedURL, midi: midi)) { XCTAssertTrue("\($0)".contains("clipped ("), "\($0)") }
        let long = try write("l.wav", seconds: 15, rate: 16_000)
        XCTAssertThrowsError(try PerformanceLoader.load(audio: long, midi: midi)) { XCTAssertTrue("\($0)".contains("MIDI lasts 1.0 s but the audio 15.0 s"), "\($0)") }
        let empty = dir.appendingPathComponent("e.mid")
        try Data(midiBytes([(10, 0, 960)])).write(to: empty)   // below the piano only
        let ok = try write("o.wav", seconds: 1)
        XCTAssertThrowsError(try PerformanceLoader.load(audio: ok, midi: empty)) { XCTAssertTrue("\($0)".hasSuffix("no piano notes"), "\($0)") }
        let garbage = dir.appendingPathComponent("g.mid")
        try Data([1, 2, 3]).write(to: garbage)
        XCTAssertThrowsError(try PerformanceLoader.load(audio: ok, midi: garbage))
        XCTAssertThrowsError(try PerformanceLoader.load(audio: dir.appendingPathComponent("missing.wav"), midi: midi)) { XCTAssertTrue("\($0)".contains("no such file"), "\($0)") }
    }
}
