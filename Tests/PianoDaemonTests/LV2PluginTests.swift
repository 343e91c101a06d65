import DDSPPiano
import Foundation
import PianoDaemon
import PianoIO
import PianoTestKit
import XCTest

/// The LV2 instrument (`ddsp-piano.lv2`) as hosts load it: the Turtle validated against the LV2
/// specification and listed by lilv's `lv2info`; played by a small liblilv host
/// (`lv2-test-host`, Tests/LV2TestHost) in blocks of several sizes, each output compared with
/// the same engine rendering the same events offline; allocator calls inside run() counted;
/// two instances with different pianos in one process; the shared object exporting only
/// `lv2_descriptor` with the Swift runtime linked in.
final class LV2PluginTests: XCTestCase {
    static let rate = 48_000
    static let frames = 3 * rate

    /// The bundle as `make lv2` lays it out, from this build's shared object and the Turtle
    /// files in the sources, in `dir`.
    static func bundle(in dir: URL) throws -> URL {
        let products = try TestKit.executable("ddsp-piano").deletingLastPathComponent()
        let so = products.appendingPathComponent("libddsp-piano-lv2.so")
        guard FileManager.default.fileExists(atPath: so.path) else {
            // swift build and swift test build it (a product of the package): its absence is a failure.
            struct Missing: Error, CustomStringConvertible { var description: String }
            throw Missing(description: "\(so.path) is not built (swift build -c release --product ddsp-piano-lv2)")
        }
        let b = dir.appendingPathComponent("ddsp-piano.lv2", isDirectory: true)
        try FileManager.default.createDirectory(at: b, withIntermediateDirectories: true)
        let ttl = TestKit.packageRoot.appendingPathComponent("Sources/DDSPPianoLV2/ddsp-piano.lv2")
        for name in ["manifest.ttl", "ddsp-piano.ttl"] {
            try FileManager.default.copyItem(at: ttl.appendingPathComponent(name), to: b.appendingPathComponent(name))
        }
        try FileManager.default.copyItem(at: so, to: b.appendingPathComponent("ddsp-piano.so"))
        return b
    }

    /// Notes, pedal and a program change at frames no block size lines up with.
    static let events: [(Int, [UInt8])] = [
        (4_801, [0x90, 60, 90]), (7_777, [0x90, 64, 70]), (12_001, [0xB0, 64, 127]),
        (19_999, [0x80, 60, 0]), (24_013, [0x90, 67, 110]), (33_333, [0x80, 64, 0]),
        (40_000, [0xB0, 64, 0]), (52_345, [0xC0, 3, 0]), (60_001, [0x90, 48, 100]),
        (60_001, [0x90, 55, 100]), (96_000, [0x80, 48, 0]), (96_000, [0x90, 55, 0]),
        (100_000, [0x80, 67, 0]),
    ]

    static func eventsFile(in dir: URL) throws -> URL {
        let url = dir.appendingPathComponent("events.txt")
        try events.map { "\($0.0) \($0.1[0]) \($0.1[1]) \($0.1[2])" }.joined(separator: "\n")
            .write(to: url, atomically: true, encoding: .utf8)
        return url
    }

    /// The same events through the engine offline (what the plugin's core does: router, then
    /// the engine), blocks of 256, piano `piano`.
    static func render(_ model: PianoModel, piano: Int, events: [(Int, [UInt8])] = events, count: Int = frames,
                       gainDB: Float = 0, velocityGamma: Double = 1) throws -> [Float] {
        let frames = count
        var options = PianoEngine.Options()
        options.instrument = piano
        options.noise = true
        let engine = PianoEngine(model: model, options: options)
        try engine.prepare(sampleRate: Double(rate), maxBlockSize: 256)
        engine.gain = powf(10, gainDB / 20)
        let router = MIDIRouter(velocityGamma: velocityGamma, instruments: model.instruments.count)
        var out = [Float](repeating: 0, count: frames), block = [Float](repeating: 0, count: 256)
        var position = 0, next = 0
        while position < frames {
            let n = min(256, frames - position)
            var blockEvents: [EngineEvent] = []
            while next < events.count && events[next].0 < position + n {
                let e = events[next].1
                if case .play(let m) = router.route(status: e[0], data1: e[1], data2: e[2]) {
                    blockEvents.append(EngineEvent(offset: events[next].0 - position, message: m))
                }
                next += 1
            }
            block.withUnsafeMutableBufferPointer { b in
                blockEvents.withUnsafeBufferPointer { e in engine.render(events: e, into: UnsafeMutableBufferPointer(rebasing: b[0..<n])) }
            }
            out.replaceSubrange(position..<(position + n), with: block[0..<n])
            position += n
        }
        return out
    }

    struct Played { var left: [Float]; var right: [Float]; var report: [String] }

    /// Runs the test host; `pianos`: one or two instances.
    static func play(bundle: URL, dir: URL, block: Int, pianos: [Int], weights: URL,
                     environment extra: [String: String] = [:]) throws -> [Played] {
        let host = try TestKit.executable("lv2-test-host")
        let outs = pianos.indices.map { dir.appendingPathComponent("out\($0)-\(block).f32") }
        var args = [bundle.path, String(rate), String(block), String(frames), try eventsFile(in: dir).path]
        for (i, p) in pianos.enumerated() { args += [outs[i].path, String(p)] }
        let p = Process()
        p.executableURL = host
        p.arguments = args
        var env = ProcessInfo.processInfo.environment
        env["DDSP_PIANO_WEIGHTS"] = weights.path
        env.merge(extra) { $1 }
        p.environment = env
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let errText = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, "lv2-test-host: \(errText)")
        let lines = text.split(separator: "\n").map(String.init)
        return try outs.enumerated().map { i, url in
            let data = try Data(contentsOf: url)
            let samples = data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
            var l = [Float](), r = [Float]()
            for k in stride(from: 0, to: samples.count - 1, by: 2) { l.append(samples[k]); r.append(samples[k + 1]) }
            return Played(left: l, right: r, report: i < lines.count ? lines[i].split(separator: " ").map(String.init) : [])
        }
    }

    static func snr(_ a: [Float], _ reference: [Float]) -> (db: Double, exact: Int) {
        var s = 0.0, n = 0.0, exact = 0
        for (x, y) in zip(a, reference) {
            s += Double(y) * Double(y); n += Double(x - y) * Double(x - y)
            if x == y { exact += 1 }
        }
        return (10 * log10(s / max(n, 1e-30)), exact)
    }

    func testBundleValidatesAndIsListed() throws {
        guard let validate = DaemonSupport.tool("sord_validate"), let info = DaemonSupport.tool("lv2info") else {
            print("skipped: sord_validate or lv2info is not installed (sordi, lilv-utils)")
            throw XCTSkip("no LV2 tools")
        }
        let dir = try DaemonSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let b = try Self.bundle(in: dir)
        // As lv2_validate does: the bundle's Turtle with every installed LV2 specification.
        let specs = try FileManager.default.subpathsOfDirectory(atPath: "/usr/lib/lv2")
            .filter { $0.hasSuffix(".ttl") && !$0.hasPrefix("ddsp-piano") }.map { "/usr/lib/lv2/" + $0 }
        XCTAssertGreaterThan(specs.count, 20, "the LV2 specification's Turtle (lv2-dev)")
        let v = try DaemonSupport.run(validate, specs + [b.appendingPathComponent("manifest.ttl").path, b.appendingPathComponent("ddsp-piano.ttl").path])
        print("sord_validate: status \(v.status)\n\(v.output)")
        XCTAssertEqual(v.status, 0, v.output)
        XCTAssertTrue(v.output.contains("Found 0 errors"), v.output)
        var env = ProcessInfo.processInfo.environment
        env["LV2_PATH"] = dir.path + ":/usr/lib/lv2"   // the specification too: the plugin classes
        let l = try DaemonSupport.run(info, ["urn:ddsp-piano:piano"], environment: env)
        print(l.output)
        XCTAssertEqual(l.status, 0, l.output)
        for expected in ["Name:              DDSP Piano", "Class:             Instrument", "Symbol:      midi_in", "Symbol:      out_l",
                         "Symbol:      out_r", "Symbol:      piano", "Symbol:      gain", "Symbol:      velocity_curve",
                         "Symbol:      latency", "hardRTCapable", "Has latency:       yes, reported by port 6"] {
            XCTAssertTrue(l.output.contains(expected), "lv2info lacks \(expected)")
        }
    }

    func testOnlyTheDescriptorIsExportedAndTheRuntimeIsLinkedIn() throws {
        guard let nm = DaemonSupport.tool("nm"), let ldd = DaemonSupport.tool("ldd") else { throw XCTSkip("no binutils") }
        let dir = try DaemonSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let so = try Self.bundle(in: dir).appendingPathComponent("ddsp-piano.so")
        let symbols = try DaemonSupport.run(nm, ["-D", "--defined-only", so.path]).output
            .split(separator: "\n").filter { line in
                let parts = line.split(separator: " ")
                return parts.count == 3 && parts[1].uppercased() == parts[1] && parts[1] != "U"   // global (upper case)
            }
        print("exported: \(symbols)")
        XCTAssertEqual(symbols.map { String($0.split(separator: " ")[2]) }, ["lv2_descriptor"])
        let libs = try DaemonSupport.run(ldd, [so.path]).output
        print(libs)
        XCTAssertFalse(libs.contains("libswift") || libs.contains("Foundation") || libs.contains("libdispatch"),
                       "the Swift runtime is linked in: \(libs)")
        XCTAssertFalse(libs.contains("not found"), libs)
    }

    /// Blocks of 1, 64, 256 and 1024 frames: each output is the offline render of the same
    /// events (the engine is block-size invariant), no allocator call inside run(), latency.
    func testPlaysEventsAtExactFramesInAnyBlockSize() throws {
        let dir = try DaemonSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let b = try Self.bundle(in: dir)
        let (weights, _) = try DaemonSupport.bundledWeights()
        let model = try WeightStore().loadModel(explicit: weights.path).model
        let piano = model.instruments.count - 1
        let reference = try Self.render(model, piano: piano)
        let latency = try { () throws -> Int in
            var o = PianoEngine.Options()
            o.instrument = piano
            let e = PianoEngine(model: model, options: o)
            try e.prepare(sampleRate: Double(Self.rate), maxBlockSize: 256)
            return e.latencySamples
        }()
        let peak = reference.map(abs).max() ?? 0
        print("offline render: \(reference.count) samples at \(Self.rate) Hz, peak \(peak), engine latency \(latency)")
        XCTAssertGreaterThan(peak, 0.01, "the notes sound")
        for block in [1, 64, 256, 1024] {
            let played = try Self.play(bundle: b, dir: dir, block: block, pianos: [piano], weights: weights)[0]
            XCTAssertEqual(played.left.count, Self.frames)
            let (db, exact) = Self.snr(played.left, reference)
            let report = played.report
            print("LV2 plugin, blocks of \(block): SNR \(String(format: "%.1f", db)) dB against the offline render, " +
                  "\(exact) of \(Self.frames) samples bit-exact, left == right: \(played.left == played.right); host: \(report.joined(separator: " "))")
            // Measured: bit-exact for every block size (the same kernels, block-size invariant engine);
            // 100 dB (the issue's bar) leaves room for float rounding, a misplaced event measures ~0 dB.
            XCTAssertGreaterThanOrEqual(db, 100, "blocks of \(block)")
            XCTAssertEqual(played.left, played.right, "the mono model on both outputs")
            XCTAssertEqual(report.count, 9)   // run allocations N frees M blocks B latency L
            if report.count == 9 {
                XCTAssertEqual(report[2], "0", "allocations inside run(), blocks of \(block)")
                XCTAssertEqual(report[4], "0", "frees inside run(), blocks of \(block)")
                XCTAssertEqual(report[6], String((Self.frames + block - 1) / block))
                XCTAssertEqual(report[8], String(latency), "the latency port reports the engine's latency")
            }
        }
    }

    func testTwoInstancesWithDifferentPianosInOneProcess() throws {
        let dir = try DaemonSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let b = try Self.bundle(in: dir)
        let (weights, _) = try DaemonSupport.bundledWeights()
        let model = try WeightStore().loadModel(explicit: weights.path).model
        guard model.instruments.count >= 2 else { throw XCTSkip("one piano") }
        let pianos = [0, 1]
        let played = try Self.play(bundle: b, dir: dir, block: 128, pianos: pianos, weights: weights)
        XCTAssertEqual(played.count, 2)
        // The program change at 52,345 switches both to piano 3 (when there is one): compare
        // before it, where each plays its own.
        let until = 52_345
        var figures: [Double] = []
        for (i, p) in pianos.enumerated() {
            let reference = try Self.render(model, piano: p)
            let (db, _) = Self.snr(Array(played[i].left[0..<until]), Array(reference[0..<until]))
            figures.append(db)
            XCTAssertGreaterThanOrEqual(db, 100, "instance \(i) plays piano \(p)")
        }
        let (apart, _) = Self.snr(Array(played[0].left[0..<until]), Array(played[1].left[0..<until]))
        print("two instances: each against its piano's render \(figures.map { String(format: "%.1f", $0) }) dB; " +
              "against each other \(String(format: "%.1f", apart)) dB")
        XCTAssertLessThan(apart, 30, "the two instances play different pianos")
    }

    /// A patch:Set of the weights parameter loads another file through the worker (the audio
    /// thread swaps engines at the next block); the state then holds that file and the piano
    /// playing (moved by a program change), and a new instance restored from it plays that
    /// piano of that file from its first sample.
    func testWorkerLoadsWeightsAndStateRestoresThem() throws {
        let dir = try DaemonSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let b = try Self.bundle(in: dir)
        let (first, _) = try DaemonSupport.bundledWeights()   // soundfont-grands: 3 pianos
        let second = TestKit.packageRoot.appendingPathComponent("weights/dafx22.safetensors")   // 10 pianos
        let block = 256
        let played = try Self.play(bundle: b, dir: dir, block: block, pianos: [2, 0], weights: first,
                                   environment: ["LV2_TEST_HOST_STATE": "1", "LV2_TEST_HOST_SET_WEIGHTS": "0:\(second.path)"])
        XCTAssertEqual(played.count, 2)
        guard played.count == 2 else { return }
        let a = try WeightStore().loadModel(explicit: first.path).model
        let d = try WeightStore().loadModel(explicit: second.path).model
        // The first instance: piano 2 of the first file for one block, then (the worker ran
        // after it) piano 2 of the second file from its first sample, the events one block earlier.
        let shifted = Self.events.map { ($0.0 - block, $0.1) }
        let reference = Array(try Self.render(a, piano: 2, count: block))
            + (try Self.render(d, piano: 2, events: shifted, count: Self.frames - block))
        let (dbA, _) = Self.snr(played[0].left, reference)
        // The second: restored from the state (the second file; piano 3, where the program
        // change left the first), the same events.
        let restored = try Self.render(d, piano: 3)
        let (dbB, exactB) = Self.snr(played[1].left, restored)
        let (notTheControl, _) = Self.snr(Array(played[1].left[0..<52_000]), Array(try Self.render(d, piano: 0)[0..<52_000]))
        print("worker and state: the first instance after the patch:Set \(String(format: "%.1f", dbA)) dB against the render " +
              "(file switched after block 1); the restored one \(String(format: "%.1f", dbB)) dB against piano 3 of the second file " +
              "(\(exactB) bit-exact), \(String(format: "%.1f", notTheControl)) dB against its control's piano 0; " +
              "hosts: \(played.map { $0.report.joined(separator: " ") })")
        XCTAssertGreaterThanOrEqual(dbA, 100, "the worker's engine plays from the next block")
        XCTAssertGreaterThanOrEqual(dbB, 100, "the restored instance plays the saved file and piano")
        XCTAssertLessThan(notTheControl, 30, "the state's piano, not the control's")
        for p in played where p.report.count == 9 { XCTAssertEqual(p.report[2], "0", "allocations inside run()") }
    }

    /// The library opened, played, closed (lilv_world_free) and opened again in one process.
    func testLoadsAgainAfterUnloading() throws {
        let dir = try DaemonSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let b = try Self.bundle(in: dir)
        let (weights, _) = try DaemonSupport.bundledWeights()
        let model = try WeightStore().loadModel(explicit: weights.path).model
        let played = try Self.play(bundle: b, dir: dir, block: 512, pianos: [1], weights: weights,
                                   environment: ["LV2_TEST_HOST_ROUNDS": "3"])[0]
        let (db, _) = Self.snr(played.left, try Self.render(model, piano: 1))
        print("third load in one process: \(String(format: "%.1f", db)) dB against the offline render")
        XCTAssertGreaterThanOrEqual(db, 100)
    }

    /// A weight file that cannot be used: instantiation fails with one line naming the file
    /// and the problem (the host reports the failed plugin; nothing crashes).
    func testBadWeightsFailInstantiationInOneLine() throws {
        let dir = try DaemonSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let b = try Self.bundle(in: dir)
        let bad = dir.appendingPathComponent("broken.safetensors")
        try Data("not a weight file".utf8).write(to: bad)
        let host = try TestKit.executable("lv2-test-host")
        var env = ProcessInfo.processInfo.environment
        env["DDSP_PIANO_WEIGHTS"] = bad.path
        let r = try DaemonSupport.run(host, [b.path, "48000", "256", "4800", try Self.eventsFile(in: dir).path,
                                             dir.appendingPathComponent("o.f32").path, "0"], environment: env)
        let lines = r.output.split(separator: "\n").filter { $0.hasPrefix("ddsp-piano.lv2: ") }
        print("bad weights: status \(r.status); \(r.output.trimmingCharacters(in: .newlines))")
        XCTAssertEqual(r.status, 3, "the host could not instantiate the plugin")
        XCTAssertEqual(lines.count, 1, r.output)
        XCTAssertTrue(lines.first?.contains(bad.path) ?? false, "the line names the file")
    }

    /// The gain and velocity-curve controls: the output is the render with that gain and the
    /// daemon's curve (MIDIRouter's table for "soft", "hard").
    func testGainAndVelocityCurveControls() throws {
        let dir = try DaemonSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let b = try Self.bundle(in: dir)
        let (weights, _) = try DaemonSupport.bundledWeights()
        let model = try WeightStore().loadModel(explicit: weights.path).model
        let plain = try Self.render(model, piano: 0)
        for (curve, name, gain) in [(1, "soft", Float(-6)), (2, "hard", Float(3.5))] {
            let played = try Self.play(bundle: b, dir: dir, block: 256, pianos: [0], weights: weights,
                                       environment: ["LV2_TEST_HOST_GAIN": String(gain), "LV2_TEST_HOST_CURVE": String(curve)])[0]
            let gamma = try XCTUnwrap(MIDIRouter.gamma(forCurve: name))
            let reference = try Self.render(model, piano: 0, gainDB: gain, velocityGamma: gamma)
            let (db, _) = Self.snr(played.left, reference)
            let (againstPlain, _) = Self.snr(played.left, plain)
            func energy(_ x: [Float]) -> Double { x.reduce(0.0) { $0 + Double($1) * Double($1) } }
            let level: Double = 10 * log10(energy(played.left) / energy(plain))
            print("gain \(gain) dB, velocity curve \(name): \(String(format: "%.1f", db)) dB against that render, " +
                  "\(String(format: "%.1f", againstPlain)) dB against the plain one, level \(String(format: "%+.2f", level)) dB")
            XCTAssertGreaterThanOrEqual(db, 100, "gain \(gain), curve \(name)")
            XCTAssertLessThan(againstPlain, 20, "the controls change the output")
        }
    }

    /// The plugin playing a file's events equals `ddsp-piano render --live` of that file (the
    /// same engine): events at tick times that fall on exact samples (division 128 at 120 bpm:
    /// 1/256 s a tick, 375 samples every 2 ticks at 48 kHz).
    func testEqualsTheLiveRenderOfTheSameFile() throws {
        let dir = try DaemonSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let b = try Self.bundle(in: dir)
        let (weights, _) = try DaemonSupport.bundledWeights()
        let ticks: [(Int, [UInt8])] = [(26, [0x90, 60, 90]), (40, [0x90, 64, 70]), (64, [0xB0, 64, 127]),
                                        (110, [0x80, 60, 0]), (128, [0x90, 67, 110]), (180, [0x80, 64, 0]),
                                        (214, [0xB0, 64, 0]), (280, [0xC0, 1, 0]), (320, [0x90, 48, 100]),
                                        (320, [0x90, 55, 100]), (512, [0x80, 48, 0]), (512, [0x90, 55, 0]), (540, [0x80, 67, 0])]
        var track: [UInt8] = [], last = 0
        for (t, bytes) in ticks {
            var d = t - last, vlq = [UInt8(d & 0x7F)]
            d >>= 7
            while d > 0 { vlq.insert(UInt8(d & 0x7F) | 0x80, at: 0); d >>= 7 }
            track += vlq + bytes.prefix(bytes[0] & 0xF0 == 0xC0 ? 2 : 3)
            last = t
        }
        track += [0x00, 0xFF, 0x2F, 0x00]
        let n = track.count
        let midi = dir.appendingPathComponent("live.mid")
        try Data(Array("MThd".utf8) + [0, 0, 0, 6, 0, 0, 0, 1, 0, 128] + Array("MTrk".utf8)
                 + [0, 0, UInt8(n >> 8), UInt8(n & 0xFF)] + track).write(to: midi)
        let events = ticks.map { ($0.0 * 375 / 2, $0.1) }
        let eventsFile = dir.appendingPathComponent("live.txt")
        try events.map { "\($0.0) \($0.1[0]) \($0.1[1]) \($0.1[2])" }.joined(separator: "\n").write(to: eventsFile, atomically: true, encoding: .utf8)

        // Mono (the host's width 0), then the stereo image (the plugin's default width) with
        // its tuning and transposition controls, each against render --live with those flags.
        for (flags, controls) in [([String](), [String: String]()),
                                  (["--width", "0.5", "--a4", "442", "--transpose", "2"],
                                   ["LV2_TEST_HOST_WIDTH": "0.5", "LV2_TEST_HOST_A4": "442", "LV2_TEST_HOST_TRANSPOSE": "2"])] {
            let wav = dir.appendingPathComponent("live.wav")
            try? FileManager.default.removeItem(at: wav)
            let r = try DaemonSupport.run(try TestKit.executable("ddsp-piano"),
                                          ["render", "--live", "--weights", weights.path, "--piano", "2", "--sample-rate", String(Self.rate),
                                           "--duration", "3"] + flags + [midi.path, wav.path])
            print("render --live \(flags.joined(separator: " ")): \(r.output.trimmingCharacters(in: .newlines))")
            XCTAssertEqual(r.status, 0, r.output)
            let rendered = try AudioFile.read(wav)
            let stereo = !flags.isEmpty
            XCTAssertEqual(rendered.sampleRate, Self.rate)
            XCTAssertEqual(rendered.channels, stereo ? 2 : 1)
            XCTAssertEqual(rendered.frames, Self.frames)
            let c = rendered.channels
            let renderedLeft = stride(from: 0, to: rendered.samples.count, by: c).map { rendered.samples[$0] }
            let renderedRight = stride(from: c - 1, to: rendered.samples.count, by: c).map { rendered.samples[$0] }

            let host = try TestKit.executable("lv2-test-host")
            var env = ProcessInfo.processInfo.environment
            env["DDSP_PIANO_WEIGHTS"] = weights.path
            env.merge(controls) { $1 }
            let out = dir.appendingPathComponent("plugin.f32")
            let h = try DaemonSupport.run(host, [b.path, String(Self.rate), "256", String(Self.frames), eventsFile.path, out.path, "2"], environment: env)
            XCTAssertEqual(h.status, 0, h.output)
            let played = try Data(contentsOf: out).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
            let left = stride(from: 0, to: played.count, by: 2).map { played[$0] }
            let right = stride(from: 1, to: played.count, by: 2).map { played[$0] }
            let (db, exact) = Self.snr(left, renderedLeft)
            let (dbR, exactR) = Self.snr(right, renderedRight)
            print("LV2 plugin \(stereo ? "(width 0.5, a4 442, transpose 2)" : "(mono)") vs ddsp-piano render --live of the same file: left SNR \(String(format: "%.1f", db)) dB, \(exact) of \(left.count) samples bit-exact; right SNR \(String(format: "%.1f", dbR)) dB, \(exactR) bit-exact; left == right: \(left == right)")
            XCTAssertGreaterThanOrEqual(db, 100, "the plugin plays what render --live renders")
            XCTAssertGreaterThanOrEqual(dbR, 100, "the plugin plays what render --live renders (right)")
            XCTAssertEqual(left == right, !stereo, "a stereo image only with a width")
        }
    }
}
