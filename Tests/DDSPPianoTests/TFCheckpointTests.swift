import DDSPPiano
import Foundation
import PianoFormats
import PianoTestKit
import XCTest

final class TFCheckpointTests: XCTestCase {
    static func upstreamDirectory() throws -> URL {
        try Fixtures.requireReference().appendingPathComponent("dafx22/upstream_ckpt")
    }

    static func readUpstream() throws -> (index: [UInt8], data: [UInt8], prefix: String) {
        let dir = try upstreamDirectory()
        let state = try String(contentsOf: dir.appendingPathComponent("checkpoint"), encoding: .utf8)
        let prefix = try TFCheckpoint.modelCheckpointPath(stateFile: state)
        let index = [UInt8](try Data(contentsOf: dir.appendingPathComponent(prefix + ".index")))
        let data = [UInt8](try Data(contentsOf: dir.appendingPathComponent(prefix + TFCheckpoint.shardSuffix(0, of: 1))))
        return (index, data, prefix)
    }

    /// Every float of the real checkpoint, read natively, equals the reference dump bit for bit.
    func testUpstreamCheckpointMatchesReferenceBitForBit() throws {
        let (index, data, prefix) = try Self.readUpstream()
        XCTAssertEqual(prefix, "ckpt-0")
        let ckpt = try TFCheckpoint(index: index, shards: [data])
        XCTAssertEqual(ckpt.header.shardCount, 1)
        XCTAssertTrue(ckpt.header.littleEndian)
        XCTAssertEqual(ckpt.header.producer, 1)
        try ckpt.verifyChecksums()

        // Names, dtypes and shapes of every entry, floats or not, as listed by TensorFlow.
        let listURL = try Fixtures.requireReference().appendingPathComponent("dafx22/checkpoint_variables.json")
        let listed = try JSONSerialization.jsonObject(with: Data(contentsOf: listURL)) as! [[String: Any]]
        XCTAssertEqual(ckpt.entries.count, listed.count)
        for item in listed {
            let name = item["name"] as! String
            guard let e = ckpt.entries.first(where: { $0.name == name }) else { XCTFail("missing \(name)"); continue }
            XCTAssertEqual(e.dtype.description, item["dtype"] as? String, name)
            XCTAssertEqual(e.shape, (item["shape"] as! [NSNumber]).map(\.intValue), name)
            XCTAssertEqual(e.sliceCount, 0)
        }
        XCTAssertEqual(ckpt.entries.first { $0.name == "_CHECKPOINTABLE_OBJECT_GRAPH" }?.dtype, .string)
        XCTAssertEqual(ckpt.entries.filter { $0.dtype == .int64 }.map(\.name),
                       ["optimizer/iter/.ATTRIBUTES/VARIABLE_VALUE", "save_counter/.ATTRIBUTES/VARIABLE_VALUE"])

        let floats = try ckpt.floatTensors()
        // The reference also holds the two int64 counters (as floats): read them as int64.
        var tensors = floats
        for e in ckpt.entries where e.dtype == .int64 {
            let values = try ckpt.verifiedBytes(e).withUnsafeBytes { raw in
                (0..<e.elementCount).map { Float(Int64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self))) }
            }
            tensors[e.name] = Tensor(shape: e.shape, values: values)
        }
        let reference = try Fixtures.safetensors(try Fixtures.requireReference().appendingPathComponent("dafx22/checkpoint_raw.safetensors")).tensors
        XCTAssertEqual(Set(tensors.keys), Set(reference.keys))
        var values = 0, mismatches = 0
        for (name, ref) in reference {
            guard let t = tensors[name] else { XCTFail("missing \(name)"); continue }
            XCTAssertEqual(t.shape, ref.shape, name)
            XCTAssertEqual(t.count, ref.count, name)
            for (a, b) in zip(t.values, ref.values) where a.bitPattern != b.bitPattern { mismatches += 1 }
            values += min(t.count, ref.count)
        }
        print("TFCheckpoint: compared \(tensors.count) tensors (\(floats.count) float32, \(tensors.count - floats.count) int64), \(values) values bit for bit, \(mismatches) mismatches")
        XCTAssertEqual(floats.count, 32)
        XCTAssertEqual(tensors.count, 34)
        XCTAssertEqual(values, 521_507 + 2)
        XCTAssertEqual(mismatches, 0)

        // The converter accepts the natively read tensors, and agrees with the reference conversion.
        let weights = try PianoWeights(upstreamCheckpoint: floats)
        let expected = try Fixtures.dafx22Weights()
        XCTAssertEqual(weights.safetensors().tensors, expected.safetensors().tensors)
        XCTAssertEqual(weights.instruments, PianoWeights.dafx22Instruments)
    }

    /// The real index is an uncompressed table (TensorFlow writes bundle indexes without snappy).
    func testUpstreamIndexIsUncompressed() throws {
        let (index, _, _) = try Self.readUpstream()
        let footer = Array(index.suffix(48))
        var handles: [Int] = []
        var i = 0
        for _ in 0..<4 {
            var v = 0, shift = 0
            while true { let b = footer[i]; i += 1; v |= Int(b & 0x7f) << shift; shift += 7; if b < 0x80 { break } }
            handles.append(v)
        }
        // Index and metaindex trailers: type byte 0 = no compression. The data block lies before both.
        XCTAssertEqual(index[handles[0] + handles[1]], 0)
        XCTAssertEqual(index[handles[2] + handles[3]], 0)
        XCTAssertEqual(index[handles[0] - 5], 0, "data block trailer")
    }

    func testCRC32CVectors() {
        // RFC 3720 (iSCSI) appendix B.4 and the usual check value.
        XCTAssertEqual(CRC32C.checksum(Array("123456789".utf8)), 0xe306_9283)
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0, count: 32)), 0x8a91_36aa)
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0xff, count: 32)), 0x62a8_ab43)
        XCTAssertEqual(CRC32C.checksum((0..<32).map { UInt8($0) }), 0x46dd_794e)
        XCTAssertEqual(CRC32C.checksum((0..<32).map { UInt8(31 - $0) }), 0x113f_db5c)
        // Slice-by-8 equals byte-at-a-time extension at every length and alignment.
        var rng = SplitMix64(seed: 3)
        let bytes = (0..<300).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        for start in 0..<9 {
            for end in stride(from: start, through: bytes.count, by: 7) {
                var crc: UInt32 = 0
                for b in bytes[start..<end] { crc = CRC32C.checksum([b], extending: crc) }
                XCTAssertEqual(CRC32C.checksum(bytes[start..<end]), crc)
            }
        }
        for v: UInt32 in [0, 1, 0xdead_beef, 0xffff_ffff] { XCTAssertEqual(CRC32C.unmask(CRC32C.mask(v)), v) }
    }

    func testCheckpointStateFile() throws {
        XCTAssertEqual(try TFCheckpoint.modelCheckpointPath(stateFile: "model_checkpoint_path: \"ckpt-0\"\nall_model_checkpoint_paths: \"ckpt-0\"\n"), "ckpt-0")
        XCTAssertEqual(try TFCheckpoint.modelCheckpointPath(stateFile: "all_model_checkpoint_paths: \"a\"\n  model_checkpoint_path:'dir/ck\\\"pt-7'\n"), "dir/ck\"pt-7")
        XCTAssertEqual(try TFCheckpoint.modelCheckpointPath(stateFile: "model_checkpoint_path: \"caf\\303\\251\""), "café")
        for bad in ["", "all_model_checkpoint_paths: \"x\"", "model_checkpoint_path: ckpt", "model_checkpoint_path: \"ckpt", "model_checkpoint_path: \"\""] {
            XCTAssertThrowsError(try TFCheckpoint.modelCheckpointPath(stateFile: bad), bad) { error in
                XCTAssertTrue("\(error)".hasPrefix("checkpoint state:"), "\(error)")
            }
        }
        XCTAssertEqual(TFCheckpoint.shardSuffix(2, of: 13), ".data-00002-of-00013")
    }

    // MARK: - Synthetic bundles: several blocks and shards, strings, big-endian, slices

    func testSyntheticMultiBlockMultiShardBundle() throws {
        var rng = SplitMix64(seed: 11)
        var bundle = TestTensorBundle(shardCount: 3)
        var expected: [String: Tensor] = [:]
        for i in 0..<60 {
            let shape = [1 + Int(rng.next() % 5), 1 + Int(rng.next() % 7)]
            let values = (0..<(shape[0] * shape[1])).map { _ in Float(bitPattern: UInt32(truncatingIfNeeded: rng.next()) & 0xbfff_ffff) }
            let name = "model/layer_\(i / 10)/sub_\(i)/kernel/.ATTRIBUTES/VARIABLE_VALUE"
            expected[name] = Tensor(shape: shape, values: values)
            bundle.addFloat(name, shape: shape, values: values, shard: i % 3)
        }
        bundle.addFloat("scalar", shape: [], values: [1.5], shard: 0)
        expected["scalar"] = Tensor(shape: [], values: [1.5])
        bundle.addRaw("save_counter", dtype: 9, shape: [], bytes: [1, 0, 0, 0, 0, 0, 0, 0], shard: 1)
        bundle.addStrings("_CHECKPOINTABLE_OBJECT_GRAPH", ["graph bytes", "", String(repeating: "x", count: 300)], shard: 2)
        let index = bundle.index(blockSize: 200, restartInterval: 3)
        let ckpt = try TFCheckpoint(index: index, shards: bundle.shards)
        XCTAssertEqual(ckpt.entries.count, 63)
        XCTAssertEqual(ckpt.entries.map(\.name), ckpt.entries.map(\.name).sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) })
        try ckpt.verifyChecksums()
        let tensors = try ckpt.floatTensors()
        XCTAssertEqual(tensors.count, expected.count)
        for (name, t) in expected {
            XCTAssertEqual(tensors[name]?.shape, t.shape, name)
            XCTAssertEqual(tensors[name]?.values.map(\.bitPattern), t.values.map(\.bitPattern), name)
        }
        // A partitioned variable is listed, and reading floats says it is unsupported.
        var sliced = bundle
        sliced.addSliced("partitioned/var")
        let slicedCkpt = try TFCheckpoint(index: sliced.index(), shards: sliced.shards)
        XCTAssertEqual(slicedCkpt.entries.first { $0.name == "partitioned/var" }?.sliceCount, 1)
        XCTAssertThrowsError(try slicedCkpt.floatTensors()) {
            XCTAssertEqual("\($0)", "entry 'partitioned/var' is a partitioned variable (1 slices), which is not supported")
        }
        XCTAssertThrowsError(try ckpt.tensor(named: "save_counter")) { XCTAssertTrue("\($0)".contains("int64"), "\($0)") }

        // The wrong number of shards, a corrupted string tensor, a corrupted float.
        XCTAssertThrowsError(try TFCheckpoint(index: index, shards: Array(bundle.shards.prefix(2)))) {
            XCTAssertEqual("\($0)", "the index expects 3 data shard(s), got 2")
        }
        var shards = bundle.shards
        shards[2][shards[2].count - 1] ^= 1
        XCTAssertThrowsError(try TFCheckpoint(index: index, shards: shards).verifyChecksums()) {
            XCTAssertTrue("\($0)".contains("'_CHECKPOINTABLE_OBJECT_GRAPH': crc32c mismatch in data shard 2"), "\($0)")
        }
        shards = bundle.shards
        shards[0][0] ^= 0x80
        XCTAssertThrowsError(try TFCheckpoint(index: index, shards: shards).floatTensors()) {
            XCTAssertTrue("\($0)".contains("crc32c mismatch in data shard 0"), "\($0)")
        }
    }

    func testSyntheticBigEndianBundle() throws {
        var bundle = TestTensorBundle(shardCount: 1, bigEndian: true)
        bundle.addFloat("w", shape: [3], values: [1, -2.5, .pi], shard: 0)
        bundle.addStrings("s", ["abc"], shard: 0)
        let ckpt = try TFCheckpoint(index: bundle.index(), shards: bundle.shards)
        XCTAssertFalse(ckpt.header.littleEndian)
        try ckpt.verifyChecksums()
        XCTAssertEqual(try ckpt.tensor(named: "w").values, [1, -2.5, .pi])
    }

    func testSnappyAndMalformedTablesGiveClearErrors() throws {
        var bundle = TestTensorBundle(shardCount: 1)
        bundle.addFloat("a", shape: [1], values: [1], shard: 0)
        bundle.addFloat("b", shape: [1], values: [2], shard: 0)
        XCTAssertThrowsError(try TFCheckpoint.Index(bytes: bundle.index(compressionType: 1))) {
            XCTAssertTrue("\($0)".contains("snappy-compressed"), "\($0)")
        }
        XCTAssertThrowsError(try TFCheckpoint.Index(bytes: bundle.index(compressionType: 7))) {
            XCTAssertTrue("\($0)".contains("unknown compression type 7"), "\($0)")
        }
        XCTAssertThrowsError(try TFCheckpoint.Index(bytes: bundle.index(reverseKeys: true))) {
            XCTAssertTrue("\($0)".contains("out of order"), "\($0)")
        }
        XCTAssertThrowsError(try TFCheckpoint.Index(bytes: bundle.index(header: false))) {
            XCTAssertTrue("\($0)".contains("no bundle header"), "\($0)")
        }
        var index = bundle.index()
        index[3] ^= 0x10
        XCTAssertThrowsError(try TFCheckpoint.Index(bytes: index)) {
            XCTAssertTrue("\($0)".contains("crc32c mismatch") && "\($0)".contains("index file is corrupt"), "\($0)")
        }
        XCTAssertThrowsError(try TFCheckpoint.Index(bytes: Array(repeating: 0, count: 100))) {
            XCTAssertTrue("\($0)".contains("bad table magic"), "\($0)")
        }
        XCTAssertThrowsError(try TFCheckpoint.Index(bytes: [1, 2, 3])) {
            XCTAssertTrue("\($0)".contains("too short"), "\($0)")
        }
        // An entry whose data lies past the end of the shard (a truncated data file).
        XCTAssertThrowsError(try TFCheckpoint(index: bundle.index(), shards: [Array(bundle.shards[0].dropLast())])) {
            XCTAssertTrue("\($0)".contains("entry 'b': bytes 4..<8 lie outside data shard 0 (7 bytes; truncated file?)"), "\($0)")
        }
    }
}

/// Writes tensor bundles the way TensorFlow's BundleWriter and LevelDB's TableBuilder do,
/// with knobs (block size, restart interval) that the one real file does not exercise.
struct TestTensorBundle {
    var shardCount: Int
    var bigEndian = false
    var shards: [[UInt8]]
    var entries: [(key: String, value: [UInt8])] = []

    init(shardCount: Int, bigEndian: Bool = false) {
        self.shardCount = shardCount
        self.bigEndian = bigEndian
        shards = Array(repeating: [], count: shardCount)
    }

    static func varint(_ v: UInt64) -> [UInt8] {
        var v = v, out: [UInt8] = []
        while v >= 0x80 { out.append(UInt8(v & 0x7f) | 0x80); v >>= 7 }
        out.append(UInt8(v))
        return out
    }

    static func field(_ n: Int, varint v: UInt64) -> [UInt8] { varint(UInt64(n << 3)) + varint(v) }
    static func field(_ n: Int, bytes: [UInt8]) -> [UInt8] { varint(UInt64(n << 3 | 2)) + varint(UInt64(bytes.count)) + bytes }
    static func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }

    static func entry(dtype: Int, shape: [Int], shard: Int, offset: Int, size: Int, crc: UInt32, slices: Int = 0) -> [UInt8] {
        var shapeProto: [UInt8] = []
        for d in shape { shapeProto += field(2, bytes: field(1, varint: UInt64(d))) }
        var out = field(1, varint: UInt64(dtype)) + field(2, bytes: shapeProto)
        if shard != 0 { out += field(3, varint: UInt64(shard)) }
        if offset != 0 { out += field(4, varint: UInt64(offset)) }
        out += field(5, varint: UInt64(size))
        out += [6 << 3 | 5] + le32(CRC32C.mask(crc))
        for _ in 0..<slices { out += field(7, bytes: []) }
        return out
    }

    mutating func addRaw(_ name: String, dtype: Int, shape: [Int], bytes: [UInt8], shard: Int, crc: UInt32? = nil) {
        let offset = shards[shard].count
        shards[shard] += bytes
        entries.append((name, Self.entry(dtype: dtype, shape: shape, shard: shard, offset: offset, size: bytes.count,
                                         crc: crc ?? CRC32C.checksum(bytes))))
    }

    mutating func addFloat(_ name: String, shape: [Int], values: [Float], shard: Int) {
        let bytes = values.flatMap { v -> [UInt8] in
            let b = Self.le32(v.bitPattern)
            return bigEndian ? b.reversed() : b
        }
        addRaw(name, dtype: 1, shape: shape, bytes: bytes, shard: shard)
    }

    /// TensorFlow's string tensor layout and its crc over the lengths as fixed-width integers.
    mutating func addStrings(_ name: String, _ strings: [String], shard: Int) {
        var lengths: [UInt8] = [], crc: UInt32 = 0
        for s in strings {
            lengths += Self.varint(UInt64(s.utf8.count))
            let fixed = Self.le32(UInt32(s.utf8.count))
            crc = CRC32C.checksum(bigEndian ? fixed.reversed() : fixed, extending: crc)
        }
        let lengthCRC = Self.le32(CRC32C.mask(crc))
        crc = CRC32C.checksum(lengthCRC, extending: crc)
        let body = strings.flatMap { Array($0.utf8) }
        crc = CRC32C.checksum(body, extending: crc)
        addRaw(name, dtype: 7, shape: [strings.count], bytes: lengths + lengthCRC + body, shard: shard, crc: crc)
    }

    mutating func addSliced(_ name: String) {
        entries.append((name, Self.entry(dtype: 1, shape: [4], shard: 0, offset: 0, size: 0, crc: 0, slices: 1)))
    }

    static func block(_ kvs: [(key: [UInt8], value: [UInt8])], restartInterval: Int) -> [UInt8] {
        var out: [UInt8] = [], restarts: [UInt32] = [], last: [UInt8] = []
        for (i, kv) in kvs.enumerated() {
            var shared = 0
            if i % restartInterval == 0 {
                restarts.append(UInt32(out.count))
            } else {
                while shared < min(last.count, kv.key.count), last[shared] == kv.key[shared] { shared += 1 }
            }
            out += varint(UInt64(shared)) + varint(UInt64(kv.key.count - shared)) + varint(UInt64(kv.value.count))
            out += kv.key[shared...] + kv.value
            last = kv.key
        }
        if restarts.isEmpty { restarts = [0] }
        for r in restarts { out += le32(r) }
        return out + le32(UInt32(restarts.count))
    }

    func index(blockSize: Int = 4096, restartInterval: Int = 16, compressionType: UInt8 = 0,
               reverseKeys: Bool = false, header: Bool = true) -> [UInt8] {
        var kvs = entries.map { (key: Array($0.key.utf8), value: $0.value) }.sorted { $0.key.lexicographicallyPrecedes($1.key) }
        if reverseKeys { kvs.reverse() }
        if header {
            let version = Self.field(1, varint: 1)
            let h = Self.field(1, varint: UInt64(shardCount)) + Self.field(2, varint: bigEndian ? 1 : 0) + Self.field(3, bytes: version)
            kvs.insert((key: [], value: h), at: 0)
        }
        var file: [UInt8] = []
        func write(_ block: [UInt8]) -> [UInt8] {
            let handle = Self.varint(UInt64(file.count)) + Self.varint(UInt64(block.count))
            file += block + [compressionType]
            file += Self.le32(CRC32C.mask(CRC32C.checksum(block + [compressionType])))
            return handle
        }
        var indexEntries: [(key: [UInt8], value: [UInt8])] = []
        var pending: [(key: [UInt8], value: [UInt8])] = []
        var pendingBytes = 0
        for kv in kvs {
            pending.append(kv)
            pendingBytes += kv.key.count + kv.value.count + 3
            if pendingBytes >= blockSize {
                indexEntries.append((pending.last!.key, write(Self.block(pending, restartInterval: restartInterval))))
                pending = []
                pendingBytes = 0
            }
        }
        if !pending.isEmpty { indexEntries.append((pending.last!.key, write(Self.block(pending, restartInterval: restartInterval)))) }
        let meta = write(Self.block([], restartInterval: 1))
        let idx = write(Self.block(indexEntries, restartInterval: 1))
        var footer = meta + idx
        footer += [UInt8](repeating: 0, count: 40 - footer.count)
        footer += (0..<8).map { UInt8(truncatingIfNeeded: UInt64(0xdb47_7524_8b80_fb57) >> (8 * UInt64($0))) }
        return file + footer
    }
}
