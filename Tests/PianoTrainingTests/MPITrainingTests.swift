import DDSPPiano
import Foundation
import PianoIO
import PianoTestKit
import PianoTraining
import XCTest

/// `mpirun --oversubscribe -np 2 ddsp-piano-train train …` as a cluster user runs it (Open MPI
/// from Debian, on this one machine): the same run as `--threads 2` to the bit, stopped by
/// --max-minutes and resumed with another number of ranks, stopped by Ctrl-C on mpirun, and by a
/// rank that dies; each stop leaves a checkpoint that continues the run.
final class MPITrainingTests: XCTestCase {
    var dir: URL!
    var data: URL!

    override func setUpWithError() throws {
        _ = try TestKit.executable("ddsp-piano-train")
        guard Self.mpirun != nil else {
            print("skipped: mpirun not installed (apt install openmpi-bin)")
            throw XCTSkip("mpirun not installed")
        }
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("ddsp-train-mpi-\(getpid())-\(UUID().uuidString)")
        data = dir.appendingPathComponent("data")
        // Three training pieces (rank 0 loads two of them, rank 1 one) and a validation piece.
        try TrainerTests.writePair(folder: data.appendingPathComponent("train/grand"), name: "a", seconds: 8, seed: 1)
        try TrainerTests.writePair(folder: data.appendingPathComponent("train/upright"), name: "b", seconds: 7, seed: 2)
        try TrainerTests.writePair(folder: data.appendingPathComponent("train/grand"), name: "c", seconds: 6, seed: 4)
        try TrainerTests.writePair(folder: data.appendingPathComponent("validation/grand"), name: "d", seconds: 5, seed: 3)
    }

    override func tearDown() { if let dir { try? FileManager.default.removeItem(at: dir) } }

    static let mpirun: URL? = ["/usr/bin/mpirun", "/usr/local/bin/mpirun"].map { URL(fileURLWithPath: $0) }
        .first { FileManager.default.isExecutableFile(atPath: $0.path) }

    struct Run { var status: Int32; var out: String; var err: String }

    /// Starts the trainer, under `mpirun --oversubscribe -np ranks` when ranks > 0.
    func start(ranks: Int, _ args: [String]) throws -> (Process, URL, URL) {
        let p = Process()
        let tool = try TestKit.executable("ddsp-piano-train")
        if ranks > 0 {
            p.executableURL = Self.mpirun!
            p.arguments = ["--oversubscribe", "-np", String(ranks), tool.path] + args
        } else {
            p.executableURL = tool
            p.arguments = args
        }
        var env = ProcessInfo.processInfo.environment
        if getuid() == 0 { env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"; env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1" }
        p.environment = env
        p.currentDirectoryURL = dir
        let id = UUID().uuidString
        let o = dir.appendingPathComponent("\(id).out"), e = dir.appendingPathComponent("\(id).err")
        _ = FileManager.default.createFile(atPath: o.path, contents: nil); _ = FileManager.default.createFile(atPath: e.path, contents: nil)
        p.standardOutput = try FileHandle(forWritingTo: o); p.standardError = try FileHandle(forWritingTo: e)
        print("$ \(ranks > 0 ? "mpirun --oversubscribe -np \(ranks) " : "")ddsp-piano-train \(args.joined(separator: " "))")
        try p.run()
        return (p, o, e)
    }

    func finish(_ p: Process, _ o: URL, _ e: URL) throws -> Run {
        p.waitUntilExit()
        let r = Run(status: p.terminationStatus, out: try String(contentsOf: o, encoding: .utf8), err: try String(contentsOf: e, encoding: .utf8))
        print("  → \(r.status)\n\(r.out)\(r.err)")
        return r
    }

    func run(ranks: Int, _ args: [String]) throws -> Run {
        let (p, o, e) = try start(ranks: ranks, args)
        return try finish(p, o, e)
    }

    func trainArgs(_ run: String, steps: Int, threads: Int) -> [String] {
        ["train", "--data", data.path, "--run", dir.appendingPathComponent(run).path, "--phases", "1", "--steps", String(steps),
         "--batch-size", "3", "--validate-every", "2", "--checkpoint-every", "100", "--validation-segments", "2",
         "--seed", "5", "--threads", String(threads)]
    }

    func checkpoint(_ run: String) throws -> TrainingCheckpoint {
        try TrainingCheckpoint.load(dir.appendingPathComponent(run).appendingPathComponent("checkpoint.safetensors"))
    }

    /// The log's records with `key`, as text (the values as the log wrote them).
    func logged(_ run: String, _ key: String) throws -> [String] {
        let text = try String(contentsOf: dir.appendingPathComponent(run).appendingPathComponent("log.jsonl"), encoding: .utf8)
        return text.split(separator: "\n").compactMap { line -> String? in
            guard let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], let v = o[key] else { return nil }
            return "step \(o["step"] ?? "?"): \(v)"
        }
    }

    /// Every tensor of two checkpoints (weights and Adam's moments) bit for bit; the largest
    /// difference is printed.
    func assertSameBits(_ a: TrainingCheckpoint, _ b: TrainingCheckpoint, _ what: String) {
        XCTAssertEqual(a.adam.step, b.adam.step, what)
        let ta = a.file.safetensors().tensors, tb = b.file.safetensors().tensors
        XCTAssertEqual(Set(ta.keys), Set(tb.keys), what)
        var differing: [String] = [], worst: Float = 0
        for (name, t) in ta {
            guard let u = tb[name], u.count == t.count else { differing.append(name); continue }
            if zip(t.values, u.values).contains(where: { $0.bitPattern != $1.bitPattern }) {
                differing.append(name)
                worst = max(worst, zip(t.values, u.values).map { abs($0 - $1) }.max() ?? 0)
            }
        }
        for (name, m) in a.adam.m where b.adam.m[name].map({ zip(m, $0).contains { $0.bitPattern != $1.bitPattern } }) ?? true {
            differing.append("adam.m." + name)
        }
        for (name, v) in a.adam.v where b.adam.v[name].map({ zip(v, $0).contains { $0.bitPattern != $1.bitPattern } }) ?? true {
            differing.append("adam.v." + name)
        }
        print("\(what): \(ta.count) weight tensors and \(a.adam.m.count * 2) moments compared, \(differing.count) differ (largest weight difference \(worst))")
        XCTAssertEqual(differing, [], what)
    }

    func testTwoRanksTrainAsTwoThreadsToTheBitAndResumeWithAnotherCount() throws {
        let plain = try run(ranks: 0, trainArgs("threads", steps: 4, threads: 2))
        XCTAssertEqual(plain.status, 0)
        let mpi = try run(ranks: 2, trainArgs("ranks", steps: 4, threads: 1))
        XCTAssertEqual(mpi.status, 0, mpi.err)
        XCTAssertTrue(mpi.out.contains("2 MPI ranks × 1 thread(s)"), mpi.out)
        XCTAssertEqual(mpi.out.components(separatedBy: "done: 4 steps").count - 1, 1, "only rank 0 reports")
        // Only rank 0 reports and writes; the data report counts every rank's pieces.
        XCTAssertTrue(mpi.out.contains("data: 3 pieces"), mpi.out)
        for key in ["loss", "spectral_loss", "gradient_norm", "validation_loss"] {
            let a = try logged("threads", key), b = try logged("ranks", key)
            print("\(key): --threads 2 \(a) | -np 2 \(b)")
            XCTAssertEqual(a, b, key)
            XCTAssertFalse(a.isEmpty, key)
        }
        assertSameBits(try checkpoint("threads"), try checkpoint("ranks"), "-np 2 against --threads 2")

        // --max-minutes under MPI stops every rank after a step with a checkpoint; a plain
        // process with two threads (the same two replicas) continues it to the same bits.
        let stopped = try run(ranks: 2, trainArgs("resumed", steps: 4, threads: 1) + ["--max-minutes", "0.0001"])
        XCTAssertEqual(stopped.status, 0, stopped.err)
        XCTAssertTrue(stopped.out.contains("time limit reached at step 1"), stopped.out)
        XCTAssertEqual(try checkpoint("resumed").adam.step, 1)
        let resumed = try run(ranks: 0, ["train", "--run", dir.appendingPathComponent("resumed").path, "--resume", "--threads", "2"])
        XCTAssertEqual(resumed.status, 0, resumed.err)
        XCTAssertTrue(resumed.out.contains("done: 4 steps"), resumed.out)
        assertSameBits(try checkpoint("threads"), try checkpoint("resumed"), "-np 2 stopped at step 1, resumed by one process")

        // Resumed with three ranks of one thread: three replicas instead of two, said so; it
        // goes on from the checkpoint (not the same bits, the gradient is summed over other parts).
        let more = try run(ranks: 2, trainArgs("more", steps: 4, threads: 1) + ["--max-minutes", "0.0001"])
        XCTAssertEqual(more.status, 0, more.err)
        let three = try run(ranks: 3, ["train", "--run", dir.appendingPathComponent("more").path, "--resume", "--threads", "1"])
        XCTAssertEqual(three.status, 0, three.err)
        XCTAssertTrue(three.out.contains("the run had 2 replicas and goes on with 3"), three.out)
        XCTAssertTrue(three.out.contains("done: 4 steps"), three.out)
        let c = try checkpoint("more")
        XCTAssertEqual(c.adam.step, 4)
        XCTAssertEqual(try logged("more", "loss").count, 4, "each step logged once")
        XCTAssertTrue(c.file.safetensors().tensors.values.allSatisfy { $0.values.allSatisfy(\.isFinite) })
    }

    /// v2 (upstream's default model) spread over ranks: the same bits as the same replicas on threads.
    func testV2TrainsAcrossRanksAsOnThreads() throws {
        let initial = dir.appendingPathComponent("v2.safetensors")
        try WeightStore.install(.v2(StructuralV2.weights()), at: initial)
        let v2 = ["--init", initial.path]
        let plain = try run(ranks: 0, trainArgs("v2threads", steps: 2, threads: 2) + v2)
        XCTAssertEqual(plain.status, 0, plain.err)
        let mpi = try run(ranks: 2, trainArgs("v2ranks", steps: 2, threads: 1) + v2)
        XCTAssertEqual(mpi.status, 0, mpi.err)
        XCTAssertTrue(mpi.out.contains("model: v2"), mpi.out)
        XCTAssertEqual(try logged("v2threads", "loss"), try logged("v2ranks", "loss"))
        assertSameBits(try checkpoint("v2threads"), try checkpoint("v2ranks"), "v2: -np 2 against --threads 2")
    }

    /// Waits until the run's log has a record of `step`.
    func waitForStep(_ run: String, _ step: Int, while p: Process, seconds: Double = 300) {
        let log = dir.appendingPathComponent(run).appendingPathComponent("log.jsonl")
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline, p.isRunning {
            if let text = try? String(contentsOf: log, encoding: .utf8), text.contains("\"step\":\(step),") { return }
            usleep(50_000)
        }
    }

    /// The pid of the trainer of `rank` among mpirun's children.
    func pid(ofRank rank: Int, under mpirun: Process) -> pid_t? {
        let all = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        for entry in all {
            guard let pid = pid_t(entry),
                  let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { continue }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            guard fields.count > 2, pid_t(fields[1]) == mpirun.processIdentifier,
                  let env = FileManager.default.contents(atPath: "/proc/\(pid)/environ") else { continue }
            let vars = env.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            if vars.contains("OMPI_COMM_WORLD_RANK=\(rank)") { return pid }
        }
        return nil
    }

    func testCtrlCOnMpirunAndAFailedRankLeaveACheckpointThatContinues() throws {
        // Ctrl-C on mpirun: it passes SIGTERM to the ranks and kills them a second later;
        // rank 0 writes the last finished step's checkpoint at once.
        // (The log has a step's record just before rank 0 keeps its checkpoint: wait for step 3.)
        let (p, o, e) = try start(ranks: 2, trainArgs("interrupted", steps: 200, threads: 1))
        waitForStep("interrupted", 3, while: p)
        XCTAssertTrue(p.isRunning, "the run ended before it could be interrupted")
        kill(p.processIdentifier, SIGINT)
        let r = try finish(p, o, e)
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.out.contains("checkpoint of step"), r.out)
        let c = try checkpoint("interrupted")
        print("Ctrl-C on mpirun: checkpoint at step \(c.adam.step)")
        XCTAssertGreaterThanOrEqual(c.adam.step, 2); XCTAssertLessThan(c.adam.step, 200)

        // Rank 1 dies (SIGKILL): mpirun stops rank 0, which writes its checkpoint.
        let (q, o2, e2) = try start(ranks: 2, trainArgs("failed", steps: 200, threads: 1))
        waitForStep("failed", 3, while: q)
        XCTAssertTrue(q.isRunning, "the run ended before a rank could fail")
        let victim = try XCTUnwrap(pid(ofRank: 1, under: q), "rank 1's process not found under mpirun")
        kill(victim, SIGKILL)
        let f = try finish(q, o2, e2)
        XCTAssertNotEqual(f.status, 0)
        XCTAssertTrue(f.out.contains("checkpoint of step"), f.out + f.err)
        let d = try checkpoint("failed")
        print("rank 1 killed: checkpoint at step \(d.adam.step)")
        XCTAssertGreaterThanOrEqual(d.adam.step, 2)

        // Each continues (one process, the same two replicas) from where it stopped: a step more.
        for name in ["interrupted", "failed"] {
            let before = try checkpoint(name).adam.step
            let more = try run(ranks: 0, ["train", "--run", dir.appendingPathComponent(name).path, "--resume", "--threads", "2",
                                          "--max-minutes", "0.0001"])
            XCTAssertEqual(more.status, 0, more.err)
            XCTAssertTrue(more.out.contains("resuming") && more.out.contains("time limit reached at step \(before + 1)"), more.out)
        }
    }
}

/// What needs no MPI installed: the trainer's error when a launcher's environment is there but
/// Open MPI is not, and the cluster projection of `ddsp-piano-train bench`.
final class MPIWithoutLauncherTests: XCTestCase {
    func testLaunchedWithoutOpenMPIGivesOneLine() throws {
        let tool = try TestKit.executable("ddsp-piano-train")
        let p = Process()
        p.executableURL = tool
        p.arguments = ["train", "--data", "/nonexistent", "--run", FileManager.default.temporaryDirectory.appendingPathComponent("mpi-none-\(getpid())").path]
        var env = ProcessInfo.processInfo.environment
        env["OMPI_COMM_WORLD_SIZE"] = "2"; env["DDSP_PIANO_LIBMPI"] = "libmpi-not-here.so.40"
        p.environment = env
        let err = Pipe()
        p.standardError = err; p.standardOutput = Pipe()
        try p.run(); p.waitUntilExit()
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        print("exit \(p.terminationStatus): \(text)")
        XCTAssertEqual(p.terminationStatus, 1)
        XCTAssertEqual(text.split(separator: "\n").count, 1, text)
        XCTAssertTrue(text.contains("libmpi-not-here.so.40") && text.contains("apt install openmpi-bin"), text)
    }

    func testClusterProjection() {
        // 1 segment/s per replica, 2 threads per machine, 100 h of audio (240 000 windows).
        func project(_ m: Int, grow: Bool, network: Double = .infinity) -> TrainingBenchmark.ClusterProjection {
            TrainingBenchmark.projectCluster(machines: m, threads: 2, replicaSegmentsPerSecond: 1, parameters: 300_000,
                                             audioHours: 100, networkBytesPerSecond: network, growBatch: grow)
        }
        // One machine: phase 1 (batch 6) is 3 segments per replica per step, 40 000 steps.
        XCTAssertEqual(project(1, grow: false).hoursPerEpoch, 40_000 * 3 / 3600, accuracy: 1e-9)
        // Replicas beyond the batch of 6 wait: 4 and 8 machines take as long per epoch.
        XCTAssertEqual(project(4, grow: false).hoursPerEpoch, project(8, grow: false).hoursPerEpoch, accuracy: 1e-9)
        XCTAssertEqual(project(4, grow: false).hoursPerEpoch, 40_000 * 1 / 3600, accuracy: 1e-9)
        // Batches grown to the replicas: twice the machines, half the time (no network cost).
        XCTAssertEqual(project(8, grow: true).totalHours * 2, project(4, grow: true).totalHours, accuracy: 1e-9)
        XCTAssertEqual(project(8, grow: true).batches, [16, 16, 16])
        // The exchange costs time only between machines.
        XCTAssertEqual(project(1, grow: false, network: 1e6).totalHours, project(1, grow: false).totalHours, accuracy: 1e-9)
        XCTAssertGreaterThan(project(2, grow: false, network: 1e6).totalHours, project(2, grow: false).totalHours)
    }
}
