import XCTest
import Foundation
import CSndFile
import DDSPPiano
import PianoIO
import PianoTestKit

/// FLAC, standard output and `render-batch`, run through the built `ddsp-piano` as a user would,
/// with the bundled dafx22 weights (ten pianos named by year, 16 kHz; no ../shared needed).
final class RenderBatchTests: XCTestCase {
    var dir: URL!
    var weights: String { Fixtures.packageRoot.appendingPathComponent("weights/dafx22.safetensors").path }

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("render-batch-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: dir)
    }

    // MARK: Helpers

    struct Result {
        var status: Int32
        var stdout: Data
        var stderr: String
        var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
        var stderrLines: [Substring] { stderr.split(separator: "\n") }
    }

    /// Runs ddsp-piano in `dir`; stdout is collected whole, or handed to `readStdout` (a pipe's
    /// read end) while the process runs.
    func ddspPiano(_ arguments: [String], readStdout: ((Int32) throws -> Void)? = nil) throws -> Result {
        let p = Process()
        p.executableURL = try RenderCommandTests.executable()
        p.arguments = arguments
        p.currentDirectoryURL = dir
        var env = ProcessInfo.processInfo.environment
        env["XDG_DATA_HOME"] = dir.appendingPathComponent("xdg").path
        env["DDSP_PIANO_WEIGHTS"] = nil
        p.environment = env
        let errURL = FileManager.default.temporaryDirectory.appendingPathComponent("ddsp-piano-batch-\(UUID().uuidString).err")
        _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: errURL) }
        let err = try FileHandle(forWritingTo: errURL)
        let out = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        var stdout = Data()
        if let readStdout {
            try readStdout(out.fileHandleForReading.fileDescriptor)
        } else {
            stdout = out.fileHandleForReading.readDataToEndOfFile()
        }
        p.waitUntilExit()
        try err.close()
        return Result(status: p.terminationStatus, stdout: stdout, stderr: String(decoding: try Data(contentsOf: errURL), as: UTF8.self))
    }

    /// A format-0 MIDI file: `pitch` (velocity 100) from 0 to 0.5 s, then `pitch + 4` to 1 s.
    static func midi(pitch: UInt8) -> [UInt8] {
        let track: [UInt8] = [0x00, 0x90, pitch, 100,
                              0x83, 0x60, 0x80, pitch, 0, 0x00, 0x90, pitch + 4, 90,   // 480 ticks = 0.5 s
                              0x83, 0x60, 0x80, pitch + 4, 0,
                              0x00, 0xFF, 0x2F, 0x00]
        return Array("MThd".utf8) + [0, 0, 0, 6, 0, 0, 0, 1, 0x01, 0xE0]
            + Array("MTrk".utf8) + [0, 0, 0, UInt8(track.count)] + track
    }

    @discardableResult
    func file(_ name: String, _ bytes: [UInt8]) throws -> URL {
        let url = dir.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(bytes).write(to: url)
        return url
    }

    func samples(_ path: String) throws -> [Float] {
        try AudioFile.read(dir.appendingPathComponent(path)).samples
    }

    /// Every file under `sub`, relative, hidden ones included.
    func tree(_ sub: String) -> Set<String> {
        let base = dir.appendingPathComponent(sub)
        guard let walk = FileManager.default.enumerator(atPath: base.path) else { return [] }
        var out: Set<String> = []
        while let p = walk.nextObject() as? String {
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: base.appendingPathComponent(p).path, isDirectory: &isDir), !isDir.boolValue { out.insert(p) }
        }
        return out
    }

    /// 0.256 s of music (the first note), no warm-up: the engine is slow in debug builds.
    static let fast = ["--warm-up", "0", "--duration", "0.256"]
    static let fastFrames = 4096

    func render(_ midi: String, _ out: String, _ extra: [String] = []) throws {
        let r = try ddspPiano(["render", "--weights", weights] + (extra.contains("--duration") ? [] : Self.fast) + extra + [midi, out])
        XCTAssertEqual(r.status, 0, r.stderr)
    }

    static func maxDifference(_ a: [Float], _ b: [Float]) -> Float {
        zip(a, b).map { abs($0 - $1) }.max() ?? 0
    }

    // MARK: FLAC

    /// FLAC holds exactly the quantised samples of the same-depth WAV, so against the float
    /// render it is within half a step: 2^-24 (flac) or 2^-16 (flac16).
    func testFLACEqualsWAVToItsQuantisation() throws {
        try file("a.mid", Self.midi(pitch: 60))
        try render("a.mid", "ref.wav")
        try render("a.mid", "a.flac")                          // chosen by the name
        try render("a.mid", "a16.flac", ["--format", "flac16"])
        try render("a.mid", "a24.wav", ["--format", "s24"])
        try render("a.mid", "a16.wav", ["--format", "s16"])
        var info = SF_INFO()
        let sf = try XCTUnwrap(sf_open(dir.appendingPathComponent("a.flac").path, Int32(SFM_READ), &info))
        sf_close(sf)
        XCTAssertEqual(info.format, Int32(SF_FORMAT_FLAC) | Int32(SF_FORMAT_PCM_24))
        let ref = try samples("ref.wav"), flac = try samples("a.flac"), flac16 = try samples("a16.flac")
        XCTAssertEqual(ref.count, Self.fastFrames)
        let peak = ref.map(abs).max() ?? 0
        XCTAssertGreaterThan(peak, 0.01, "the render should not be silent")
        XCTAssertLessThan(peak, 1, "no clipping in this case")
        XCTAssertEqual(flac, try samples("a24.wav"), "FLAC differs from s24 WAV")
        XCTAssertEqual(flac16, try samples("a16.wav"), "FLAC16 differs from s16 WAV")
        let e24 = Self.maxDifference(flac, ref), e16 = Self.maxDifference(flac16, ref)
        let bound24: Float = 1.0 / 16_777_216, bound16: Float = 1.0 / 65_536   // half a step: 2^-24, 2^-16
        print("FLAC: \(ref.count) samples, peak \(peak); max |flac - f32| = \(e24) (bound \(bound24)), max |flac16 - f32| = \(e16) (bound \(bound16))")
        XCTAssertLessThanOrEqual(e24, bound24)
        XCTAssertLessThanOrEqual(e16, bound16)
        let sizes = try ["ref.wav", "a24.wav", "a.flac", "a16.flac"].map { try FileManager.default.attributesOfItem(atPath: dir.appendingPathComponent($0).path)[.size] as! Int }
        print("sizes f32/s24 WAV, flac, flac16: \(sizes)")
        // A WAV format with a .flac name is refused, not written as a WAV called .flac.
        let r = try ddspPiano(["render", "--weights", weights] + Self.fast + ["--format", "s16", "a.mid", "b.flac"])
        XCTAssertEqual(r.status, 1)
        XCTAssertEqual(r.stderrLines.count, 1, r.stderr)
        XCTAssertTrue(r.stderr.hasPrefix("ddsp-piano: b.flac: "), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("b.flac").path))
    }

    // MARK: Standard output

    /// `-` streams a valid file: WAV read back by libsndfile straight from the pipe, FLAC from
    /// what came through it; the samples equal a file render's, and nothing else is on stdout.
    func testStandardOutputEqualsFileRender() throws {
        try file("a.mid", Self.midi(pitch: 64))
        // 5557 frames at 22.05 kHz: an odd number of 24-bit samples exercises the WAV pad byte.
        let length = ["--warm-up", "0", "--duration", "0.252", "--sample-rate", "22050"]
        for format in [AudioFormat.f32, .s16, .s24] {
            try render("a.mid", "file-\(format).wav", length + ["--format", format.rawValue])
            let expected = try samples("file-\(format).wav")
            XCTAssertEqual(expected.count, 5557)
            var got: [Float] = [], frames: Int64 = 0
            let r = try ddspPiano(["render", "--weights", weights, "--format", format.rawValue] + length + ["a.mid", "-"]) { fd in
                var info = SF_INFO()
                guard let sf = sf_open_fd(fd, Int32(SFM_READ), &info, 0) else {
                    XCTFail("libsndfile cannot read the \(format) stream: \(String(cString: sf_strerror(nil)))"); return
                }
                defer { sf_close(sf) }
                frames = info.frames
                var buf = [Float](repeating: 0, count: 4096)
                while true {
                    let n = Int(sf_readf_float(sf, &buf, 4096))
                    if n <= 0 { break }
                    got += buf[0..<n]
                }
                XCTAssertEqual(sf_error(sf), 0)
            }
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertEqual(frames, 5557, "header length (\(format))")
            XCTAssertEqual(got, expected, "\(format) stream differs from the file render")
            XCTAssertTrue(r.stderr.contains("wrote standard output: 0.25 s of audio"), r.stderr)
            print("stdout \(format): \(got.count) samples read from the pipe, identical to the file render")
        }
        // FLAC: libsndfile 1.2 cannot decode FLAC from a pipe, so the bytes that came through it are read as a file.
        try render("a.mid", "file.flac")
        let r = try ddspPiano(["render", "--weights", weights] + Self.fast + ["--format", "flac", "a.mid", "-"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(Array(r.stdout.prefix(4)), Array("fLaC".utf8))
        try r.stdout.write(to: dir.appendingPathComponent("piped.flac"))
        XCTAssertEqual(try samples("piped.flac"), try samples("file.flac"))
        print("stdout flac: \(r.stdout.count) bytes, samples identical to the file render")
        // --normalize (the peak is known only at the end) streams too.
        try render("a.mid", "norm.wav", ["--normalize", "-3"])
        let n = try ddspPiano(["render", "--weights", weights] + Self.fast + ["--normalize", "-3", "a.mid", "-"])
        XCTAssertEqual(n.status, 0, n.stderr)
        try n.stdout.write(to: dir.appendingPathComponent("piped-norm.wav"))
        XCTAssertEqual(try samples("piped-norm.wav"), try samples("norm.wav"))
    }

    // MARK: render-batch

    /// A folder: every .mid/.midi under it, names mirrored; a bad file is one line and the rest
    /// are rendered, each equal to `render` of it alone; exit status 1.
    func testBatchOfAFolderReportsTheBadFileAndRendersTheRest() throws {
        try file("in/one.mid", Self.midi(pitch: 60))
        try file("in/sub/deeper/two.MIDI", Self.midi(pitch: 67))
        try file("in/bad.mid", Array("not a MIDI file".utf8))
        try file("in/notes.txt", Array("ignored".utf8))
        let r = try ddspPiano(["render-batch", "--weights", weights] + Self.fast + ["--jobs", "2", "in", "out"])
        XCTAssertEqual(r.status, 1, "a failed file makes the exit status non-zero")
        let failures = r.stderrLines.filter { $0.hasPrefix("ddsp-piano: ") && !$0.contains("to render") }
        XCTAssertEqual(failures.count, 1, r.stderr)
        XCTAssertTrue(failures.first?.hasPrefix("ddsp-piano: in/bad.mid: ") ?? false, r.stderr)
        XCTAssertEqual(tree("out"), ["one.wav", "sub/deeper/two.wav"])
        XCTAssertTrue(r.stdoutText.hasPrefix("2 rendered, 0 skipped (already there), 1 failed: 0.5 s of audio"), r.stdoutText)
        try render("in/sub/deeper/two.MIDI", "two.wav")
        XCTAssertEqual(try samples("out/sub/deeper/two.wav"), try samples("two.wav"))
        print("folder batch: \(r.stdoutText.trimmingCharacters(in: .newlines))")
        // FLAC outputs are named .flac.
        let b = try ddspPiano(["render-batch", "--weights", weights] + Self.fast + ["--format", "flac", "in", "flac"])
        XCTAssertEqual(b.status, 1)
        XCTAssertEqual(tree("flac"), ["one.flac", "sub/deeper/two.flac"])
    }

    /// MAESTRO's CSV as it is: quoted titles with commas, each row on the piano of its year,
    /// --split keeps one split; a missing file is one line and the others render.
    func testBatchOfAMaestroCSV() throws {
        try file("maestro/2004/a.midi", Self.midi(pitch: 60))
        try file("maestro/2011/b.midi", Self.midi(pitch: 62))
        try file("maestro/2018/c.midi", Self.midi(pitch: 65))
        let csv = #"""
        canonical_composer,canonical_title,split,year,midi_filename,audio_filename,duration
        Frédéric Chopin,"Ballade No. 1, Op. 23",test,2004,2004/a.midi,2004/a.wav,1.0
        Claude Debussy,"Etude No. 7 ""Study in Chromatic Steps""",test,2011,2011/b.midi,2011/b.wav,1.0
        Johann Sebastian Bach,Prelude,train,2018,2018/c.midi,2018/c.wav,1.0
        Franz Liszt,Missing,test,2006,2006/gone.midi,2006/gone.wav,1.0

        """#
        try file("maestro/maestro-v3.0.0.csv", Array(csv.utf8))
        let r = try ddspPiano(["render-batch", "--weights", weights] + Self.fast + ["--split", "test", "maestro/maestro-v3.0.0.csv", "out"])
        XCTAssertEqual(r.status, 1)
        let failures = r.stderrLines.filter { $0.hasPrefix("ddsp-piano: ") && !$0.contains("to render") }
        XCTAssertEqual(failures.count, 1, r.stderr)
        XCTAssertTrue(failures.first?.hasPrefix("ddsp-piano: maestro/2006/gone.midi: no such file") ?? false, r.stderr)
        XCTAssertEqual(tree("out"), ["2004/a.wav", "2011/b.wav"])
        XCTAssertTrue(r.stdoutText.hasPrefix("2 rendered, 0 skipped (already there), 1 failed"), r.stdoutText)
        // Each on its year's piano: equal to `render --piano YEAR`, and not to the default piano.
        try render("maestro/2004/a.midi", "a2004.wav", ["--piano", "2004"])
        try render("maestro/2004/a.midi", "a2018.wav")
        let batch = try samples("out/2004/a.wav")
        XCTAssertEqual(batch, try samples("a2004.wav"))
        let other = Self.maxDifference(batch, try samples("a2018.wav"))
        print("MAESTRO csv: 2004 row equals render --piano 2004; differs from piano 2018 by up to \(other)")
        XCTAssertGreaterThan(other, 1e-3)
        // A plain list with a `midi` and a `piano` column: a piece on two pianos gets both names.
        try file("list.csv", Array("midi,piano\nmaestro/2004/a.midi,2009\nmaestro/2004/a.midi,2013\n".utf8))
        let p = try ddspPiano(["render-batch", "--weights", weights] + Self.fast + ["list.csv", "plain"])
        XCTAssertEqual(p.status, 0, p.stderr)
        XCTAssertEqual(tree("plain"), ["maestro/2004/a-2009.wav", "maestro/2004/a-2013.wav"])
        // A CSV without a MIDI column: one line naming it, nothing rendered.
        try file("bad.csv", Array("file,year\nx.mid,2004\n".utf8))
        let b = try ddspPiano(["render-batch", "--weights", weights] + Self.fast + ["bad.csv", "none"])
        XCTAssertEqual(b.status, 1)
        XCTAssertEqual(b.stderrLines.count, 1, b.stderr)
        XCTAssertTrue(b.stderr.hasPrefix("ddsp-piano: bad.csv: no MIDI column"), b.stderr)
    }

    /// A second run skips finished files without touching them (same inode, same mtime) and
    /// renders what is missing; a stale temporary file is never taken as finished.
    func testBatchResumesWithoutTouchingFinishedFiles() throws {
        for (i, p) in [60, 62, 64].enumerated() { try file("in/f\(i).mid", Self.midi(pitch: UInt8(p))) }
        let first = try ddspPiano(["render-batch", "--weights", weights] + Self.fast + ["in", "out"])
        XCTAssertEqual(first.status, 0, first.stderr)
        func stamp(_ name: String) throws -> (Int, Date) {
            let a = try FileManager.default.attributesOfItem(atPath: dir.appendingPathComponent("out/" + name).path)
            return ((a[.systemFileNumber] as! NSNumber).intValue, a[.modificationDate] as! Date)
        }
        let before = try ["f0.wav", "f2.wav"].map(stamp)
        try FileManager.default.removeItem(at: dir.appendingPathComponent("out/f1.wav"))
        // What SIGKILL mid-write leaves: the hidden temporary file, not f1.wav.
        try file("out/.f1.wav.tmp-AbC123", Array("RIFF partial".utf8))
        Thread.sleep(forTimeInterval: 0.05)
        let second = try ddspPiano(["render-batch", "--weights", weights] + Self.fast + ["in", "out"])
        XCTAssertEqual(second.status, 0, second.stderr)
        XCTAssertTrue(second.stdoutText.hasPrefix("1 rendered, 2 skipped (already there), 0 failed"), second.stdoutText)
        XCTAssertTrue(second.stderr.contains("1 to render of 3 files, 2 already there"), second.stderr)
        let after = try ["f0.wav", "f2.wav"].map(stamp)
        for (b, a) in zip(before, after) {
            XCTAssertEqual(b.0, a.0, "inode changed")
            XCTAssertEqual(b.1, a.1, "mtime changed")
        }
        XCTAssertEqual(try samples("out/f1.wav").count, Self.fastFrames)
        print("resume: \(second.stdoutText.trimmingCharacters(in: .newlines)); f0/f2 inodes and mtimes unchanged")
    }

    /// SIGTERM (Slurm's scancel, Ctrl-C's SIGINT alike) mid-batch leaves neither a partial output
    /// nor a temporary file; the next run renders everything.
    func testInterruptedBatchLeavesNoPartialFile() throws {
        for (i, p) in [60, 64].enumerated() { try file("in/h\(i).mid", Self.midi(pitch: UInt8(p))) }
        let p = Process()
        p.executableURL = try RenderCommandTests.executable()
        p.arguments = ["render-batch", "--weights", weights, "--jobs", "2", "--duration", "30", "in", "out"]
        p.currentDirectoryURL = dir
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        let deadline = Date().addingTimeInterval(60)
        while tree("out").filter({ $0.hasPrefix(".") }).count < 2, Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        let writing = tree("out")
        p.terminate()
        p.waitUntilExit()
        print("interrupted while writing \(writing.sorted()); after SIGTERM: \(tree("out").sorted())")
        XCTAssertEqual(writing.filter { $0.hasPrefix(".") }.count, 2, "both jobs should have been writing")
        XCTAssertEqual(p.terminationReason, .uncaughtSignal)
        XCTAssertEqual(tree("out"), [], "partial or temporary files left")
        let r = try ddspPiano(["render-batch", "--weights", weights] + Self.fast + ["in", "out"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(tree("out"), ["h0.wav", "h1.wav"])
    }

    /// Shards 1/3 ... 3/3 of a sorted list partition it exactly; bad shard values are one line.
    func testShardsPartitionTheList() throws {
        let names = (0..<10).map { String(format: "p%02d.mid", $0) }
        for (i, n) in names.enumerated() { try file("in/" + n, Self.midi(pitch: UInt8(50 + i))) }
        var shards: [Set<String>] = []
        for i in 1...3 {
            let r = try ddspPiano(["render-batch", "--weights", weights] + Self.fast + ["--shard", "\(i)/3", "in", "out\(i)"])
            XCTAssertEqual(r.status, 0, r.stderr)
            shards.append(tree("out\(i)"))
        }
        let all = Set(names.map { $0.replacingOccurrences(of: ".mid", with: ".wav") })
        print("shards of 10: \(shards.map { $0.sorted() })")
        XCTAssertEqual(shards.map(\.count), [4, 3, 3])
        XCTAssertEqual(shards.reduce(Set<String>()) { $0.union($1) }, all)
        for i in 0..<3 { for j in (i + 1)..<3 { XCTAssertTrue(shards[i].isDisjoint(with: shards[j])) } }
        // The library's rule, on a longer list: item k goes to shard (k mod N) + 1.
        let items = (0..<100).map { RenderBatch.Item(midi: URL(fileURLWithPath: "/\($0)"), name: "\($0)", piano: nil, output: URL(fileURLWithPath: "/o\($0)")) }
        let parts = (1...7).map { RenderBatch.shard(items, index: $0, count: 7).map(\.name) }
        XCTAssertEqual(parts.flatMap { $0 }.sorted(), items.map(\.name).sorted())
        XCTAssertEqual(Set(parts.flatMap { $0 }).count, 100)
        for bad in ["0/3", "4/3", "3", "a/b", "1/0"] {
            let r = try ddspPiano(["render-batch", "--weights", weights] + Self.fast + ["--shard", bad, "in", "x"])
            XCTAssertEqual(r.status, 1)
            XCTAssertEqual(r.stderrLines.count, 1, r.stderr)
            XCTAssertTrue(r.stderr.hasPrefix("ddsp-piano: --shard \(bad): "), r.stderr)
        }
    }

    /// The same files rendered on one thread and on two are identical.
    func testTwoJobsEqualOneJob() throws {
        for (i, p) in [57, 60, 64, 69].enumerated() { try file("in/g\(i).mid", Self.midi(pitch: UInt8(p))) }
        let one = try ddspPiano(["render-batch", "--weights", weights] + Self.fast + ["--jobs", "1", "in", "one"])
        let two = try ddspPiano(["render-batch", "--weights", weights] + Self.fast + ["--jobs", "2", "in", "two"])
        XCTAssertEqual(one.status, 0, one.stderr)
        XCTAssertEqual(two.status, 0, two.stderr)
        XCTAssertTrue(two.stdoutText.contains("2 jobs"), two.stdoutText)
        XCTAssertEqual(tree("one"), tree("two"))
        XCTAssertEqual(tree("one").count, 4)
        for name in tree("one") {
            XCTAssertEqual(try samples("one/" + name), try samples("two/" + name), name)
        }
        print("jobs: 1 → \(one.stdoutText.trimmingCharacters(in: .newlines)); 2 → \(two.stdoutText.trimmingCharacters(in: .newlines)); 4 files identical")
    }

    func testHelpExplainsBatchAndShards() throws {
        let r = try ddspPiano(["render-batch", "--help"])
        XCTAssertEqual(r.status, 0)
        for text in ["--jobs", "--shard", "--format", "--piano", "--weights", "--seed", "--sample-rate", "--split", "--root",
                     "midi_filename", "year", "SLURM_ARRAY_TASK_ID", "parallel", "Examples:"] {
            XCTAssertTrue(r.stdoutText.contains(text), "help lacks \(text)")
        }
        let render = try ddspPiano(["render", "--help"])
        for text in ["flac", "standard output"] { XCTAssertTrue(render.stdoutText.contains(text), "render help lacks \(text)") }
    }
}
