/// What `ddsp-piano render` asks of the engine.
public struct RenderSettings: Sendable {
    public var instrument: Int = 9
    /// Seconds of silent input rendered first and cropped from the output, like upstream.
    public var warmUp: Double = 0.5
    /// Seconds of MIDI to render (nil: to the end of the last note, rounded up like upstream).
    public var duration: Double? = nil
    public var seed: UInt64 = 0
    public var noise: Bool = true
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
    /// How the streaming engine estimates the Normalize statistics.
    public var normalization: NormalizationEstimator.Mode = NormalizationEstimator.standardMode
    /// Per-instrument priors for the estimator (nil: generic values).
    public var priors: [NormalizationStatistics]? = nil
    public init() {}
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
}

public struct RenderOutput: Sendable {
    public var sampleRate: Int
    /// Model output (dry + reverb), warm-up removed.
    public var wet: [Float]
    /// The unreverbed mix, warm-up removed.
    public var dry: [Float]
}

public enum OfflineRenderer {
    /// Renders a MIDI file like `ddsp-piano render`: through the streaming engine (the same code
    /// as live playing), or for dafx22 with `exact` through upstream's two-pass normalisation.
    public static func render(midi: MIDIFile, model: PianoModel, settings: RenderSettings,
                              progress: ((Double) -> Void)? = nil) throws -> RenderOutput {
        let h = model.hyper
        if settings.exact, let weights = model.dafx22 {
            let conditioning = UpstreamConditioning.make(midi: midi, warmUp: settings.warmUp, duration: settings.duration,
                                                         voices: h.voices, frameRate: h.frameRate)
            return try render(conditioning: conditioning, weights: weights, settings: settings, progress: progress)
        }
        let scripted: Bool
        switch settings.conditioning {
        case .automatic: scripted = model.architecture == .v2
        case .upstream: scripted = true
        case .events: scripted = false
        }
        if scripted {
            let conditioning = UpstreamConditioning.make(midi: midi, warmUp: settings.warmUp, duration: settings.duration,
                                                         voices: h.voices, frameRate: h.frameRate)
            return try renderStreaming(conditioning: conditioning, model: model, settings: settings, progress: progress)
        }
        let sequence = NoteSequence(midi: midi).applyingSustain()
        let frames = UpstreamConditioning.frameCount(midi: midi, warmUp: settings.warmUp, duration: settings.duration,
                                                     frameRate: h.frameRate)
        let warmUpFrames = Int(settings.warmUp * Double(h.frameRate))
        let modelSamples = max(0, frames - warmUpFrames) * h.samplesPerFrame
        return try renderStreaming(events: EventSchedule.events(from: sequence), modelSamples: modelSamples,
                                   warmUpFrames: warmUpFrames, sustainApplied: true, model: model,
                                   settings: settings, progress: progress)
    }

    public static func render(midi: MIDIFile, weights: PianoWeights, settings: RenderSettings,
                              progress: ((Double) -> Void)? = nil) throws -> RenderOutput {
        try render(midi: midi, model: PianoModel(weights: weights), settings: settings, progress: progress)
    }

    static func engineOptions(_ settings: RenderSettings) -> PianoEngine.Options {
        var options = PianoEngine.Options()
        options.instrument = settings.instrument
        options.seed = settings.seed
        options.noise = settings.noise
        options.produceDry = true
        options.normalization = settings.normalization
        options.priors = settings.priors
        return options
    }

    static func checkInstrument(_ settings: RenderSettings, _ model: PianoModel) throws {
        guard settings.instrument >= 0 && settings.instrument < model.instruments.count else {
            throw WeightsError("instrument \(settings.instrument) is out of range 0..<\(model.instruments.count)")
        }
    }

    /// The streaming engine playing upstream's conditioning row by row (warm-up rows included),
    /// cropped like upstream: the warm-up and the engine's constant latency are removed.
    public static func renderStreaming(conditioning: FrameConditioning, model: PianoModel, settings: RenderSettings,
                                       progress: ((Double) -> Void)? = nil) throws -> RenderOutput {
        try checkInstrument(settings, model)
        let h = model.hyper
        var options = engineOptions(settings)
        options.script = conditioning
        options.warmUpFrames = 0
        let engine = PianoEngine(model: model, options: options)
        let rate = settings.sampleRate ?? Double(h.sampleRate)
        let block = max(1, settings.blockSize)
        try engine.prepare(sampleRate: rate, maxBlockSize: block)
        let modelRate = Double(h.sampleRate)
        // As upstream: int(warm_up · sample_rate) samples cut; the engine adds its pad in front.
        let warmUpSamples = Int(settings.warmUp * Double(h.sampleRate))
        let skip = Int((Double(engine.padding + warmUpSamples) * rate / modelRate + engine.streamDelay).rounded())
        let modelSamples = max(0, conditioning.frames * h.samplesPerFrame - warmUpSamples)
        let length = Int((Double(modelSamples) * rate / modelRate).rounded())
        return drive(engine, events: [], rate: rate, block: block, skip: skip, length: length, progress: progress)
    }

    /// The streaming engine over timed events, cropped to upstream's alignment: the engine's
    /// constant latency (look-ahead, pad, resampler) is removed so the file lines up with the MIDI
    /// like an upstream render. `modelSamples` is the length at the model's rate.
    public static func renderStreaming(events: [TimedMessage], modelSamples: Int, warmUpFrames: Int, sustainApplied: Bool,
                                       model: PianoModel, settings: RenderSettings,
                                       progress: ((Double) -> Void)? = nil) throws -> RenderOutput {
        try checkInstrument(settings, model)
        let h = model.hyper
        var options = engineOptions(settings)
        // One warm-up frame fewer than upstream: the engine's events land one frame later, so
        // this keeps its sample clock (oscillator phases, 1000-sample phase chunks) on upstream's.
        options.warmUpFrames = max(0, warmUpFrames - 1)
        options.sustainPedalHolds = !sustainApplied
        let engine = PianoEngine(model: model, options: options)
        let rate = settings.sampleRate ?? Double(h.sampleRate)
        let block = max(1, settings.blockSize)
        try engine.prepare(sampleRate: rate, maxBlockSize: block)
        let modelRate = Double(h.sampleRate)
        // Upstream's sound starts one frame before the event's frame; the engine's one frame
        // after it (the event waits for the next frame) plus the pad: drop that much.
        let skipModel = Double(engine.padding + 2 * h.samplesPerFrame - h.samplesPerFrame)
        let skip = Int((skipModel * rate / modelRate + engine.streamDelay).rounded())
        let length = Int((Double(modelSamples) * rate / modelRate).rounded())
        return drive(engine, events: events, rate: rate, block: block, skip: skip, length: length, progress: progress)
    }

    public static func renderStreaming(events: [TimedMessage], modelSamples: Int, warmUpFrames: Int, sustainApplied: Bool,
                                       weights: PianoWeights, settings: RenderSettings,
                                       progress: ((Double) -> Void)? = nil) throws -> RenderOutput {
        try renderStreaming(events: events, modelSamples: modelSamples, warmUpFrames: warmUpFrames, sustainApplied: sustainApplied,
                            model: PianoModel(weights: weights), settings: settings, progress: progress)
    }

    /// Runs a prepared engine block by block, `skip` + `length` host samples, keeps the last `length`.
    static func drive(_ engine: PianoEngine, events: [TimedMessage], rate: Double, block: Int, skip: Int, length: Int,
                      progress: ((Double) -> Void)?) -> RenderOutput {
        let total = skip + length
        var wet = [Float](repeating: 0, count: total), dry = wet
        var feed = BlockEventFeed(events: events, sampleRate: rate)
        var blockEvents: [EngineEvent] = []
        var position = 0
        while position < total {
            let n = min(block, total - position)
            feed.take(position: position, count: n, into: &blockEvents)
            blockEvents.withUnsafeBufferPointer { ev in
                wet.withUnsafeMutableBufferPointer { w in
                    dry.withUnsafeMutableBufferPointer { d in
                        engine.render(events: ev, into: UnsafeMutableBufferPointer(rebasing: w[position..<(position + n)]),
                                      dry: UnsafeMutableBufferPointer(rebasing: d[position..<(position + n)]))
                    }
                }
            }
            position += n
            if (position / block) % 200 == 0 { progress?(Double(position) / Double(max(1, total))) }
        }
        progress?(1)
        return RenderOutput(sampleRate: Int(rate.rounded()), wet: Array(wet[min(skip, total)...]), dry: Array(dry[min(skip, total)...]))
    }

    /// Renders a whole performance (warm-up frames included in `conditioning`, as
    /// `UpstreamConditioning.make` builds it). `progress` gets the fraction done, now and then.
    public static func render(conditioning: FrameConditioning, weights: PianoWeights, settings: RenderSettings,
                              progress: ((Double) -> Void)? = nil) throws -> RenderOutput {
        guard settings.instrument >= 0 && settings.instrument < weights.instruments.count else {
            throw WeightsError("instrument \(settings.instrument) is out of range 0..<\(weights.instruments.count)")
        }
        let h = weights.hyper
        // As upstream: int(warm_up · frame_rate) silent frames in, int(warm_up · sample_rate) samples cut.
        let warmUpSamples = Int(settings.warmUp * Double(h.sampleRate))
        var network = PianoNetwork(weights: weights, instrument: settings.instrument)
        let stats = wholeSequenceStatistics(conditioning: conditioning, network: &network) { progress?(0.4 * $0) }
        let synth = PianoSynth(weights: weights, instrument: settings.instrument, seed: settings.seed, noise: settings.noise)
        var dryAll = [Float](repeating: 0, count: conditioning.frames * h.samplesPerFrame)
        var wetAll = dryAll
        renderFrames(conditioning: conditioning, network: &network, statistics: stats, synth: synth,
                     dry: &dryAll, wet: &wetAll) { progress?(0.4 + 0.6 * $0) }
        let crop = min(dryAll.count, warmUpSamples)
        progress?(1)
        return RenderOutput(sampleRate: h.sampleRate, wet: Array(wetAll[crop...]), dry: Array(dryAll[crop...]))
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
        let V = c.voices, N = synth.frameSize, h = network.hyper
        precondition(dry.count >= c.frames * N && wet.count >= c.frames * N)
        guard c.frames > 0 else { return }
        network.reset()
        var current = SynthControls(hyper: h)
        var next = SynthControls(hyper: h)
        c.conditioning.withUnsafeBufferPointer { cond in
        c.pedal.withUnsafeBufferPointer { ped in
        dry.withUnsafeMutableBufferPointer { d in
        wet.withUnsafeMutableBufferPointer { w in
            func compute(_ t: Int, into controls: inout SynthControls) {
                network.step(conditioning: cond.baseAddress! + t * V * 2, pedal: ped.baseAddress! + t * 4, statistics: statistics)
                network.mono.raw.withUnsafeBufferPointer { raw in
                network.f0.withUnsafeBufferPointer { f0 in
                network.inharmCoefficient.withUnsafeBufferPointer { b in
                    controls.update(raw: raw.baseAddress!, f0: f0.baseAddress!, inharm: b.baseAddress!, sampleRate: h.sampleRate)
                }}}
                observe?(t, network, controls)
            }
            compute(0, into: &current)
            for t in 0..<c.frames {
                // The last frame is held: ddsp's resampling repeats the final value.
                if t + 1 < c.frames { compute(t + 1, into: &next) } else { next = current }
                synth.render(current: current, next: next, dry: d.baseAddress! + t * N, wet: w.baseAddress! + t * N,
                             additiveOnly: additive.map { $0 + t * N })
                swap(&current, &next)
                if t % 500 == 0 { progress?(Double(t) / Double(c.frames)) }
            }
        }}}}
    }
}
