import ArgumentParser
import DDSPPiano
import Foundation
import PianoIO

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure the streaming engine: real-time factor and the time of JACK-sized blocks.",
        discussion: """
        Plays a dense passage (all 16 voices busy, pedal, more than 16 notes at
        times) through the same engine the daemon uses, on one thread, and
        reports:
          - the real-time factor at the model's rate in one-frame blocks
            (v2: 24 kHz, 96 samples; dafx22: 16 kHz, 64 samples);
          - for each block size at --sample-rate: the worst and 99.9th-percentile
            block time against the block's period;
          - where the time goes: the engine, its networks and their matrix products
            (CPU time per second of audio), the same products through OpenBLAS, the
            kernels chosen, and the bound: the products alone at the kernels' best
            rate, the most any float32 engine of this model could do on this core;
          - the peak resident memory of the process.
        Build with -c release for meaningful figures:
          swift run -c release ddsp-piano bench
        """
    )

    @Option(help: ArgumentHelp("Weight file (.safetensors). Default: the installed default weights.", valueName: "FILE"))
    var weights: String?

    @Option(help: ArgumentHelp("Seconds of music per measurement.", valueName: "S"))
    var seconds: Double = 60

    @Option(name: .customLong("sample-rate"), help: ArgumentHelp("Host rate for the block timings.", valueName: "HZ"))
    var sampleRate: Double = 48_000

    @Option(name: .customLong("block-sizes"), help: ArgumentHelp("Comma-separated block sizes to time.", valueName: "N,N,..."))
    var blockSizes: String = "64,128,256"

    @Option(help: ArgumentHelp("Piano (index or name). (default: 9, or the last piano of a weight file with fewer)", valueName: "N|YEAR"))
    var piano: String?

    func run() throws {
        do {
            let (url, loaded) = try WeightStore().loadModel(explicit: weights)
            let instrument: Int
            if let piano {
                guard let i = loaded.instrumentIndex(piano) else {
                    throw RenderError(url.relativePath, "no piano '\(piano)'; valid: 0...\(loaded.instruments.count - 1) or \(loaded.instruments.joined(separator: ", "))", code: .notFound)
                }
                instrument = i
            } else {
                instrument = UpstreamDefaults.piano(count: loaded.instruments.count)
            }
            let sizes = blockSizes.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard !sizes.isEmpty, sizes.allSatisfy({ $0 >= 1 && $0 <= 8192 }), seconds > 0, seconds <= 3600 else {
                throw RenderError("--block-sizes/--seconds", "need block sizes in 1...8192 and 0 < seconds <= 3600")
            }
            print("weights: \(url.path), model \(loaded.summary) (piano \(loaded.instruments[instrument]))")
            let h = loaded.hyper
            let rtf = try EngineBenchmark.run(model: loaded, instrument: instrument, sampleRate: Double(h.sampleRate),
                                              blockSize: h.samplesPerFrame, seconds: seconds)
            print(String(format: "real-time factor, %d Hz, %d-sample blocks, one thread: %.1fx real time (%.1f s of audio in %.2f s; %.1f voices sounding on average; CPU time %.1fx)",
                         h.sampleRate, h.samplesPerFrame, rtf.realTimeFactor, rtf.audioSeconds, rtf.wallSeconds, rtf.meanVoicesSounding,
                         1000 / rtf.cpuPerSecond))
            let c = ComponentBenchmark.run(model: loaded, instrument: instrument, seconds: min(seconds, 10))
            let environment = ["OPENBLAS_CORETYPE", PianoKernels.environmentVariable].compactMap { name in
                ProcessInfo.processInfo.environment[name].map { "\(name)=\($0)" }
            }
            print("kernels: \(c.kernels) (this CPU runs \(PianoKernels.supported.map(\.rawValue).joined(separator: ", "))); OpenBLAS core \(c.openBLASCore)"
                  + (environment.isEmpty ? "" : " (\(environment.joined(separator: ", ")))"))
            print(String(format: "per second of audio, one thread, CPU time: engine %.1f ms = networks %.1f ms (of which matrix products %.1f ms: %.2f GFLOP at %.0f GFLOP/s; through OpenBLAS they take %.1f ms) + synthesis, reverb and the rest %.1f ms",
                         rtf.cpuPerSecond, c.network, c.products, c.flopsPerSecondOfAudio / 1e9, c.productGFLOPS, c.productsThroughOpenBLAS,
                         max(0, rtf.cpuPerSecond - c.network)))
            print(String(format: "bound: every matrix product (with the noise filters') at the kernels' best (%.0f GFLOP/s on %@) takes %.1f ms per second of audio: at most %.0fx real time on one core",
                         c.bestGFLOPS, c.bestShape.description, c.productBound, c.boundFactor))
            for size in sizes {
                let r = try EngineBenchmark.run(model: loaded, instrument: instrument, sampleRate: sampleRate, blockSize: size, seconds: seconds)
                print(String(format: "blocks of %d at %.0f Hz (period %.3f ms): worst %.3f ms (%.0f%% of the period), 99.9th percentile %.3f ms (%.0f%%), mean %.3f ms; %.1fx real time",
                             size, sampleRate, r.period * 1e3, r.worst * 1e3, 100 * r.worst / r.period,
                             r.percentile(0.999) * 1e3, 100 * r.percentile(0.999) / r.period,
                             r.wallSeconds / Double(r.blockTimes.count) * 1e3, r.realTimeFactor))
            }
            print(String(format: "peak resident memory: %.1f MB", Double(EngineBenchmark.peakResidentBytes()) / 1e6))
        } catch let error as ExitCode {
            throw error
        } catch {
            FileHandle.standardError.write(Data("ddsp-piano: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}
