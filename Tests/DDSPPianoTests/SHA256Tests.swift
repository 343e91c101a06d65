import DDSPPiano
import Foundation
import PianoFormats
import PianoIO
import PianoTestKit
import XCTest

final class SHA256Tests: XCTestCase {
    // FIPS 180-4 / NIST CAVS example vectors.
    func testNISTVectors() {
        let vectors: [(String, String)] = [
            ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            ("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
             "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
            ("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
             "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"),
        ]
        for (message, digest) in vectors {
            XCTAssertEqual(SHA256.hex(Array(message.utf8)), digest, message)
        }
        // One million 'a', fed in uneven pieces to cross block boundaries.
        var h = SHA256()
        let chunk = [UInt8](repeating: UInt8(ascii: "a"), count: 999)
        var fed = 0
        while fed < 1_000_000 {
            let n = min(chunk.count - (fed % 7), 1_000_000 - fed)
            h.update(chunk[0..<n])
            fed += n
        }
        XCTAssertEqual(SHA256.hexString(h.finalize()), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    /// Every split of messages around the 55/56/64-byte padding edges gives the one-shot digest.
    func testStreamingMatchesOneShot() {
        var rng = SplitMix64(seed: 7)
        for length in [0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 128, 200] {
            let message = (0..<length).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            let whole = SHA256.hash(message)
            XCTAssertEqual(whole.count, 32)
            for split in 0...length {
                var h = SHA256()
                h.update(message[0..<split])
                h.update(message[split...])
                XCTAssertEqual(h.finalize(), whole, "length \(length) split \(split)")
            }
        }
    }

    /// The upstream checkpoint files hash to what `sha256sum` prints and to the pinned release hashes.
    func testUpstreamFilesMatchSha256sumAndPinnedHashes() throws {
        let dir = try Fixtures.requireReference().appendingPathComponent("dafx22/upstream_ckpt")
        var sha256sum: [String: String] = [:]
        if let tool = ["/usr/bin/sha256sum", "/bin/sha256sum"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: tool)
            p.arguments = WeightRelease.dafx22.files.map { dir.appendingPathComponent($0.name).path }
            let pipe = Pipe()
            p.standardOutput = pipe
            try p.run()
            let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            p.waitUntilExit()
            for line in out.split(separator: "\n") {
                let parts = line.split(separator: " ", maxSplits: 1)
                sha256sum[URL(fileURLWithPath: parts[1].trimmingCharacters(in: .whitespaces)).lastPathComponent] = String(parts[0])
            }
        } else {
            print("sha256sum not found; comparing with the pinned hashes only")
        }
        for file in WeightRelease.dafx22.files {
            let bytes = [UInt8](try Data(contentsOf: dir.appendingPathComponent(file.name)))
            let ours = SHA256.hex(bytes)
            XCTAssertEqual(ours, file.sha256, file.name)
            if let tool = sha256sum[file.name] { XCTAssertEqual(ours, tool, file.name) }
            print("sha256 \(file.name) (\(bytes.count) bytes): \(ours)")
        }
    }
}
