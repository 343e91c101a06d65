import ArgumentParser
import Foundation
import PianoIO
import PianoTraining

struct DatasetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dataset",
        abstract: "Builds a training set by rendering MIDI through SoundFonts.",
        discussion: "Renders corpus MIDI (files whose SOURCES.txt licence is non-commercial are excluded) and generated "
            + "exercises (scales, chords, repeated notes, pedals, all velocities) with fluidsynth, one instrument per SoundFont "
            + "piano. Writes OUT/{train,validation,heldout}/<instrument>/<stem>.wav (mono float WAV) beside the exact "
            + "<stem>.mid that was rendered, and OUT/manifest.json. The held-out files are for evaluation only: never train on them."
    )

    @Option(name: .long, help: ArgumentHelp("Output folder (new, empty, or an earlier dataset, which is replaced).", valueName: "DIR"))
    var out: String

    @Option(name: .long, help: ArgumentHelp("Corpus folder with .mid files and SOURCES.txt (default: ../shared/midi when it exists).", valueName: "DIR"))
    var midi: String?

    @Option(name: .long, parsing: .singleValue,
            help: ArgumentHelp("Piano to render: \(SoundFontPiano.debian.map(\.name).joined(separator: ", ")), or NAME=PATH[:PROGRAM]; repeatable (default: those three).", valueName: "PIANO"))
    var soundfont: [String] = []

    @Option(name: .long, help: ArgumentHelp("fluidsynth executable (default: from the PATH).", valueName: "PATH"))
    var fluidsynth: String?

    @Option(name: .long, help: "Seed of the generated material.")
    var seed: UInt64 = 1

    @Option(name: .long, help: "Minutes of generated material per instrument (all splits).")
    var generatedMinutes: Double = 15

    @Option(name: .long, help: "Minutes of corpus training music per instrument (validation and held-out files come on top).")
    var corpusMinutes: Double = 45

    @Option(name: .long, help: "Longer corpus files are cut here, so no one piece dominates.")
    var maxSecondsPerFile: Double = 240

    @Option(name: .long, help: "fluidsynth processes run in parallel.")
    var jobs: Int = 2

    @Option(name: .long, help: "fluidsynth gain (-g); the same for every file so loudness follows velocity.")
    var gain: Double = DatasetBuilder.Options(out: URL(fileURLWithPath: "."), midi: nil).gain

    @Option(name: .long, help: "Sample rate of the audio: 16000 for dafx22, 24000 for v2 (a model trains at its own rate; lower-rate audio would lack its top octave).")
    var sampleRate: Int = DatasetBuilder.Options(out: URL(fileURLWithPath: "."), midi: nil).sampleRate

    func validate() throws {
        guard jobs >= 1 else { throw ValidationError("--jobs must be at least 1") }
        guard generatedMinutes >= 0, corpusMinutes >= 0 else { throw ValidationError("--generated-minutes and --corpus-minutes must not be negative") }
        guard maxSecondsPerFile > 0 else { throw ValidationError("--max-seconds-per-file must be positive") }
        guard gain > 0, gain <= 10 else { throw ValidationError("--gain must be in (0, 10]") }
        guard (8_000...96_000).contains(sampleRate) else { throw ValidationError("--sample-rate must be between 8000 and 96000") }
    }

    func run() throws {
        AudioFile.removeTemporaryFilesOnSignals()
        var midiDir: URL?
        if let midi {
            midiDir = URL(fileURLWithPath: midi)
        } else {
            let fallback = URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent("../shared/midi").standardizedFileURL
            if FileManager.default.fileExists(atPath: fallback.path) {
                midiDir = fallback
            } else {
                throw ValidationError("no corpus at ../shared/midi: give --midi DIR")
            }
        }
        var options = DatasetBuilder.Options(out: URL(fileURLWithPath: out), midi: midiDir)
        do { if !soundfont.isEmpty { options.pianos = try soundfont.map(SoundFontPiano.parse) } }
        catch { throw ValidationError("\(error)") }
        options.fluidsynth = fluidsynth
        options.seed = seed
        options.generatedMinutes = generatedMinutes
        options.corpusMinutes = corpusMinutes
        options.maxSecondsPerFile = maxSecondsPerFile
        options.jobs = jobs
        options.gain = gain
        options.sampleRate = sampleRate

        let summary: DatasetBuilder.Summary
        do {
            // On a terminal the line first erases the progress bar it interrupts.
            let erase = TerminalProgress.stderrIsTerminal ? "\r\u{1B}[2K" : ""
            summary = try DatasetBuilder(options: options, log: { line in
                FileHandle.standardError.write(Data((erase + line + "\n").utf8))
            }).run()
        } catch {
            FileHandle.standardError.write(Data("ddsp-piano-train dataset: \(error)\n".utf8))
            throw ExitCode.failure
        }

        let m = summary.manifest
        for split in DatasetSplit.allCases {
            let perInstrument = m.seconds[split.rawValue] ?? [:]
            let files = m.files.filter { $0.split == split }
            let detail = m.instruments.map { String(format: "%@ %.1f", $0.name, (perInstrument[$0.name] ?? 0) / 60) }.joined(separator: ", ")
            print(String(format: "%@: %d files, %.1f min (%@)", split.rawValue, files.count, perInstrument.values.reduce(0, +) / 60, detail))
        }
        let total = m.files.reduce(0) { $0 + $1.seconds }
        print(String(format: "dataset: %d files, %.1f min of audio, %d instruments in %.0f s; peak %.1f dBFS, %d clipped; %d skipped, %d non-commercial excluded -> %@",
                     m.files.count, total / 60, m.instruments.count, summary.elapsed, 20 * log10(max(summary.peak, 1e-9)),
                     summary.clippedFiles, m.skipped.count, m.excludedNonCommercial.count, out))
    }
}
