import ArgumentParser
import Foundation
import PianoTraining

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure training throughput (segments per second) and project the time to train on MAESTRO.",
        discussion: """
        Runs phase-1 steps (forward, backward, Adam) of the full model on a generated, pedalled \
        piano texture (6-12 notes sounding, like MAESTRO) with 1 thread and with --threads, and \
        projects upstream's schedule (20 epochs of about 200 hours of MAESTRO audio, 3-s \
        segments every 1.5 s) onto this machine, and onto clusters of such machines (MPI ranks, \
        `mpirun -np N`): with upstream's batch sizes (6, 3, 6: more than 6 replicas wait) and \
        with batches grown to one segment per replica. Build with -c release.
        """
    )

    @Option(help: ArgumentHelp("Threads of the second measurement.", valueName: "n"))
    var threads: Int = max(1, ProcessInfo.processInfo.activeProcessorCount)

    @Option(help: ArgumentHelp("Seconds per measurement.", valueName: "s"))
    var seconds: Double = 30

    @Option(name: .customLong("batch-size"), help: ArgumentHelp("Segments per step.", valueName: "n"))
    var batchSize: Int = 6

    @Option(name: .customLong("maestro-hours"), help: ArgumentHelp("Hours of audio to project onto.", valueName: "h"))
    var maestroHours: Double = 200

    @Option(name: .customLong("network-gbits"), help: ArgumentHelp("Network between machines, in Gbit/s, for the cluster projection.", valueName: "g"))
    var networkGbits: Double = 10

    @Option(help: ArgumentHelp("Machine counts of the cluster projection.", valueName: "list"))
    var machines: String = "1,2,4,8,16"

    @Option(help: ArgumentHelp("Architecture to measure: dafx22 (16 kHz) or v2 (24 kHz).", valueName: "name"))
    var model: String = "dafx22"

    func validate() throws {
        guard ["dafx22", "v2"].contains(model) else { throw ValidationError("--model takes dafx22 or v2, not '\(model)'") }
    }

    func run() throws {
        var results: [TrainingBenchmark.Result] = []
        for t in Array(Set([1, threads])).sorted() {
            let r = try TrainingBenchmark.run(threads: t, batchSize: batchSize, minSeconds: seconds, model: model)
            results.append(r)
            print(String(format: "\(model), %d thread(s): %d steps of %d segments in %.1f s = %.3f segments/s (%.2f s per segment; mean polyphony %.1f)",
                         t, r.steps, batchSize, r.seconds, r.segmentsPerSecond, r.seconds / Double(r.segments), r.meanPolyphony))
        }
        let best = results.max { $0.segmentsPerSecond < $1.segmentsPerSecond }!
        let epoch = TrainingBenchmark.projectedHours(audioHours: maestroHours, epochs: 1, segmentsPerSecond: best.segmentsPerSecond)
        let full = TrainingBenchmark.projectedHours(audioHours: maestroHours, epochs: 20, segmentsPerSecond: best.segmentsPerSecond)
        print(String(format: "MAESTRO (%.0f h of audio = %.0f segments per epoch) with %d thread(s): %.0f h per epoch, %.0f h (%.0f days) for upstream's 20 epochs",
                     maestroHours, maestroHours * 2400, best.threads, epoch, full, full / 24))

        // Clusters of this machine: one replica's rate with every thread busy.
        let counts = machines.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }.filter { $0 >= 1 }
        let rate = best.segmentsPerSecond / Double(best.threads)
        print(String(format: "mpirun across machines like this one (one rank of %d thread(s) each; %d parameters exchanged per replica and step; %.0f Gbit/s network):",
                     best.threads, best.parameters, networkGbits))
        func pad(_ s: String, _ n: Int) -> String { String(repeating: " ", count: max(0, n - s.count)) + s }
        let schedule = model == "v2" ? "upstream batches 6,6 (v2: no phase 2), 17 epochs" : "upstream batches 6,3,6, 20 epochs"
        print("  machines  replicas | \(schedule): h/epoch  total | batches >= replicas: batches  h/epoch  total")
        for m in counts {
            let a = TrainingBenchmark.projectCluster(machines: m, threads: best.threads, replicaSegmentsPerSecond: rate, parameters: best.parameters,
                                                     audioHours: maestroHours, networkBytesPerSecond: networkGbits * 1e9 / 8, growBatch: false, v2: model == "v2")
            let b = TrainingBenchmark.projectCluster(machines: m, threads: best.threads, replicaSegmentsPerSecond: rate, parameters: best.parameters,
                                                     audioHours: maestroHours, networkBytesPerSecond: networkGbits * 1e9 / 8, growBatch: true, v2: model == "v2")
            print("  " + pad(String(m), 8) + "  " + pad(String(a.replicas), 8) + " | "
                  + pad(String(format: "%.1f", a.hoursPerEpoch), 31) + pad(String(format: "%.1f days", a.totalHours / 24), 11) + " | "
                  + pad(b.batches.map(String.init).joined(separator: ","), 28) + pad(String(format: "%.1f", b.hoursPerEpoch), 9)
                  + pad(String(format: "%.1f days", b.totalHours / 24), 11))
        }
    }
}
