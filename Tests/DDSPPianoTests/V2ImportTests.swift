import DDSPPiano
import Foundation
import PianoFormats
import PianoIO
import XCTest

/// `ddsp-piano weights import` of upstream's v2 checkpoint (`maestro-v2.gin`): the synthetic
/// checkpoint (real layout, synthetic values) converted bit-exactly, the layout checked against
/// the real index, corrupt checkpoints refused in one line, `weights info` of a v2 file, and the
/// default weight search order (explicit, $DDSP_PIANO_WEIGHTS, installed v2, installed dafx22, bundled).
final class V2ImportTests: WeightsCLITestCase {
    static func v2Reference() throws -> URL {
        let dir = Fixtures.reference.appendingPathComponent("v2")
        guard FileManager.default.fileExists(atPath: dir.appendingPathComponent("synthetic_ckpt").path) else {
            print("skipped: no v2 reference fixtures (\(dir.path))")
            throw XCTSkip("skipped: no v2 reference fixtures at \(dir.path)")
        }
        return dir
    }

    static let syntheticFiles = ["checkpoint", "ckpt-225000.index", "ckpt-225000.data-00000-of-00001"]
    static let dataName = "ckpt-225000.data-00000-of-00001"

    func copySynthetic(to dir: URL) throws {
        let source = try Self.v2Reference().appendingPathComponent("synthetic_ckpt")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        for name in Self.syntheticFiles {
            try Data(contentsOf: source.appendingPathComponent(name)).write(to: dir.appendingPathComponent(name))
        }
    }

    /// The value bytes a layout entry must hold: the raw checkpoint tensor (row `#k` of a GRU bias).
    static func expectedValues(_ e: V2Weights.Entry, raw: [String: Tensor]) throws -> [Float] {
        let parts = e.upstream.split(separator: "#")
        let t = try XCTUnwrap(raw[String(parts[0]) + PianoWeights.upstreamSuffix], "\(e.upstream) not in checkpoint_raw")
        guard parts.count == 2 else { return t.values }
        let row = Int(parts[1])!, width = t.shape[1]
        return Array(t.values[(row * width)..<((row + 1) * width)])
    }

    /// Imports the synthetic checkpoint with the CLI and checks every value of the written file
    /// against `checkpoint_raw.safetensors` bit for bit, and the metadata.
    func testImportSyntheticCheckpointBitExact() throws {
        let reference = try Self.v2Reference()
        let source = reference.appendingPathComponent("synthetic_ckpt")
        let out = temp.appendingPathComponent("v2.safetensors")
        let r = try ddsp(["weights", "import", source.path, "-o", out.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdout, "wrote \(out.path): v2 model (24000 Hz), 10 instruments, 344,588 parameters\n")
        print("import: \(r.stdout.trimmingCharacters(in: .newlines))")

        let (meta, file) = try WeightStore.readFileAndMetadata(out)
        guard case .v2(let w) = file else { return XCTFail("not read as v2: \(file.architecture)") }
        XCTAssertEqual(meta["architecture"], "v2")
        XCTAssertEqual(meta["sample_rate"], "24000")
        XCTAssertEqual(meta["frame_rate"], "250")
        XCTAssertEqual(meta["instruments"], PianoWeights.dafx22Instruments.joined(separator: ","))
        XCTAssertEqual(w.instruments, PianoWeights.dafx22Instruments)
        XCTAssertEqual(meta["source"], "TensorFlow checkpoint \(source.appendingPathComponent("ckpt-225000").path)")
        XCTAssertEqual(meta["importer"], "ddsp-piano weights import")
        XCTAssertNotNil(meta["imported"].flatMap { ISO8601DateFormatter().date(from: $0) })
        for name in Self.syntheticFiles {
            XCTAssertEqual(meta["sha256." + name], SHA256.hex([UInt8](try Data(contentsOf: source.appendingPathComponent(name)))), name)
        }
        XCTAssertNil(meta["release"], "synthetic weights must not be labelled as upstream's release")

        // Every tensor of the file: exactly the layout, each value bit-identical to the dump.
        let raw = try Fixtures.safetensors(reference.appendingPathComponent("checkpoint_raw.safetensors")).tensors
        let stored = try Fixtures.safetensors(out).tensors
        let layout = V2Weights.layout(instruments: 10)
        XCTAssertEqual(Set(stored.keys), Set(layout.map(\.name)))
        var compared = 0, mismatches = 0
        for e in layout {
            let t = try XCTUnwrap(stored[e.name], e.name)
            XCTAssertEqual(t.shape, e.shape, e.name)
            let expected = try Self.expectedValues(e, raw: raw)
            XCTAssertEqual(t.values.count, expected.count, e.name)
            mismatches += zip(t.values, expected).filter { $0.bitPattern != $1.bitPattern }.count
            compared += expected.count
        }
        XCTAssertEqual(mismatches, 0)
        XCTAssertEqual(compared, 344_588)
        XCTAssertEqual(w.parameterCount, 344_588)
        // The values that make the synthetic checkpoint what it is (README "How the synthetic values were made").
        XCTAssertEqual(w.releaseDuration, 1.5)
        XCTAssertEqual(w["tuning.alpha_b"].shape, [10])
        XCTAssertEqual(w["reverb.time_rev_0_sec"].values.count, 10)
        XCTAssertTrue(w["reverb.time_rev_0_sec"].values.allSatisfy { $0 > 0.32 && $0 < 0.37 }, "\(w["reverb.time_rev_0_sec"].values)")
        print("v2 import: \(compared) values in \(layout.count) tensors bit-identical to checkpoint_raw.safetensors")

        // Without -o: installed as v2.safetensors beside (not over) an installed dafx22 file.
        let xdg = temp.appendingPathComponent("xdg")
        let store = WeightStore(environment: ["XDG_DATA_HOME": xdg.path], executableURL: nil, systemDirectories: [])
        try WeightStore.install(try Fixtures.bundledWeights(), at: store.installedURL)
        let dafx22Before = try Data(contentsOf: store.installedURL)
        let r2 = try ddsp(["weights", "import", source.path], environment: ["XDG_DATA_HOME": xdg.path])
        XCTAssertEqual(r2.status, 0, r2.stderr)
        let installed = xdg.appendingPathComponent("ddsp-piano/weights/v2.safetensors")
        XCTAssertTrue(r2.stdout.hasPrefix("wrote \(installed.path): v2 model"), r2.stdout)
        XCTAssertEqual(try Fixtures.safetensors(installed).tensors, stored)
        XCTAssertEqual(try Data(contentsOf: store.installedURL), dafx22Before)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: installed.deletingLastPathComponent().path).sorted(),
                       ["dafx22.safetensors", "v2.safetensors"])
    }

    /// Keys, shapes and dtypes of the real v2 index (the data file is absent): every model key
    /// the v2 layout needs is there with the right shape and dtype, the layout uses every model
    /// key, and the synthetic checkpoint has exactly the real layout.
    func testLayoutMatchesRealIndex() throws {
        let reference = try Self.v2Reference()
        let realBytes = [UInt8](try Data(contentsOf: reference.appendingPathComponent("upstream_index/ckpt-225000.index")))
        let real = try TFCheckpoint.Index(bytes: realBytes)
        XCTAssertEqual(real.entries.count, 302)
        XCTAssertEqual(real.header.shardCount, 1)
        let byName = Dictionary(uniqueKeysWithValues: real.entries.map { ($0.name, $0) })
        let suffix = PianoWeights.upstreamSuffix
        let modelKeys = Set(real.entries.map(\.name).filter { $0.hasPrefix("model/") && $0.hasSuffix(suffix) && !$0.contains(".OPTIMIZER_SLOT") })
        XCTAssertEqual(modelKeys.count, 104)

        let layout = V2Weights.layout(instruments: 10)
        var used = Set<String>()
        var parameters = 0
        for e in layout {
            let parts = e.upstream.split(separator: "#")
            let key = String(parts[0]) + suffix
            guard let entry = byName[key] else { XCTFail("\(e.name): \(key) not in the real index"); continue }
            used.insert(key)
            XCTAssertEqual(entry.dtype, .float, key)
            XCTAssertEqual(entry.size, 4 * entry.elementCount, key)
            if parts.count == 2 {
                XCTAssertEqual(entry.shape, [2] + e.shape, key)
            } else {
                // [n, 1] embeddings are stored as [n], the scalar release time as [1].
                let expected: [[Int]] = [e.shape, e.shape + [1], e.shape == [1] ? [] : e.shape]
                XCTAssertTrue(expected.contains(entry.shape), "\(key): \(entry.shape) for \(e.name) \(e.shape)")
                XCTAssertEqual(entry.elementCount, e.shape.reduce(1, *), key)
            }
            parameters += e.shape.reduce(1, *)
        }
        XCTAssertEqual(used, modelKeys, "the v2 layout reads every model variable of the real checkpoint, and only those")
        XCTAssertEqual(parameters, 344_588)
        XCTAssertTrue(V2Weights.recognises(upstreamKeys: real.entries.map(\.name)))

        // The conversion accepts the real layout: tensors of the real index's shapes (values 1).
        var ones: [String: Tensor] = [:]
        for e in real.entries where e.dtype == .float { ones[e.name] = Tensor(shape: e.shape, repeating: 1) }
        let converted = try V2Weights(upstreamCheckpoint: ones, instruments: V2Weights.defaultInstruments)
        XCTAssertEqual(converted.parameterCount, 344_588)

        // The synthetic checkpoint: the same 302 keys with the same dtypes, shapes, offsets and
        // sizes (but the object graph), so its import reads exactly the real model keys.
        let synthetic = try TFCheckpoint.Index(bytes: [UInt8](try Data(contentsOf: reference.appendingPathComponent("synthetic_ckpt/ckpt-225000.index"))))
        XCTAssertEqual(synthetic.entries.map(\.name), real.entries.map(\.name))
        for (s, r) in zip(synthetic.entries, real.entries) where s.name != "_CHECKPOINTABLE_OBJECT_GRAPH" {
            XCTAssertEqual(s.dtype, r.dtype, s.name)
            XCTAssertEqual(s.shape, r.shape, s.name)
            XCTAssertEqual(s.offset, r.offset, s.name)
            XCTAssertEqual(s.size, r.size, s.name)
        }
        // The tuning embeddings are upstream's gin values in both (PINS.md): equal crc32c.
        for p in V2Weights.tuningParameters {
            let key = "model/inharm_model/\(p)/embeddings" + suffix
            XCTAssertEqual(synthetic.entries.first { $0.name == key }?.crc32c, byName[key]?.crc32c, key)
        }
        // The real data file's size follows from the index: it is the pinned size.
        let end = real.entries.map { $0.offset + $0.size }.max()
        XCTAssertEqual(end, 4_198_370)
        XCTAssertEqual(end, WeightRelease.v2.files.last?.size)

        // A dafx22 checkpoint is not taken for v2.
        if let dafx22 = try? TFCheckpointTests.readUpstream() {
            XCTAssertFalse(V2Weights.recognises(upstreamKeys: try TFCheckpoint.Index(bytes: dafx22.index).entries.map(\.name)))
        }
    }

    /// Damaged v2 checkpoints: one line naming the file and the problem; nothing written.
    func testCorruptCheckpointErrors() throws {
        let reference = try Self.v2Reference()
        let dir = temp.appendingPathComponent("ckpt")
        let out = temp.appendingPathComponent("never.safetensors")
        let data = dir.appendingPathComponent(Self.dataName)
        let index = dir.appendingPathComponent("ckpt-225000.index")
        let entries = try TFCheckpoint.Index(bytes: [UInt8](try Data(contentsOf: reference.appendingPathComponent("synthetic_ckpt/ckpt-225000.index")))).entries
        func entry(_ name: String) -> TFCheckpoint.Entry { entries.first { $0.name == name }! }

        // One flipped bit in a model tensor, in an optimizer slot, in the object graph: the
        // crc32c of that entry, recorded in the index, catches each.
        let film = entry("model/context_network/film_input_reshape/kernel/.ATTRIBUTES/VARIABLE_VALUE")
        let slot = entry("model/reverb_model/_early_ir/embeddings/.OPTIMIZER_SLOT/optimizer/v/.ATTRIBUTES/VARIABLE_VALUE")
        let graph = entry("_CHECKPOINTABLE_OBJECT_GRAPH")
        for (e, at) in [(film, film.offset + 1000), (slot, slot.offset + 17), (graph, graph.offset + graph.size - 3)] {
            try? FileManager.default.removeItem(at: dir)
            try copySynthetic(to: dir)
            var bytes = try Data(contentsOf: data)
            bytes[at] ^= 0x10
            try bytes.write(to: data)
            assertOneLineError(try ddsp(["weights", "import", dir.path, "-o", out.path]),
                               contains: ["ddsp-piano: \(data.path): entry '\(e.name)'", "crc32c mismatch", "the data file is corrupt"])
        }

        // A truncated data shard: how many bytes it has and needs.
        try? FileManager.default.removeItem(at: dir)
        try copySynthetic(to: dir)
        try Data(try Data(contentsOf: data).prefix(2_000_000)).write(to: data)
        assertOneLineError(try ddsp(["weights", "import", dir.path, "-o", out.path]),
                           contains: ["ddsp-piano: \(data.path): truncated: 2000000 bytes, the index needs 4198288", "outside data shard 0"])
        // An empty one.
        try Data().write(to: data)
        assertOneLineError(try ddsp(["weights", "import", dir.path, "-o", out.path]),
                           contains: ["ddsp-piano: \(data.path): truncated: 0 bytes"])
        // A missing one.
        try FileManager.default.removeItem(at: data)
        assertOneLineError(try ddsp(["weights", "import", dir.path, "-o", out.path]), contains: [data.path, "data shard not found"])

        // A damaged index: its block checksum; a truncated index: its footer.
        try? FileManager.default.removeItem(at: dir)
        try copySynthetic(to: dir)
        var indexBytes = try Data(contentsOf: index)
        indexBytes[5000] ^= 0x01
        try indexBytes.write(to: index)
        assertOneLineError(try ddsp(["weights", "import", dir.path, "-o", out.path]), contains: ["ddsp-piano: \(index.path): index:", "crc32c mismatch"])
        try Data(try Data(contentsOf: reference.appendingPathComponent("synthetic_ckpt/ckpt-225000.index")).prefix(10_000)).write(to: index)
        assertOneLineError(try ddsp(["weights", "import", dir.path, "-o", out.path]), contains: ["ddsp-piano: \(index.path): index:"])

        // A v2 checkpoint missing a model variable (an index written without it is not at hand:
        // the conversion is checked directly).
        var raw = try Fixtures.safetensors(reference.appendingPathComponent("checkpoint_raw.safetensors")).tensors
        raw["model/reverb_model/_early_ir/embeddings" + PianoWeights.upstreamSuffix] = nil
        XCTAssertThrowsError(try V2Weights(upstreamCheckpoint: raw)) {
            XCTAssertEqual("\($0)", "checkpoint has no variable 'model/reverb_model/_early_ir/embeddings' (needed for reverb.early_ir)")
        }
        // --instruments must match the 10 pianos.
        try? FileManager.default.removeItem(at: dir)
        try copySynthetic(to: dir)
        assertOneLineError(try ddsp(["weights", "import", dir.path, "-o", out.path, "--instruments", "a,b,c"]),
                           contains: ["10 instruments but 3 names"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.path))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: temp.path).filter { $0.hasSuffix(".safetensors") || $0.contains(".tmp-") }, [])
    }

    // MARK: - info

    func testInfoDescribesV2() throws {
        let reference = try Self.v2Reference()
        let xdg = temp.appendingPathComponent("xdg")
        let env = ["XDG_DATA_HOME": xdg.path]
        let imported = try ddsp(["weights", "import", reference.appendingPathComponent("synthetic_ckpt").path], environment: env)
        XCTAssertEqual(imported.status, 0, imported.stderr)
        let installed = xdg.appendingPathComponent("ddsp-piano/weights/v2.safetensors")
        let raw = try Fixtures.safetensors(reference.appendingPathComponent("checkpoint_raw.safetensors")).tensors

        let r = try ddsp(["weights", "info", installed.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        print(r.stdout)
        for part in ["file: \(installed.path)\n", "architecture: v2", "sample rate: 24000 Hz", "frame rate: 250 frames/s (96 samples per frame)",
                     "voices: 16", "instruments: 10", "  9  2018", "parameters: 344,588", "release time: 1.5 s (375 frames)",
                     "alpha_b", "pitch_ref", "reverb time (s)", "tensors: \(V2Weights.layout(instruments: 10).count)",
                     "mono.gru.kernel", "[192, 576]", "reverb.early_ir", "[10, 200]", "importer: ddsp-piano weights import"] {
            XCTAssertTrue(r.stdout.contains(part), "'\(part)' not in:\n\(r.stdout)")
        }
        XCTAssertFalse(r.stdout.contains("why:"), "an explicit file needs no reason")
        // Every piano's tuning values and reverb time, as stored.
        let lines = r.stdout.split(separator: "\n").map(String.init)
        func value(_ key: String, _ p: Int) -> String {
            String(format: "%.6g", Double(raw["model/" + key + PianoWeights.upstreamSuffix]!.values[p]))
        }
        for (p, year) in PianoWeights.dafx22Instruments.enumerated() {
            let rows = lines.filter { $0.hasPrefix("  \(p) \(year) ") }
            XCTAssertEqual(rows.count, 2, "tuning and reverb rows of piano \(p)")
            guard rows.count == 2 else { continue }
            let tuning = rows[0].split(separator: " ").dropFirst(2).map(String.init)
            XCTAssertEqual(tuning, V2Weights.tuningParameters.map { value("inharm_model/\($0)/embeddings", p) }, "piano \(p)")
            let reverb = rows[1].split(separator: " ").dropFirst(2).map(String.init)
            XCTAssertEqual(reverb, [value("reverb_model/_time_rev_0_sec/embeddings", p), value("reverb_model/_alpha_tone/embeddings", p)])
        }

        // Without a file: the installed v2, and why; with dafx22 installed too, v2 still first.
        try WeightStore.install(try Fixtures.bundledWeights(), at: xdg.appendingPathComponent("ddsp-piano/weights/dafx22.safetensors"))
        let r2 = try ddsp(["weights", "info"], environment: env)
        XCTAssertEqual(r2.status, 0, r2.stderr)
        XCTAssertTrue(r2.stdout.hasPrefix("file: \(installed.path) (installed weights)\nwhy: no file given and $DDSP_PIANO_WEIGHTS unset; installed weights come next (v2.safetensors before dafx22.safetensors); also installed, not used: dafx22.safetensors\n"), r2.stdout)
        XCTAssertTrue(r2.stdout.contains("architecture: v2"), r2.stdout)
        // $DDSP_PIANO_WEIGHTS wins over both.
        let dafx22 = xdg.appendingPathComponent("ddsp-piano/weights/dafx22.safetensors")
        let r3 = try ddsp(["weights", "info"], environment: env.merging([WeightStore.environmentVariable: dafx22.path]) { $1 })
        XCTAssertTrue(r3.stdout.hasPrefix("file: \(dafx22.path) ($DDSP_PIANO_WEIGHTS)\nwhy: named by $DDSP_PIANO_WEIGHTS"), r3.stdout)
        XCTAssertTrue(r3.stdout.contains("architecture: dafx22"), r3.stdout)
        // Nothing installed: the bundled weights (this checkout's weights/ folder), and why.
        let r4 = try ddsp(["weights", "info"], environment: ["XDG_DATA_HOME": temp.appendingPathComponent("empty").path])
        if !WeightStore(environment: [:], executableURL: try Self.executable()).bundledFiles().isEmpty {
            XCTAssertTrue(r4.stdout.contains("(bundled weights)\nwhy: no file given, $DDSP_PIANO_WEIGHTS unset, nothing installed in "), r4.stdout + r4.stderr)
        }
    }

    // MARK: - Default search order

    /// A valid v2 weight file with no ../shared needed: zeros, release time 1.1 s.
    static func smallV2() -> V2Weights {
        var w = V2Weights(instruments: V2Weights.defaultInstruments)
        w.tensors["note_release.duration"] = Tensor(shape: [1], values: [1.1])
        return w
    }

    func testSearchOrderPrefersInstalledV2() throws {
        let fm = FileManager.default
        let xdg = temp.appendingPathComponent("xdg")
        let checkout = temp.appendingPathComponent("checkout")
        let exe = checkout.appendingPathComponent(".build/debug/ddsp-piano")
        try fm.createDirectory(at: exe.deletingLastPathComponent(), withIntermediateDirectories: true)
        let bundled = checkout.appendingPathComponent("weights/dafx22.safetensors")
        let bundledV2 = checkout.appendingPathComponent("weights/v2.safetensors")
        let explicit = temp.appendingPathComponent("explicit-v2.safetensors")
        let fromEnv = temp.appendingPathComponent("env-dafx22.safetensors")
        let dafx22 = try Fixtures.bundledWeights()
        let v2 = Self.smallV2()
        try WeightStore.install(dafx22, at: bundled)
        try WeightStore.install(.v2(v2), at: explicit)
        try WeightStore.install(dafx22, at: fromEnv)

        var store = WeightStore(environment: ["XDG_DATA_HOME": xdg.path], executableURL: exe, systemDirectories: [])
        let installedV2 = xdg.appendingPathComponent("ddsp-piano/weights/v2.safetensors")
        let installedDafx22 = xdg.appendingPathComponent("ddsp-piano/weights/dafx22.safetensors")
        XCTAssertEqual(store.installedURLs, [installedV2, installedDafx22])
        XCTAssertEqual(store.installedURL(architecture: "v2"), installedV2)
        XCTAssertEqual(store.installedURL(architecture: "dafx22"), installedDafx22)
        XCTAssertEqual(store.installedURL, installedDafx22)

        // 5. bundled (nothing installed).
        XCTAssertEqual(try store.locate(), .init(url: bundled, origin: .bundled))
        XCTAssertEqual(try store.loadFile().file.architecture, "dafx22")
        // 4. installed dafx22.
        try WeightStore.install(dafx22, at: installedDafx22)
        XCTAssertEqual(try store.locate(), .init(url: installedDafx22, origin: .installed))
        // 3. installed v2 before installed dafx22.
        try WeightStore.install(.v2(v2), at: installedV2)
        XCTAssertEqual(try store.locate(), .init(url: installedV2, origin: .installed))
        let loaded = try store.loadFile()
        XCTAssertEqual(loaded.url, installedV2)
        guard case .v2(let read) = loaded.file else { return XCTFail("installed v2 not read as v2") }
        XCTAssertEqual(read.releaseDuration, 1.1)
        // 2. $DDSP_PIANO_WEIGHTS before installed files.
        store.environment[WeightStore.environmentVariable] = fromEnv.path
        XCTAssertEqual(try store.locate(), .init(url: fromEnv, origin: .environment))
        XCTAssertEqual(try store.loadFile().file.architecture, "dafx22")
        // 1. an explicit path before everything.
        XCTAssertEqual(try store.locate(explicit: explicit.path), .init(url: explicit, origin: .explicit))
        XCTAssertEqual(try store.loadFile(explicit: explicit.path).file.architecture, "v2")

        // The dafx22-only API keeps working: it skips the installed v2 file...
        store.environment[WeightStore.environmentVariable] = nil
        let old = try store.load()
        XCTAssertEqual(old.url, installedDafx22)
        WeightsCommandTests.assertSameTensors(old.weights, dafx22)
        // ...and refuses a v2 file it is pointed at, in one line.
        XCTAssertThrowsError(try store.load(explicit: explicit.path)) {
            XCTAssertEqual("\($0)", "\(explicit.path): is a v2 weight file; this needs dafx22 weights")
        }
        XCTAssertEqual(try WeightStore.read(bundled).metadata["architecture"], "dafx22")

        // Bundled folders: v2.safetensors, then dafx22.safetensors, then by name.
        try fm.removeItem(at: installedV2)
        try fm.removeItem(at: installedDafx22)
        try WeightStore.install(.v2(v2), at: bundledV2)
        _ = fm.createFile(atPath: checkout.appendingPathComponent("weights/a-first-by-name.safetensors").path, contents: Data([0]))
        XCTAssertEqual(store.bundledFiles().map(\.lastPathComponent), ["v2.safetensors", "dafx22.safetensors", "a-first-by-name.safetensors"])
        XCTAssertEqual(try store.locate(), .init(url: bundledV2, origin: .bundled))
        XCTAssertEqual(try store.load().url, bundled, "the dafx22-only API skips a bundled v2.safetensors")

        // readFile / loadFile errors: "FILE: problem", one line.
        let garbage = temp.appendingPathComponent("garbage.safetensors")
        try Data(repeating: 7, count: 100).write(to: garbage)
        XCTAssertThrowsError(try WeightStore.readFile(garbage)) {
            XCTAssertTrue("\($0)".hasPrefix("\(garbage.path): not a valid safetensors weight file"), "\($0)")
        }
        var broken = v2.safetensors()
        broken.tensors["mono.gru.kernel"] = nil
        let incomplete = temp.appendingPathComponent("incomplete.safetensors")
        try Data(broken.serialized()).write(to: incomplete)
        XCTAssertThrowsError(try store.loadFile(explicit: incomplete.path)) {
            XCTAssertEqual("\($0)", "\(incomplete.path): missing tensor 'mono.gru.kernel'")
        }
        var unknown = v2.safetensors()
        unknown.metadata["architecture"] = "v3"
        try Data(unknown.serialized()).write(to: incomplete)
        XCTAssertThrowsError(try WeightStore.readFile(incomplete)) {
            XCTAssertEqual("\($0)", "\(incomplete.path): unknown architecture 'v3' (this version plays 'dafx22' and 'v2')")
        }
        XCTAssertThrowsError(try store.loadFile(explicit: temp.appendingPathComponent("gone").path)) {
            XCTAssertTrue("\($0)".hasSuffix("gone: no such file"), "\($0)")
        }
        let none = WeightStore(environment: ["XDG_DATA_HOME": temp.appendingPathComponent("none").path], executableURL: nil, systemDirectories: [])
        XCTAssertThrowsError(try none.loadFile()) {
            XCTAssertTrue("\($0)".contains("run 'ddsp-piano weights fetch v2'"), "\($0)")
        }
    }
}
