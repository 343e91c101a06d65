import Foundation
import ArgumentParser
import DDSPPiano
import PianoIO

struct RenderCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "render",
        abstract: "Render a MIDI file to WAV or FLAC with the DDSP-Piano model.",
        discussion: """
        Plays every note, velocity and pedal (CC64-67) of IN.mid on one of the model's pianos \
        and writes mono audio (--stereo: two channels) at the model's rate (v2: 24 kHz, dafx22: 16 kHz) unless \
        --sample-rate is given. Like the upstream model, 0.5 s of silence is rendered \
        first (--warm-up) and cut from the output, and the file lasts until the end of the last \
        note (after the sustain pedal), rounded up to a whole second, unless --duration is given.

        Two models: v2 (upstream's default, maestro-v2.gin: 24 kHz, causal, so the streaming \
        engine computes exactly what upstream computes) and dafx22 (the DAFx 2022 paper's model, \
        16 kHz, normalised over the whole piece: the streaming engine estimates that as it goes, \
        --exact reproduces it in two passes). Without --weights, the default weight file is used: \
        $DDSP_PIANO_WEIGHTS, else installed v2, else installed dafx22, else the bundled weights \
        (see 'ddsp-piano weights --help'; 'ddsp-piano weights fetch v2' downloads upstream's).

        The output file appears only when it is complete; an existing file is replaced only by a \
        finished render. Integer formats clip beyond full scale: the command then warns with the \
        number of clipped samples; --normalize or --format f32 avoid it. FLAC is lossless 24-bit \
        (or 16-bit) PCM: the samples of s24 (s16) in about half the space.

        OUT - streams the file to standard output (WAV with its length in the header; FLAC \
        with the length left unknown, as on any pipe) for another program to read.

        Examples:
          ddsp-piano render song.mid song.wav
          ddsp-piano render --piano 2011 --format s16 --normalize -1 song.mid song.wav
          ddsp-piano render --weights my.safetensors --dry-output dry.wav in.mid out.wav
          ddsp-piano render song.mid song.flac
          ddsp-piano render --format s16 song.mid - | aplay
        Many files on every core: 'ddsp-piano render-batch --help'.
        """
    )

    @Argument(help: ArgumentHelp("The Standard MIDI File to play.", valueName: "IN.mid"))
    var input: String

    @Argument(help: ArgumentHelp("The WAV or FLAC (.flac) file to write; - writes to standard output (the summary then goes to standard error).", valueName: "OUT.wav"))
    var output: String

    @Option(help: ArgumentHelp("Weight file (.safetensors). Default: the installed default weights.", valueName: "FILE"))
    var weights: String?

    @Option(parsing: .unconditional, help: ArgumentHelp("Piano: an index into the weight file's instruments or a name (dafx22: 0...9 or 2004...2018). (default: 9, or the last piano of a weight file with fewer)", valueName: "N|YEAR"))
    var piano: String?

    @Option(name: .customLong("warm-up"), parsing: .unconditional, help: ArgumentHelp("Seconds of silence rendered before the music and cut from the output.", valueName: "S"))
    var warmUp: Double = UpstreamDefaults.warmUpSeconds

    @Option(parsing: .unconditional, help: ArgumentHelp("Seconds of music to render (default: to the end of the last note, rounded up).", valueName: "S"))
    var duration: Double?

    @Option(name: .customLong("dry-output"), help: ArgumentHelp("Also write the unreverbed sound to this WAV file.", valueName: "FILE"))
    var dryOutput: String?

    @Option(parsing: .unconditional, help: ArgumentHelp("Scale each written file so its peak is at this level (e.g. -1).", valueName: "DBFS"))
    var normalize: Double?

    @Option(help: ArgumentHelp("Sample format: s16, s24 (PCM WAV), f32 (float WAV), flac (FLAC, 24-bit) or flac16 (FLAC, 16-bit). (default: flac for a .flac output, else f32)", valueName: "s16|s24|f32|flac|flac16"))
    var format: String?

    @Option(help: ArgumentHelp("Seed of the noise generator (same seed, same output).", valueName: "N"))
    var seed: UInt64 = 0

    @Flag(name: .customLong("no-noise"), help: "Leave out the filtered-noise part of the sound (deterministic output).")
    var noNoise = false

    @Flag(help: "dafx22: reproduce upstream's whole-piece normalisation exactly (two passes over the piece, 16 kHz); without it the streaming engine renders, the same code that plays live. v2 is causal: its streaming render is already upstream's computation, and --exact gives the same output.")
    var exact = false

    @Flag(help: "Render as the live instrument plays the file (ddsp-pianod, the LV2 plugin): its MIDI messages at their samples, pedals held live, program changes switching pianos, and the engine's output from its first sample, without the warm-up crop and latency compensation that align the default render with upstream's. Equal to a recording of the instrument playing the file.")
    var live = false

    @Option(name: .customLong("pre-roll"), help: ArgumentHelp("With --live: engine samples of silence rendered before the file's time 0 and left out of the output. A take from ddsp-pianod's archive names its own (its 'engine_sample' text event): with it, and the take's piano and rate, the render equals what the daemon played.", valueName: "SAMPLES"))
    var preRoll: Int = 0

    @Option(name: .customLong("sample-rate"), help: ArgumentHelp("Output sample rate (default: the model's own, 24000 Hz for v2, 16000 Hz for dafx22). Higher rates go through the engine's streaming resampler, as when playing live; rates below the model's are refused.", valueName: "HZ"))
    var sampleRate: Double?

    @Option(name: .customLong("block-size"), help: ArgumentHelp("Block size the streaming engine is driven with, like a JACK period; the output does not depend on it.", valueName: "N"))
    var blockSize: Int = 256

    @Option(help: ArgumentHelp("Threads: 2 runs the networks and the synthesis on two cores, with the same output to the bit (more than 2 uses 2; render-batch spreads files over the rest). Default: 2 when this process may use two cores or more.", valueName: "N"))
    var threads: Int = min(2, RenderBatch.usableCPUs())

    @Flag(help: ArgumentHelp("Write stereo: each key panned by its place on the keyboard (bass left), the reverb decorrelated (width \(DaemonRules.shown(Double(StereoImage.renderWidth))) unless --width). Default: mono, as upstream."))
    var stereo = false

    @Option(parsing: .unconditional, help: ArgumentHelp("Stereo width \(DaemonRules.shown(DaemonRules.stereoWidth)) (implies --stereo; 0: mono in two channels).", valueName: "W"))
    var width: Double?

    @Option(parsing: .unconditional, help: ArgumentHelp("A4 in hertz, \(DaemonRules.shown(DaemonRules.a4Hz)) (default 440: the model's own tuning).", valueName: "HZ"))
    var a4: Double = Double(Tuning.defaultA4)

    @Option(parsing: .unconditional, help: ArgumentHelp("Transpose by N semitones, \(DaemonRules.shown(DaemonRules.transposeSemitones)) (the same as rendering the transposed MIDI file).", valueName: "N"))
    var transpose: Int = 0

    func run() throws {
        AudioFile.removeTemporaryFilesOnSignals()
        do {
            let outputURL = output == "-" ? AudioFile.standardOutput : URL(fileURLWithPath: output)
            let format = try Self.audioFormat(self.format, for: outputURL)
            var job = RenderJob(midi: URL(fileURLWithPath: input), output: outputURL)
            job.weights = weights.map { URL(fileURLWithPath: $0) }
            job.dryOutput = dryOutput.map { URL(fileURLWithPath: $0) }
            job.piano = piano
            job.settings.warmUp = warmUp
            job.settings.duration = duration
            job.normalize = normalize
            job.format = format
            job.settings.seed = seed
            job.settings.noise = !noNoise
            job.settings.exact = exact
            if live {
                guard !exact else { throw RenderError("--live", "plays the file as the live instrument does; --exact reproduces upstream's offline computation: choose one") }
                job.settings.conditioning = .live
                guard preRoll >= 0 else { throw RenderError("--pre-roll \(preRoll)", "takes a number of samples, 0 or more") }
                job.settings.preRoll = preRoll
            } else if preRoll != 0 {
                throw RenderError("--pre-roll", "applies to --live renders only")
            }
            job.settings.sampleRate = sampleRate
            job.settings.blockSize = blockSize
            job.settings.threads = threads
            if stereo || width != nil { job.settings.stereoWidth = Float(width ?? Double(StereoImage.renderWidth)) }
            job.settings.a4 = Float(a4)
            job.settings.transpose = transpose

            let started = Date()
            let prepared = try job.prepare()
            for w in prepared.warnings { Self.printError("ddsp-piano: " + w) }
            let bar = TerminalProgress(label: "rendering \((input as NSString).lastPathComponent)")
            let summary: RenderJob.Summary
            do {
                defer { bar.finish() }
                summary = try job.render(prepared, started: started, progress: bar.update)
            }
            for w in summary.warnings { Self.printError("ddsp-piano: " + w) }
            // Standard output may be the audio itself.
            if AudioFile.isStandardOutput(outputURL) { Self.printError(summary.line) } else { print(summary.line) }
        } catch let error as ExitCode {
            throw error
        } catch {
            Self.printError("ddsp-piano: \(error)")
            throw ExitCode(1)
        }
    }

    /// --format, else what the output's name implies (.flac), else f32; a .flac name with a
    /// WAV format is refused rather than written as a WAV named .flac.
    static func audioFormat(_ name: String?, for output: URL) throws -> AudioFormat {
        let implied = AudioFormat.implied(by: output)
        guard let name else { return implied ?? .f32 }
        guard let format = AudioFormat(rawValue: name) else {
            throw RenderError("--format \(name)", "unknown format; valid: " + AudioFormat.allCases.map(\.rawValue).joined(separator: ", "))
        }
        if implied != nil, !format.isFLAC {
            throw RenderError(output.relativePath, "--format \(name) writes WAV; for a .flac file use --format flac or flac16 (or leave --format out)")
        }
        return format
    }

    static func printError(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }
}
