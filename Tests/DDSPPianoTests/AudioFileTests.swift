import XCTest
import Foundation
import CSndFile
import PianoIO

final class AudioFileTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("audiofile-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: dir)
    }

    /// A deterministic test signal that covers the whole range [-1, 1], both ends included.
    func signal(_ n: Int) -> [Float] {
        var s = [Float](repeating: 0, count: n)
        for i in 0..<n {
            let wave = sin(Double(i) * 0.0137) * 0.999
            let ripple = Double(i % 7) * 1e-4 - 3e-4
            s[i] = Float(wave + ripple)
        }
        s[0] = 1; s[1] = -1; s[2] = 0; s[3] = 1e-9
        return s
    }

    func listing() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
    }

    func testRoundTripWithinOneStepForEachFormat() throws {
        let x = signal(20_000)
        // Tolerances: one quantisation step for integer formats, exact for float.
        let cases: [(AudioFormat, Float)] = [(.s16, 1.0 / 32768), (.s24, 1.0 / 8_388_608), (.f32, 0)]
        for (format, tolerance) in cases {
            let url = dir.appendingPathComponent("rt-\(format).wav")
            let report = try AudioFile.write(x, sampleRate: 16_000, format: format, to: url)
            XCTAssertEqual(report.clippedSamples, 0, "\(format)")
            XCTAssertEqual(report.frames, x.count)
            XCTAssertEqual(report.peak, 1)
            let back = try AudioFile.read(url)
            XCTAssertEqual(back.sampleRate, 16_000)
            XCTAssertEqual(back.channels, 1)
            XCTAssertEqual(back.samples.count, x.count, "\(format)")
            var worst: Float = 0
            for i in x.indices { worst = max(worst, abs(back.samples[i] - x[i])) }
            XCTAssertLessThanOrEqual(worst, tolerance, "\(format): max error \(worst)")
            if format == .f32 { XCTAssertEqual(back.samples, x) }
        }
    }

    func testFileHeaderMatchesFormat() throws {
        let expected: [AudioFormat: Int32] = [.s16: Int32(SF_FORMAT_PCM_16), .s24: Int32(SF_FORMAT_PCM_24), .f32: Int32(SF_FORMAT_FLOAT)]
        for (format, subtype) in expected {
            let url = dir.appendingPathComponent("hdr-\(format).wav")
            try AudioFile.write([0, 0.5, -0.5, 0.25], channels: 2, sampleRate: 22_050, format: format, to: url)
            var info = SF_INFO()
            let sf = try XCTUnwrap(sf_open(url.path, Int32(SFM_READ), &info))
            sf_close(sf)
            XCTAssertEqual(info.format & Int32(SF_FORMAT_TYPEMASK), Int32(SF_FORMAT_WAV))
            XCTAssertEqual(info.format & Int32(SF_FORMAT_SUBMASK), subtype, "\(format)")
            XCTAssertEqual(info.channels, 2)
            XCTAssertEqual(info.samplerate, 22_050)
            XCTAssertEqual(info.frames, 2)
        }
    }

    func testClippingIsCountedAndSaturatesInIntegerFormats() throws {
        let x: [Float] = [0, 0.5, 1, 1.5, -2, -1, .nan, 0.25]
        for format in [AudioFormat.s16, .s24] {
            let url = dir.appendingPathComponent("clip-\(format).wav")
            let report = try AudioFile.write(x, sampleRate: 16_000, format: format, to: url)
            XCTAssertEqual(report.clippedSamples, 2, "\(format)")
            XCTAssertEqual(report.nonFiniteSamples, 1)
            XCTAssertEqual(report.peak, 2)
            let back = try AudioFile.read(url).samples
            let step: Float = format == .s16 ? 1.0 / 32768 : 1.0 / 8_388_608
            XCTAssertEqual(back[3], 1 - step, "\(format): +1.5 saturates at the largest code")
            XCTAssertEqual(back[4], -1, "\(format): -2 saturates at -1")
            XCTAssertEqual(back[6], 0, "NaN is written as 0")
            XCTAssertEqual(back[7], 0.25)
        }
        // Float keeps values beyond full scale: nothing is clipped.
        let url = dir.appendingPathComponent("clip-f32.wav")
        let report = try AudioFile.write(x, sampleRate: 16_000, format: .f32, to: url)
        XCTAssertEqual(report.clippedSamples, 0)
        XCTAssertEqual(report.nonFiniteSamples, 1)
        let back = try AudioFile.read(url).samples
        XCTAssertEqual(back[3], 1.5)
        XCTAssertEqual(back[4], -2)
    }

    func testAtomicWriteLeavesNoTemporaryFiles() throws {
        let url = dir.appendingPathComponent("out.wav")
        try AudioFile.write(signal(1000), sampleRate: 16_000, format: .f32, to: url)
        try AudioFile.write(signal(500), sampleRate: 16_000, format: .s16, to: url) // replace
        XCTAssertEqual(try listing(), ["out.wav"])
        XCTAssertEqual(try AudioFile.read(url).frames, 500)
        // Permissions follow the umask, not mkstemp's 0600.
        let attrs = try FileManager.default.attributesOfItem(atPath: url.path)
        let mode = (attrs[.posixPermissions] as? Int) ?? 0
        XCTAssertEqual(mode & 0o044, 0o044, "output should be readable by group and others, mode \(String(mode, radix: 8))")
    }

    func testFailedWriteKeepsTheOldFileAndLeavesNoTemporaryFiles() throws {
        let url = dir.appendingPathComponent("keep.wav")
        try AudioFile.write(signal(1000), sampleRate: 16_000, format: .f32, to: url)
        let before = try Data(contentsOf: url)
        // libsndfile refuses this many channels, after the temporary file exists.
        XCTAssertThrowsError(try AudioFile.write([Float](repeating: 0, count: 5000), channels: 5000, sampleRate: 16_000, format: .s16, to: url)) { error in
            let e = error as? AudioFileError
            XCTAssertEqual(e?.path, url.path)
            XCTAssertFalse(String(describing: error).contains("\n"))
        }
        XCTAssertEqual(try Data(contentsOf: url), before)
        XCTAssertEqual(try listing(), ["keep.wav"])
        // A directory in the way: the rename fails, the directory and its content survive.
        let blocker = dir.appendingPathComponent("blocker.wav")
        try FileManager.default.createDirectory(at: blocker, withIntermediateDirectories: false)
        try Data([1, 2, 3]).write(to: blocker.appendingPathComponent("inside"))
        XCTAssertThrowsError(try AudioFile.write(signal(10), sampleRate: 16_000, format: .f32, to: blocker))
        XCTAssertThrowsError(try AudioFile.checkWritable(blocker))
        XCTAssertEqual(try listing(), ["blocker.wav", "keep.wav"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: blocker.path), ["inside"])
    }

    func testUnwritableDirectoryIsOneLineNamingTheFile() throws {
        let url = dir.appendingPathComponent("missing/sub/out.wav")
        XCTAssertThrowsError(try AudioFile.write(signal(10), sampleRate: 16_000, format: .f32, to: url)) { error in
            let text = String(describing: error)
            XCTAssertTrue(text.hasPrefix(url.path + ": "), text)
            XCTAssertTrue(text.contains("does not exist"), text)
            XCTAssertFalse(text.contains("\n"))
        }
        XCTAssertThrowsError(try AudioFile.checkWritable(url))
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("missing").path))
        // A read-only directory only stops non-root users.
        if geteuid() != 0 {
            let ro = dir.appendingPathComponent("ro")
            try FileManager.default.createDirectory(at: ro, withIntermediateDirectories: false)
            chmod(ro.path, 0o555)
            defer { chmod(ro.path, 0o755) }
            XCTAssertThrowsError(try AudioFile.checkWritable(ro.appendingPathComponent("x.wav"))) { error in
                XCTAssertTrue(String(describing: error).contains("cannot create a file"), "\(error)")
            }
        }
        // checkWritable succeeds on a good path and leaves nothing behind.
        try AudioFile.checkWritable(dir.appendingPathComponent("fine.wav"))
        XCTAssertEqual(try listing(), [])
    }

    func testReadsFLACAnyRateAndChannelsAndDownmixes() throws {
        // Written with libsndfile directly: our writer only makes WAV.
        let url = dir.appendingPathComponent("stereo.flac")
        var info = SF_INFO()
        info.samplerate = 44_100
        info.channels = 2
        info.format = Int32(SF_FORMAT_FLAC) | Int32(SF_FORMAT_PCM_16)
        let sf = try XCTUnwrap(sf_open(url.path, Int32(SFM_WRITE), &info))
        var frames: [Int16] = []
        for i in 0..<4410 { frames.append(Int16(i % 100) * 100); frames.append(-Int16(i % 100) * 100 + 2000) }
        XCTAssertEqual(sf_writef_short(sf, frames, 4410), 4410)
        sf_close(sf)

        let audio = try AudioFile.read(url)
        XCTAssertEqual(audio.sampleRate, 44_100)
        XCTAssertEqual(audio.channels, 2)
        XCTAssertEqual(audio.frames, 4410)
        XCTAssertEqual(audio.duration, 0.1, accuracy: 1e-12)
        let mono = audio.mono()
        XCTAssertEqual(mono.count, 4410)
        for m in mono { XCTAssertEqual(m, 1000 / 32768, accuracy: 1e-7) }
        XCTAssertEqual(audio.samples[2], 100 / 32768)
    }

    func testReadErrorsNameTheFile() throws {
        let missing = dir.appendingPathComponent("nope.wav")
        XCTAssertThrowsError(try AudioFile.read(missing)) { XCTAssertEqual(String(describing: $0), "\(missing.path): no such file") }
        let junk = dir.appendingPathComponent("junk.wav")
        try Data("definitely not audio".utf8).write(to: junk)
        XCTAssertThrowsError(try AudioFile.read(junk)) { error in
            XCTAssertTrue(String(describing: error).hasPrefix(junk.path + ": cannot read audio"), "\(error)")
        }
    }

    /// The upstream script's 16-bit output reads back at the documented length.
    func testReadsUpstreamFinalWav() throws {
        let ref = try Fixtures.requireReference()
        let url = ref.appendingPathComponent("cases/scale_velocities_p9/final.wav")
        let audio = try AudioFile.read(url)
        XCTAssertEqual(audio.sampleRate, 16_000)
        XCTAssertEqual(audio.channels, 1)
        XCTAssertEqual(audio.frames, 64_000)
        XCTAssertGreaterThan(audio.samples.map(abs).max() ?? 0, 0.1)
    }
}
