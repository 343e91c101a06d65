import DDSPPiano
import Foundation
import PianoFormats
import PianoTestKit
import XCTest

/// Malformed checkpoints must make the reader return or throw a one-line `CheckpointError`,
/// never trap or hang. Fixed seeds; each test stops after a fixed time budget.
final class CheckpointFuzzTests: XCTestCase {
    struct Stats {
        var runs = 0, accepted = 0, rejected = 0
        var slowest = 0.0
        var messages = Set<String>()
    }

    /// Runs the reader on `index`/`shards`; checks the failure type and shape.
    func attempt(_ index: [UInt8], _ shards: [[UInt8]], _ stats: inout Stats, verify: Bool = true) -> Bool {
        let start = Date()
        defer {
            stats.runs += 1
            stats.slowest = max(stats.slowest, Date().timeIntervalSince(start))
        }
        do {
            let c = try TFCheckpoint(index: index, shards: shards)
            _ = try c.floatTensors()
            if verify { try c.verifyChecksums() }
            stats.accepted += 1
            return true
        } catch let e as CheckpointError {
            XCTAssertFalse(e.description.contains("\n"), e.description)
            XCTAssertFalse(e.description.isEmpty)
            // Group messages by their leading words to report the variety of failures reached.
            stats.messages.insert(String(e.description.split(separator: " ").prefix(3).joined(separator: " ")))
            stats.rejected += 1
        } catch {
            XCTFail("unexpected error type \(type(of: error)): \(error)")
        }
        return false
    }

    /// The block regions of a table (contents start, size) from its footer, for mutations
    /// that re-seal the block checksum so the block and protobuf decoders are reached.
    static func blocks(_ index: [UInt8]) -> [(start: Int, size: Int)] {
        var r = Array(index.suffix(48))[...]
        func varint() -> Int {
            var v = 0, shift = 0
            while let b = r.popFirst() { v |= Int(b & 0x7f) << shift; shift += 7; if b < 0x80 { break } }
            return v
        }
        let meta = (start: varint(), size: varint())
        let idx = (start: varint(), size: varint())
        // Data blocks: decode the index block's handles (restart array ignored: values only).
        var data: [(start: Int, size: Int)] = []
        var p = idx.start
        let restarts = Int(index[idx.start + idx.size - 4])
        let end = idx.start + idx.size - 4 - 4 * restarts
        func read() -> Int {
            var v = 0, shift = 0
            while p < end { let b = index[p]; p += 1; v |= Int(b & 0x7f) << shift; shift += 7; if b < 0x80 { break } }
            return v
        }
        while p < end {
            let shared = read(), unshared = read(), valueLength = read()
            _ = shared
            p += unshared
            let valueEnd = p + valueLength
            data.append((read(), read()))
            p = valueEnd
        }
        return data + [meta, idx]
    }

    static func reseal(_ bytes: inout [UInt8], _ block: (start: Int, size: Int)) {
        let end = block.start + block.size
        let crc = CRC32C.mask(CRC32C.checksum(bytes[block.start...end]))
        for i in 0..<4 { bytes[end + 1 + i] = UInt8(truncatingIfNeeded: crc >> (8 * UInt32(i))) }
    }

    func mutateIndex(_ original: [UInt8], _ blocks: [(start: Int, size: Int)], _ rng: inout SplitMix64) -> [UInt8] {
        var b = original
        func pos(_ n: Int) -> Int { n == 0 ? 0 : Int(rng.next() % UInt64(n)) }
        switch rng.next() % 8 {
        case 0: // random bytes
            return (0..<pos(3000)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        case 1: // random bytes behind a valid footer
            return (0..<pos(500)).map { _ in UInt8(truncatingIfNeeded: rng.next()) } + original.suffix(48)
        case 2: // byte flips anywhere
            for _ in 0...pos(8) { b[pos(b.count)] ^= UInt8(truncatingIfNeeded: 1 + rng.next() % 255) }
        case 3: // truncation
            b.removeSubrange(pos(b.count + 1)...)
        case 4: // insertion
            b.insert(contentsOf: (0..<(1 + pos(16))).map { _ in UInt8(truncatingIfNeeded: rng.next()) }, at: pos(b.count + 1))
        case 5: // deletion of a range
            let s = pos(b.count)
            b.removeSubrange(s..<min(b.count, s + 1 + pos(32)))
        case 6: // flips inside one block, checksum re-sealed: reaches the entry and protobuf decoders
            let block = blocks[pos(blocks.count)]
            guard block.size > 0 else { return b }
            for _ in 0...pos(3) {
                let i = block.start + pos(block.size)
                b[i] = rng.next() % 3 == 0 ? UInt8(truncatingIfNeeded: rng.next()) : b[i] ^ (1 << UInt8(rng.next() % 8))
            }
            Self.reseal(&b, block)
        default: // footer damage: handles pointing anywhere
            let i = b.count - 48 + pos(40)
            b[i] = UInt8(truncatingIfNeeded: rng.next())
        }
        return b
    }

    func testIndexFuzz() throws {
        let (index, data, _) = try TFCheckpointTests.readUpstream()
        // A synthetic index with many blocks and restart points joins the real one as a seed.
        var synthetic = TestTensorBundle(shardCount: 2)
        for i in 0..<30 { synthetic.addFloat("layer\(i % 4)/v\(i)", shape: [2, i % 3 + 1], values: .init(repeating: Float(i), count: 2 * (i % 3 + 1)), shard: i % 2) }
        synthetic.addStrings("graph", ["a", "bc"], shard: 0)
        let seeds: [(index: [UInt8], shards: [[UInt8]], name: String)] = [
            (index, [data], "upstream"),
            (synthetic.index(blockSize: 120, restartInterval: 2), synthetic.shards, "synthetic"),
        ]
        var rng = SplitMix64(seed: 0x5eed_0001)
        for seed in seeds {
            var stats = Stats()
            XCTAssertTrue(attempt(seed.index, seed.shards, &stats), "the unmutated \(seed.name) index must read")
            let blocks = Self.blocks(seed.index)
            let deadline = Date().addingTimeInterval(1.5)
            while Date() < deadline {
                // Verifying data checksums costs time on the 2 MB shard and is not what this tests.
                _ = attempt(mutateIndex(seed.index, blocks, &rng), seed.shards, &stats, verify: seed.name != "upstream")
            }
            print("index fuzz (\(seed.name)): \(stats.runs) runs, \(stats.rejected) rejected, \(stats.accepted) accepted, slowest \(String(format: "%.3f", stats.slowest)) s, \(stats.messages.count) distinct errors")
            XCTAssertGreaterThan(stats.runs, 50)
            XCTAssertLessThan(stats.slowest, 2.0)
        }
    }

    func testDataFuzz() throws {
        let (index, data, _) = try TFCheckpointTests.readUpstream()
        let entries = try TFCheckpoint.Index(bytes: index).entries
        // Entries tile the data file (no padding), so any changed byte must be caught.
        XCTAssertEqual(entries.reduce(0) { $0 + $1.size }, data.count)
        var rng = SplitMix64(seed: 0x5eed_0002)
        var stats = Stats()
        let deadline = Date().addingTimeInterval(2.0)
        while Date() < deadline {
            var d = data
            func pos(_ n: Int) -> Int { n == 0 ? 0 : Int(rng.next() % UInt64(n)) }
            switch rng.next() % 4 {
            case 0: d[pos(d.count)] ^= UInt8(truncatingIfNeeded: 1 + rng.next() % 255)
            case 1: d.removeSubrange(pos(d.count)...)
            case 2: d.insert(UInt8(truncatingIfNeeded: rng.next()), at: pos(d.count))
            default: d = (0..<pos(4096)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            }
            XCTAssertFalse(attempt(index, [d], &stats), "a damaged data file was accepted")
        }
        print("data fuzz: \(stats.runs) runs, \(stats.rejected) rejected, slowest \(String(format: "%.3f", stats.slowest)) s, \(stats.messages.count) distinct errors")
        XCTAssertGreaterThan(stats.runs, 10)
        XCTAssertLessThan(stats.slowest, 2.0)
    }
}
