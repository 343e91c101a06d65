import Foundation
import DDSPPiano

/// A user-facing failure: one line, "FILE: problem" (FILE may be an option such as "--warm-up").
public struct RenderError: Error, CustomStringConvertible, Equatable {
    public var file: String
    public var problem: String
    public init(_ file: String, _ problem: String) { self.file = file; self.problem = problem }
    public var description: String { "\(file): \(problem)" }
}

/// `ddsp-piano render` minus the argument parsing: read MIDI and weights, check the outputs,
/// run the engine, normalise, write. Everything that can be wrong with the inputs is found
/// by `prepare()`, before the (long) render starts.
public struct RenderJob: Sendable {
    public var midi: URL
    public var output: URL
    /// Also write the unreverbed mix here.
    public var dryOutput: URL?
    /// nil: the default lookup.
    public var weights: URL?
    /// An index or an instrument name of the weight file; nil: `defaultPiano`, or the last
    /// piano of a weight file with fewer (so one-piano weights work without --piano).
    public var piano: String?
    public static let defaultPiano = 9
    public var warmUp: Double = 0.5
    public var duration: Double?
    public var seed: UInt64 = 0
    public var noise = true
    public var exact = false
    /// Output rate (nil: the model's own, 24 kHz for v2, 16 kHz for dafx22; dafx22's `--exact`
    /// renders only at 16 kHz).
    public var sampleRate: Double?
    /// Block size the streaming engine is driven with; the samples do not depend on it.
    public var blockSize = 256
    /// Peak-normalise each written file to this level (dBFS, <= 0).
    public var normalize: Double?
    public var format: AudioFormat = .f32

    public init(midi: URL, output: URL) {
        self.midi = midi
        self.output = output
    }

    /// Everything checked and loaded; ready to render.
    public struct Prepared: Sendable {
        public var midiFile: MIDIFile
        public var model: PianoModel
        public var weightsURL: URL
        public var settings: RenderSettings
        public var instrumentName: String
        /// Tolerated problems of the inputs, one line each, for stderr.
        public var warnings: [String]
    }

    public struct Summary: Sendable {
        public var output: URL
        public var format: AudioFormat
        public var sampleRate: Int
        public var audioSeconds: Double
        /// Peak of the written wet signal, after any normalisation (linear).
        public var peak: Float
        public var renderSeconds: Double
        public var wet: AudioWriteReport
        public var dry: AudioWriteReport?
        public var instrumentName: String
        /// The architecture that played: "v2" or "dafx22".
        public var modelSummary: String = ""
        /// One line each, for stderr: clipping, non-finite samples (and, from run(), the
        /// input warnings of Prepared).
        public var warnings: [String]

        /// "wrote out.wav: 12.00 s of audio (f32, 24000 Hz, v2 model, piano 2018), peak -3.1 dBFS, rendered in 4.2 s (2.9x real time)"
        public var line: String {
            let speed = renderSeconds > 0 ? String(format: "%.1fx", audioSeconds / renderSeconds) : "-"
            return "wrote \(output.relativePath): " + String(format: "%.2f s of audio", audioSeconds)
                + " (\(format.rawValue), \(sampleRate) Hz, \(modelSummary.isEmpty ? "" : modelSummary + " model, ")piano \(instrumentName)), peak \(RenderJob.dBFSText(peak)),"
                + String(format: " rendered in %.1f s", renderSeconds) + " (\(speed) real time)"
        }
    }

    // MARK: Steps

    public func prepare() throws -> Prepared {
        try checkOptions()
        // 1. MIDI: exists, parses, gives frames.
        let midiBytes = try readInput(midi, what: "MIDI file")
        let midiFile: MIDIFile
        var warnings: [String]
        do {
            (midiFile, warnings) = try RenderInputs.midi(midiBytes: midiBytes, warmUp: warmUp, duration: duration)
        } catch {
            throw RenderError(midi.relativePath, oneLine(error))
        }
        warnings = warnings.map { "warning: \(midi.relativePath): \($0)" }
        // 2. Weights: exist, parse, complete (explicit path, else WeightStore's default lookup).
        let (weightsURL, file) = try WeightStore().loadFile(explicit: weights?.relativePath)
        if exact, case .dafx22 = file, let sampleRate, sampleRate != Double(file.sampleRate) {
            throw RenderError("--sample-rate \(sampleRate)", "--exact renders dafx22 at the model's \(file.sampleRate) Hz; leave out --sample-rate or --exact")
        }
        let loaded = try WeightStore.model(file, from: weightsURL)
        // 3. Piano: an index or a name the weights know.
        let instrument: Int
        if let piano {
            guard let i = loaded.instrumentIndex(piano) else {
                let names = loaded.instruments.joined(separator: ", ")
                throw RenderError(weightsURL.relativePath, "no piano '\(piano)'; valid: 0...\(loaded.instruments.count - 1) or \(names)")
            }
            instrument = i
        } else {
            instrument = min(Self.defaultPiano, loaded.instruments.count - 1)
        }
        // 4. Outputs: writable now, so a long render is not lost at the end, and never an input.
        func same(_ a: URL, _ b: URL) -> Bool { a.resolvingSymlinksInPath().path == b.resolvingSymlinksInPath().path }
        for out in [output] + (dryOutput.map { [$0] } ?? []) {
            if same(out, midi) { throw RenderError(out.relativePath, "is the input MIDI file; choose another output") }
            if same(out, weightsURL) { throw RenderError(out.relativePath, "is the weight file; choose another output") }
            try AudioFile.checkWritable(out)
        }
        if let dryOutput, same(dryOutput, output) {
            throw RenderError(dryOutput.relativePath, "--dry-output is the same file as the output")
        }
        var settings = RenderSettings()
        settings.instrument = instrument
        settings.warmUp = warmUp
        settings.duration = duration
        settings.seed = seed
        settings.noise = noise
        settings.exact = exact
        settings.sampleRate = sampleRate ?? Double(loaded.sampleRate)
        settings.blockSize = blockSize
        return Prepared(midiFile: midiFile, model: loaded, weightsURL: weightsURL,
                        settings: settings, instrumentName: loaded.instruments[instrument], warnings: warnings)
    }

    public func render(_ prepared: Prepared, started: Date = Date(), progress: ((Double) -> Void)? = nil) throws -> Summary {
        var out: RenderOutput
        do {
            out = try OfflineRenderer.render(midi: prepared.midiFile, model: prepared.model,
                                             settings: prepared.settings, progress: progress)
        } catch {
            throw RenderError(midi.relativePath, "render failed: \(oneLine(error))")
        }
        if let normalize {
            Self.normalize(&out.wet, to: normalize)
            Self.normalize(&out.dry, to: normalize)
        }
        var warnings: [String] = []
        // Dry first: the main output appears only when everything else is done.
        var dryReport: AudioWriteReport?
        if let dryOutput {
            let r = try AudioFile.write(out.dry, sampleRate: out.sampleRate, format: format, to: dryOutput)
            warnings += Self.warnings(r, file: dryOutput, format: format)
            dryReport = r
        }
        let wetReport = try AudioFile.write(out.wet, sampleRate: out.sampleRate, format: format, to: output)
        warnings += Self.warnings(wetReport, file: output, format: format)
        return Summary(output: output, format: format, sampleRate: out.sampleRate,
                       audioSeconds: Double(out.wet.count) / Double(out.sampleRate), peak: wetReport.peak,
                       renderSeconds: Date().timeIntervalSince(started), wet: wetReport, dry: dryReport,
                       instrumentName: prepared.instrumentName, modelSummary: prepared.model.architecture.rawValue, warnings: warnings)
    }

    /// prepare() then render().
    public func run(progress: ((Double) -> Void)? = nil) throws -> Summary {
        let started = Date()
        let prepared = try prepare()
        var summary = try render(prepared, started: started, progress: progress)
        summary.warnings = prepared.warnings + summary.warnings
        return summary
    }

    // MARK: Helpers

    func checkOptions() throws {
        guard warmUp.isFinite, warmUp >= 0, warmUp <= 60 else {
            throw RenderError("--warm-up \(warmUp)", "must be between 0 and 60 seconds")
        }
        if let duration {
            guard duration.isFinite, duration > 0, duration <= 24 * 3600 else {
                throw RenderError("--duration \(duration)", "must be a positive number of seconds")
            }
        }
        if let normalize {
            guard normalize.isFinite, normalize <= 0, normalize >= -120 else {
                throw RenderError("--normalize \(normalize)", "must be a level in dBFS between -120 and 0")
            }
        }
        if let sampleRate {
            guard sampleRate.isFinite, sampleRate >= 8_000, sampleRate <= 384_000 else {
                throw RenderError("--sample-rate \(sampleRate)", "must be between 8000 and 384000 Hz")
            }
        }
        guard blockSize >= 1, blockSize <= 65_536 else {
            throw RenderError("--block-size \(blockSize)", "must be between 1 and 65536 samples")
        }
    }

    private func readInput(_ url: URL, what: String) throws -> [UInt8] {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir) else {
            throw RenderError(url.relativePath, "no such file")
        }
        guard !isDir.boolValue else { throw RenderError(url.relativePath, "is a directory, not a \(what)") }
        do {
            return [UInt8](try Data(contentsOf: url))
        } catch {
            throw RenderError(url.relativePath, "cannot read: \((error as NSError).localizedDescription)")
        }
    }

    private func oneLine(_ error: Error) -> String {
        String(describing: error).split(whereSeparator: \.isNewline).joined(separator: " ")
    }

    /// Scales so the peak is at `dBFS`; silence stays silence.
    static func normalize(_ x: inout [Float], to dBFS: Double) {
        var peak: Float = 0
        for v in x where v.isFinite { peak = max(peak, abs(v)) }
        guard peak > 0 else { return }
        let gain = Float(pow(10, dBFS / 20)) / peak
        for i in x.indices { x[i] *= gain }
    }

    static func warnings(_ r: AudioWriteReport, file: URL, format: AudioFormat) -> [String] {
        var w: [String] = []
        if r.clippedSamples > 0 {
            w.append("warning: \(file.relativePath): \(r.clippedSamples) samples beyond full scale were clipped in \(format.rawValue) (peak \(dBFSText(r.peak))); use --normalize or --format f32")
        }
        if r.nonFiniteSamples > 0 {
            w.append("warning: \(file.relativePath): \(r.nonFiniteSamples) non-finite samples were written as 0")
        }
        return w
    }

    public static func dBFSText(_ peak: Float) -> String {
        peak > 0 ? String(format: "%+.1f dBFS", 20 * log10(Double(peak))) : "-inf dBFS"
    }
}
