import XCTest
import Foundation
import DDSPPiano
import PianoIO

/// `ddsp-piano render --stereo / --width / --a4 / --transpose` as a user runs them (issue 14).
extension RenderCommandTests {
    func testStereoTuningAndTransposeFlags() throws {
        let weights = TestKitWeights.dafx22
        let midi = try file("one.mid", Self.oneNoteMIDI())
        let mono = try ddspPiano(["render", "--weights", weights, midi.path, "mono.wav"])
        XCTAssertEqual(mono.status, 0, mono.stderr)
        let stereo = try ddspPiano(["render", "--weights", weights, "--stereo", midi.path, "stereo.wav"])
        XCTAssertEqual(stereo.status, 0, stereo.stderr)
        print(stereo.stdout.trimmingCharacters(in: .newlines))
        XCTAssertTrue(stereo.stdout.contains("stereo width 0.5"), stereo.stdout)
        let m = try AudioFile.read(dir.appendingPathComponent("mono.wav"))
        let s = try AudioFile.read(dir.appendingPathComponent("stereo.wav"))
        XCTAssertEqual(m.channels, 1)
        XCTAssertEqual(s.channels, 2)
        XCTAssertEqual(s.frames, m.frames)
        var signal = 0.0, error = 0.0, side = 0.0
        for i in 0..<m.frames {
            let l = Double(s.samples[2 * i]), r = Double(s.samples[2 * i + 1]), x = Double(m.samples[i])
            signal += x * x
            error += ((l + r) / 2 - x) * ((l + r) / 2 - x)
            side += (r - l) * (r - l) / 4
        }
        let fold = 10 * log10(signal / max(error, 1e-30))
        print(String(format: "render --stereo: fold-down (L+R)/2 vs the mono render %.1f dB SNR; side %.1f dB below the mono signal", fold, 10 * log10(signal / side)))
        XCTAssertGreaterThan(fold, 100)
        XCTAssertGreaterThan(side, 0)

        let tuned = try ddspPiano(["render", "--weights", weights, "--width", "1", "--a4", "442", "--transpose", "-2", "--format", "s16", midi.path, "tuned.wav"])
        XCTAssertEqual(tuned.status, 0, tuned.stderr)
        XCTAssertTrue(tuned.stdout.contains("stereo width 1"), tuned.stdout)
        XCTAssertEqual(try AudioFile.read(dir.appendingPathComponent("tuned.wav")).channels, 2)

        for (args, flag, text) in [(["--a4", "500"], "--a4 500", "hertz between 415 and 466"),
                                   (["--transpose", "25"], "--transpose 25", "semitones between -24 and 24"),
                                   (["--width", "1.5"], "--width 1.5", "a number between 0 and 1"),
                                   (["--stereo", "--exact"], "--stereo", "--exact renders upstream's mono computation")] {
            let before = try listing()
            let r = try ddspPiano(["render", "--weights", weights] + args + [midi.path, "bad.wav"])
            assertFails(r, naming: flag, containing: text)
            XCTAssertEqual(try listing(), before)
        }
    }
}

enum TestKitWeights {
    /// The bundled dafx22 weights (every clone).
    static var dafx22: String { Fixtures.packageRoot.appendingPathComponent("weights/dafx22.safetensors").path }
}
