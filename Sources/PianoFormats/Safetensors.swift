import DDSPPiano
import Foundation

public struct SafetensorsError: CodedError, CustomStringConvertible, Equatable, Sendable {
    public var description: String
    public var code: ErrorCode
    public init(_ description: String, code: ErrorCode = .badWeights) { self.description = description; self.code = code }
}

/// The safetensors container: an 8-byte little-endian header length, a JSON header
/// (`{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {string: string}}`)
/// and the raw little-endian tensor bytes. Only what weight files need is supported:
/// F32 tensors are read and written; F64/F16/BF16/I32/I64 are read and converted to Float.
public struct Safetensors: Sendable {
    public var tensors: [String: Tensor]
    public var metadata: [String: String]

    public init(tensors: [String: Tensor] = [:], metadata: [String: String] = [:]) {
        self.tensors = tensors
        self.metadata = metadata
    }

    /// Largest header we accept; real headers are a few kB.
    static let maxHeaderBytes = 100_000_000

    public init(bytes: [UInt8]) throws {
        guard bytes.count >= 8 else { throw SafetensorsError("file too short for a safetensors header (\(bytes.count) bytes)") }
        var headerLength: UInt64 = 0
        for i in 0..<8 { headerLength |= UInt64(bytes[i]) << (8 * UInt64(i)) }
        guard headerLength <= UInt64(Self.maxHeaderBytes), 8 + Int(headerLength) <= bytes.count else {
            throw SafetensorsError("header length \(headerLength) exceeds the file size (\(bytes.count) bytes)")
        }
        let headerBytes = bytes[8..<(8 + Int(headerLength))]
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: Data(headerBytes), options: [])
        } catch {
            throw SafetensorsError("header is not valid JSON")
        }
        guard let header = json as? [String: Any] else { throw SafetensorsError("header is not a JSON object") }
        let dataStart = 8 + Int(headerLength)
        let dataCount = bytes.count - dataStart
        var tensors: [String: Tensor] = [:]
        var metadata: [String: String] = [:]
        // Sorted, so that which tensor an error names does not depend on dictionary order.
        for name in header.keys.sorted() {
            let entry = header[name]!
            if name == "__metadata__" {
                guard let meta = entry as? [String: Any] else { throw SafetensorsError("__metadata__ is not an object") }
                for (k, v) in meta {
                    guard let s = v as? String else { throw SafetensorsError("metadata value for '\(k)' is not a string") }
                    metadata[k] = s
                }
                continue
            }
            guard let info = entry as? [String: Any],
                  let dtype = info["dtype"] as? String,
                  let shapeAny = info["shape"] as? [Any],
                  let offsetsAny = info["data_offsets"] as? [Any], offsetsAny.count == 2
            else { throw SafetensorsError("tensor '\(name)': malformed header entry") }
            var shape: [Int] = []
            for d in shapeAny {
                guard let n = d as? NSNumber, n.int64Value >= 0, n.int64Value < Int64(Int32.max) else {
                    throw SafetensorsError("tensor '\(name)': bad shape")
                }
                shape.append(n.intValue)
            }
            guard let b = offsetsAny[0] as? NSNumber, let e = offsetsAny[1] as? NSNumber,
                  b.int64Value >= 0, e.int64Value >= b.int64Value, e.int64Value <= Int64(dataCount)
            else { throw SafetensorsError("tensor '\(name)': data offsets outside the file") }
            let begin = dataStart + b.intValue, end = dataStart + e.intValue
            var count = 1
            for d in shape {
                let (m, overflow) = count.multipliedReportingOverflow(by: d)
                guard !overflow, m <= Int(Int32.max) else { throw SafetensorsError("tensor '\(name)': shape too large") }
                count = m
            }
            let width: Int
            switch dtype {
            case "F32", "I32": width = 4
            case "F64", "I64": width = 8
            case "F16", "BF16": width = 2
            default: throw SafetensorsError("tensor '\(name)': unsupported dtype \(dtype)")
            }
            guard end - begin == count * width else {
                throw SafetensorsError("tensor '\(name)': \(end - begin) bytes for shape \(shape) of \(dtype)")
            }
            var values = [Float](repeating: 0, count: count)
            bytes.withUnsafeBytes { raw in
                let base = raw.baseAddress! + begin
                for i in 0..<count {
                    let p = base + i * width
                    switch dtype {
                    case "F32": values[i] = Float(bitPattern: UInt32(littleEndian: p.loadUnaligned(as: UInt32.self)))
                    case "F64": values[i] = Float(Double(bitPattern: UInt64(littleEndian: p.loadUnaligned(as: UInt64.self))))
                    case "I32": values[i] = Float(Int32(littleEndian: p.loadUnaligned(as: Int32.self)))
                    case "I64": values[i] = Float(Int64(littleEndian: p.loadUnaligned(as: Int64.self)))
                    case "F16": values[i] = Float(Float16(bitPattern: UInt16(littleEndian: p.loadUnaligned(as: UInt16.self))))
                    default: // BF16: the top half of a float32
                        values[i] = Float(bitPattern: UInt32(UInt16(littleEndian: p.loadUnaligned(as: UInt16.self))) << 16)
                    }
                }
            }
            tensors[name] = Tensor(shape: shape, values: values)
        }
        self.tensors = tensors
        self.metadata = metadata
    }

    /// Serialises all tensors as F32, sorted by name, 8-byte aligned data.
    public func serialized() -> [UInt8] {
        let names = tensors.keys.sorted()
        var header: [String: Any] = [:]
        var offset = 0
        for name in names {
            let t = tensors[name]!
            header[name] = ["dtype": "F32", "shape": t.shape, "data_offsets": [offset, offset + 4 * t.count]] as [String: Any]
            offset += 4 * t.count
        }
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var json = (try? JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])) ?? Data("{}".utf8)
        while (8 + json.count) % 8 != 0 { json.append(0x20) }
        var out = [UInt8]()
        out.reserveCapacity(8 + json.count + offset)
        var n = UInt64(json.count)
        for _ in 0..<8 { out.append(UInt8(n & 0xff)); n >>= 8 }
        out.append(contentsOf: json)
        for name in names {
            for v in tensors[name]!.values {
                var bits = v.bitPattern.littleEndian
                withUnsafeBytes(of: &bits) { out.append(contentsOf: $0) }
            }
        }
        return out
    }
}
