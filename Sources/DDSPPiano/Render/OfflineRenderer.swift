/// What `ddsp-piano render` asks of the engine: the one render options struct (the command
/// line fills it through `RenderJob.settings`; training's evaluation and the tests fill it
/// directly). What the engine itself takes is kept in `engine`, stored once.
public struct RenderSettings: Sendable {
    /// The engine's options (piano, seed, noise, normalisation); the renderer sets the rest
    /// (`produceDry`, `script`, `warmUpFrames`, `sustainPedalHolds`) for the render it runs.
    public var engine = PianoEngine.Options()
    /// Seconds of silent input rendered first and cropped from the output, like upstream.
    public var warmUp: Double = UpstreamDefaults.warmUpSeconds
    /// Seconds of MIDI to render (nil: to the end of the last note, rounded up like upstream).
    public var duration: Double? = nil
    /// dafx22: two-pass whole-sequence normalisation, reproducing upstream. v2 is causal: its
    /// streaming render already is upstream's computation, and `exact` changes nothing.
    public var exact: Bool = false
    /// What the engine plays: upstream's conditioning (a file's future is known) or the MIDI as
    /// live events, as a keyboard would send them.
    public var conditioning: ConditioningSource = .automatic
    /// Output rate of the streaming engine (nil: the model's own rate; `--exact` renders dafx22 at 16 kHz).
    public var sampleRate: Double? = nil
    /// Block size the streaming engine is driven with (the output does not depend on it).
    public var blockSize: Int = 256
    /// Threads for one render: 2 runs the networks and the synthesis on two cores
    /// (`ControlPipeline`, through `runner`); the output is the same, to the bit.
    public var threads: Int = 1
    /// What runs the two halves of a two-thread render (PianoIO's); nil: one thread.
    public var runner: (any RenderPipelineRunner)? = nil
    /// Voices whose networks the second thread runs (nil: `ControlPipeline.defaultSplit`).
    public var splitVoices: Int? = nil
    /// Semitones every note of the file is moved by (the render equals that of a transposed
    /// file; notes moved off 0…127 are left out).
    public var transpose: Int = 0
    /// Live renders: engine samples of silence run before the file's time 0 and dropped, so a
    /// take the daemon archived (its `engine_sample` meta event) is rendered from the engine
    /// state it was played in.
    public var preRoll: Int = 0
    public init() {}

    /// The stereo image's width (`StereoImage`), nil: mono (the default, as upstream).
    public var stereoWidth: Float? {
        get { engine.stereo ? engine.width : nil }
        set { engine.stereo = newValue != nil; engine.width = newValue ?? 0 }
    }
    /// A4 in Hz (440: the model's own tuning).
    public var a4: Float { get { engine.a4 } set { engine.a4 = newValue } }
    /// Channels of the output: 2 with a stereo image.
    public var channels: Int { engine.stereo ? 2 : 1 }

    // The engine's options by their render names.
    public var instrument: Int { get { engine.instrument } set { engine.instrument = newValue } }
    public var seed: UInt64 { get { engine.seed } set { engine.seed = newValue } }
    public var noise: Bool { get { engine.noise } set { engine.noise = newValue } }
    /// How the streaming engine estimates the Normalize statistics.
    public var normalization: NormalizationEstimator.Mode { get { engine.normalization } set { engine.normalization = newValue } }
    /// Per-instrument priors for the estimator (nil: generic values).
    public var priors: [NormalizationStatistics]? { get { engine.priors } set { engine.priors = newValue } }
}

public enum ConditioningSource: Sendable, Equatable {
    /// v2: upstream's conditioning; dafx22: live events (its statistics are estimated anyway,
    /// and its streaming figures were measured that way).
    case automatic
    /// `UpstreamConditioning` frame by frame, warm-up included: the frame before a legato
    /// re-strike is marked as upstream marks it.
    case upstream
    /// Note and pedal events through the engine's live note state (what the daemon plays).
    case events
    /// The file's channel messages as a sequencer plays them into ddsp-pianod or the LV2
    /// plugin: at their samples, pedals held live, program changes switching pianos, and the
    /// engine's output from its first sample (no warm-up crop, no latency compensation, as the
    /// instrument records it). Upstream's alignment is not applied.
    case live
}

public struct RenderOutput: Sendable {
    public var sampleRate: Int
    /// Model output (dry + reverb), warm-up removed.
    public var wet: [Float]
    /// The unreverbed mix, warm-up removed (empty when it was not asked for).
    public var dry: [Float]
}

/// Where a render's samples go, block by block, as the engine produces them: memory does not
/// grow with the piece (a file writer writes each block out; `RenderCollector` keeps them).
public protocol RenderSink {
    /// Whether the unreverbed mix is wanted. The engine computes it only then, and `write` gets
    /// nil otherwise.
    var wantsDry: Bool { get }
    /// 1, or 2 for a stereo render (`RenderSettings.channels`): `wet` is then interleaved L, R.
    var channels: Int { get }
    /// Called once, before the first block: the output rate and the number of samples that follow.
    mutating func begin(sampleRate: Int, length: Int) throws
    /// The next samples in order, warm-up and latency already cut. `dry` (nil unless `wantsDry`)
    /// has as many samples as `wet`. The buffers are reused: valid only during the call. An error
    /// thrown here stops the render and is rethrown to the caller.
    mutating func write(wet: UnsafeBufferPointer<Float>, dry: UnsafeBufferPointer<Float>?) throws
}

extension RenderSink {
    public var channels: Int { 1 }
}

/// Keeps a whole render in memory, as `RenderOutput` (tests, analysis).
public struct RenderCollector: RenderSink {
    public let wantsDry: Bool
    public let channels: Int
    /// `wet` is interleaved when `channels` is 2.
    public private(set) var output = RenderOutput(sampleRate: 0, wet: [], dry: [])

    public init(dry: Bool = true, channels: Int = 1) { wantsDry = dry; self.channels = channels }

    public mutating func begin(sampleRate: Int, length: Int) {
        output.sampleRate = sampleRate
        output.wet.reserveCapacity(length)
        if wantsDry { output.dry.reserveCapacity(length) }
    }

    public mutating func write(wet: UnsafeBufferPointer<Float>, dry: UnsafeBufferPointer<Float>?) {
        output.wet.append(contentsOf: wet)
        if let dry { output.dry.append(contentsOf: dry) }
    }
}

public enum OfflineRenderer {
    /// Renders a MIDI file like `ddsp-piano render`: through the streaming engine (the same code
    /// as live playing), or for dafx22 with `exact` through upstream's two-pass normalisation.
    /// The whole output in memory, wet and dry; `render(midi:model:settings:into:progress:)`
    /// hands it out block by block instead.
    public static func render(midi: MIDIFile, model: PianoModel, settings: RenderSettings,
                              progress: ((Double) -> Void)? = nil) throws -> RenderOutput {
        var collector = RenderCollector(dry: true, channels: settings.channels)
        try render(midi: midi, model: model, settings: settings, into: &collector, progress: progress)
        return collector.output
    }

    /// Renders a MIDI file like `ddsp-piano render`, handing `sink` each block as it is produced
    /// (after the warm-up and the engine's constant latency): memory does not depend on the
    /// length of the piece. The unreverbed mix is computed only when `sink.wantsDry`.
    public static func render<Sink: RenderSink>(midi: MIDIFile, model: PianoModel, settings: RenderSettings,
                                                into sink: inout Sink, progress: ((Double) -> Void)? = nil) throws {
        let h = model.hyper
        let midi = midi.transposed(by: settings.transpose)
        guard sink.channels == settings.channels else {
            throw WeightsError("the output has \(sink.channels) channel(s), the render \(settings.channels)")
        }
        if settings.exact, let weights = model.dafx22 {
            if settings.channels != 1 {
                throw WeightsError("--exact renders upstream's mono computation; leave out --stereo/--width or --exact")
            }
            let conditioning = UpstreamConditioning.make(midi: midi, warmUp: settings.warmUp, duration: settings.duration,
                                                         voices: h.voices, frameRate: h.frameRate)
            return try render(conditioning: conditioning, weights: weights, settings: settings, into: &sink, progress: progress)
        }
        let scripted: Bool
        switch settings.conditioning {
        case .automatic: scripted = model.architecture == .v2
        case .upstream: scripted = true
        case .events: scripted = false
        case .live: return try renderLive(midi: midi, model: model, settings: settings, into: &sink, progress: progress)
        }
        if scripted {
            // Made row by row as the engine plays: memory follows the notes, not the length.
            let rows = UpstreamConditioning.Rows(midi: midi, warmUp: settings.warmUp, duration: settings.duration,
                                                 voices: h.voices, frameRate: h.frameRate)
            return try renderStreaming(conditioning: rows, model: model, settings: settings, into: &sink, progress: progress)
        }
        let sequence = NoteSequence(midi: midi).applyingSustain()
        let frames = UpstreamConditioning.frameCount(midi: midi, warmUp: settings.warmUp, duration: settings.duration,
                                                     frameRate: h.frameRate)
        let warmUpFrames = Int(settings.warmUp * Double(h.frameRate))
        let modelSamples = max(0, frames - warmUpFrames) * h.samplesPerFrame
        try renderStreaming(events: EventSchedule.events(from: sequence), modelSamples: modelSamples,
                            warmUpFrames: warmUpFrames, sustainApplied: true, model: model,
                            settings: settings, into: &sink, progress: progress)
    }

    public static func render(midi: MIDIFile, weights: PianoWeights, settings: RenderSettings,
                              progress: ((Double) -> Void)? = nil) throws -> RenderOutput {
        try render(midi: midi, model: PianoModel(weights: weights), settings: settings, progress: progress)
    }

    /// `ConditioningSource.live`: the engine as the live drivers run it (their options: the
    /// default warm-up, the pedal held by the engine), fed the file's messages at their samples,
    /// from its first sample, as long as a non-live render of the file lasts (its warm-up aside).
    public static func renderLive<Sink: RenderSink>(midi: MIDIFile, model: PianoModel, settings: RenderSettings,
                                                    into sink: inout Sink, progress: ((Double) -> Void)? = nil) throws {
        try checkInstrument(settings, model)
        let h = model.hyper
        let options = engineOptions(settings, dry: sink.wantsDry)
        let rate = settings.sampleRate ?? Double(h.sampleRate)
        let block = max(1, settings.blockSize)
        let engines = try prepareEngines(model: model, options: options, settings: settings, rate: rate, block: block)
        let frames = UpstreamConditioning.frameCount(midi: midi, warmUp: 0, duration: settings.duration, frameRate: h.frameRate)
        let length = Int((Double(frames * h.samplesPerFrame) * rate / Double(h.sampleRate)).rounded())
        let preRoll = max(0, settings.preRoll)
        try drive(engines, events: EventSchedule.events(from: midi), rate: rate, block: block, skip: preRoll, length: length,
                  into: &sink, progress: progress, eventOffset: preRoll)
    }

    static func engineOptions(_ settings: RenderSettings, dry: Bool) -> PianoEngine.Options {
        var options = settings.engine
        options.produceDry = dry
        options.transpose = 0   // the file itself is transposed (`RenderSettings.transpose`)
        return options
    }

    static func checkInstrument(_ settings: RenderSettings, _ model: PianoModel) throws {
        guard settings.instrument >= 0 && settings.instrument < model.instruments.count else {
            throw WeightsError("instrument \(settings.instrument) is out of range 0..<\(model.instruments.count)")
        }
    }

    /// The streaming engine playing upstream's conditioning row by row (warm-up rows included),
    /// cropped like upstream: the warm-up and the engine's constant latency are removed.
    public static func renderStreaming(conditioning: UpstreamConditioning.Rows, model: PianoModel, settings: RenderSettings,
                                       progress: ((Double) -> Void)? = nil) throws -> RenderOutput {
        var collector = RenderCollector(dry: true, channels: settings.channels)
        try renderStreaming(conditioning: conditioning, model: model, settings: settings, into: &collector, progress: progress)
        return collector.output
    }

    public static func renderStreaming<Sink: RenderSink>(conditioning: UpstreamConditioning.Rows, model: PianoModel,
                                                         settings: RenderSettings, into sink: inout Sink,
                                                         progress: ((Double) -> Void)? = nil) throws {
        try checkInstrument(settings, model)
        let h = model.hyper
        var options = engineOptions(settings, dry: sink.wantsDry)
        options.script = conditioning
        options.warmUpFrames = 0
        let rate = settings.sampleRate ?? Double(h.sampleRate)
        let block = max(1, settings.blockSize)
        let engines = try prepareEngines(model: model, options: options, settings: settings, rate: rate, block: block)
        let engine = engines.engine
        let modelRate = Double(h.sampleRate)
        // As upstream: int(warm_up · sample_rate) samples cut; the engine adds its pad in front.
        let warmUpSamples = Int(settings.warmUp * Double(h.sampleRate))
        let skip = Int((Double(engine.padding + warmUpSamples) * rate / modelRate + engine.streamDelay).rounded())
        let modelSamples = max(0, conditioning.frames * h.samplesPerFrame - warmUpSamples)
        let length = Int((Double(modelSamples) * rate / modelRate).rounded())
        try drive(engines, events: [], rate: rate, block: block, skip: skip, length: length, into: &sink, progress: progress)
    }

    /// The streaming engine over timed events, cropped to upstream's alignment: the engine's
    /// constant latency (look-ahead, pad, resampler) is removed so the file lines up with the MIDI
    /// like an upstream render. `modelSamples` is the length at the model's rate.
    public static func renderStreaming(events: [TimedMessage], modelSamples: Int, warmUpFrames: Int, sustainApplied: Bool,
                                       model: PianoModel, settings: RenderSettings,
                                       progress: ((Double) -> Void)? = nil) throws -> RenderOutput {
        var collector = RenderCollector(dry: true, channels: settings.channels)
        try renderStreaming(events: events, modelSamples: modelSamples, warmUpFrames: warmUpFrames, sustainApplied: sustainApplied,
                            model: model, settings: settings, into: &collector, progress: progress)
        return collector.output
    }

    public static func renderStreaming<Sink: RenderSink>(events: [TimedMessage], modelSamples: Int, warmUpFrames: Int,
                                                         sustainApplied: Bool, model: PianoModel, settings: RenderSettings,
                                                         into sink: inout Sink, progress: ((Double) -> Void)? = nil) throws {
        try checkInstrument(settings, model)
        let h = model.hyper
        var options = engineOptions(settings, dry: sink.wantsDry)
        // One warm-up frame fewer than upstream: the engine's events land one frame later, so
        // this keeps its sample clock (oscillator phases, 1000-sample phase chunks) on upstream's.
        options.warmUpFrames = max(0, warmUpFrames - 1)
        options.sustainPedalHolds = !sustainApplied
        let rate = settings.sampleRate ?? Double(h.sampleRate)
        let block = max(1, settings.blockSize)
        let engines = try prepareEngines(model: model, options: options, settings: settings, rate: rate, block: block)
        let engine = engines.engine
        let modelRate = Double(h.sampleRate)
        // Upstream's sound starts one frame before the event's frame; the engine's one frame
        // after it (the event waits for the next frame) plus the pad: drop that much.
        let skipModel = Double(engine.padding + 2 * h.samplesPerFrame - h.samplesPerFrame)
        let skip = Int((skipModel * rate / modelRate + engine.streamDelay).rounded())
        let length = Int((Double(modelSamples) * rate / modelRate).rounded())
        try drive(engines, events: events, rate: rate, block: block, skip: skip, length: length, into: &sink, progress: progress)
    }

    public static func renderStreaming(events: [TimedMessage], modelSamples: Int, warmUpFrames: Int, sustainApplied: Bool,
                                       weights: PianoWeights, settings: RenderSettings,
                                       progress: ((Double) -> Void)? = nil) throws -> RenderOutput {
        try renderStreaming(events: events, modelSamples: modelSamples, warmUpFrames: warmUpFrames, sustainApplied: sustainApplied,
                            model: PianoModel(weights: weights), settings: settings, progress: progress)
    }

    /// The engines of one render, prepared: the engine, and with two threads its controls twin
    /// (`ControlPipeline`) with how many blocks it may run ahead.
    struct Engines {
        var engine: PianoEngine
        var twin: PianoEngine? = nil
        var lag = 0
        var runner: (any RenderPipelineRunner)? = nil
    }

    static func prepareEngines(model: PianoModel, options: PianoEngine.Options, settings: RenderSettings,
                               rate: Double, block: Int) throws -> Engines {
        guard settings.threads >= 2, let runner = settings.runner else {
            let engine = PianoEngine(model: model, options: options)
            try engine.prepare(sampleRate: rate, maxBlockSize: block)
            return Engines(engine: engine)
        }
        let h = model.hyper
        // Frames one block can take: its model samples in frames, plus the ends, plus a pad chunk.
        let perBlock = Int((Double(block) * Double(h.sampleRate) / rate / Double(h.samplesPerFrame)).rounded(.up)) + 3
        let lag = max(2, 48 / perBlock)
        // The warm-up's frames cross at `prepare`, before either thread runs.
        let split = min(h.voices, max(0, settings.splitVoices ?? ControlPipeline.defaultSplit(model.architecture, voices: h.voices)))
        let ring = ControlFrameRing(model: model, split: split, capacity: max(0, options.warmUpFrames) + 1 + (lag + 1) * perBlock)
        var twinOptions = options
        twinOptions.produceDry = false
        twinOptions.pipeline = ControlPipeline(ring: ring, role: .controls)
        var mainOptions = options
        mainOptions.pipeline = ControlPipeline(ring: ring, role: .synthesis)
        let twin = PianoEngine(model: model, options: twinOptions)
        try twin.prepare(sampleRate: rate, maxBlockSize: block)
        let engine = PianoEngine(model: model, options: mainOptions)
        try engine.prepare(sampleRate: rate, maxBlockSize: block)
        return Engines(engine: engine, twin: twin, lag: lag, runner: runner)
    }

    /// The controls twin's side of a two-thread render: the same blocks and events, no output.
    final class TwinDriver: @unchecked Sendable {   // used by the producer thread only
        let engine: PianoEngine
        var feed: BlockEventFeed
        var events: [EngineEvent] = []
        let scratch: UnsafeMutableBufferPointer<Float>
        let block: Int, total: Int
        init(engine: PianoEngine, events: [TimedMessage], rate: Double, block: Int, total: Int, eventOffset: Int) {
            self.engine = engine
            feed = BlockEventFeed(events: events, sampleRate: rate)
            feed.offset = eventOffset
            self.events.reserveCapacity(256)
            scratch = .allocate(capacity: block)
            scratch.initialize(repeating: 0)
            self.block = block; self.total = total
        }
        deinit { scratch.deallocate() }
        func run(_ b: Int) {
            let position = b * block, n = min(block, total - position)
            feed.take(position: position, count: n, into: &events)
            events.withUnsafeBufferPointer { engine.render(events: $0, into: UnsafeMutableBufferPointer(rebasing: scratch[0..<n])) }
        }
    }

    /// The one render loop: runs a prepared engine block by block, `skip` + `length` host
    /// samples, and hands the last `length` to `sink` as they come. Its buffers are allocated
    /// once, here; nothing is allocated per block (the engine must have been built with
    /// `produceDry == sink.wantsDry`). With a controls twin, the twin plays the same blocks on
    /// the runner's other thread, up to `lag` blocks ahead.
    static func drive<Sink: RenderSink>(_ engines: Engines, events: [TimedMessage], rate: Double, block: Int,
                                        skip: Int, length: Int, into sink: inout Sink,
                                        progress: ((Double) -> Void)?, eventOffset: Int = 0) throws {
        let engine = engines.engine
        let total = skip + length
        try sink.begin(sampleRate: Int(rate.rounded()), length: length)
        let wantsDry = sink.wantsDry
        let stereo = sink.channels == 2
        let wet = UnsafeMutableBufferPointer<Float>.allocate(capacity: block)
        let dry = UnsafeMutableBufferPointer<Float>.allocate(capacity: block)
        let right = UnsafeMutableBufferPointer<Float>.allocate(capacity: stereo ? block : 0)
        let interleaved = UnsafeMutableBufferPointer<Float>.allocate(capacity: stereo ? 2 * block : 0)
        wet.initialize(repeating: 0)
        dry.initialize(repeating: 0)
        right.initialize(repeating: 0)
        interleaved.initialize(repeating: 0)
        defer { wet.deallocate(); dry.deallocate(); right.deallocate(); interleaved.deallocate() }
        var feed = BlockEventFeed(events: events, sampleRate: rate)
        feed.offset = eventOffset
        var blockEvents: [EngineEvent] = []
        blockEvents.reserveCapacity(256)
        func consume(_ b: Int) throws {
            let position = b * block
            let n = min(block, total - position)
            feed.take(position: position, count: n, into: &blockEvents)
            blockEvents.withUnsafeBufferPointer { ev in
                let d = wantsDry ? UnsafeMutableBufferPointer(rebasing: dry[0..<n]) : nil
                if stereo {
                    engine.render(events: ev, left: UnsafeMutableBufferPointer(rebasing: wet[0..<n]),
                                  right: UnsafeMutableBufferPointer(rebasing: right[0..<n]), dry: d)
                } else {
                    engine.render(events: ev, into: UnsafeMutableBufferPointer(rebasing: wet[0..<n]), dry: d)
                }
            }
            // The constant latency (and warm-up) is cut: the first `skip` samples go nowhere.
            let start = min(n, max(0, skip - position))
            if start < n {
                let out: UnsafeBufferPointer<Float>
                if stereo {
                    for i in start..<n { interleaved[2 * (i - start)] = wet[i]; interleaved[2 * (i - start) + 1] = right[i] }
                    out = UnsafeBufferPointer(rebasing: interleaved[0..<(2 * (n - start))])
                } else {
                    out = UnsafeBufferPointer(rebasing: wet[start..<n])
                }
                try sink.write(wet: out, dry: wantsDry ? UnsafeBufferPointer(rebasing: dry[start..<n]) : nil)
            }
            let done = position + n
            if (done / block) % 200 == 0 { progress?(Double(done) / Double(max(1, total))) }
        }
        let blocks = (total + block - 1) / block
        if let twin = engines.twin, let runner = engines.runner {
            let driver = TwinDriver(engine: twin, events: events, rate: rate, block: block, total: total, eventOffset: eventOffset)
            try runner.run(blocks: blocks, lag: engines.lag, produce: { driver.run($0) }, consume: consume)
        } else {
            for b in 0..<blocks { try consume(b) }
        }
        progress?(1)
    }

    /// Renders a whole performance (warm-up frames included in `conditioning`, as
    /// `UpstreamConditioning.make` builds it). `progress` gets the fraction done, now and then.
    public static func render(conditioning: FrameConditioning, weights: PianoWeights, settings: RenderSettings,
                              progress: ((Double) -> Void)? = nil) throws -> RenderOutput {
        var collector = RenderCollector(dry: true)
        try render(conditioning: conditioning, weights: weights, settings: settings, into: &collector, progress: progress)
        return collector.output
    }

    /// dafx22's exact render, upstream's two passes: the Normalize statistics of the whole
    /// sequence first (a pass through the networks, no audio), then the audio frame by frame
    /// with those statistics, handed to `sink` as it is synthesised. The conditioning (the
    /// input) is whole-sequence by nature, as upstream's is; the audio is not kept.
    public static func render<Sink: RenderSink>(conditioning: FrameConditioning, weights: PianoWeights,
                                                settings: RenderSettings, into sink: inout Sink,
                                                progress: ((Double) -> Void)? = nil) throws {
        guard settings.instrument >= 0 && settings.instrument < weights.instruments.count else {
            throw WeightsError("instrument \(settings.instrument) is out of range 0..<\(weights.instruments.count)")
        }
        let h = weights.hyper
        // As upstream: int(warm_up · frame_rate) silent frames in, int(warm_up · sample_rate) samples cut.
        let warmUpSamples = Int(settings.warmUp * Double(h.sampleRate))
        var network = PianoNetwork(weights: weights, instrument: settings.instrument)
        network.mono.idle.enabled = settings.engine.keepsIdleVoices
        let stats = wholeSequenceStatistics(conditioning: conditioning, network: &network) { progress?(0.4 * $0) }
        let synth = PianoSynth(weights: weights, instrument: settings.instrument, seed: settings.seed, noise: settings.noise)
        let total = conditioning.frames * h.samplesPerFrame
        let crop = min(total, warmUpSamples)
        try sink.begin(sampleRate: h.sampleRate, length: total - crop)
        let wantsDry = sink.wantsDry
        var position = 0
        try renderFrames(conditioning: conditioning, network: &network, statistics: stats, synth: synth,
                         tuning: Tuning.ratio(a4: settings.a4, fineCents: 0),
                         progress: { progress?(0.4 + 0.6 * $0) }) { dry, wet in
            let start = min(wet.count, max(0, crop - position))
            position += wet.count
            if start < wet.count {
                try sink.write(wet: UnsafeBufferPointer(rebasing: wet[start...]),
                               dry: wantsDry ? UnsafeBufferPointer(rebasing: dry[start...]) : nil)
            }
        }
        progress?(1)
    }

    /// Upstream's Normalize statistics, measured over the whole sequence: a pass through the
    /// context network, then one through the monophonic network with the context normalised.
    public static func wholeSequenceStatistics(conditioning c: FrameConditioning, network: inout PianoNetwork,
                                               progress: ((Double) -> Void)? = nil) -> NormalizationStatistics {
        let V = c.voices
        var stats = NormalizationStatistics(voices: V)
        var contextMoments = MomentAccumulator()
        network.reset()
        c.conditioning.withUnsafeBufferPointer { cond in
            c.pedal.withUnsafeBufferPointer { ped in
                for t in 0..<c.frames {
                    network.stepContextToNorm(conditioning: cond.baseAddress! + t * V * 2, pedal: ped.baseAddress! + t * 4)
                    network.context.preNorm.withUnsafeBufferPointer { contextMoments.add($0.baseAddress!, count: $0.count) }
                }
            }
        }
        progress?(0.3)
        stats.contextMean = contextMoments.mean
        stats.contextVariance = contextMoments.variance
        var monoMoments = [MomentAccumulator](repeating: MomentAccumulator(), count: V)
        network.reset()
        let width = network.mono.hidden.outputs
        c.conditioning.withUnsafeBufferPointer { cond in
            c.pedal.withUnsafeBufferPointer { ped in
                for t in 0..<c.frames {
                    network.step(conditioning: cond.baseAddress! + t * V * 2, pedal: ped.baseAddress! + t * 4,
                                 statistics: stats, stage: .monoToNorm)
                    network.mono.preNorm.withUnsafeBufferPointer { p in
                        for v in 0..<V { monoMoments[v].add(p.baseAddress! + v * width, count: width) }
                    }
                    if t % 1000 == 0 { progress?(0.3 + 0.7 * Double(t) / Double(c.frames)) }
                }
            }
        }
        stats.monoMeans = monoMoments.map(\.mean)
        stats.monoVariances = monoMoments.map(\.variance)
        network.reset()
        progress?(1)
        return stats
    }

    /// Runs the network and the synthesiser over every frame with fixed statistics.
    /// `observe` sees each frame's controls (tests compare them with upstream's tensors).
    public static func renderFrames(conditioning c: FrameConditioning, network: inout PianoNetwork,
                                    statistics: NormalizationStatistics, synth: PianoSynth,
                                    dry: inout [Float], wet: inout [Float], additive: UnsafeMutablePointer<Float>? = nil,
                                    observe: ((Int, PianoNetwork, SynthControls) -> Void)? = nil,
                                    progress: ((Double) -> Void)? = nil) {
        let N = synth.frameSize
        precondition(dry.count >= c.frames * N && wet.count >= c.frames * N)
        var offset = 0
        dry.withUnsafeMutableBufferPointer { d in
        wet.withUnsafeMutableBufferPointer { w in
            renderFrames(conditioning: c, network: &network, statistics: statistics, synth: synth, additive: additive,
                         observe: observe, progress: progress) { fd, fw in
                (d.baseAddress! + offset).update(from: fd.baseAddress!, count: N)
                (w.baseAddress! + offset).update(from: fw.baseAddress!, count: N)
                offset += N
            }
        }}
    }

    /// The same, handing each frame's dry and wet samples (`synth.frameSize` each, buffers
    /// reused from frame to frame) to `emit` as they are synthesised. `additive`, when given,
    /// receives the whole sequence's additive part.
    public static func renderFrames(conditioning c: FrameConditioning, network: inout PianoNetwork,
                                    statistics: NormalizationStatistics, synth: PianoSynth,
                                    additive: UnsafeMutablePointer<Float>? = nil, tuning: Float = 1,
                                    observe: ((Int, PianoNetwork, SynthControls) -> Void)? = nil,
                                    progress: ((Double) -> Void)? = nil,
                                    emit: (_ dry: UnsafeBufferPointer<Float>, _ wet: UnsafeBufferPointer<Float>) throws -> Void) rethrows {
        let V = c.voices, N = synth.frameSize, h = network.hyper
        guard c.frames > 0 else { return }
        network.reset()
        var current = SynthControls(hyper: h)
        var next = SynthControls(hyper: h)
        let dry = UnsafeMutableBufferPointer<Float>.allocate(capacity: N)
        let wet = UnsafeMutableBufferPointer<Float>.allocate(capacity: N)
        dry.initialize(repeating: 0)
        wet.initialize(repeating: 0)
        defer { dry.deallocate(); wet.deallocate() }
        try c.conditioning.withUnsafeBufferPointer { cond in
        try c.pedal.withUnsafeBufferPointer { ped in
            func compute(_ t: Int, into controls: inout SynthControls) {
                network.step(conditioning: cond.baseAddress! + t * V * 2, pedal: ped.baseAddress! + t * 4, statistics: statistics)
                network.mono.raw.withUnsafeBufferPointer { raw in
                network.f0.withUnsafeBufferPointer { f0 in
                network.inharmCoefficient.withUnsafeBufferPointer { b in
                    controls.update(raw: raw.baseAddress!, f0: f0.baseAddress!, inharm: b.baseAddress!, sampleRate: h.sampleRate,
                                    tuning: tuning)
                }}}
                observe?(t, network, controls)
            }
            compute(0, into: &current)
            for t in 0..<c.frames {
                // The last frame is held: ddsp's resampling repeats the final value.
                if t + 1 < c.frames { compute(t + 1, into: &next) } else { next = current }
                synth.render(current: current, next: next, dry: dry.baseAddress!, wet: wet.baseAddress!,
                             additiveOnly: additive.map { $0 + t * N })
                try emit(UnsafeBufferPointer(dry), UnsafeBufferPointer(wet))
                swap(&current, &next)
                if t % 500 == 0 { progress?(Double(t) / Double(c.frames)) }
            }
        }}
    }
}
