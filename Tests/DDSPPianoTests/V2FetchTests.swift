import DDSPPiano
import Foundation
import PianoFormats
import PianoIO
import PianoTestKit
import XCTest

/// `weights fetch v2`: the pins, the download from a local HTTP server of the synthetic
/// checkpoint under a test pin table (its own hashes, size, blob id), and every way a download
/// can be wrong (each one line, nothing installed, nothing touched).
final class V2FetchTests: WeightsCLITestCase {
    static let dataName = V2ImportTests.dataName

    /// The synthetic checkpoint's own pins (`git hash-object`, `sha256sum`, `stat` of
    /// ../shared/reference/v2/synthetic_ckpt), in the shape of the real release's: SHA-256 for
    /// `checkpoint` and the index, size and git blob id for the data file.
    static var syntheticRelease: WeightRelease {
        var r = WeightRelease.v2
        r.files = [
            .init(name: "checkpoint", sha256: "ea5a0ec3f1c296a05bf64303d746bce644a61c8ef0d8c637aafd273eb4f1d63f",
                  size: 176, gitBlob: "37e20c2f572925e7ff6da596e54b800b20473125"),
            .init(name: "ckpt-225000.index", sha256: "a37338cebdef69958ece1e555740c6435ab5f358bd332b71134aef835c6f70fe",
                  size: 21_577, gitBlob: "2033d99887aa02128f742ac36e41a48aefc7f818"),
            .init(name: dataName, size: 4_198_288, gitBlob: "afa1fb459082397bc84c5429ca0ba5e35db5a415"),
        ]
        return r
    }

    func serveSynthetic(_ dir: URL) throws -> URL {
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let source = try V2ImportTests.v2Reference().appendingPathComponent("synthetic_ckpt")
        for name in V2ImportTests.syntheticFiles {
            try Data(contentsOf: source.appendingPathComponent(name)).write(to: dir.appendingPathComponent(name))
        }
        return URL(string: try startServer(serving: dir).base)!
    }

    // MARK: - Pins and hashes

    func testPinsAndGitBlobIDs() throws {
        // SHA-1 test vectors (FIPS 180-4 examples), and block boundaries against one-shot hashing.
        func sha1(_ s: [UInt8]) -> String { var h = SHA1(); h.update(s); return h.hexDigest() }
        XCTAssertEqual(sha1([]), "da39a3ee5e6b4b0d3255bfef95601890afd80709")
        XCTAssertEqual(sha1(Array("abc".utf8)), "a9993e364706816aba3e25717850c26c9cd0d89d")
        XCTAssertEqual(sha1(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)), "84983e441c3bd26ebaae4aa1f95129e5e54670f1")
        XCTAssertEqual(sha1([UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)), "34aa973cd4c4daa4f61eeb2bdbad27316534016f")
        var rng = SplitMix64(seed: 7)
        let message = (0..<300).map { _ in UInt8.random(in: 0...255, using: &rng) }
        for split in [0, 1, 55, 56, 63, 64, 65, 128, 299] {
            var h = SHA1()
            h.update(message[0..<split])
            h.update(message[split...])
            XCTAssertEqual(h.hexDigest(), sha1(message), "split \(split)")
        }
        XCTAssertEqual(GitBlob.id([]), "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391")   // git's empty blob (git hash-object /dev/null)

        // The real release: URLs at the pinned commit, and the pins of the two files we have
        // byte copies of (upstream_index/), by SHA-256, size and git blob id (PINS.md).
        let release = try XCTUnwrap(WeightRelease.named("v2"))
        XCTAssertEqual(release.architecture, "v2")
        XCTAssertEqual(try release.resolveBaseURL(nil, environment: [:]).appendingPathComponent(Self.dataName).absoluteString,
                       "https://raw.githubusercontent.com/lrenault/ddsp-piano/e868b7ccd3fe31b39132048a72561d7fcf1b465f/ddsp_piano/model_weights/v2/ckpt-225000.data-00000-of-00001")
        XCTAssertEqual(WeightRelease.dafx22.baseURL.replacingOccurrences(of: "/dafx22/", with: "/v2/"), release.baseURL)
        XCTAssertEqual(release.files.map(\.name), V2ImportTests.syntheticFiles)
        XCTAssertEqual(WeightRelease.all.map(\.name), ["v2", "dafx22"])
        let reference = try V2ImportTests.v2Reference()
        for file in release.files.prefix(2) {
            let bytes = [UInt8](try Data(contentsOf: reference.appendingPathComponent("upstream_index/" + file.name)))
            XCTAssertNoThrow(try WeightRelease.verify(bytes, against: file, source: file.name))
            XCTAssertEqual(GitBlob.id(bytes), file.gitBlob)
        }
        let data = release.files[2]
        XCTAssertNil(data.sha256)
        XCTAssertEqual(data.size, 4_198_370)
        XCTAssertEqual(data.gitBlob, "c5dd414a7c7955e1ea6629b591fa7d45f8df5ff1")

        // Blob ids of real upstream files at the pinned commit (`git ls-tree -l` there): the
        // dafx22 checkpoint, whose 2 MB data file we have.
        let dafx22 = reference.deletingLastPathComponent().appendingPathComponent("dafx22/upstream_ckpt")
        for (name, blob) in [("checkpoint", "3d5a48d9f9ad2b55a442c91eb7def03fa5398c8a"),
                             ("ckpt-0.index", "e9d5b1861c782b3ca7084df54c79f77167ad481e"),
                             ("ckpt-0.data-00000-of-00001", "a25c14669e825f8b6b27e199f5fc48a98a040a40")] {
            XCTAssertEqual(GitBlob.id([UInt8](try Data(contentsOf: dafx22.appendingPathComponent(name)))), blob, name)
        }

        // The synthetic files' blob ids, by `git hash-object` when git is installed.
        let synthetic = reference.appendingPathComponent("synthetic_ckpt")
        for file in Self.syntheticRelease.files {
            let bytes = [UInt8](try Data(contentsOf: synthetic.appendingPathComponent(file.name)))
            XCTAssertNoThrow(try WeightRelease.verify(bytes, against: file, source: file.name))
        }
        if let git = ["/usr/bin/git", "/usr/local/bin/git"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: git)
            p.arguments = ["hash-object"] + Self.syntheticRelease.files.map { synthetic.appendingPathComponent($0.name).path }
            let pipe = Pipe()
            p.standardOutput = pipe
            try p.run()
            let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            p.waitUntilExit()
            XCTAssertEqual(out.split(separator: "\n").map(String.init), Self.syntheticRelease.files.map { $0.gitBlob! })
        } else {
            print("git not found; synthetic blob ids checked against the recorded values only")
        }
    }

    // MARK: - Fetch from a local server

    func testFetchSyntheticUnderTestPins() throws {
        let base = try serveSynthetic(temp.appendingPathComponent("served"))
        let xdg = temp.appendingPathComponent("xdg")
        let store = WeightStore(environment: ["XDG_DATA_HOME": xdg.path], executableURL: nil, systemDirectories: [])
        // An installed dafx22 file beside it stays untouched.
        try WeightStore.install(try Fixtures.bundledWeights(), at: store.installedURL)
        let dafx22Before = try Data(contentsOf: store.installedURL)
        let destination = store.installedURL(architecture: Self.syntheticRelease.architecture)
        XCTAssertEqual(destination.lastPathComponent, "v2.safetensors")

        let received = ReceivedFiles()
        let file = try Self.syntheticRelease.fetch(baseURL: base, to: destination) { name, bytes, _ in received.add(name, bytes) }
        XCTAssertEqual(received.names, V2ImportTests.syntheticFiles, "downloaded in order, small files first")
        XCTAssertEqual(file.architecture, "v2")
        let (meta, read) = try WeightStore.readFileAndMetadata(destination)
        guard case .v2(let w) = read else { return XCTFail("not v2") }
        XCTAssertEqual(meta["release"], "v2")
        // A pinned release: its origin and hashes, no mirror, command or date (the same file as
        // `weights import` of the same checkpoint files).
        XCTAssertEqual(meta["source"], Self.syntheticRelease.baseURL)
        XCTAssertNil(meta["imported"])
        XCTAssertFalse(meta.values.contains { $0.contains(base.absoluteString) }, "the mirror's URL in the metadata")
        XCTAssertEqual(meta["sha256.ckpt-225000.index"], Self.syntheticRelease.files[1].sha256)
        XCTAssertEqual(meta["sha256." + Self.dataName], "54479a534772f9b346a12b9f32b60c57894338707d02818b6c02be4aff3c7205")
        XCTAssertEqual(meta["upstream"], WeightRelease.v2.upstream)
        XCTAssertEqual(w.instruments, PianoWeights.dafx22Instruments)
        // The same tensors as `weights import` of those files, bit for bit (values vs checkpoint_raw: V2ImportTests).
        let raw = try Fixtures.safetensors(try V2ImportTests.v2Reference().appendingPathComponent("checkpoint_raw.safetensors")).tensors
        var mismatches = 0
        for e in V2Weights.layout(instruments: 10) {
            mismatches += zip(w[e.name].values, try V2ImportTests.expectedValues(e, raw: raw)).filter { $0.bitPattern != $1.bitPattern }.count
        }
        XCTAssertEqual(mismatches, 0)
        XCTAssertEqual(try Data(contentsOf: store.installedURL), dafx22Before)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: destination.deletingLastPathComponent().path).sorted(),
                       ["dafx22.safetensors", "v2.safetensors"])
        // ...and it is now what render and the daemon use.
        XCTAssertEqual(try store.locate(), .init(url: destination, origin: .installed))
    }

    /// Corrupted, truncated, padded and missing copies under the test pins: each one line naming
    /// the URL and the problem; nothing installed; the previous file byte for byte; no temp file.
    func testFetchFailuresInstallNothing() throws {
        let served = temp.appendingPathComponent("served")
        let base = try serveSynthetic(served)
        let data = served.appendingPathComponent(Self.dataName)
        let good = try Data(contentsOf: data)
        let dataURL = base.appendingPathComponent(Self.dataName).absoluteString
        let destination = temp.appendingPathComponent("weights/v2.safetensors")
        try WeightStore.install(.v2(V2ImportTests.smallV2()), at: destination)
        let before = try Data(contentsOf: destination)

        func expectFailure(_ release: WeightRelease, _ parts: [String], line: UInt = #line) {
            XCTAssertThrowsError(try release.fetch(baseURL: base, to: destination), line: line) { error in
                let text = "\(error)"
                XCTAssertFalse(text.contains("\n"), text, line: line)
                for part in parts + ["nothing was installed"] { XCTAssertTrue(text.contains(part), "'\(part)' not in: \(text)", line: line) }
                print("error line: \(text)")
            }
            XCTAssertEqual(try? Data(contentsOf: destination), before, line: line)
            XCTAssertEqual(try? FileManager.default.contentsOfDirectory(atPath: destination.deletingLastPathComponent().path), ["v2.safetensors"], line: line)
        }

        // One flipped byte (same size): the git blob id.
        var flipped = good
        flipped[2_000_000] ^= 0x04
        try flipped.write(to: data)
        expectFailure(Self.syntheticRelease, [dataURL + ": git blob id mismatch: expected afa1fb459082397bc84c5429ca0ba5e35db5a415"])
        // The same with the size as the only pin: the crc32c of the tensor holding that byte.
        var sizeOnly = Self.syntheticRelease
        sizeOnly.files[2].gitBlob = nil
        expectFailure(sizeOnly, [dataURL + ": entry 'model/", "crc32c mismatch in data shard 0", "the data file is corrupt"])
        // Truncated.
        try good.prefix(3_000_000).write(to: data)
        expectFailure(Self.syntheticRelease, [dataURL + ": size mismatch: expected 4198288 bytes, got 3000000 (truncated?)"])
        // Longer than pinned: refused as soon as the server announces its length.
        try (good + Data(repeating: 0, count: 100)).write(to: data)
        expectFailure(Self.syntheticRelease, [dataURL + ": size mismatch: expected 4198288 bytes, the server sends 4198388"])
        // Missing.
        try FileManager.default.removeItem(at: data)
        expectFailure(Self.syntheticRelease, [dataURL + ": HTTP 404"])
        try good.write(to: data)
        // A corrupted index: its SHA-256.
        let index = served.appendingPathComponent("ckpt-225000.index")
        let goodIndex = try Data(contentsOf: index)
        var badIndex = goodIndex
        badIndex[100] ^= 0x01
        try badIndex.write(to: index)
        expectFailure(Self.syntheticRelease, [base.appendingPathComponent("ckpt-225000.index").absoluteString + ": SHA-256 mismatch: expected a37338ce"])
        try goodIndex.write(to: index)
        // Still works once the files are right again.
        XCTAssertNoThrow(try Self.syntheticRelease.fetch(baseURL: base, to: destination))
        XCTAssertNotEqual(try Data(contentsOf: destination), before)
    }

    // MARK: - The command

    func testFetchCommand() throws {
        // No name, and --help: both releases listed.
        let list = try ddsp(["weights", "fetch"])
        XCTAssertEqual(list.status, 0, list.stderr)
        XCTAssertTrue(list.stdout.contains("  v2 "), list.stdout)
        XCTAssertTrue(list.stdout.contains("  dafx22 "), list.stdout)
        XCTAssertTrue(list.stdout.contains("maestro-v2.gin"), list.stdout)
        let help = try ddsp(["weights", "fetch", "--help"])
        XCTAssertEqual(help.status, 0, help.stderr)
        for part in ["v2", "dafx22", "maestro-v2.gin", "DAFx 2022", "git blob id", "crc32c"] {
            XCTAssertTrue(help.stdout.contains(part), "'\(part)' not in:\n\(help.stdout)")
        }
        let unknown = try ddsp(["weights", "fetch", "v9", "-o", temp.appendingPathComponent("x.safetensors").path])
        assertOneLineError(unknown, contains: ["v9: unknown weights (available: v2, dafx22)"])

        // The real pins against the synthetic files: the first file that differs stops it.
        let served = temp.appendingPathComponent("served")
        let base = try serveSynthetic(served).absoluteString
        let xdg = temp.appendingPathComponent("xdg")
        let env = ["XDG_DATA_HOME": xdg.path]
        let installed = xdg.appendingPathComponent("ddsp-piano/weights/v2.safetensors")
        assertOneLineError(try ddsp(["weights", "fetch", "v2", "--base-url", base], environment: env),
                           contains: [base + "checkpoint: SHA-256 mismatch: expected 75f2e242", "nothing was installed"])
        // Upstream's real `checkpoint` and index (byte copies) pass; the synthetic data file then
        // fails the real size (4,198,370 bytes; the synthetic object graph is 82 bytes shorter).
        let reference = try V2ImportTests.v2Reference()
        for name in ["checkpoint", "ckpt-225000.index"] {
            try FileManager.default.removeItem(at: served.appendingPathComponent(name))
            try FileManager.default.copyItem(at: reference.appendingPathComponent("upstream_index/" + name), to: served.appendingPathComponent(name))
        }
        assertOneLineError(try ddsp(["weights", "fetch", "v2", "--base-url", base], environment: env),
                           contains: [base + Self.dataName + ": size mismatch: expected 4198370 bytes, got 4198288 (truncated?)", "nothing was installed"])
        // Padded to the real size: the git blob id.
        var padded = try Data(contentsOf: served.appendingPathComponent(Self.dataName))
        padded.append(Data(repeating: 0, count: 82))
        try padded.write(to: served.appendingPathComponent(Self.dataName))
        assertOneLineError(try ddsp(["weights", "fetch", "v2", "--base-url", base], environment: env),
                           contains: [base + Self.dataName + ": git blob id mismatch: expected c5dd414a7c7955e1ea6629b591fa7d45f8df5ff1"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: installed.path))
        XCTAssertFalse(FileManager.default.fileExists(atPath: xdg.appendingPathComponent("ddsp-piano").path))
    }
}

/// Collects the file names a fetch reports progress for, in order.
final class ReceivedFiles: @unchecked Sendable {
    private let lock = NSLock()
    private var list: [String] = []
    func add(_ name: String, _ bytes: Int64) {
        lock.lock()
        if list.last != name { list.append(name) }
        lock.unlock()
    }
    var names: [String] { lock.lock(); defer { lock.unlock() }; return list }
}
