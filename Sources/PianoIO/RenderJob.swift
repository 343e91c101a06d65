import Foundation
import DDSPPiano

/// A user-facing failure: one line, "FILE: problem" (FILE may be an option such as "--warm-up").
public struct RenderError: CodedError, Equatable, Sendable {
    public var file: String
    public var problem: String
    public var code: ErrorCode
    public init(_ file: String, _ problem: String, code: ErrorCode = .usage) { self.file = file; self.problem = problem; self.code = code }
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
    public static let defaultPiano = UpstreamDefaults.piano
    /// What the engine renders: warm-up, duration, seed, noise, exact, sample rate (nil: the
    /// model's own, 24 kHz for v2, 16 kHz for dafx22; dafx22's `--exact` renders only at
    /// 16 kHz), block size. `prepare()` checks them and sets the piano from `piano`.
    public var settings = RenderSettings()
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
        /// The engine's kernels ("avx2 kernels"): which code this CPU ran.
        public var kernels: String = ""
        /// The stereo image's width (nil: mono).
        public var stereoWidth: Float? = nil
        /// One line each, for stderr: clipping, non-finite samples (the input's warnings are
        /// in `Prepared.warnings`).
        public var warnings: [String]

        /// "wrote out.wav: 12.00 s of audio (f32, 24000 Hz, v2 model, piano 2018, avx2 kernels), peak -3.1 dBFS, rendered in 4.2 s (2.9x real time)"
        public var line: String {
            let speed = renderSeconds > 0 ? String(format: "%.1fx", audioSeconds / renderSeconds) : "-"
            return "wrote \(AudioFile.name(of: output)): " + String(format: "%.2f s of audio", audioSeconds)
                + " (\(format.rawValue), \(sampleRate) Hz, \(stereoWidth.map { "stereo width \(DaemonRules.shown(Double($0))), " } ?? "")\(modelSummary.isEmpty ? "" : modelSummary + " model, ")piano \(instrumentName)\(kernels.isEmpty ? "" : ", " + kernels)), peak \(RenderJob.dBFSText(peak)),"
                + String(format: " rendered in %.1f s", renderSeconds) + " (\(speed) real time)"
        }
    }

    // MARK: Steps

    /// `model`: weights already loaded (a batch loads them once for all its files); nil: `weights`,
    /// else the default lookup.
    public func prepare(model preloaded: (url: URL, model: PianoModel)? = nil) throws -> Prepared {
        try checkOptions()
        // 1. MIDI: exists, parses, gives frames.
        let midiBytes = try readInput(midi, what: "MIDI file")
        let midiFile: MIDIFile
        var warnings: [String]
        do {
            (midiFile, warnings) = try RenderInputs.midi(midiBytes: midiBytes, warmUp: settings.warmUp, duration: settings.duration)
        } catch {
            throw RenderError(midi.relativePath, oneLine(error), code: error.errorCode)
        }
        warnings = warnings.map { "warning: \(midi.relativePath): \($0)" }
        // 2. Weights: exist, parse, complete (explicit path, else WeightStore's default lookup).
        let (weightsURL, file) = try preloaded.map { (url: $0.url, file: $0.model.file) } ?? WeightStore().loadFile(explicit: weights?.relativePath)
        if settings.exact, case .dafx22 = file, let sampleRate = settings.sampleRate, sampleRate != Double(file.sampleRate) {
            throw RenderError("--sample-rate \(sampleRate)", "--exact renders dafx22 at the model's \(file.sampleRate) Hz; leave out --sample-rate or --exact")
        }
        // 3. Piano: an index or a name the weights know.
        let instrument: Int
        if let piano {
            guard let i = file.instrumentIndex(piano) else {
                let names = file.instruments.joined(separator: ", ")
                throw RenderError(weightsURL.relativePath, "no piano '\(piano)'; valid: 0...\(file.instruments.count - 1) or \(names)", code: .notFound)
            }
            instrument = i
        } else {
            instrument = UpstreamDefaults.piano(count: file.instruments.count)
        }
        // The model: only this piano unless the file's program changes may switch (--live).
        let loaded = try preloaded?.model
            ?? WeightStore.model(file, from: weightsURL, pianos: settings.conditioning == .live ? nil : [instrument])
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
        var settings = self.settings
        settings.instrument = instrument
        if settings.threads >= 2 && settings.runner == nil { settings.runner = ThreadedRenderRunner() }
        return Prepared(midiFile: midiFile, model: loaded, weightsURL: weightsURL,
                        settings: settings, instrumentName: loaded.instruments[instrument], warnings: warnings)
    }

    /// Renders and writes as the engine goes: each block goes to the output files (temporary
    /// files, renamed into place when complete), so memory does not grow with the piece. The
    /// dry mix is computed only when `dryOutput` is set. With `normalize`, the render goes to
    /// float scratch files first and is then rescaled into the final files, block by block.
    public func render(_ prepared: Prepared, started: Date = Date(), progress: ((Double) -> Void)? = nil) throws -> Summary {
        var sink = RenderFileSink(output: output, dryOutput: dryOutput, format: format, normalize: normalize,
                                  channels: prepared.settings.channels)
        defer { sink.cancel() }
        do {
            try OfflineRenderer.render(midi: prepared.midiFile, model: prepared.model,
                                       settings: prepared.settings, into: &sink, progress: progress)
        } catch let error as AudioFileError {
            throw error
        } catch {
            throw RenderError(midi.relativePath, "render failed: \(oneLine(error))", code: error.errorCode)
        }
        let (wetReport, dryReport) = try sink.finish()
        var warnings: [String] = []
        if let dryOutput, let dryReport { warnings += Self.warnings(dryReport, file: dryOutput, format: format) }
        warnings += Self.warnings(wetReport, file: output, format: format)
        return Summary(output: output, format: format, sampleRate: sink.sampleRate,
                       audioSeconds: Double(wetReport.frames) / Double(max(1, sink.sampleRate)), peak: wetReport.peak,
                       renderSeconds: Date().timeIntervalSince(started), wet: wetReport, dry: dryReport,
                       instrumentName: prepared.instrumentName, modelSummary: prepared.model.architecture.rawValue, kernels: PianoKernels.description,
                       stereoWidth: prepared.settings.stereoWidth, warnings: warnings)
    }

    // MARK: Helpers

    func checkOptions() throws {
        let warmUp = settings.warmUp
        guard warmUp.isFinite, warmUp >= 0, warmUp <= 60 else {
            throw RenderError("--warm-up \(warmUp)", "must be between 0 and 60 seconds")
        }
        if let duration = settings.duration {
            guard duration.isFinite, duration > 0, duration <= 24 * 3600 else {
                throw RenderError("--duration \(duration)", "must be a positive number of seconds")
            }
        }
        if let normalize {
            guard normalize.isFinite, normalize <= 0, normalize >= -120 else {
                throw RenderError("--normalize \(normalize)", "must be a level in dBFS between -120 and 0")
            }
        }
        if let sampleRate = settings.sampleRate {
            guard sampleRate.isFinite, sampleRate >= 8_000, sampleRate <= 384_000 else {
                throw RenderError("--sample-rate \(sampleRate)", "must be between 8000 and 384000 Hz")
            }
        }
        guard settings.threads >= 1 else {
            throw RenderError("--threads \(settings.threads)", "must be at least 1")
        }
        guard settings.blockSize >= 1, settings.blockSize <= 65_536 else {
            throw RenderError("--block-size \(settings.blockSize)", "must be between 1 and 65536 samples")
        }
        guard Tuning.a4Range.contains(settings.a4) else {
            throw RenderError("--a4 \(DaemonRules.shown(Double(settings.a4)))", "must be \(DaemonRules.a4Rule)")
        }
        guard Tuning.transposeRange.contains(settings.transpose) else {
            throw RenderError("--transpose \(settings.transpose)", "must be \(DaemonRules.transposeRule)")
        }
        if let w = settings.stereoWidth {
            guard DaemonRules.isWidth(Double(w)) else { throw RenderError("--width \(DaemonRules.shown(Double(w)))", "must be \(DaemonRules.widthRule)") }
            if settings.exact {
                throw RenderError("--stereo", "--exact renders upstream's mono computation; leave out --stereo/--width or --exact")
            }
        }
    }

    private func readInput(_ url: URL, what: String) throws -> [UInt8] {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir) else {
            throw RenderError(url.relativePath, "no such file", code: .notFound)
        }
        guard !isDir.boolValue else { throw RenderError(url.relativePath, "is a directory, not a \(what)", code: .unreadable) }
        do {
            return [UInt8](try Data(contentsOf: url))
        } catch {
            throw RenderError(url.relativePath, "cannot read: \((error as NSError).localizedDescription)", code: .unreadable)
        }
    }

    private func oneLine(_ error: Error) -> String {
        String(describing: error).split(whereSeparator: \.isNewline).joined(separator: " ")
    }

    /// The gain that puts `peak` at `dBFS`; nil for silence (which stays silence).
    static func normalizationGain(peak: Float, to dBFS: Double) -> Float? {
        guard peak > 0 else { return nil }
        return Float(pow(10, dBFS / 20)) / peak
    }

    /// Largest finite |x| of `x` and `peak`.
    static func peak(_ x: UnsafeBufferPointer<Float>, _ peak: Float) -> Float {
        var p = peak
        for v in x where v.isFinite { p = max(p, abs(v)) }
        return p
    }

    static func warnings(_ r: AudioWriteReport, file: URL, format: AudioFormat) -> [String] {
        var w: [String] = []
        if r.clippedSamples > 0 {
            w.append("warning: \(AudioFile.name(of: file)): \(r.clippedSamples) samples beyond full scale were clipped in \(format.rawValue) (peak \(dBFSText(r.peak))); use --normalize or --format f32")
        }
        if r.nonFiniteSamples > 0 {
            w.append("warning: \(AudioFile.name(of: file)): \(r.nonFiniteSamples) non-finite samples were written as 0")
        }
        return w
    }

    public static func dBFSText(_ peak: Float) -> String {
        peak > 0 ? String(format: "%+.1f dBFS", 20 * log10(Double(peak))) : "-inf dBFS"
    }
}

/// Where `RenderJob` sends the engine's blocks: straight into the output files, or with
/// `--normalize` into float scratch files (the peak must be known before the first sample is
/// scaled), which `finish()` rescales block by block into the output files. Constant memory
/// either way; no output file appears before `finish()`, and `cancel()` leaves nothing.
final class RenderFileSink: RenderSink {
    let output: URL
    let dryOutput: URL?
    let format: AudioFormat
    let normalize: Double?
    let channels: Int
    var wantsDry: Bool { dryOutput != nil }
    private(set) var sampleRate = 0
    private var wetWriter: AudioFileWriter?
    private var dryWriter: AudioFileWriter?
    private var wetScratch: SampleScratchFile?
    private var dryScratch: SampleScratchFile?
    private var wetPeak: Float = 0
    private var dryPeak: Float = 0

    init(output: URL, dryOutput: URL?, format: AudioFormat, normalize: Double?, channels: Int = 1) {
        self.channels = channels
        self.output = output
        self.dryOutput = dryOutput
        self.format = format
        self.normalize = normalize
    }

    func begin(sampleRate: Int, length: Int) throws {
        self.sampleRate = sampleRate
        if normalize != nil {
            wetScratch = try SampleScratchFile(near: output)
            if let dryOutput { dryScratch = try SampleScratchFile(near: dryOutput) }
        } else {
            if let dryOutput { dryWriter = try AudioFileWriter(url: dryOutput, sampleRate: sampleRate, format: format, frames: length) }
            wetWriter = try AudioFileWriter(url: output, channels: channels, sampleRate: sampleRate, format: format, frames: length)
        }
    }

    func write(wet: UnsafeBufferPointer<Float>, dry: UnsafeBufferPointer<Float>?) throws {
        if let wetScratch {
            wetPeak = RenderJob.peak(wet, wetPeak)
            try wetScratch.append(wet)
            if let dry, let dryScratch {
                dryPeak = RenderJob.peak(dry, dryPeak)
                try dryScratch.append(dry)
            }
        } else {
            try wetWriter?.write(wet)
            if let dry { try dryWriter?.write(dry) }
        }
    }

    /// Completes the files, dry first: the main output appears only when everything else is done.
    func finish() throws -> (wet: AudioWriteReport, dry: AudioWriteReport?) {
        if let normalize {
            guard let wetScratch else { throw AudioFileError(output.relativePath, "nothing was rendered", code: .internal) }
            var dryReport: AudioWriteReport?
            if let dryOutput, let dryScratch {
                dryReport = try rescale(dryScratch, peak: dryPeak, to: dryOutput, dBFS: normalize)
            }
            return (try rescale(wetScratch, peak: wetPeak, to: output, dBFS: normalize, channels: channels), dryReport)
        }
        guard let wetWriter else { throw AudioFileError(output.relativePath, "nothing was rendered", code: .internal) }
        let dryReport = try dryWriter?.finish()
        return (try wetWriter.finish(), dryReport)
    }

    /// Abandons whatever is not finished (temporary files deleted, outputs untouched).
    func cancel() {
        wetWriter?.cancel()
        dryWriter?.cancel()
        wetScratch = nil
        dryScratch = nil
    }

    private func rescale(_ scratch: SampleScratchFile, peak: Float, to url: URL, dBFS: Double, channels: Int = 1) throws -> AudioWriteReport {
        // Chunks of 65,536 samples: whole frames for one or two channels.
        let writer = try AudioFileWriter(url: url, channels: channels, sampleRate: sampleRate, format: format, frames: scratch.count / channels)
        do {
            let gain = RenderJob.normalizationGain(peak: peak, to: dBFS)
            let buffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: 65_536)
            buffer.initialize(repeating: 0)
            defer { buffer.deallocate() }
            var position = 0
            while position < scratch.count {
                let n = try scratch.read(at: position, into: buffer)
                if let gain { for i in 0..<n { buffer[i] *= gain } }
                try writer.write(UnsafeBufferPointer(rebasing: buffer[0..<n]))
                position += n
            }
            return try writer.finish()
        } catch {
            writer.cancel()
            throw error
        }
    }
}
