import Foundation
import ArgumentParser
import DDSPPiano
import PianoIO

struct RenderBatchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "render-batch",
        abstract: "Render many MIDI files (a CSV list or a folder) on every core.",
        discussion: """
        LIST.csv: a header line, then one row per file. The MIDI path is read from the first \
        column present of \(RenderBatch.midiColumns.joined(separator: ", ")), relative to --root \
        (default: the CSV's folder); the piano from \(RenderBatch.pianoColumns.joined(separator: ", ")) \
        (an index or a name such as 2011; empty: --piano). So MAESTRO's maestro-v3.0.0.csv works \
        as it is, each file on the piano of its year (add --split test for the test set), and so \
        does upstream's synthesize_from_csv.py list. DIR: every .mid/.midi file under it, \
        recursively, on --piano.

        Outputs mirror the inputs' paths under OUTDIR (a/b.midi -> OUTDIR/a/b.wav, or .flac); a \
        piece listed for several pianos gets the piano in its name (b-2011.wav). An output that \
        exists is skipped: each file appears only when complete, so running the same command \
        again after an interruption renders only what is missing.

        Each of --jobs threads renders one file at a time with its own engine; the weights are \
        loaded once. A file that fails is reported in one line and the others go on; the exit \
        status is 1 if any failed. Progress goes to standard error, the summary to standard output.

        --shard I/N renders every N-th file of the sorted list, starting at the I-th, counting \
        from 1 (as split -n l/I/N): N machines given 1/N ... N/N split the corpus exactly. \
        Slurm: --array=1-N and --shard $SLURM_ARRAY_TASK_ID/N (for --array=0-(N-1), \
        $((SLURM_ARRAY_TASK_ID+1))/N). GNU parallel: seq N | parallel ddsp-piano render-batch \
        --jobs 1 --shard {}/N LIST.csv OUTDIR.

        Examples:
          ddsp-piano render-batch midi/ out/
          ddsp-piano render-batch --format flac --split test maestro-v3.0.0/maestro-v3.0.0.csv out/
          ddsp-piano render-batch --shard 2/8 --jobs 16 list.csv /scratch/out
        """
    )

    @Argument(help: ArgumentHelp("A CSV list of MIDI files, or a folder of them.", valueName: "LIST.csv|DIR"))
    var list: String

    @Argument(help: ArgumentHelp("Folder of the outputs (created if missing).", valueName: "OUTDIR"))
    var outputDirectory: String

    @Option(name: .shortAndLong, help: ArgumentHelp("Files rendered at once, one engine each. The default is the number of CPUs this process may use (its affinity, as Slurm or taskset set it).", valueName: "N"))
    var jobs: Int = RenderBatch.usableCPUs()

    @Option(help: ArgumentHelp("Render only shard I of N of the sorted list (1 <= I <= N).", valueName: "I/N"))
    var shard: String?

    @Option(help: ArgumentHelp("Folder the CSV's relative MIDI paths start from. (default: the CSV's folder)", valueName: "DIR"))
    var root: String?

    @Option(help: ArgumentHelp("CSV: only the rows whose 'split' column is NAME (MAESTRO: train, validation, test).", valueName: "NAME"))
    var split: String?

    @Option(help: ArgumentHelp("Weight file (.safetensors). Default: the installed default weights.", valueName: "FILE"))
    var weights: String?

    @Option(parsing: .unconditional, help: ArgumentHelp("Piano of the files without one in the list: an index or a name (dafx22: 0...9 or 2004...2018). (default: 9, or the last piano of a weight file with fewer)", valueName: "N|YEAR"))
    var piano: String?

    @Option(help: ArgumentHelp("Sample format: s16, s24, f32 (WAV), flac (FLAC, 24-bit) or flac16.", valueName: "FORMAT"))
    var format: String = "f32"

    @Option(parsing: .unconditional, help: ArgumentHelp("Scale each file so its peak is at this level (e.g. -1).", valueName: "DBFS"))
    var normalize: Double?

    @Option(name: .customLong("warm-up"), parsing: .unconditional, help: ArgumentHelp("Seconds of silence rendered before the music and cut from the output.", valueName: "S"))
    var warmUp: Double = UpstreamDefaults.warmUpSeconds

    @Option(parsing: .unconditional, help: ArgumentHelp("Seconds of each file to render (default: to the end of its last note, rounded up).", valueName: "S"))
    var duration: Double?

    @Option(help: ArgumentHelp("Seed of the noise generator; every file uses it (same seed, same output).", valueName: "N"))
    var seed: UInt64 = 0

    @Flag(name: .customLong("no-noise"), help: "Leave out the filtered-noise part of the sound.")
    var noNoise = false

    @Option(name: .customLong("sample-rate"), help: ArgumentHelp("Output sample rate (default: the model's own).", valueName: "HZ"))
    var sampleRate: Double?

    @Flag(help: ArgumentHelp("Write stereo, as 'render --stereo' (width \(DaemonRules.shown(Double(StereoImage.renderWidth))) unless --width)."))
    var stereo = false

    @Option(parsing: .unconditional, help: ArgumentHelp("Stereo width \(DaemonRules.shown(DaemonRules.stereoWidth)) (implies --stereo).", valueName: "W"))
    var width: Double?

    @Option(parsing: .unconditional, help: ArgumentHelp("A4 in hertz, \(DaemonRules.shown(DaemonRules.a4Hz)) (default 440: the model's own tuning).", valueName: "HZ"))
    var a4: Double = Double(Tuning.defaultA4)

    @Option(parsing: .unconditional, help: ArgumentHelp("Transpose every file by N semitones, \(DaemonRules.shown(DaemonRules.transposeSemitones)).", valueName: "N"))
    var transpose: Int = 0

    func run() throws {
        AudioFile.removeTemporaryFilesOnSignals()
        do {
            guard let format = AudioFormat(rawValue: format) else {
                throw RenderError("--format \(self.format)", "unknown format; valid: " + AudioFormat.allCases.map(\.rawValue).joined(separator: ", "))
            }
            let shard = try self.shard.map(RenderBatch.parseShard)
            var template = RenderJob(midi: URL(fileURLWithPath: "/dev/null"), output: URL(fileURLWithPath: "/dev/null"))
            template.piano = piano
            template.format = format
            template.normalize = normalize
            template.settings.warmUp = warmUp
            template.settings.duration = duration
            template.settings.seed = seed
            template.settings.noise = !noNoise
            template.settings.sampleRate = sampleRate
            if stereo || width != nil { template.settings.stereoWidth = Float(width ?? Double(StereoImage.renderWidth)) }
            template.settings.a4 = Float(a4)
            template.settings.transpose = transpose
            // Cores left over by the jobs go to each render's second thread (the same output).
            template.settings.threads = RenderBatch.usableCPUs() >= 2 * jobs ? 2 : 1
            let batch = RenderBatch(template: template, outputDirectory: URL(fileURLWithPath: outputDirectory), jobs: jobs)

            let listURL = URL(fileURLWithPath: list)
            var isDir: ObjCBool = false
            let isFolder = FileManager.default.fileExists(atPath: listURL.path, isDirectory: &isDir) && isDir.boolValue
            if isFolder, root != nil || split != nil {
                throw RenderError(root != nil ? "--root" : "--split", "applies to a CSV list, not to a folder")
            }
            let all = isFolder ? try batch.items(directory: listURL)
                : try batch.items(csv: listURL, root: root.map { URL(fileURLWithPath: $0) }, split: split)
            guard !all.isEmpty else { throw RenderError(list, isFolder ? "no .mid or .midi files" : "no files listed", code: .notFound) }
            let mine = shard.map { RenderBatch.shard(all, index: $0.index, count: $0.count) } ?? all
            let model = try WeightStore().loadModel(explicit: weights)
            try batch.check(model: model)
            try FileManager.default.createDirectory(at: batch.outputDirectory, withIntermediateDirectories: true)

            let todo = RenderBatch.pending(mine)
            let skipped = mine.count - todo.count
            Self.printError("ddsp-piano: \(todo.count) to render"
                + (shard.map { " (shard \($0.index)/\($0.count): \(mine.count) of \(all.count) files)" } ?? " of \(all.count) files")
                + (skipped > 0 ? ", \(skipped) already there" : "")
                + "; \(min(jobs, max(1, todo.count))) job\(min(jobs, todo.count) > 1 ? "s" : ""), \(model.model.architecture.rawValue) model, \(PianoKernels.description)")
            let total = todo.count
            var outcome = batch.run(todo, model: model) { event, finished in
                switch event {
                case .rendered(let item, let summary):
                    for w in summary.warnings { Self.printError("ddsp-piano: " + w) }
                    Self.printError("[\(finished)/\(total)] \(item.output.relativePath): "
                        + String(format: "%.1f s of audio, ", summary.audioSeconds) + "piano \(summary.instrumentName), "
                        + String(format: "%.1fx real time", summary.audioSeconds / max(summary.renderSeconds, 1e-9)))
                case .failed(_, let line):
                    Self.printError("ddsp-piano: \(line)")
                }
            }
            outcome.skipped = skipped
            print(outcome.line)
            if outcome.failed > 0 { throw ExitCode(1) }
        } catch let error as ExitCode {
            throw error
        } catch {
            Self.printError("ddsp-piano: \(error)")
            throw ExitCode(1)
        }
    }

    static func printError(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }
}
