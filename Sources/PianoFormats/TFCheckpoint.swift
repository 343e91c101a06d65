import DDSPPiano
import Foundation

/// A problem with a TensorFlow checkpoint, as one line naming what is wrong.
public struct CheckpointError: CodedError, CustomStringConvertible, Equatable, Sendable {
    public var description: String
    public var code: ErrorCode
    public init(_ description: String, code: ErrorCode = .badWeights) { self.description = description; self.code = code }
}

/// A TensorFlow 2 (object-based) checkpoint read natively from its bytes: the tensor-bundle
/// `PREFIX.index` (a LevelDB-format table mapping tensor names to BundleEntryProto) and the
/// data shards `PREFIX.data-0000i-of-0000N` the entries point into.
///
/// Pure parsing, no file access: callers read the files (see PianoIO's `CheckpointFiles`).
/// Every offset and length in the input is bounds-checked, so malformed or hostile input
/// throws `CheckpointError` and never traps.
public struct TFCheckpoint: Sendable {
    /// TensorFlow's `DataType` enum (tensorflow/core/framework/types.proto).
    public struct DataType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public var rawValue: Int
        public init(rawValue: Int) { self.rawValue = rawValue }
        public static let float = DataType(rawValue: 1)
        public static let double = DataType(rawValue: 2)
        public static let int32 = DataType(rawValue: 3)
        public static let uint8 = DataType(rawValue: 4)
        public static let int16 = DataType(rawValue: 5)
        public static let int8 = DataType(rawValue: 6)
        public static let string = DataType(rawValue: 7)
        public static let int64 = DataType(rawValue: 9)
        public static let bool = DataType(rawValue: 10)
        public static let bfloat16 = DataType(rawValue: 14)
        public static let half = DataType(rawValue: 19)

        static let names: [Int: String] = [
            1: "float32", 2: "float64", 3: "int32", 4: "uint8", 5: "int16", 6: "int8", 7: "string",
            8: "complex64", 9: "int64", 10: "bool", 14: "bfloat16", 17: "uint16", 18: "complex128",
            19: "float16", 22: "uint32", 23: "uint64",
        ]
        public var description: String { Self.names[rawValue] ?? "DT_\(rawValue)" }

        /// Bytes per element for fixed-width types; nil for strings and unknown types.
        public var byteWidth: Int? {
            switch rawValue {
            case 4, 6, 10: return 1
            case 5, 14, 17, 19: return 2
            case 1, 3, 22: return 4
            case 2, 8, 9, 23: return 8
            case 18: return 16
            default: return nil
            }
        }
    }

    /// One tensor of the bundle (BundleEntryProto), without its values.
    public struct Entry: Sendable, Equatable {
        public var name: String
        public var dtype: DataType
        public var shape: [Int]
        public var shard: Int
        public var offset: Int
        public var size: Int
        /// The masked crc32c of the value bytes, as stored.
        public var crc32c: UInt32
        /// Number of slices of a partitioned variable (its values live under other keys).
        public var sliceCount: Int
        public var elementCount: Int { shape.reduce(1, *) }
    }

    /// BundleHeaderProto.
    public struct Header: Sendable, Equatable {
        public var shardCount: Int
        public var littleEndian: Bool
        public var producer: Int
        public var minConsumer: Int
    }

    /// The parsed `.index` file.
    public struct Index: Sendable {
        public let header: Header
        /// Entries in key order (the header's empty key excluded).
        public let entries: [Entry]

        public init(bytes: [UInt8]) throws {
            var header: Header?
            var entries: [Entry] = []
            var names = Set<String>()
            for (key, value) in try SSTable.entries(bytes) {
                if key.isEmpty {
                    header = try Self.header(value)
                    continue
                }
                let name = String(decoding: key, as: UTF8.self)
                guard names.insert(name).inserted else { throw CheckpointError("index: duplicate tensor name \(TFCheckpoint.quoted(name))") }
                do {
                    entries.append(try Self.entry(name: name, value))
                } catch let e as CheckpointError {
                    throw CheckpointError("index: entry \(TFCheckpoint.quoted(name)): \(e.description)")
                }
            }
            guard let header else { throw CheckpointError("index: no bundle header (the empty key is missing)") }
            self.header = header
            self.entries = entries
        }

        /// The tensor-bundle format version this reader implements (TF's kTensorBundleVersion).
        static let readerVersion = 1

        static func header(_ value: [UInt8]) throws -> Header {
            var h = Header(shardCount: 0, littleEndian: true, producer: 0, minConsumer: 0)
            var badConsumers: [UInt64] = []
            do {
                var r = ProtoReader(value)
                while !r.atEnd {
                    let (field, wire) = try r.tag()
                    switch (field, wire) {
                    case (1, 0): h.shardCount = Int(truncatingIfNeeded: Int32(truncatingIfNeeded: try r.varint()))
                    case (2, 0): h.littleEndian = try r.varint() == 0
                    case (3, 2):
                        var v = try r.message()
                        while !v.atEnd {
                            let (f, w) = try v.tag()
                            switch (f, w) {
                            case (1, 0): h.producer = Int(truncatingIfNeeded: Int32(truncatingIfNeeded: try v.varint()))
                            case (2, 0): h.minConsumer = Int(truncatingIfNeeded: Int32(truncatingIfNeeded: try v.varint()))
                            case (3, 0): badConsumers.append(try v.varint())
                            case (3, 2):
                                var packed = try v.message()
                                while !packed.atEnd { badConsumers.append(try packed.varint()) }
                            default: try v.skip(wire: w)
                            }
                        }
                    default: try r.skip(wire: wire)
                    }
                }
            } catch let e as CheckpointError {
                throw CheckpointError("index: bundle header: \(e.description)")
            }
            guard h.shardCount >= 1, h.shardCount <= 100_000 else {
                throw CheckpointError("index: bundle header gives \(h.shardCount) data shards")
            }
            guard h.minConsumer <= readerVersion, !badConsumers.contains(UInt64(readerVersion)) else {
                throw CheckpointError("index: bundle format needs a newer reader (min consumer \(h.minConsumer), this reader is version \(readerVersion))")
            }
            return h
        }

        static func entry(name: String, _ value: [UInt8]) throws -> Entry {
            var e = Entry(name: name, dtype: DataType(rawValue: 0), shape: [], shard: 0, offset: 0, size: 0, crc32c: 0, sliceCount: 0)
            var offset: Int64 = 0, size: Int64 = 0
            var r = ProtoReader(value)
            while !r.atEnd {
                let (field, wire) = try r.tag()
                switch (field, wire) {
                case (1, 0): e.dtype = DataType(rawValue: Int(truncatingIfNeeded: Int32(truncatingIfNeeded: try r.varint())))
                case (2, 2): e.shape = try shape(try r.message())
                case (3, 0): e.shard = Int(truncatingIfNeeded: Int32(truncatingIfNeeded: try r.varint()))
                case (4, 0): offset = Int64(bitPattern: try r.varint())
                case (5, 0): size = Int64(bitPattern: try r.varint())
                case (6, 5): e.crc32c = try r.fixed32()
                case (7, 2): _ = try r.message(); e.sliceCount += 1
                case (1...7, _): throw CheckpointError("field \(field) has the wrong wire type \(wire)")
                default: try r.skip(wire: wire)
                }
            }
            guard e.shard >= 0 else { throw CheckpointError("negative shard id \(e.shard)") }
            guard offset >= 0, size >= 0, offset <= Int64(Int32.max) * 64, size <= Int64(Int32.max) * 64 else {
                throw CheckpointError("bad offset \(offset) or size \(size)")
            }
            e.offset = Int(offset)
            e.size = Int(size)
            return e
        }

        static func shape(_ message: ProtoReader) throws -> [Int] {
            var r = message
            var dims: [Int] = []
            var count = 1
            while !r.atEnd {
                let (field, wire) = try r.tag()
                switch (field, wire) {
                case (2, 2):
                    var d = try r.message()
                    var size: Int64 = 0
                    while !d.atEnd {
                        let (f, w) = try d.tag()
                        if f == 1, w == 0 { size = Int64(bitPattern: try d.varint()) } else { try d.skip(wire: w) }
                    }
                    guard size >= 0 else { throw CheckpointError("shape has an unknown dimension (\(size))") }
                    guard size <= Int64(Int32.max) else { throw CheckpointError("shape dimension \(size) is too large") }
                    let (m, overflow) = count.multipliedReportingOverflow(by: Int(size))
                    guard !overflow, m <= Int(Int32.max) * 16 else { throw CheckpointError("shape is too large") }
                    count = m
                    dims.append(Int(size))
                    guard dims.count <= 64 else { throw CheckpointError("shape has more than 64 dimensions") }
                case (3, 0):
                    if try r.varint() != 0 { throw CheckpointError("shape has unknown rank") }
                default: try r.skip(wire: wire)
                }
            }
            return dims
        }
    }

    public let header: Header
    /// All tensors of the bundle in key order, float or not.
    public let entries: [Entry]
    let shards: [[UInt8]]

    /// Parses the index and checks every entry's bytes lie inside its data shard.
    public init(index: [UInt8], shards: [[UInt8]]) throws {
        try self.init(index: try Index(bytes: index), shards: shards)
    }

    public init(index: Index, shards: [[UInt8]]) throws {
        guard shards.count == index.header.shardCount else {
            throw CheckpointError("the index expects \(index.header.shardCount) data shard(s), got \(shards.count)")
        }
        for e in index.entries where e.sliceCount == 0 {
            guard e.shard >= 0, e.offset >= 0, e.size >= 0, e.shard < shards.count else {
                throw CheckpointError("entry \(TFCheckpoint.quoted(e.name)): shard \(e.shard) does not exist (\(shards.count) shard(s))")
            }
            guard e.offset + e.size <= shards[e.shard].count else {
                throw CheckpointError("entry \(TFCheckpoint.quoted(e.name)): bytes \(e.offset)..<\(e.offset + e.size) lie outside data shard \(e.shard) (\(shards[e.shard].count) bytes; truncated file?)")
            }
            if let width = e.dtype.byteWidth, e.size != e.elementCount * width {
                throw CheckpointError("entry \(TFCheckpoint.quoted(e.name)): \(e.size) bytes for shape \(e.shape) of \(e.dtype)")
            }
        }
        self.header = index.header
        self.entries = index.entries
        self.shards = shards
    }

    /// The raw value bytes of an entry, checked against its crc32c.
    public func verifiedBytes(_ e: Entry) throws -> ArraySlice<UInt8> {
        guard e.sliceCount == 0 else {
            throw CheckpointError("entry \(TFCheckpoint.quoted(e.name)) is a partitioned variable (\(e.sliceCount) slices), which is not supported")
        }
        let bytes = shards[e.shard][e.offset..<(e.offset + e.size)]
        guard let crc = try checksum(e, bytes) else { return bytes }
        let actual = CRC32C.mask(crc)
        guard actual == e.crc32c else {
            throw CheckpointError("entry \(TFCheckpoint.quoted(e.name)): crc32c mismatch in data shard \(e.shard) (stored \(CRC32C.hex(e.crc32c)), computed \(CRC32C.hex(actual))): the data file is corrupt")
        }
        return bytes
    }

    /// The crc32c TensorFlow stored for an entry's bytes; nil for types whose layout this
    /// reader does not know (variants), which are listed but never read.
    func checksum(_ e: Entry, _ bytes: ArraySlice<UInt8>) throws -> UInt32? {
        if e.dtype.byteWidth != nil { return CRC32C.checksum(bytes) }
        guard e.dtype == .string else { return nil }
        // Layout: varint64 length of each element, a 4-byte masked crc of the lengths, the
        // string bytes. The crc runs over each length as a fixed-width integer (4 bytes when
        // it fits, else 8), then the length crc and the string bytes as stored.
        var r = ProtoReader(Array(bytes))
        var crc: UInt32 = 0
        var total: UInt64 = 0
        for _ in 0..<e.elementCount {
            let n: UInt64
            do { n = try r.varint() } catch { throw CheckpointError("entry \(TFCheckpoint.quoted(e.name)): string lengths run past its bytes") }
            total &+= n
            var fixed = [UInt8]()
            let width = n <= UInt64(UInt32.max) ? 4 : 8
            for i in 0..<width { fixed.append(UInt8(truncatingIfNeeded: n >> (8 * UInt64(header.littleEndian ? i : width - 1 - i)))) }
            crc = CRC32C.checksum(fixed, extending: crc)
        }
        let rest = bytes.count - r.position
        guard rest >= 4, total == UInt64(rest - 4) else {
            throw CheckpointError("entry \(TFCheckpoint.quoted(e.name)): string lengths do not match its \(bytes.count) bytes")
        }
        let tail = bytes.dropFirst(r.position)
        return CRC32C.checksum(tail, extending: crc)
    }

    /// Checks the crc32c of every non-partitioned entry (float or not).
    public func verifyChecksums() throws {
        for e in entries where e.sliceCount == 0 { _ = try verifiedBytes(e) }
    }

    /// Every float32 tensor, keyed by its full checkpoint name, after checking its crc32c.
    /// Entries of other types (int64 counters, the string object graph) are skipped.
    public func floatTensors() throws -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for e in entries where e.dtype == .float {
            out[e.name] = try tensor(e)
        }
        return out
    }

    public func tensor(named name: String) throws -> Tensor {
        guard let e = entries.first(where: { $0.name == name }) else { throw CheckpointError("no tensor named \(TFCheckpoint.quoted(name))") }
        return try tensor(e)
    }

    func tensor(_ e: Entry) throws -> Tensor {
        guard e.dtype == .float else { throw CheckpointError("entry \(TFCheckpoint.quoted(e.name)) is \(e.dtype), not float32") }
        let bytes = try verifiedBytes(e)
        let count = e.elementCount
        var values = [Float](repeating: 0, count: count)
        let little = header.littleEndian
        bytes.withUnsafeBytes { raw in
            for i in 0..<count {
                let bits = raw.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)
                values[i] = Float(bitPattern: little ? UInt32(littleEndian: bits) : UInt32(bigEndian: bits))
            }
        }
        return Tensor(shape: e.shape, values: values)
    }

    /// A name as it appears in error messages: quoted, control characters escaped and
    /// shortened, so a hostile file cannot break the one-line message.
    public static func quoted(_ name: String) -> String {
        var out = "'"
        for (i, u) in name.unicodeScalars.enumerated() {
            if i == 200 { out += "..."; break }
            if u.value < 0x20 || u.value == 0x7f || u == "'" || u == "\\" {
                out += u.escaped(asASCII: true)
            } else {
                out.unicodeScalars.append(u)
            }
        }
        return out + "'"
    }

    // MARK: - Files around the bundle

    /// `PREFIX.data-0000i-of-0000N`, the name of data shard `i`.
    public static func shardSuffix(_ i: Int, of n: Int) -> String {
        ".data-" + String(format: "%05d", i) + "-of-" + String(format: "%05d", n)
    }

    /// The `model_checkpoint_path` of a `checkpoint` state file (CheckpointState text proto),
    /// e.g. "ckpt-0"; relative paths are relative to the state file's directory.
    public static func modelCheckpointPath(stateFile text: String) throws -> String {
        for line in text.split(whereSeparator: { $0 == "\n" || $0 == "\r" }) {
            let trimmed = line.drop(while: { $0 == " " || $0 == "\t" })
            guard trimmed.hasPrefix("model_checkpoint_path") else { continue }
            var rest = trimmed.dropFirst("model_checkpoint_path".count).drop(while: { $0 == " " || $0 == "\t" })
            guard rest.first == ":" else { continue }
            rest = rest.dropFirst().drop(while: { $0 == " " || $0 == "\t" })
            guard let quote = rest.first, quote == "\"" || quote == "'" else {
                throw CheckpointError("checkpoint state: model_checkpoint_path is not a quoted string")
            }
            var path = [UInt8]()
            var bytes = Array(rest.dropFirst().utf8)[...]
            while let c = bytes.popFirst() {
                if c == UInt8(ascii: quote == "\"" ? "\"" : "'") {
                    guard !path.isEmpty else { throw CheckpointError("checkpoint state: model_checkpoint_path is empty") }
                    return String(decoding: path, as: UTF8.self)
                }
                guard c == UInt8(ascii: "\\") else { path.append(c); continue }
                guard let n = bytes.popFirst() else { break }
                switch n {
                case UInt8(ascii: "n"): path.append(10)
                case UInt8(ascii: "t"): path.append(9)
                case UInt8(ascii: "r"): path.append(13)
                case UInt8(ascii: "0")...UInt8(ascii: "7"):
                    // Octal escape (\NNN), as protobuf's text format writes non-ASCII bytes.
                    var v = Int(n - UInt8(ascii: "0"))
                    for _ in 0..<2 {
                        guard let d = bytes.first, d >= UInt8(ascii: "0"), d <= UInt8(ascii: "7") else { break }
                        v = v * 8 + Int(d - UInt8(ascii: "0"))
                        bytes.removeFirst()
                    }
                    path.append(UInt8(truncatingIfNeeded: v))
                default: path.append(n)
                }
            }
            throw CheckpointError("checkpoint state: unterminated model_checkpoint_path string")
        }
        throw CheckpointError("checkpoint state: no model_checkpoint_path line")
    }
}


// MARK: - crc32c

/// CRC-32C (Castagnoli), as LevelDB and TensorFlow use for block and tensor checksums.
public enum CRC32C {
    /// Eight 256-entry tables for slice-by-8 (table k maps a byte k positions further back).
    static let tables: [UInt32] = {
        var t = [UInt32](repeating: 0, count: 8 * 256)
        for i in 0..<256 {
            var c = UInt32(i)
            for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0x82f6_3b78 : c >> 1 }
            t[i] = c
        }
        for k in 1..<8 {
            for i in 0..<256 {
                let prev = t[(k - 1) * 256 + i]
                t[k * 256 + i] = (prev >> 8) ^ t[Int(prev & 0xff)]
            }
        }
        return t
    }()

    public static func checksum(_ bytes: UnsafeRawBufferPointer, extending initial: UInt32 = 0) -> UInt32 {
        var crc = ~initial
        tables.withUnsafeBufferPointer { t in
            var i = 0
            let n = bytes.count
            while n - i >= 8 {
                let lo = crc ^ UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: i, as: UInt32.self))
                let hi = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: i + 4, as: UInt32.self))
                crc = t[7 * 256 + Int(lo & 0xff)] ^ t[6 * 256 + Int((lo >> 8) & 0xff)]
                    ^ t[5 * 256 + Int((lo >> 16) & 0xff)] ^ t[4 * 256 + Int(lo >> 24)]
                    ^ t[3 * 256 + Int(hi & 0xff)] ^ t[2 * 256 + Int((hi >> 8) & 0xff)]
                    ^ t[1 * 256 + Int((hi >> 16) & 0xff)] ^ t[Int(hi >> 24)]
                i += 8
            }
            while i < n {
                crc = t[Int((crc ^ UInt32(bytes[i])) & 0xff)] ^ (crc >> 8)
                i += 1
            }
        }
        return ~crc
    }

    public static func checksum<C: Collection>(_ bytes: C, extending initial: UInt32 = 0) -> UInt32 where C.Element == UInt8 {
        if let r = bytes.withContiguousStorageIfAvailable({ checksum(UnsafeRawBufferPointer($0), extending: initial) }) { return r }
        return Array(bytes).withUnsafeBytes { checksum($0, extending: initial) }
    }

    static func hex(_ v: UInt32) -> String {
        let s = String(v, radix: 16)
        return "0x" + String(repeating: "0", count: 8 - s.count) + s
    }

    /// LevelDB's mask, so that a crc stored next to the data it covers is not itself a valid crc.
    public static func mask(_ crc: UInt32) -> UInt32 { ((crc >> 15) | (crc << 17)) &+ 0xa282_ead8 }

    public static func unmask(_ masked: UInt32) -> UInt32 {
        let rot = masked &- 0xa282_ead8
        return (rot >> 17) | (rot << 15)
    }
}

// MARK: - Protobuf wire format

/// A cursor over one protobuf message (a range of a shared byte array).
struct ProtoReader {
    let bytes: [UInt8]
    var position: Int
    let end: Int

    init(_ bytes: [UInt8]) { self.init(bytes, 0, bytes.count) }
    init(_ bytes: [UInt8], _ start: Int, _ end: Int) { self.bytes = bytes; position = start; self.end = end }

    var atEnd: Bool { position >= end }

    mutating func varint() throws -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard position < end else { throw CheckpointError("protobuf varint runs past the end") }
            guard shift < 64 else { throw CheckpointError("protobuf varint longer than 10 bytes") }
            let b = bytes[position]
            position += 1
            result |= UInt64(b & 0x7f) << shift
            if b & 0x80 == 0 { return result }
            shift += 7
        }
    }

    mutating func tag() throws -> (field: Int, wire: Int) {
        let t = try varint()
        let field = t >> 3
        guard field >= 1, field <= 0x1fff_ffff else { throw CheckpointError("protobuf field number \(field) is invalid") }
        return (Int(field), Int(t & 7))
    }

    /// The length-delimited payload at the cursor, as its own reader.
    mutating func message() throws -> ProtoReader {
        let n = try varint()
        guard n <= UInt64(end - position) else { throw CheckpointError("protobuf length \(n) runs past the end") }
        let sub = ProtoReader(bytes, position, position + Int(n))
        position += Int(n)
        return sub
    }

    mutating func fixed32() throws -> UInt32 {
        guard end - position >= 4 else { throw CheckpointError("protobuf fixed32 runs past the end") }
        var v: UInt32 = 0
        for i in 0..<4 { v |= UInt32(bytes[position + i]) << (8 * UInt32(i)) }
        position += 4
        return v
    }

    mutating func skip(wire: Int) throws {
        switch wire {
        case 0: _ = try varint()
        case 1:
            guard end - position >= 8 else { throw CheckpointError("protobuf fixed64 runs past the end") }
            position += 8
        case 2: _ = try message()
        case 5: _ = try fixed32()
        default: throw CheckpointError("protobuf wire type \(wire) is not supported")
        }
    }
}

// MARK: - LevelDB table

/// The LevelDB SSTable layout TensorFlow uses for bundle indexes: data blocks of
/// prefix-compressed keys with restart points, each followed by a 5-byte trailer
/// (compression type, masked crc32c); a metaindex and an index block; a 48-byte footer.
enum SSTable {
    static let magic: UInt64 = 0xdb47_7524_8b80_fb57
    static let footerSize = 48
    static let trailerSize = 5

    struct BlockHandle { var offset: Int; var size: Int }

    /// All (key, value) pairs of the table in order.
    static func entries(_ file: [UInt8]) throws -> [(key: [UInt8], value: [UInt8])] {
        guard file.count >= footerSize else {
            throw CheckpointError("index: file too short for a table footer (\(file.count) bytes)")
        }
        let footerStart = file.count - footerSize
        var magic: UInt64 = 0
        for i in 0..<8 { magic |= UInt64(file[file.count - 8 + i]) << (8 * UInt64(i)) }
        guard magic == Self.magic else {
            throw CheckpointError("index: bad table magic \(String(magic, radix: 16)) (not a TensorFlow checkpoint index, or truncated)")
        }
        var footer = ProtoReader(file, footerStart, file.count - 8)
        let metaindex: BlockHandle, index: BlockHandle
        do {
            metaindex = try handle(&footer, limit: footerStart)
            index = try handle(&footer, limit: footerStart)
        } catch let e as CheckpointError {
            throw CheckpointError("index: footer: \(e.description)")
        }
        _ = try block(file, metaindex, what: "metaindex block")
        var out: [(key: [UInt8], value: [UInt8])] = []
        var previous: [UInt8]?
        for (_, value) in try block(file, index, what: "index block") {
            var r = ProtoReader(value)
            let h: BlockHandle
            do { h = try handle(&r, limit: footerStart) } catch let e as CheckpointError {
                throw CheckpointError("index: index block: \(e.description)")
            }
            for kv in try block(file, h, what: "data block at offset \(h.offset)") {
                if let p = previous, !p.lexicographicallyPrecedes(kv.key) {
                    throw CheckpointError("index: keys are out of order or repeated near \(TFCheckpoint.quoted(String(decoding: kv.key, as: UTF8.self)))")
                }
                previous = kv.key
                out.append(kv)
            }
        }
        return out
    }

    static func handle(_ r: inout ProtoReader, limit: Int) throws -> BlockHandle {
        let offset = try r.varint(), size = try r.varint()
        guard offset <= UInt64(limit), size <= UInt64(limit), offset + size + UInt64(trailerSize) <= UInt64(limit) else {
            throw CheckpointError("block handle (offset \(offset), size \(size)) points outside the file")
        }
        return BlockHandle(offset: Int(offset), size: Int(size))
    }

    /// Decodes one block after checking its trailer.
    static func block(_ file: [UInt8], _ h: BlockHandle, what: String) throws -> [(key: [UInt8], value: [UInt8])] {
        let end = h.offset + h.size
        let type = file[end]
        var stored: UInt32 = 0
        for i in 0..<4 { stored |= UInt32(file[end + 1 + i]) << (8 * UInt32(i)) }
        // The checksum covers the block contents and the type byte.
        let crc = CRC32C.mask(CRC32C.checksum(file[h.offset...end]))
        guard crc == stored else {
            throw CheckpointError("index: \(what): crc32c mismatch (stored \(CRC32C.hex(stored)), computed \(CRC32C.hex(crc))): the index file is corrupt")
        }
        switch type {
        case 0: break
        case 1: throw CheckpointError("index: \(what) is snappy-compressed, which this reader does not support (TensorFlow writes bundle indexes uncompressed)")
        default: throw CheckpointError("index: \(what) has unknown compression type \(type)")
        }
        do {
            return try decodeBlock(file, h.offset, end)
        } catch let e as CheckpointError {
            throw CheckpointError("index: \(what): \(e.description)")
        }
    }

    static func decodeBlock(_ file: [UInt8], _ start: Int, _ end: Int) throws -> [(key: [UInt8], value: [UInt8])] {
        guard end - start >= 4 else { throw CheckpointError("block too short (\(end - start) bytes)") }
        var restartCount = 0
        for i in 0..<4 { restartCount |= Int(file[end - 4 + i]) << (8 * i) }
        guard restartCount <= (end - start - 4) / 4 else { throw CheckpointError("\(restartCount) restart points do not fit the block") }
        let restartsStart = end - 4 - 4 * restartCount
        var restarts = Set<Int>()
        for r in 0..<restartCount {
            var v = 0
            for i in 0..<4 { v |= Int(file[restartsStart + 4 * r + i]) << (8 * i) }
            guard v <= restartsStart - start else { throw CheckpointError("restart point \(v) lies outside the entries") }
            // An empty block still has one restart point, at the end of its (no) entries.
            if start + v < restartsStart { restarts.insert(start + v) }
        }
        var out: [(key: [UInt8], value: [UInt8])] = []
        var key: [UInt8] = []
        var r = ProtoReader(file, start, restartsStart)
        var restartsSeen = 0
        while !r.atEnd {
            let entryStart = r.position
            let shared = try r.varint(), unshared = try r.varint(), valueLength = try r.varint()
            if restarts.contains(entryStart) {
                // At a restart point the key is stored whole, so a reader can seek there.
                guard shared == 0 else { throw CheckpointError("entry at restart point \(entryStart - start) shares \(shared) key bytes") }
                restartsSeen += 1
            }
            guard shared <= UInt64(key.count) else { throw CheckpointError("entry shares \(shared) bytes of a \(key.count)-byte key") }
            guard unshared <= UInt64(restartsStart - r.position), valueLength <= UInt64(restartsStart - r.position) - unshared else {
                throw CheckpointError("entry runs past the end of the block")
            }
            key.removeSubrange(Int(shared)...)
            key.append(contentsOf: file[r.position..<(r.position + Int(unshared))])
            r.position += Int(unshared)
            out.append((key, Array(file[r.position..<(r.position + Int(valueLength))])))
            r.position += Int(valueLength)
        }
        guard restartsSeen == restarts.count else { throw CheckpointError("a restart point does not start an entry") }
        return out
    }
}
