import ArgumentParser
import Foundation
import PianoIO
import PianoTraining

/// Side-by-side pictures for listening tests and model cards: the same piece recorded and
/// rendered by several models, one spectrogram each, on one scale.
struct SpectrogramCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "spectrogram",
        abstract: "Draw the spectrograms of audio files one above the other (PNG), on one dB scale.",
        discussion: """
        Compares renders by eye: give a recording and the same piece rendered by several models. \
        Every file is read as mono and resampled (libsoxr) to --sample-rate, so models of \
        different rates meet on equal terms; each panel shows 0 Hz to half that rate, 1024-point \
        frames with hop 128 (one pixel column each), and all panels share one scale (80 dB below \
        the loudest), so a quieter render looks quieter.

        Example:
          ddsp-piano-train spectrogram -o aloha.png --seconds 10 \\
            --label recording heldout/musescore-grand/aloha.wav --label "soundfont-grands" a.wav --label v2 b.wav
        """
    )

    @Argument(help: ArgumentHelp("Audio files (WAV, FLAC, …), drawn top to bottom.", valueName: "audio"))
    var files: [String]

    @Option(name: .shortAndLong, help: ArgumentHelp("PNG file to write.", valueName: "file.png"))
    var output: String

    @Option(name: .customLong("label"), help: ArgumentHelp("Label of each panel, in the files' order (default: the file names).", valueName: "text"))
    var labels: [String] = []

    @Option(help: ArgumentHelp("Title above the panels.", valueName: "text"))
    var title: String = ""

    @Option(help: ArgumentHelp("Start this many seconds into each file.", valueName: "s"))
    var start: Double = 0

    @Option(help: ArgumentHelp("Draw this many seconds of each file.", valueName: "s"))
    var seconds: Double = 10

    @Option(name: .customLong("sample-rate"), help: ArgumentHelp("Common rate of the panels (Nyquist at their top).", valueName: "Hz"))
    var sampleRate: Int = 16_000

    func validate() throws {
        guard !files.isEmpty else { throw ValidationError("give at least one audio file") }
        guard labels.isEmpty || labels.count == files.count else {
            throw ValidationError("give one --label per file (\(files.count)), or none")
        }
        guard start >= 0, seconds > 0, seconds <= 600 else { throw ValidationError("--start must be ≥ 0 and --seconds between 0 and 600") }
        guard (8_000...192_000).contains(sampleRate) else { throw ValidationError("--sample-rate must be between 8000 and 192000") }
    }

    func run() throws {
        var panels: [(label: String, samples: [Float])] = []
        for (i, path) in files.enumerated() {
            let samples: [Float]
            do { samples = try PerformanceLoader.monoAudio(URL(fileURLWithPath: path), sampleRate: sampleRate).samples } catch let e as TrainingDataError {
                FileHandle.standardError.write(Data("ddsp-piano-train: \(e.description.hasPrefix(path) ? e.description : "\(path): \(e.description)")\n".utf8))
                throw ExitCode(1)
            }
            let a = min(samples.count, Int(start * Double(sampleRate))), b = min(samples.count, a + Int(seconds * Double(sampleRate)))
            if a == b { FileHandle.standardError.write(Data("ddsp-piano-train: \(path): no audio after \(start) s\n".utf8)); throw ExitCode(1) }
            panels.append((labels.isEmpty ? (path as NSString).lastPathComponent : labels[i], Array(samples[a..<b])))
        }
        let image = TrainingPlots.comparison(panels, title: title)
        do { try WeightStore.writeAtomically(image.png(), to: URL(fileURLWithPath: output)) } catch {
            FileHandle.standardError.write(Data("ddsp-piano-train: \(output): cannot write (\(error))\n".utf8)); throw ExitCode(1)
        }
        print("wrote \(output): \(panels.count) panel(s), \(image.width)×\(image.height), 0–\(sampleRate / 2) Hz")
    }
}
