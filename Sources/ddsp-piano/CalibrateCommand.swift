import ArgumentParser
import DDSPPiano
import Foundation
import PianoIO
import PianoStudy
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension WeightsCommand {
    struct Calibrate: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "calibrate",
            abstract: "Measure the streaming normalisation statistics on real music and store them in a weight file.",
            discussion: """
            The model's two Normalize layers use statistics of the whole piece, which a live \
            instrument cannot know: the streaming engine estimates them while it plays, starting \
            from a prior (and '.fixed' normalisation uses the prior alone). This measures that \
            prior: it runs every instrument of FILE over the MIDI files (each cropped to its \
            first --seconds), combines the exact per-piece statistics and writes them into the \
            weight file as the calibration.* tensors (atomically; the other tensors are kept). \
            Without a calibration the engine uses generic constants. See docs/NORMALIZATION.md.
            """
        )

        @Argument(help: ArgumentHelp("Weight file to calibrate (.safetensors).", valueName: "file"))
        var file: String

        @Option(name: .customLong("midi"), parsing: .upToNextOption, help: ArgumentHelp(
            "MIDI files, or folders searched recursively for *.mid / *.midi.", valueName: "path"))
        var midi: [String] = []

        @Option(name: .shortAndLong, help: ArgumentHelp("Write the calibrated weights here instead of replacing FILE.", valueName: "file.safetensors"))
        var output: String?

        @Option(help: ArgumentHelp("Seconds of each piece used (its beginning).", valueName: "s"))
        var seconds: Double = Calibration.standardCropSeconds

        @Option(help: ArgumentHelp("How per-piece statistics are combined: \(Calibration.Averaging.allCases.map(\.rawValue).joined(separator: ", ")).", valueName: "kind"))
        var averaging: String = Calibration.standardAveraging.rawValue

        func validate() throws {
            guard !midi.isEmpty else { throw ValidationError("give at least one MIDI file or folder with --midi") }
            guard seconds.isFinite, seconds >= 1, seconds <= 3600 else { throw ValidationError("--seconds must be between 1 and 3600") }
            guard Calibration.Averaging(rawValue: averaging) != nil else {
                throw ValidationError("--averaging must be one of \(Calibration.Averaging.allCases.map(\.rawValue).joined(separator: ", "))")
            }
        }

        /// The MIDI files named or found under the folders, folders' contents sorted by path.
        static func midiFiles(_ paths: [String]) throws -> [URL] {
            var files: [URL] = []
            for path in paths {
                var isDirectory: ObjCBool = false
                guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
                    throw WeightStoreError(file: path, problem: "no such file or folder", code: .notFound)
                }
                guard isDirectory.boolValue else { files.append(URL(fileURLWithPath: path)); continue }
                guard let walker = FileManager.default.enumerator(atPath: path) else {
                    throw WeightStoreError(file: path, problem: "cannot read the folder", code: .unreadable)
                }
                var found: [String] = []
                while let name = walker.nextObject() as? String {
                    let ext = (name as NSString).pathExtension.lowercased()
                    if ext == "mid" || ext == "midi" { found.append(name) }
                }
                guard !found.isEmpty else { throw WeightStoreError(file: path, problem: "no .mid or .midi files in this folder", code: .notFound) }
                files += found.sorted().map { URL(fileURLWithPath: path).appendingPathComponent($0) }
            }
            return files
        }

        func run() throws {
            try WeightsCommand.reportingErrors {
                let source = URL(fileURLWithPath: file)
                var weights = try WeightStore.load(source)
                let averagingKind = Calibration.Averaging(rawValue: averaging)!
                var pieces: [FrameConditioning] = []
                var music = 0.0
                for url in try Self.midiFiles(midi) {
                    let bytes = try WeightStore.readBytes(url, limit: 64 << 20)
                    // One bad file in a folder of music should not stop a calibration: say so, skip it.
                    func skip(_ why: String) { FileHandle.standardError.write(Data("ddsp-piano: \(url.path): \(why); skipped\n".utf8)) }
                    guard let m = try? MIDIFile(bytes: bytes) else { skip("not a readable MIDI file"); continue }
                    if m.isTruncated { skip("truncated MIDI file"); continue }
                    let c = Calibration.conditioning(midi: m, cropSeconds: seconds)
                    // Calibration.conditioning starts with upstream's warm-up.
                    let warmUp = UpstreamDefaults.warmUpFrames(frameRate: weights.hyper.frameRate)
                    guard c.frames > warmUp, c.conditioning.contains(where: { $0 > 0 }) else { skip("no notes"); continue }
                    pieces.append(c)
                    music += Double(c.frames - warmUp) / Double(weights.hyper.frameRate)
                }
                guard !pieces.isEmpty else { throw WeightStoreError(file: midi[0], problem: "no usable MIDI file to calibrate on", code: .badMIDI) }

                let showProgress = isatty(STDERR_FILENO) == 1
                var shown = -1
                let start = Date()
                let calibration = Calibration.calibrate(performances: pieces, weights: weights, averaging: averagingKind) { fraction in
                    let percent = Int(fraction * 100)
                    guard showProgress, percent != shown else { return }
                    shown = percent
                    FileHandle.standardError.write(Data("\rcalibrating: \(percent)%\u{1b}[K".utf8))
                }
                if showProgress { FileHandle.standardError.write(Data("\r\u{1b}[K".utf8)) }
                weights.calibration = calibration
                let date = ISO8601DateFormatter().string(from: Date())
                weights.provenance["calibration"] = String(format: "%d MIDI files, %.0f s of music (first %g s of each), %@, ddsp-piano weights calibrate, %@",
                                                           pieces.count, music, seconds, averagingKind.rawValue, date)
                let destination = output.map { URL(fileURLWithPath: $0) } ?? source
                try WeightStore.install(weights, at: destination)

                var out = String(format: "wrote %@: calibration of %d instruments from %d MIDI files (%.0f s of music, %.0f s)\n",
                                 destination.path, calibration.instruments, pieces.count, music, Date().timeIntervalSince(start))
                out += "instrument  context mean  variance  mono mean (min..max)    variance (min..max)\n"
                for i in 0..<calibration.instruments {
                    let s = calibration.statistics(instrument: i)
                    let name = weights.instruments[i].padding(toLength: 10, withPad: " ", startingAt: 0)
                    out += String(format: "%@  %12.4f  %8.4f  %6.3f (%6.3f..%6.3f)  %6.2f (%6.2f..%6.2f)\n", name,
                                  s.contextMean, s.contextVariance,
                                  s.monoMeans.reduce(0, +) / Float(s.monoMeans.count), s.monoMeans.min()!, s.monoMeans.max()!,
                                  s.monoVariances.reduce(0, +) / Float(s.monoVariances.count), s.monoVariances.min()!, s.monoVariances.max()!)
                }
                print(out, terminator: "")
            }
        }
    }
}
