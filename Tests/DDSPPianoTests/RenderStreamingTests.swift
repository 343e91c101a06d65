import XCTest
import Foundation
import CMallocCounter
import DDSPPiano
import PianoIO
#if canImport(Glibc)
import Glibc
#endif

/// `ddsp-piano render` streams: the engine's blocks go to the file as they are produced, so the
/// memory of a render does not depend on the length of the piece, and the files are the ones the
/// whole-array API (`OfflineRenderer.render(...) -> RenderOutput`) gives.
final class RenderStreamingTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("render-stream-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: dir)
    }

    // MARK: Helpers

    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let bundledWeights = packageRoot.appendingPathComponent("weights/soundfont-grands.safetensors")

    /// A format-0 Standard MIDI File of `seconds` (a multiple of 2) of music at 120 bpm: a
    /// four-beat figure of three-note chords at changing velocities, the sustain pedal down for
    /// each figure and up just before the next, repeated. It ends (pedal up, notes off) just
    /// before `seconds`, so a render lasts exactly `seconds`.
    static func figureMIDI(seconds: Int) -> [UInt8] {
        func vlq(_ value: Int) -> [UInt8] {
            var v = value >> 7, out: [UInt8] = [UInt8(value & 0x7F)]
            while v > 0 { out.insert(UInt8(v & 0x7F) | 0x80, at: 0); v >>= 7 }
            return out
        }
        let chords: [[UInt8]] = [[48, 60, 64], [55, 62, 67], [52, 64, 72], [43, 59, 65]]
        var events: [(tick: Int, order: Int, bytes: [UInt8])] = []
        for beat in 0..<(seconds * 2) {
            let t = beat * 480, chord = chords[beat % 4], velocity = UInt8(40 + (beat * 13) % 80)
            if beat % 4 == 0 { events.append((t, 1, [0xB0, 64, 127])) }
            for p in chord { events.append((t, 2, [0x90, p, velocity])) }
            for p in chord { events.append((t + 360, 0, [0x80, p, 64])) }
            if beat % 4 == 3 { events.append((t + 400, 0, [0xB0, 64, 0])) }
        }
        events.sort { ($0.tick, $0.order) < ($1.tick, $1.order) }
        var track: [UInt8] = [], last = 0
        for e in events { track += vlq(e.tick - last) + e.bytes; last = e.tick }
        track += [0x00, 0xFF, 0x2F, 0x00]
        func be32(_ v: Int) -> [UInt8] { [UInt8(v >> 24 & 0xFF), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }
        return Array("MThd".utf8) + be32(6) + [0, 0, 0, 1, 0x01, 0xE0] + Array("MTrk".utf8) + be32(track.count) + track
    }

    func file(_ name: String, _ bytes: [UInt8]) throws -> URL {
        let url = dir.appendingPathComponent(name)
        try Data(bytes).write(to: url)
        return url
    }

    func requireBundledWeights() throws -> URL {
        guard FileManager.default.fileExists(atPath: Self.bundledWeights.path) else {
            throw XCTSkip("bundled weights missing: \(Self.bundledWeights.path)")
        }
        return Self.bundledWeights
    }

    struct Child {
        var pid: pid_t
        var out: URL
        var err: URL
    }

    struct Finished {
        var exitStatus: Int32
        var signal: Int32
        /// The peak resident set of `ddsp-piano` alone, KiB (see `measured`); 0 if not measured.
        var maxRSSKiB: Int = 0
        var seconds: Double
        var stdout: String
        var stderr: String
    }

    /// Starts `program` (default: `ddsp-piano`) with posix_spawn, stdout and stderr to files.
    func start(_ arguments: [String], program: URL? = nil) throws -> Child {
        let exe = try program ?? RenderCommandTests.executable()
        let out = dir.appendingPathComponent("stdout-\(UUID().uuidString).txt")
        let err = dir.appendingPathComponent("stderr-\(UUID().uuidString).txt")
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, out.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, err.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        let argv: [UnsafeMutablePointer<CChar>?] = ([exe.path] + arguments).map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, exe.path, &actions, nil, argv, environ)
        guard rc == 0 else { throw XCTSkip("cannot start \(exe.path): \(String(cString: strerror(rc)))") }
        return Child(pid: pid, out: out, err: err)
    }

    /// Waits for the child; with `pollHighWater`, reads its VmHWM from /proc every 10 ms while
    /// it runs and returns the largest value seen (KiB).
    func wait(_ child: Child, started: Date = Date(), pollHighWater: Bool = false) throws -> (Finished, hwm: Int) {
        var status: Int32 = 0
        var hwm = 0
        while true {
            let r = waitpid(child.pid, &status, pollHighWater ? WNOHANG : 0)
            if r == child.pid { break }
            if r < 0 {
                guard errno == EINTR else { XCTFail("waitpid: \(String(cString: strerror(errno)))"); break }
                continue
            }
            if let text = try? String(contentsOfFile: "/proc/\(child.pid)/status", encoding: .utf8),
               let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
               let kib = Int(line.split(separator: " ").dropFirst().first ?? "") {
                hwm = max(hwm, kib)
            }
            usleep(10_000)
        }
        let seconds = Date().timeIntervalSince(started)
        let stdout = String(decoding: (try? Data(contentsOf: child.out)) ?? Data(), as: UTF8.self)
        let stderr = String(decoding: (try? Data(contentsOf: child.err)) ?? Data(), as: UTF8.self)
        try? FileManager.default.removeItem(at: child.out)
        try? FileManager.default.removeItem(at: child.err)
        return (Finished(exitStatus: (status >> 8) & 0xFF, signal: status & 0x7F, seconds: seconds, stdout: stdout, stderr: stderr), hwm)
    }

    /// Runs `ddsp-piano` and measures its peak RSS. Not with the child's own rusage: glibc's
    /// posix_spawn shares the parent's memory until exec (CLONE_VFORK), and Linux carries that
    /// high-water mark into the child's ru_maxrss, so it would report the test process's size.
    /// GNU time forks, so `/usr/bin/time -f %M` is exact; without it, the child's VmHWM (its own
    /// address space after exec) is polled while it runs. RENDER_STREAMING_RSS=proc forces the
    /// latter.
    func measured(_ arguments: [String]) throws -> (Finished, method: String) {
        let started = Date()
        let time = URL(fileURLWithPath: "/usr/bin/time")
        if ProcessInfo.processInfo.environment["RENDER_STREAMING_RSS"] != "proc",
           FileManager.default.isExecutableFile(atPath: time.path) {
            let rssFile = dir.appendingPathComponent("rss-\(UUID().uuidString).txt")
            defer { try? FileManager.default.removeItem(at: rssFile) }
            let exe = try RenderCommandTests.executable()
            var (r, _) = try wait(try start(["-f", "%M", "-o", rssFile.path, exe.path] + arguments, program: time), started: started)
            let text = (try? String(contentsOf: rssFile, encoding: .utf8)) ?? ""
            // GNU time writes "Command exited with non-zero status N" first when it fails.
            if let kib = text.split(separator: "\n").last.flatMap({ Int($0.trimmingCharacters(in: .whitespaces)) }) {
                r.maxRSSKiB = kib
                return (r, "/usr/bin/time -f %M")
            }
            XCTFail("cannot read /usr/bin/time's output: '\(text)'; stderr: \(r.stderr)")
            return (r, "/usr/bin/time (failed)")
        }
        var (r, hwm) = try wait(try start(arguments), started: started, pollHighWater: true)
        r.maxRSSKiB = hwm
        return (r, "VmHWM polled")
    }

    // MARK: Memory

    /// A 10 s and a 5 min piece at 48 kHz with the dry output: the long render's peak RSS is
    /// within 40 MiB of the short one's. Keeping the song, as renders did before, adds
    /// 2 × 300 s × 48000 × 4 B = 110 MiB of wet and dry for 5 min (213 MiB measured: the final
    /// copies doubled it). The files are complete, and the short one is exactly the array API's.
    func testMemoryDoesNotGrowWithLength() throws {
        let weights = try requireBundledWeights()
        let shortSeconds = 10, longSeconds = 300, rate = 48_000
        let short = try file("short.mid", Self.figureMIDI(seconds: shortSeconds))
        let long = try file("long.mid", Self.figureMIDI(seconds: longSeconds))
        var method = ""
        func render(_ midi: URL, _ name: String) throws -> Finished {
            let (r, how) = try measured(["render", "--weights", weights.path, "--sample-rate", "\(rate)",
                                         "--dry-output", dir.appendingPathComponent("\(name)-dry.wav").path,
                                         midi.path, dir.appendingPathComponent("\(name).wav").path])
            XCTAssertEqual(r.exitStatus, 0, r.stderr)
            XCTAssertEqual(r.signal, 0, r.stderr)
            print(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
            method = how
            return r
        }
        let a = try render(short, "short")
        let b = try render(long, "long")
        let shortMiB = Double(a.maxRSSKiB) / 1024, longMiB = Double(b.maxRSSKiB) / 1024
        print("peak RSS (\(method)): " + String(format: "%d s render %.1f MiB (%.1f s), %d s render %.1f MiB (%.1f s), difference %+.1f MiB",
                     shortSeconds, shortMiB, a.seconds, longSeconds, longMiB, b.seconds, longMiB - shortMiB))
        XCTAssertGreaterThan(a.maxRSSKiB, 0, "no rusage")
        XCTAssertLessThan(longMiB, shortMiB + 40, "memory grows with the length of the piece")

        // Complete files.
        let shortWet = try AudioFile.read(dir.appendingPathComponent("short.wav"))
        let shortDry = try AudioFile.read(dir.appendingPathComponent("short-dry.wav"))
        let longWet = try AudioFile.read(dir.appendingPathComponent("long.wav"))
        let longDry = try AudioFile.read(dir.appendingPathComponent("long-dry.wav"))
        for (f, seconds) in [(shortWet, shortSeconds), (shortDry, shortSeconds), (longWet, longSeconds), (longDry, longSeconds)] {
            XCTAssertEqual(f.sampleRate, rate)
            XCTAssertEqual(f.channels, 1)
            XCTAssertEqual(f.frames, seconds * rate)
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix(".") }, [],
                       "temporary files left")

        // The short one is exactly what the array API renders.
        var job = RenderJob(midi: short, output: dir.appendingPathComponent("unused.wav"))
        job.weights = weights
        job.settings.sampleRate = Double(rate)
        let prepared = try job.prepare()
        let expected = try OfflineRenderer.render(midi: prepared.midiFile, model: prepared.model, settings: prepared.settings)
        XCTAssertEqual(expected.wet.count, shortWet.frames)
        XCTAssertTrue(expected.wet == shortWet.samples, "wet file differs from the array render")
        XCTAssertTrue(expected.dry == shortDry.samples, "dry file differs from the array render")

        // The engine is causal: the long piece starts like the short one (same events until
        // 9.5 s), and its last figure sounds.
        let head = 9 * rate
        XCTAssertTrue(longWet.samples[0..<head] == shortWet.samples[0..<head], "long render's beginning differs")
        XCTAssertTrue(longDry.samples[0..<head] == shortDry.samples[0..<head], "long dry render's beginning differs")
        let tail = longWet.samples[(longWet.frames - rate)...]
        XCTAssertTrue(tail.allSatisfy(\.isFinite))
        XCTAssertGreaterThan(tail.map(abs).max() ?? 0, 1e-3, "the last second is silent")
    }

    // MARK: Normalisation

    /// `--normalize` renders to float scratch files and rescales them block by block: the
    /// values are those of scaling the whole array (f32 exactly, s16 within rounding), wet and
    /// dry each to its own peak, and the reported peak is the target level.
    func testNormalizeMatchesWholeArrayScaling() throws {
        let weights = try requireBundledWeights()
        let midi = try file("short.mid", Self.figureMIDI(seconds: 4))
        var base = RenderJob(midi: midi, output: dir.appendingPathComponent("unused.wav"))
        base.weights = weights
        let prepared = try base.prepare()
        let expected = try OfflineRenderer.render(midi: prepared.midiFile, model: prepared.model, settings: prepared.settings)
        let level = -1.0
        func scaled(_ x: [Float]) -> [Float] {
            var peak: Float = 0
            for v in x where v.isFinite { peak = max(peak, abs(v)) }
            let gain = Float(pow(10, level / 20)) / peak
            return x.map { $0 * gain }
        }
        let wet = scaled(expected.wet), dry = scaled(expected.dry)
        for format in [AudioFormat.f32, .s16] {
            var job = base
            job.output = dir.appendingPathComponent("norm-\(format.rawValue).wav")
            job.dryOutput = dir.appendingPathComponent("norm-\(format.rawValue)-dry.wav")
            job.format = format
            job.normalize = level
            let summary = try job.render(try job.prepare())
            XCTAssertEqual(summary.audioSeconds, 4, accuracy: 1e-9)
            XCTAssertEqual(Double(summary.peak), pow(10, level / 20), accuracy: 1e-5)
            XCTAssertEqual(summary.wet.clippedSamples, 0)
            let gotWet = try AudioFile.read(job.output).samples, gotDry = try AudioFile.read(job.dryOutput!).samples
            XCTAssertEqual(gotWet.count, wet.count)
            XCTAssertEqual(gotDry.count, dry.count)
            switch format {
            case .f32:
                XCTAssertTrue(gotWet == wet, "normalised wet differs")
                XCTAssertTrue(gotDry == dry, "normalised dry differs")
            default:
                func quantized(_ x: Float) -> Float { min(max((x * 32768).rounded(), -32768), 32767) / 32768 }
                XCTAssertEqual(zip(gotWet, wet).map { abs($0 - quantized($1)) }.max() ?? 0, 0)
                XCTAssertEqual(zip(gotDry, dry).map { abs($0 - quantized($1)) }.max() ?? 0, 0)
            }
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix(".") }, [],
                       "temporary files left")
    }

    // MARK: Dry only on demand, no allocation per block

    /// A sink that does not want the dry mix gets none (the engine does not compute it), and the
    /// wet signal is the same. The render loop allocates nothing per block.
    func testDryOnlyWhenAskedAndNoAllocationPerBlock() throws {
        let weights = try requireBundledWeights()
        let midi = try file("short.mid", Self.figureMIDI(seconds: 4))
        var job = RenderJob(midi: midi, output: dir.appendingPathComponent("unused.wav"))
        job.weights = weights
        job.settings.sampleRate = 48_000
        let prepared = try job.prepare()
        let both = try OfflineRenderer.render(midi: prepared.midiFile, model: prepared.model, settings: prepared.settings)
        var wetOnly = RenderCollector(dry: false)
        try OfflineRenderer.render(midi: prepared.midiFile, model: prepared.model, settings: prepared.settings, into: &wetOnly)
        XCTAssertEqual(wetOnly.output.dry, [])
        XCTAssertTrue(wetOnly.output.wet == both.wet)
        XCTAssertEqual(both.dry.count, both.wet.count)

        /// Counts the allocator calls of the render loop between its 20th and its last block.
        final class CountingSink: RenderSink {
            let wantsDry: Bool
            var blocks = 0, expectedBlocks = 0, samples = 0, block: Int
            var allocations: Int64 = -1
            init(dry: Bool, block: Int) { wantsDry = dry; self.block = block }
            func begin(sampleRate: Int, length: Int) { expectedBlocks = length / block }
            func write(wet: UnsafeBufferPointer<Float>, dry: UnsafeBufferPointer<Float>?) {
                precondition((dry != nil) == wantsDry && (dry?.count ?? wet.count) == wet.count)
                blocks += 1
                samples += wet.count
                if blocks == 20 { malloc_counter_start() }
                if blocks == expectedBlocks - 1 { allocations = malloc_counter_stop() }
            }
        }
        for dry in [false, true] {
            let sink = CountingSink(dry: dry, block: prepared.settings.blockSize)
            var s = sink
            try OfflineRenderer.render(midi: prepared.midiFile, model: prepared.model, settings: prepared.settings, into: &s)
            print("render loop, dry \(dry): \(sink.allocations) allocator calls in \(sink.expectedBlocks - 21) blocks")
            XCTAssertEqual(sink.samples, both.wet.count)
            XCTAssertEqual(sink.allocations, 0, "allocations per block (dry \(dry))")
        }
    }

    /// The file writer converts in fixed chunks: writing block by block gives the file and the
    /// report of one whole write, and allocates nothing per block.
    func testFileWriterInBlocksEqualsWholeWrite() throws {
        var x = [Float](repeating: 0, count: 200_003)
        for i in x.indices { x[i] = 1.3 * sin(Float(i) * 0.001) }
        x[5] = .nan
        for format in AudioFormat.allCases {
            let whole = dir.appendingPathComponent("whole-\(format.rawValue).wav")
            let blocks = dir.appendingPathComponent("blocks-\(format.rawValue).wav")
            let expected = try AudioFile.write(x, sampleRate: 48_000, format: format, to: whole)
            let writer = try AudioFileWriter(url: blocks, sampleRate: 48_000, format: format)
            var allocations: Int64 = 0
            try x.withUnsafeBufferPointer { all in
                var start = 0, n = 0
                while start < all.count {
                    if n == 600 { malloc_counter_start() }
                    let end = min(all.count, start + 257)
                    try writer.write(UnsafeBufferPointer(rebasing: all[start..<end]))
                    start = end
                    n += 1
                }
                allocations = malloc_counter_stop()
            }
            XCTAssertFalse(FileManager.default.fileExists(atPath: blocks.path), "the file appeared before finish()")
            let report = try writer.finish()
            XCTAssertEqual(report, expected)
            XCTAssertEqual(try AudioFile.read(blocks).samples, try AudioFile.read(whole).samples)
            XCTAssertEqual(allocations, 0, "writer allocations per block (\(format.rawValue))")
        }
        // Cancelled or dropped unfinished: nothing appears, an existing file stays.
        let keep = try file("keep.wav", Array("old".utf8))
        let w = try AudioFileWriter(url: keep, sampleRate: 48_000, format: .f32)
        try x.withUnsafeBufferPointer { try w.write($0) }
        w.cancel()
        XCTAssertEqual(try Data(contentsOf: keep), Data("old".utf8))
        do {
            let dropped = try AudioFileWriter(url: dir.appendingPathComponent("dropped.wav"), sampleRate: 48_000, format: .s16)
            try x.withUnsafeBufferPointer { try dropped.write($0) }
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("dropped.wav").path))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix(".") }, [],
                       "temporary files left")
    }

    // MARK: Interruption

    /// SIGINT while the file is being written: no output, no temporary file, and the existing
    /// file is untouched.
    func testInterruptedRenderLeavesNothing() throws {
        let weights = try requireBundledWeights()
        let midi = try file("long.mid", Self.figureMIDI(seconds: 120))
        let out = try file("out.wav", Array("old".utf8))
        let before = Set(try FileManager.default.contentsOfDirectory(atPath: dir.path))
        let child = try start(["render", "--weights", weights.path, "--dry-output", dir.appendingPathComponent("dry.wav").path,
                               midi.path, out.path])
        // Wait until the streaming writer's temporary file exists (the render has started).
        let deadline = Date().addingTimeInterval(20)
        var sawTemporary = false
        while Date() < deadline {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
            if names.contains(where: { $0.hasPrefix(".out.wav.tmp-") }) { sawTemporary = true; break }
            usleep(20_000)
        }
        usleep(300_000)
        kill(child.pid, SIGINT)
        let (r, _) = try wait(child)
        XCTAssertTrue(sawTemporary, "no temporary output file seen while rendering")
        XCTAssertEqual(r.signal, SIGINT, "status \(r.exitStatus), stderr: \(r.stderr)")
        XCTAssertEqual(Set(try FileManager.default.contentsOfDirectory(atPath: dir.path)), before)
        XCTAssertEqual(try Data(contentsOf: out), Data("old".utf8))
    }
}
