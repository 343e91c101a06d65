import DDSPPiano
import Foundation

// The z-encoder's per-instrument tables in training (mirrors the embedding lookups in
// Sources/DDSPPiano/Model/PianoNetwork.swift).

/// A lookup table [entries, width]: forward gathers one row per batch element, backward
/// scatter-adds the row gradients (an instrument used twice in a batch gets both).
public struct EmbeddingTraining: Sendable {
    public let width: Int
    public var table: [Float]        // [entries, width]
    public var tableGrad: [Float]    // [entries, width]

    public init(table: [Float], width: Int) {
        precondition(width > 0 && table.count % width == 0)
        self.width = width
        self.table = table
        tableGrad = table.zeroed
    }

    public var entries: Int { table.count / width }

    /// [indices.count, width]
    public func forward(_ indices: [Int]) -> [Float] {
        var out = [Float](); out.reserveCapacity(indices.count * width)
        for i in indices {
            precondition(i >= 0 && i < entries, "embedding index \(i) out of range 0..<\(entries)")
            out.append(contentsOf: table[(i * width)..<((i + 1) * width)])
        }
        return out
    }

    /// `d` is [indices.count, width].
    public mutating func backward(_ d: [Float], indices: [Int]) {
        precondition(d.count == indices.count * width)
        for (n, i) in indices.enumerated() {
            for c in 0..<width { tableGrad[i * width + c] += d[n * width + c] }
        }
    }

    public mutating func zeroGrad() { tableGrad.setZero() }
}
