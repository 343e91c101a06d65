import DDSPPiano
import Foundation
import PianoFormats
import PianoIO
import PianoTestKit
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Runs `ddsp-piano weights ...` as a real process in a temporary folder, and serves files
/// over local HTTP; the base of the weights command tests (it has no tests of its own).
class WeightsCLITestCase: XCTestCase {
    var temp: URL!

    override func setUpWithError() throws {
        temp = FileManager.default.temporaryDirectory.appendingPathComponent("ddsp-weights-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: temp, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: temp)
    }

    // MARK: - Running the executable

    /// The built `ddsp-piano`, next to the test bundle in the build products directory.
    static func executable() throws -> URL {
        if let url = TestKit.findExecutable("ddsp-piano") { return url }
        XCTFail("ddsp-piano executable not found beside the tests (looked in \(TestKit.productDirectories.map(\.path)))")
        throw XCTSkip("no executable")
    }

    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    func ddsp(_ args: [String], environment extra: [String: String] = [:], timeout: TimeInterval = 120) throws -> Result {
        let p = Process()
        p.executableURL = try Self.executable()
        p.arguments = args
        var env = ProcessInfo.processInfo.environment
        // Never let a proxy sit between the client and the local test server.
        env["no_proxy"] = "127.0.0.1,localhost"
        env["NO_PROXY"] = "127.0.0.1,localhost"
        // Keep the user's installed weights out of reach unless a test sets its own.
        env["XDG_DATA_HOME"] = temp.appendingPathComponent("xdg-default").path
        env["XDG_CACHE_HOME"] = temp.appendingPathComponent("xdg-cache").path
        env.removeValue(forKey: WeightStore.environmentVariable)
        env.removeValue(forKey: WeightRelease.baseURLEnvironmentVariable)
        for (k, v) in extra { env[k] = v }
        p.environment = env
        let out = temp.appendingPathComponent("stdout-\(UUID().uuidString)")
        let err = temp.appendingPathComponent("stderr-\(UUID().uuidString)")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        _ = FileManager.default.createFile(atPath: err.path, contents: nil)
        let outHandle = try FileHandle(forWritingTo: out), errHandle = try FileHandle(forWritingTo: err)
        p.standardOutput = outHandle
        p.standardError = errHandle
        p.standardInput = FileHandle.nullDevice
        try p.run()
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning, Date() < deadline { usleep(20_000) }
        if p.isRunning {
            p.terminate()
            p.waitUntilExit()
            XCTFail("ddsp-piano \(args) did not finish in \(timeout) s")
        }
        p.waitUntilExit()
        try outHandle.close()
        try errHandle.close()
        let result = Result(status: p.terminationStatus,
                            stdout: try String(contentsOf: out, encoding: .utf8),
                            stderr: try String(contentsOf: err, encoding: .utf8))
        try? FileManager.default.removeItem(at: out)
        try? FileManager.default.removeItem(at: err)
        return result
    }

    /// A user error: non-zero exit, exactly one line `ddsp-piano: ...` on stderr, no crash trace.
    func assertOneLineError(_ r: Result, contains parts: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertNotEqual(r.status, 0, "expected failure; stdout: \(r.stdout)", file: file, line: line)
        let lines = r.stderr.split(separator: "\n", omittingEmptySubsequences: true)
        XCTAssertEqual(lines.count, 1, "stderr: \(r.stderr)", file: file, line: line)
        XCTAssertTrue(r.stderr.hasPrefix("ddsp-piano: "), r.stderr, file: file, line: line)
        for part in parts { XCTAssertTrue(r.stderr.contains(part), "'\(part)' not in: \(r.stderr)", file: file, line: line) }
        for crash in ["Fatal error", "Stack dump", "Illegal instruction", "Segmentation"] {
            XCTAssertFalse(r.stderr.contains(crash), r.stderr, file: file, line: line)
        }
        print("error line: \(r.stderr.trimmingCharacters(in: .newlines))")
    }

    // MARK: - A local HTTP server

    /// `python3 -m http.server` on 127.0.0.1 serving `dir`, stopped when the test ends.
    func startServer(serving dir: URL) throws -> (base: String, process: Process) {
        guard let python = ["/usr/bin/python3", "/usr/local/bin/python3"].first(where: { FileManager.default.isExecutableFile(atPath: $0) })
            ?? ProcessInfo.processInfo.environment["PATH"]?.split(separator: ":").map({ "\($0)/python3" }).first(where: { FileManager.default.isExecutableFile(atPath: $0) })
        else { throw XCTSkip("skipped: python3 not found for the local HTTP server") }
        let port = try Self.freePort()
        let p = Process()
        p.executableURL = URL(fileURLWithPath: python)
        p.arguments = ["-m", "http.server", "--bind", "127.0.0.1", String(port), "--directory", dir.path]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        addTeardownBlock {
            if p.isRunning { p.terminate() }
            p.waitUntilExit()
        }
        let deadline = Date().addingTimeInterval(15)
        while !Self.canConnect(port) {
            guard p.isRunning, Date() < deadline else { throw XCTSkip("skipped: the local HTTP server did not start") }
            usleep(50_000)
        }
        return ("http://127.0.0.1:\(port)/", p)
    }

    static func loopback(_ port: UInt16) -> sockaddr_in {
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        return addr
    }

    static func freePort() throws -> UInt16 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = loopback(0)
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        guard ok else { throw XCTSkip("skipped: cannot bind a port on 127.0.0.1") }
        return UInt16(bigEndian: addr.sin_port)
    }

    static func canConnect(_ port: UInt16) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = loopback(port)
        return withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }

}

/// `ddsp-piano weights ...` run as a real process, and the WeightStore it relies on.
final class WeightsCommandTests: WeightsCLITestCase {
    static func assertSameTensors(_ a: PianoWeights, _ b: PianoWeights, file: StaticString = #filePath, line: UInt = #line) {
        let ta = a.safetensors().tensors, tb = b.safetensors().tensors
        XCTAssertEqual(Set(ta.keys), Set(tb.keys), file: file, line: line)
        var mismatches = 0
        for (name, t) in ta {
            XCTAssertEqual(t.shape, tb[name]?.shape, name, file: file, line: line)
            mismatches += zip(t.values, tb[name]?.values ?? []).filter { $0.bitPattern != $1.bitPattern }.count
        }
        XCTAssertEqual(mismatches, 0, file: file, line: line)
    }

    func copyUpstream(to dir: URL, flipDataByte: Bool = false) throws {
        let source = try TFCheckpointTests.upstreamDirectory()
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        for file in WeightRelease.dafx22.files {
            var bytes = try Data(contentsOf: source.appendingPathComponent(file.name))
            if flipDataByte, file.name.contains(".data-") { bytes[1_000_000] ^= 0x01 }
            try bytes.write(to: dir.appendingPathComponent(file.name))
        }
    }

    // MARK: - import

    func testImportMatchesRawCheckpoint() throws {
        let source = try TFCheckpointTests.upstreamDirectory()
        let out = temp.appendingPathComponent("dafx22.safetensors")
        let r = try ddsp(["weights", "import", source.path, "-o", out.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("10 instruments, 521,507 parameters"), r.stdout)
        let (meta, weights) = try WeightStore.read(out)
        Self.assertSameTensors(weights, try Fixtures.dafx22Weights())
        XCTAssertEqual(weights.instruments, PianoWeights.dafx22Instruments)
        XCTAssertEqual(meta["instruments"], PianoWeights.dafx22Instruments.joined(separator: ","))
        for file in WeightRelease.dafx22.files { XCTAssertEqual(meta["sha256." + file.name], file.sha256) }
        XCTAssertEqual(meta["release"], "dafx22")
        // A pinned release converts to the same bytes wherever and whenever: its origin, no
        // local path, no date.
        XCTAssertEqual(meta["source"], WeightRelease.dafx22.baseURL)
        XCTAssertEqual(meta["upstream_commit"], WeightRelease.upstreamCommit)
        XCTAssertNil(meta["imported"])
        XCTAssertFalse(meta.values.contains { $0.contains(source.path) }, "a local path in the metadata")
        print("weights import: \(weights.parameterCount) parameters, all tensors bit-identical to checkpoint_raw")

        // The bundled copy is this import, byte for byte (and the fetch test shows fetch gives it too).
        let imported = try Data(contentsOf: out)
        let bundled = TestKit.packageRoot.appendingPathComponent("weights/dafx22.safetensors")
        XCTAssertTrue(imported == (try Data(contentsOf: bundled)), "weights/dafx22.safetensors differs from 'weights import' of ../shared's upstream checkpoint")
        let again = temp.appendingPathComponent("dafx22-again.safetensors")
        XCTAssertEqual(try ddsp(["weights", "import", source.path, "-o", again.path]).status, 0)
        XCTAssertTrue(imported == (try Data(contentsOf: again)), "two imports differ")
        print("weights import of the upstream checkpoint: \(imported.count) bytes, identical to the bundled weights/dafx22.safetensors and to a second import")

        // The prefix path and the .index path name the same checkpoint.
        for path in [source.appendingPathComponent("ckpt-0").path, source.appendingPathComponent("ckpt-0.index").path] {
            let out2 = temp.appendingPathComponent("again.safetensors")
            let r2 = try ddsp(["weights", "import", path, "-o", out2.path, "--instruments", "a,b,c,d,e,f,g,h,i,j"])
            XCTAssertEqual(r2.status, 0, r2.stderr)
            let w2 = try WeightStore.load(out2)
            XCTAssertEqual(w2.instruments, ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"])
            Self.assertSameTensors(w2, weights)
        }
    }

    func testImportErrors() throws {
        let source = try TFCheckpointTests.upstreamDirectory()
        let out = temp.appendingPathComponent("never.safetensors")
        assertOneLineError(try ddsp(["weights", "import", source.path, "-o", out.path, "--instruments", "a,b"]),
                           contains: ["10 instruments but 2 names"])
        let missing = temp.appendingPathComponent("nothing-here").path
        assertOneLineError(try ddsp(["weights", "import", missing, "-o", out.path]), contains: [missing, "no such file"])
        assertOneLineError(try ddsp(["weights", "import", temp.path, "-o", out.path]), contains: [temp.path, "not a TensorFlow checkpoint"])

        // A damaged data file: the tensor checksum names the file's prefix and the tensor.
        let damaged = temp.appendingPathComponent("damaged")
        try copyUpstream(to: damaged, flipDataByte: true)
        assertOneLineError(try ddsp(["weights", "import", damaged.path, "-o", out.path]), contains: ["crc32c mismatch", "ckpt-0"])
        // A truncated data file, and a missing one.
        let data = damaged.appendingPathComponent("ckpt-0.data-00000-of-00001")
        try Data(try Data(contentsOf: source.appendingPathComponent("ckpt-0.data-00000-of-00001")).prefix(1000)).write(to: data)
        assertOneLineError(try ddsp(["weights", "import", damaged.path, "-o", out.path]), contains: ["outside data shard 0"])
        try FileManager.default.removeItem(at: data)
        assertOneLineError(try ddsp(["weights", "import", damaged.path, "-o", out.path]), contains: [data.path, "data shard not found"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.path))
    }

    // MARK: - the bundled paper pianos (every clone, no ../shared, no network)

    func testBundledPaperPianosPlayOutOfTheBox() throws {
        let bundled = TestKit.packageRoot.appendingPathComponent("weights/dafx22.safetensors")
        let (meta, weights) = try WeightStore.read(bundled)
        XCTAssertEqual(weights.instruments, PianoWeights.dafx22Instruments)
        XCTAssertEqual(weights.parameterCount, 521_507)
        XCTAssertEqual(meta["release"], "dafx22")
        XCTAssertEqual(meta["source"], WeightRelease.dafx22.baseURL)
        XCTAssertEqual(meta["upstream_commit"], WeightRelease.upstreamCommit)
        XCTAssertNil(meta["imported"], "a date in the bundled file")
        for file in WeightRelease.dafx22.files { XCTAssertEqual(meta["sha256." + file.name], file.sha256, file.name) }

        // The default lookup with nothing installed finds it, and render plays the 2018 piano.
        let out = temp.appendingPathComponent("arpeggios.wav")
        let r = try ddsp(["render", TestKit.packageRoot.appendingPathComponent("examples/arpeggios.mid").path, out.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        print("quick start: \(r.stdout.trimmingCharacters(in: .newlines))")
        XCTAssertTrue(r.stdout.contains("dafx22 model, piano 2018"), r.stdout)

        // All ten pianos play, each its own sound.
        let midi = try MIDIFile(bytes: RenderStreamingTests.figureMIDI(seconds: 2))
        let model = PianoModel(weights: weights)
        var renders: [[Float]] = []
        for piano in 0..<10 {
            var settings = RenderSettings()
            settings.instrument = piano
            settings.noise = false
            let wet = try OfflineRenderer.render(midi: midi, model: model, settings: settings).wet
            let peak = wet.map { abs($0) }.max() ?? 0
            print(String(format: "bundled piano %@: peak %.1f dBFS over %d samples", weights.instruments[piano], 20 * log10(Double(peak)), wet.count))
            XCTAssertTrue(wet.allSatisfy(\.isFinite))
            XCTAssertGreaterThan(peak, 0.01, "piano \(piano) is (nearly) silent")
            XCTAssertLessThan(peak, 2, "piano \(piano) is far beyond full scale")
            renders.append(wet)
        }
        for a in 0..<10 { for b in (a + 1)..<10 {
            let d = zip(renders[a], renders[b]).map { abs($0 - $1) }.max() ?? 0
            XCTAssertGreaterThan(d, 1e-3, "pianos \(a) and \(b) sound the same")
        } }
    }

    // MARK: - info

    func testInfo() throws {
        let file = temp.appendingPathComponent("w.safetensors")
        try WeightStore.install(try Fixtures.dafx22Weights(), at: file)
        let r = try ddsp(["weights", "info", file.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        for year in PianoWeights.dafx22Instruments { XCTAssertTrue(r.stdout.contains(year), year) }
        for part in ["architecture: dafx22", "sample rate: 16000 Hz", "frame rate: 250", "parameters: 521,507",
                     "  9  2018", "reverb.impulse_responses", "[10, 24000]", "mono.gru.kernel", "[128, 576]"] {
            XCTAssertTrue(r.stdout.contains(part), "'\(part)' not in:\n\(r.stdout)")
        }
        for name in PianoWeights.tensorNames { XCTAssertTrue(r.stdout.contains(name), name) }

        // Without a file: the one $DDSP_PIANO_WEIGHTS names.
        let r2 = try ddsp(["weights", "info"], environment: [WeightStore.environmentVariable: file.path])
        XCTAssertEqual(r2.status, 0, r2.stderr)
        XCTAssertTrue(r2.stdout.hasPrefix("file: \(file.path) ($DDSP_PIANO_WEIGHTS)"), r2.stdout)
    }

    func testInfoErrors() throws {
        let missing = temp.appendingPathComponent("missing.safetensors").path
        assertOneLineError(try ddsp(["weights", "info", missing]), contains: ["ddsp-piano: \(missing): no such file"])
        let garbage = temp.appendingPathComponent("garbage.safetensors")
        try Data((0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 37) }).write(to: garbage)
        assertOneLineError(try ddsp(["weights", "info", garbage.path]), contains: ["ddsp-piano: \(garbage.path): not a valid safetensors weight file"])
        // A valid container missing a tensor, and a truncated real file.
        var file = try Fixtures.dafx22Weights().safetensors()
        file.tensors["mono.gru.kernel"] = nil
        let incomplete = temp.appendingPathComponent("incomplete.safetensors")
        try Data(file.serialized()).write(to: incomplete)
        assertOneLineError(try ddsp(["weights", "info", incomplete.path]), contains: ["\(incomplete.path): missing tensor 'mono.gru.kernel'"])
        let truncated = temp.appendingPathComponent("truncated.safetensors")
        try Data(try Fixtures.dafx22Weights().safetensors().serialized().prefix(5000)).write(to: truncated)
        assertOneLineError(try ddsp(["weights", "info", truncated.path]), contains: ["\(truncated.path): "])
        assertOneLineError(try ddsp(["weights", "info", temp.path]), contains: ["\(temp.path): is a directory"])
        // Nothing installed, nothing given (unless this checkout or system bundles weights).
        let noWeights = try ddsp(["weights", "info"], environment: ["XDG_DATA_HOME": temp.appendingPathComponent("empty").path])
        if WeightStore(environment: [:], executableURL: try Self.executable()).bundledFiles().isEmpty {
            assertOneLineError(noWeights, contains: ["weights fetch dafx22"])
        } else {
            XCTAssertTrue(noWeights.stdout.contains("(bundled weights)"), noWeights.stdout + noWeights.stderr)
        }
    }

    // MARK: - fetch against a local HTTP server

    func testFetchInstallsVerifiedWeights() throws {
        let served = temp.appendingPathComponent("served")
        try copyUpstream(to: served)
        let (base, _) = try startServer(serving: served)
        let expected = try Fixtures.dafx22Weights()

        // -o into a temporary folder (created on demand).
        let out = temp.appendingPathComponent("out/nested/dafx22.safetensors")
        let r = try ddsp(["weights", "fetch", "dafx22", "-o", out.path, "--base-url", base])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("installed \(out.path)"), r.stdout)
        XCTAssertEqual(r.stderr, "", "no progress output when stderr is not a terminal")
        let (meta, weights) = try WeightStore.read(out)
        Self.assertSameTensors(weights, expected)
        XCTAssertEqual(meta["source"], WeightRelease.dafx22.baseURL, "the release's origin, whichever mirror served it")
        XCTAssertEqual(meta["release"], "dafx22")
        let bundled = TestKit.packageRoot.appendingPathComponent("weights/dafx22.safetensors")
        XCTAssertTrue(try Data(contentsOf: out) == (try Data(contentsOf: bundled)), "fetch dafx22 differs from the bundled weights/dafx22.safetensors")
        XCTAssertEqual(meta["sha256.ckpt-0.data-00000-of-00001"], WeightRelease.dafx22.files[2].sha256)

        // The default location, under $XDG_DATA_HOME, with the mirror from the environment.
        let xdg = temp.appendingPathComponent("xdg")
        let installed = xdg.appendingPathComponent("ddsp-piano/weights/dafx22.safetensors")
        let env = ["XDG_DATA_HOME": xdg.path, WeightRelease.baseURLEnvironmentVariable: base]
        let r2 = try ddsp(["weights", "fetch", "dafx22"], environment: env)
        XCTAssertEqual(r2.status, 0, r2.stderr)
        XCTAssertTrue(r2.stdout.contains("installed \(installed.path)"), r2.stdout)
        Self.assertSameTensors(try WeightStore.load(installed), expected)
        XCTAssertEqual(WeightStore(environment: ["XDG_DATA_HOME": xdg.path], executableURL: nil, systemDirectories: []).installedURL, installed)
        // ...which `weights info` then finds by itself.
        let info = try ddsp(["weights", "info"], environment: env)
        XCTAssertTrue(info.stdout.hasPrefix("file: \(installed.path) (installed weights)"), info.stdout)
        // Fetching again replaces it atomically.
        let r3 = try ddsp(["weights", "fetch", "dafx22"], environment: env)
        XCTAssertEqual(r3.status, 0, r3.stderr)
        XCTAssertTrue(r3.stdout.contains("replaced \(installed.path)"), r3.stdout)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: installed.deletingLastPathComponent().path), ["dafx22.safetensors"])
        // URLSession's empty cookie and cache folders are not left behind.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: xdg.path), ["ddsp-piano"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: temp.appendingPathComponent("xdg-cache").path))

        // A folder path works as a mirror too (file URLs).
        let out4 = temp.appendingPathComponent("from-folder.safetensors")
        let r4 = try ddsp(["weights", "fetch", "dafx22", "-o", out4.path, "--base-url", served.path])
        XCTAssertEqual(r4.status, 0, r4.stderr)
        Self.assertSameTensors(try WeightStore.load(out4), expected)
    }

    func testFetchFailuresInstallNothing() throws {
        let served = temp.appendingPathComponent("served")
        try copyUpstream(to: served, flipDataByte: true)
        let (base, _) = try startServer(serving: served)
        let dataName = "ckpt-0.data-00000-of-00001"
        let corruptHash = SHA256.hex([UInt8](try Data(contentsOf: served.appendingPathComponent(dataName))))

        // Corrupted copy: non-zero exit, names the file and both hashes, installs nothing.
        let outDir = temp.appendingPathComponent("out")
        let out = outDir.appendingPathComponent("dafx22.safetensors")
        assertOneLineError(try ddsp(["weights", "fetch", "dafx22", "-o", out.path, "--base-url", base]),
                           contains: [base + dataName, "SHA-256 mismatch", WeightRelease.dafx22.files[2].sha256!, corruptHash])
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.path))

        // A previously installed file stays byte for byte, and no temporary file is left behind.
        let xdg = temp.appendingPathComponent("xdg")
        let installed = xdg.appendingPathComponent("ddsp-piano/weights/dafx22.safetensors")
        try WeightStore.install(try Fixtures.dafx22Weights(), at: installed)
        let before = try Data(contentsOf: installed)
        assertOneLineError(try ddsp(["weights", "fetch", "dafx22", "--base-url", base], environment: ["XDG_DATA_HOME": xdg.path]),
                           contains: ["SHA-256 mismatch"])
        XCTAssertEqual(try Data(contentsOf: installed), before)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: installed.deletingLastPathComponent().path), ["dafx22.safetensors"])

        // A missing file (404).
        try FileManager.default.removeItem(at: served.appendingPathComponent("ckpt-0.index"))
        assertOneLineError(try ddsp(["weights", "fetch", "dafx22", "-o", out.path, "--base-url", base]),
                           contains: [base + "ckpt-0.index", "HTTP 404"])
        // Nothing listening: connection refused.
        let closed = try Self.freePort()
        assertOneLineError(try ddsp(["weights", "fetch", "dafx22", "-o", out.path, "--base-url", "http://127.0.0.1:\(closed)/x/"]),
                           contains: ["http://127.0.0.1:\(closed)/x/checkpoint", "cannot connect"])
        // Unknown release name.
        assertOneLineError(try ddsp(["weights", "fetch", "v9", "-o", out.path]), contains: ["v9: unknown weights (available: v2, dafx22)"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: outDir.path))
        XCTAssertEqual(try Data(contentsOf: installed), before)
    }

    // MARK: - WeightStore

    func testSearchOrder() throws {
        let fm = FileManager.default
        let explicit = temp.appendingPathComponent("explicit.safetensors")
        let fromEnv = temp.appendingPathComponent("env.safetensors")
        let xdg = temp.appendingPathComponent("xdg")
        let checkout = temp.appendingPathComponent("checkout")
        let exe = checkout.appendingPathComponent(".build/debug/ddsp-piano")
        let bundled = checkout.appendingPathComponent("weights/dafx22.safetensors")
        let system = temp.appendingPathComponent("usr-share")
        for f in [explicit, fromEnv, bundled, system.appendingPathComponent("other.safetensors")] {
            try fm.createDirectory(at: f.deletingLastPathComponent(), withIntermediateDirectories: true)
            _ = fm.createFile(atPath: f.path, contents: Data([0]))
        }
        try fm.createDirectory(at: exe.deletingLastPathComponent(), withIntermediateDirectories: true)
        _ = fm.createFile(atPath: checkout.appendingPathComponent("weights/a-first-by-name.safetensors").path, contents: Data([0]))

        var store = WeightStore(environment: ["XDG_DATA_HOME": xdg.path, "DDSP_PIANO_WEIGHTS": fromEnv.path],
                                executableURL: exe, systemDirectories: [system])
        XCTAssertEqual(try store.locate(explicit: explicit.path), .init(url: explicit, origin: .explicit))
        XCTAssertEqual(try store.locate(), .init(url: fromEnv, origin: .environment))
        store.environment["DDSP_PIANO_WEIGHTS"] = temp.appendingPathComponent("gone").path
        XCTAssertThrowsError(try store.locate()) { XCTAssertTrue("\($0)".contains("no such file (set by $DDSP_PIANO_WEIGHTS)"), "\($0)") }
        XCTAssertThrowsError(try store.locate(explicit: temp.appendingPathComponent("gone2").path)) { XCTAssertTrue("\($0)".hasSuffix("gone2: no such file"), "\($0)") }
        store.environment["DDSP_PIANO_WEIGHTS"] = nil
        // Bundled: the checkout's weights/ folder (dafx22 first), then system folders.
        XCTAssertEqual(try store.locate(), .init(url: bundled, origin: .bundled))
        XCTAssertEqual(store.bundledFiles().map(\.lastPathComponent), ["dafx22.safetensors", "a-first-by-name.safetensors", "other.safetensors"])
        try fm.createDirectory(at: store.dataDirectory, withIntermediateDirectories: true)
        _ = fm.createFile(atPath: store.installedURL.path, contents: Data([0]))
        XCTAssertEqual(try store.locate(), .init(url: xdg.appendingPathComponent("ddsp-piano/weights/dafx22.safetensors"), origin: .installed))
        // XDG_DATA_HOME unset or relative: ~/.local/share.
        let home = WeightStore(environment: ["HOME": "/home/someone", "XDG_DATA_HOME": "relative"], executableURL: nil, systemDirectories: [])
        XCTAssertEqual(home.installedURL.path, "/home/someone/.local/share/ddsp-piano/weights/dafx22.safetensors")
        let none = WeightStore(environment: ["XDG_DATA_HOME": temp.appendingPathComponent("none").path], executableURL: nil, systemDirectories: [])
        XCTAssertThrowsError(try none.locate()) { XCTAssertTrue("\($0)".contains("weights fetch dafx22"), "\($0)") }
    }

    func testAtomicWrite() throws {
        let fm = FileManager.default
        let file = temp.appendingPathComponent("sub/w.bin")
        try WeightStore.writeAtomically([1, 2, 3], to: file)
        XCTAssertEqual([UInt8](try Data(contentsOf: file)), [1, 2, 3])
        try WeightStore.writeAtomically(Array(repeating: 9, count: 100_000), to: file)
        XCTAssertEqual(try Data(contentsOf: file).count, 100_000)
        XCTAssertEqual(try fm.contentsOfDirectory(atPath: file.deletingLastPathComponent().path), ["w.bin"])
        // A destination that cannot be replaced fails cleanly and leaves it alone.
        let dir = temp.appendingPathComponent("sub/dir.bin")
        try fm.createDirectory(at: dir, withIntermediateDirectories: true)
        XCTAssertThrowsError(try WeightStore.writeAtomically([1], to: dir)) { XCTAssertTrue("\($0)".hasSuffix("dir.bin: is a directory"), "\($0)") }
        // A folder we may not write to (skipped as root, who may write anywhere).
        if geteuid() != 0 {
            let locked = temp.appendingPathComponent("locked")
            try fm.createDirectory(at: locked, withIntermediateDirectories: true)
            try WeightStore.writeAtomically([5], to: locked.appendingPathComponent("w.bin"))
            try fm.setAttributes([.posixPermissions: 0o555], ofItemAtPath: locked.path)
            defer { try? fm.setAttributes([.posixPermissions: 0o755], ofItemAtPath: locked.path) }
            XCTAssertThrowsError(try WeightStore.writeAtomically([6, 6], to: locked.appendingPathComponent("w.bin"))) {
                XCTAssertTrue("\($0)".contains("cannot create a file"), "\($0)")
            }
            XCTAssertEqual([UInt8](try Data(contentsOf: locked.appendingPathComponent("w.bin"))), [5])
        }
        XCTAssertEqual(try fm.contentsOfDirectory(atPath: temp.appendingPathComponent("sub").path).sorted(), ["dir.bin", "w.bin"])
    }
}
