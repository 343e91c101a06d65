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
        segments every 1.5 s) onto this machine. Build with -c release.
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

    func run() throws {
        var results: [TrainingBenchmark.Result] = []
        for t in Array(Set([1, threads])).sorted() {
            let r = try TrainingBenchmark.run(threads: t, batchSize: batchSize, minSeconds: seconds)
            results.append(r)
            print(String(format: "%d thread(s): %d steps of %d segments in %.1f s = %.3f segments/s (%.2f s per segment; mean polyphony %.1f)",
                         t, r.steps, batchSize, r.seconds, r.segmentsPerSecond, r.seconds / Double(r.segments), r.meanPolyphony))
        }
        let best = results.max { $0.segmentsPerSecond < $1.segmentsPerSecond }!
        let epoch = TrainingBenchmark.projectedHours(audioHours: maestroHours, epochs: 1, segmentsPerSecond: best.segmentsPerSecond)
        let full = TrainingBenchmark.projectedHours(audioHours: maestroHours, epochs: 20, segmentsPerSecond: best.segmentsPerSecond)
        print(String(format: "MAESTRO (%.0f h of audio = %.0f segments per epoch) with %d thread(s): %.0f h per epoch, %.0f h (%.0f days) for upstream's 20 epochs",
                     maestroHours, maestroHours * 2400, best.threads, epoch, full, full / 24))
    }
}
