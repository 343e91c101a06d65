import Foundation

/// Git's object id of a file's content ("blob"), as `git hash-object FILE` prints it: the
/// SHA-1 of `"blob <size>\0"` followed by the bytes. Used to verify a file pinned by its blob id
/// in a commit (`git ls-tree`) when no SHA-256 of it is published.
public enum GitBlob {
    public static func id(_ bytes: [UInt8]) -> String {
        var h = SHA1()
        h.update(Array("blob \(bytes.count)\0".utf8))
        h.update(bytes)
        return h.hexDigest()
    }
}

/// SHA-1 (FIPS 180-4). Only for git object ids: verification of a pinned blob id, never for
/// security on its own (the index holding the data file's crc32c values is pinned by SHA-256).
public struct SHA1: Sendable {
    private var h: (UInt32, UInt32, UInt32, UInt32, UInt32) = (0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476, 0xc3d2_e1f0)
    private var buffer: [UInt8] = []
    private var length: UInt64 = 0

    public init() { buffer.reserveCapacity(64) }

    @inline(__always) private static func rotl(_ x: UInt32, _ n: UInt32) -> UInt32 { (x << n) | (x >> (32 - n)) }

    private mutating func compress(_ p: UnsafeRawBufferPointer) {
        withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 80) { w in
            for i in 0..<16 {
                w[i] = UInt32(p[4 * i]) << 24 | UInt32(p[4 * i + 1]) << 16 | UInt32(p[4 * i + 2]) << 8 | UInt32(p[4 * i + 3])
            }
            for i in 16..<80 { w[i] = Self.rotl(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1) }
            var (a, b, c, d, e) = h
            for i in 0..<80 {
                let f: UInt32, k: UInt32
                switch i {
                case 0..<20: f = (b & c) | (~b & d); k = 0x5a82_7999
                case 20..<40: f = b ^ c ^ d; k = 0x6ed9_eba1
                case 40..<60: f = (b & c) | (b & d) | (c & d); k = 0x8f1b_bcdc
                default: f = b ^ c ^ d; k = 0xca62_c1d6
                }
                let t = Self.rotl(a, 5) &+ f &+ e &+ k &+ w[i]
                e = d; d = c; c = Self.rotl(b, 30); b = a; a = t
            }
            h = (h.0 &+ a, h.1 &+ b, h.2 &+ c, h.3 &+ d, h.4 &+ e)
        }
    }

    public mutating func update<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        length &+= UInt64(bytes.count)
        var rest = bytes[...]
        if !buffer.isEmpty {
            let take = min(64 - buffer.count, rest.count)
            buffer.append(contentsOf: rest.prefix(take))
            rest = rest.dropFirst(take)
            guard buffer.count == 64 else { return }
            buffer.withUnsafeBytes { compress($0) }
            buffer.removeAll(keepingCapacity: true)
        }
        let whole = Array(rest)
        let blocks = whole.count / 64
        whole.withUnsafeBytes { raw in
            for b in 0..<blocks { compress(UnsafeRawBufferPointer(rebasing: raw[(64 * b)..<(64 * b + 64)])) }
        }
        buffer.append(contentsOf: whole[(64 * blocks)...])
    }

    public mutating func finalize() -> [UInt8] {
        let bits = length &* 8
        var tail = buffer
        tail.append(0x80)
        while tail.count % 64 != 56 { tail.append(0) }
        for i in (0..<8).reversed() { tail.append(UInt8(truncatingIfNeeded: bits >> (8 * UInt64(i)))) }
        tail.withUnsafeBytes { raw in
            for b in 0..<(raw.count / 64) { compress(UnsafeRawBufferPointer(rebasing: raw[(64 * b)..<(64 * b + 64)])) }
        }
        buffer.removeAll()
        var out: [UInt8] = []
        for v in [h.0, h.1, h.2, h.3, h.4] { for s in [24, 16, 8, 0] as [UInt32] { out.append(UInt8(truncatingIfNeeded: v >> s)) } }
        return out
    }

    public mutating func hexDigest() -> String {
        finalize().map { String(format: "%02x", $0) }.joined()
    }
}
