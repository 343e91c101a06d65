import CMPI
import Foundation

/// The processes of a data-parallel run: one (a plain `ddsp-piano-train train`), or the ranks an
/// MPI launcher (`mpirun`, Slurm's `srun`) started, talking through Open MPI (CMPI loads it at
/// run time). Every collective here is called by every rank in the same order, from the
/// thread that drives the run; a rank that cannot go on calls `abort`, which stops them all.
// @unchecked Sendable: immutable after `start`; the collectives are used from one thread.
public final class Ranks: @unchecked Sendable {
    public let rank: Int
    public let size: Int
    private let mpi: Bool

    /// A single process: every collective returns its own contribution.
    public static let solo = Ranks(rank: 0, size: 1, mpi: false)

    private init(rank: Int, size: Int, mpi: Bool) { self.rank = rank; self.size = size; self.mpi = mpi }

    public var isRoot: Bool { rank == 0 }

    /// Whether an MPI launcher started this process (Open MPI's mpirun, or PMIx / PMI as Slurm's
    /// srun sets them).
    public static func launchedByMPI(_ env: [String: String] = ProcessInfo.processInfo.environment) -> Bool {
        ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE"].contains { env[$0] != nil }
    }

    /// Ranks of this launcher on this machine (for the default threads per rank); 1 when unknown.
    public static func localSize(_ env: [String: String] = ProcessInfo.processInfo.environment) -> Int {
        for key in ["OMPI_COMM_WORLD_LOCAL_SIZE", "SLURM_NTASKS_PER_NODE", "MPI_LOCALNRANKS"] {
            if let v = env[key].flatMap({ Int($0.split(separator: "(").first ?? "") }), v >= 1 { return v }
        }
        return 1
    }

    /// Joins the launcher's job (MPI_Init). Throws one line when Open MPI cannot be loaded.
    public static func start() throws -> Ranks {
        var err = [CChar](repeating: 0, count: 512)
        guard cmpi_start(&err, Int32(err.count)) == 0 else {
            throw TrainingDataError(String(decoding: err.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return Ranks(rank: Int(cmpi_rank()), size: Int(cmpi_size()), mpi: true)
    }

    /// Every rank's bytes, in rank order (the lengths may differ).
    public func allgather(_ bytes: [UInt8]) -> [[UInt8]] {
        guard mpi, size > 1 else { return [bytes] }
        var n = Int64(bytes.count)
        var counts64 = [Int64](repeating: 0, count: size)
        counts64.withUnsafeMutableBytes { r in _ = withUnsafeBytes(of: &n) { cmpi_allgather($0.baseAddress, 8, r.baseAddress) } }
        precondition(counts64.allSatisfy { $0 <= Int64(Int32.max) }, "a rank's contribution exceeds 2 GiB")
        let counts = counts64.map { Int32($0) }
        var displs = [Int32](repeating: 0, count: size)
        for i in 1..<size { displs[i] = displs[i - 1] + counts[i - 1] }
        var all = [UInt8](repeating: 0, count: Int(displs[size - 1] + counts[size - 1]))
        bytes.withUnsafeBytes { s in
            all.withUnsafeMutableBytes { r in _ = cmpi_allgatherv(s.baseAddress, Int32(bytes.count), r.baseAddress, counts, displs) }
        }
        return (0..<size).map { Array(all[Int(displs[$0])..<Int(displs[$0] + counts[$0])]) }
    }

    /// Rank `root`'s bytes on every rank.
    public func broadcast(_ bytes: [UInt8], from root: Int = 0) -> [UInt8] {
        guard mpi, size > 1 else { return bytes }
        var n = Int64(bytes.count)
        withUnsafeMutableBytes(of: &n) { _ = cmpi_broadcast($0.baseAddress, 8, Int32(root)) }
        var b = rank == root ? bytes : [UInt8](repeating: 0, count: Int(n))
        b.withUnsafeMutableBytes { _ = cmpi_broadcast($0.baseAddress, Int32(n), Int32(root)) }
        return b
    }

    /// Stops every rank of the job with `status` (the launcher ends the others).
    public func abort(_ status: Int32) -> Never {
        if mpi { cmpi_abort(status) }
        exit(status)
    }

    /// Leaves the job (MPI_Finalize); the collectives are unusable after.
    public func finish() { if mpi { _ = cmpi_finish() } }
}

extension Array where Element == UInt8 {
    /// The raw bytes of `values` (the ranks run the same binary on the same architecture).
    init<T: BitwiseCopyable>(raw values: [T]) { self = values.withUnsafeBytes { Array($0) } }

    /// `count` values of T at byte `offset`.
    func values<T: BitwiseCopyable>(_: T.Type, at offset: Int, count: Int) -> [T] {
        precondition(offset + count * MemoryLayout<T>.stride <= self.count)
        return [T](unsafeUninitializedCapacity: count) { buf, n in
            self.withUnsafeBytes { src in
                UnsafeMutableRawBufferPointer(buf).copyMemory(from: UnsafeRawBufferPointer(rebasing: src[offset..<(offset + count * MemoryLayout<T>.stride)]))
            }
            n = count
        }
    }
}
