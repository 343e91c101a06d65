import Foundation

/// The training windows of every rank of a run in one order: the order one process loading all
/// the data would give them (pieces in the order of their pairs, `performanceKeys`; windows in
/// time), so a seed draws the same batches whatever the number of ranks. Each rank loads only
/// its share of the pieces; a window is fetched from the rank that holds it (`Trainer`).
public struct WindowTable: Sendable, Equatable {
    /// Per window: the rank holding it, and its index in that rank's `TrainingSet.windows`.
    public var owner: [Int32] = []
    public var local: [Int32] = []
    /// Totals over all ranks, for the run's report.
    public var pieces = 0
    public var seconds = 0.0
    public var droppedForPolyphony = 0
    public var skipped = 0

    public var count: Int { owner.count }

    /// One process: every window is its own, in its own order.
    public static func solo(_ t: TrainingSet) -> WindowTable {
        WindowTable(owner: [Int32](repeating: 0, count: t.windows.count), local: (0..<t.windows.count).map { Int32($0) },
                    pieces: t.performances.count, seconds: t.seconds, droppedForPolyphony: t.droppedForPolyphony, skipped: t.skipped.count)
    }

    /// Every rank's share of the pieces, put in order (collective).
    public static func gather(_ t: TrainingSet, ranks: Ranks) -> WindowTable {
        if ranks.size == 1 { return solo(t) }
        // [seconds (bits), dropped, skipped, pieces, then per piece: key, first window, windows]
        var mine: [Int64] = [Int64(bitPattern: t.seconds.bitPattern), Int64(t.droppedForPolyphony), Int64(t.skipped.count), Int64(t.performances.count)]
        var first = [Int](repeating: 0, count: t.performances.count), count = first
        for (i, w) in t.windows.enumerated().reversed() { first[w.performance] = i }
        for w in t.windows { count[w.performance] += 1 }
        for p in t.performances.indices { mine += [Int64(t.performanceKeys[p]), Int64(first[p]), Int64(count[p])] }
        var table = WindowTable()
        var pieces: [(key: Int64, rank: Int32, first: Int64, count: Int64)] = []
        for (r, bytes) in ranks.allgather([UInt8](raw: mine)).enumerated() {
            let v = bytes.values(Int64.self, at: 0, count: bytes.count / 8)
            table.seconds += Double(bitPattern: UInt64(bitPattern: v[0]))
            table.droppedForPolyphony += Int(v[1]); table.skipped += Int(v[2]); table.pieces += Int(v[3])
            for p in 0..<Int(v[3]) { pieces.append((v[4 + 3 * p], Int32(r), v[5 + 3 * p], v[6 + 3 * p])) }
        }
        for p in pieces.sorted(by: { $0.key < $1.key }) {
            for k in 0..<p.count { table.owner.append(p.rank); table.local.append(Int32(p.first + k)) }
        }
        return table
    }
}
