import CFloatEnv
import Foundation

/// A MIDI message for the engine, `offset` samples (host rate) into the block being rendered.
public struct EngineEvent: Sendable, Equatable {
    public var offset: Int
    public var message: MIDIMessage
    public init(offset: Int, message: MIDIMessage) {
        self.offset = offset
        self.message = message
    }
}

/// The streaming DDSP-Piano: MIDI events in, audio blocks of any size out, at the host rate.
/// The daemon (JACK callback) and the offline renderer both drive this one class.
///
/// It plays both architectures (`PianoModel.Architecture`): dafx22 (16 kHz, its Normalize
/// statistics estimated as the music goes) and v2 (24 kHz, causal: live output equals
/// upstream's). The model is immutable and shared; everything here is this stream's state.
///
/// Timing: the model runs frame by frame (250 Hz: 64 samples at 16 kHz, 96 at 24 kHz). An event takes effect
/// on the frame after the one it falls in, so a frame's input is complete when it is computed;
/// the synthesis of frame g needs the controls of g+1 (interpolation and the noise filter's
/// delay), which is the engine's one frame (4 ms) of look-ahead. Audio leaves through an
/// initial pad of `padding` model samples (one frame plus what the resampler holds back), so
/// a frame is never computed before every event it depends on has arrived, whatever the block
/// size: renders with any block size are identical.
///
/// `prepare` allocates everything; `render` does not allocate, lock, block, log or do I/O.
// @unchecked Sendable: one stream's state: prepared on a control thread, then used by one audio thread at a time (handed over whole through a queue).
public final class PianoEngine: @unchecked Sendable {
    public struct Options: Sendable {
        public var instrument = UpstreamDefaults.piano
        public var seed: UInt64 = 0
        public var noise = true
        /// How the Normalize statistics are estimated (docs/NORMALIZATION.md): by default a
        /// running average of the piece so far, per voice, silence skipped.
        public var normalization: NormalizationEstimator.Mode = NormalizationEstimator.standardMode
        /// Per-instrument statistics for the Normalize layers; nil: the weight file's calibration,
        /// or the built-in default without one (`PianoWeights.normalizationPrior`).
        public var priors: [NormalizationStatistics]? = nil
        /// Frames of silence run at `prepare`/`reset`, like upstream's warm-up.
        public var warmUpFrames = UpstreamDefaults.warmUpFrames()
        /// Frames over which a piano switch glides (embeddings and reverb crossfade).
        public var switchFrames = 25
        /// Conditioning known in advance (a file render, `UpstreamConditioning`): frame k of the
        /// stream, warm-up included, plays row k instead of the live note state, as upstream
        /// does (it also marks the frame before a legato re-strike, which a live player cannot
        /// know). Note events are then ignored; piano switches, all-sound-off and gain still act.
        public var script: UpstreamConditioning.Rows? = nil
        /// Also deliver the unreverbed mix (`render(events:into:dry:)`), for offline renders.
        public var produceDry = false
        /// Keep a voice's network outputs from the last frame where that is exact (`IdleRows`).
        public var keepsIdleVoices = true
        /// One half of a two-engine offline render (`ControlPipeline`); nil: the whole engine.
        public var pipeline: ControlPipeline? = nil
        /// CC64 holds released notes (live playing). The offline renderer turns it off and sends
        /// notes already lengthened by upstream's sustain rules.
        public var sustainPedalHolds = true
        /// Prepare the stereo image (`StereoImage`): `render(events:into:right:)` then writes a
        /// left and a right channel; otherwise right is a copy of the mono output.
        public var stereo = false
        /// The stereo width at the start (0…1; 0 = mono in both channels); `PianoEngine.width` changes it.
        public var width: Float = 0
        /// A4 in Hz at the start (`Tuning.a4Range`); the model's own tuning is 440.
        public var a4: Float = Tuning.defaultA4
        /// Semitones added to live notes at the start (`Tuning.transposeRange`).
        public var transpose: Int = 0
        public init() {}
    }

    public let model: PianoModel
    public let options: Options
    public let modelRate: Int
    public let frameSize: Int
    public private(set) var hostRate: Double = 0
    public private(set) var maxBlockSize = 0
    /// The instrument playing now (the target of a switch in progress).
    public private(set) var instrument: Int

    // Networks: one of the two, by architecture (optionals so that they mutate in place).
    private var network: PianoNetwork?
    private var v2Network: V2Network?
    private let synth: PianoSynth
    private var estimator: NormalizationEstimator
    private var live: LiveConditioning
    private var current: SynthControls
    private var next: SynthControls
    private var conditioningRow: [Float]   // [voices, 2]
    private var pedalRow: [Float]          // [4]
    private var dry: [Float]               // [frameSize]
    private var wet: [Float]               // [frameSize]
    private let priors: [NormalizationStatistics]
    /// The pianos' priors blended for a switch (in place); in `.fixed` mode, the statistics in use.
    private var fixedStatistics: NormalizationStatistics
    /// The blend of the previous glide frame, to move the running estimate along with it.
    private var previousBlend: NormalizationStatistics

    // Timeline (model samples at 16 kHz, 0 = the first host sample).
    private var audioFrame = 0             // next audio frame to synthesise
    private var controlFrame = 0           // frames of controls computed since reset (script row)
    private var script: UpstreamConditioning.Rows?   // options.script as it plays (rewound by reset)
    private var hostSamples = 0            // host samples delivered so far
    private var paddingLeft = 0
    public private(set) var padding = 0

    // Host rate: the wet output and, on request, the dry mix.
    private var wetStream: HostStream?
    private var dryStream: HostStream?

    // Events waiting for their frame: a ring of (frame, message).
    private var pendingFrames: [Int] = []
    private var pendingMessages: [MIDIMessage] = []
    private var pendingOnGrid: [Bool] = []   // the event falls exactly on a frame boundary
    private var pendingHead = 0, pendingCount = 0
    public private(set) var droppedEvents = 0
    /// Frames of controls this engine has put into or taken from its `ControlPipeline` ring since
    /// the last reset (warm-up included).
    public private(set) var pipelineFrames = 0

    /// All-sound-off arrived: the frame in flight is muted too, so nothing feeds the emptied reverb.
    private var silenceFrame = false

    // Piano switch in progress.
    private var switchFrom = 0, switchStep = 0
    public var gain: Float = 1

    // Settings a driver may change between blocks (read at each frame).
    /// Stereo width, 0…1 (with `options.stereo`); glided over one frame.
    public var width: Float
    /// A4 in Hz: every f0 is scaled by a4/440 (and the RPN fine tuning).
    public var a4: Float
    /// Semitones added to notes as they start (a held note keeps the pitch it started with).
    public var transpose: Int
    private var widthPlaying: Float = 0

    // Stereo: the side signal (model rate, one frame) and its host-rate stream; a block of scratch.
    private var side: [Float]
    private var sideStream: HostStream?
    private var sideBlock: [Float] = []
    /// Each voice's key position (held while a voice is idle, so a release tail stays put).
    private var voicePan: [Float]

    // Controllers (`Controllers`): volume and expression as a smoothed gain, high-resolution
    // velocity, registered parameters (tuning), and the key → played pitch of sounding notes.
    private var controllers = Controllers()
    private var controllerGain: Float = 1
    private let gainSmoothing: Float
    private var keyMap: [Int16]            // [16·128] the pitch a key started, −1 none

    public convenience init(weights: PianoWeights, options: Options = Options()) {
        self.init(model: PianoModel(weights: weights), options: options)
    }

    public init(model: PianoModel, options: Options = Options()) {
        precondition(model.plays(options.instrument), "piano \(options.instrument) is not in the model")
        self.model = model
        self.options = options
        let h = model.hyper
        modelRate = h.sampleRate
        frameSize = h.samplesPerFrame
        instrument = options.instrument
        switch model.file {
        case .dafx22(let weights):
            network = PianoNetwork(weights: weights, instrument: options.instrument)
            let count = weights.instruments.count
            if let p = options.priors, p.count == count {
                priors = p
            } else {
                // The weight file's calibration when it has one, else the built-in default.
                priors = (0..<count).map { weights.normalizationPrior(instrument: $0) }
            }
        case .v2(let weights):
            // v2 normalises per frame (LayerNorm): no statistics to estimate.
            v2Network = V2Network(weights: weights, instrument: options.instrument)
            priors = [NormalizationStatistics](repeating: NormalizationStatistics(voices: h.voices), count: weights.instruments.count)
        }
        synth = PianoSynth(model: model, instrument: options.instrument, seed: options.seed, noise: options.noise)
        estimator = NormalizationEstimator(prior: priors[options.instrument], mode: options.normalization, skipsSilence: true)
        fixedStatistics = priors[options.instrument]
        previousBlend = priors[options.instrument]
        live = LiveConditioning(voices: h.voices, sustainPedalHolds: options.sustainPedalHolds)
        current = SynthControls(hyper: h)
        next = SynthControls(hyper: h)
        conditioningRow = [Float](repeating: 0, count: 2 * h.voices)
        pedalRow = [Float](repeating: 0, count: 4)
        dry = [Float](repeating: 0, count: frameSize)
        wet = [Float](repeating: 0, count: frameSize)
        side = [Float](repeating: 0, count: frameSize)
        voicePan = [Float](repeating: 0, count: h.voices)
        keyMap = [Int16](repeating: -1, count: 16 * 128)
        switchFrom = options.instrument
        width = options.width
        a4 = options.a4
        transpose = options.transpose
        // One-pole smoothing of the controller gain, 10 ms: no zipper noise from 7-bit steps.
        gainSmoothing = 1 - Float(exp(-1 / (Controllers.smoothingSeconds * Double(h.sampleRate))))
        if options.stereo { synth.prepareStereo(sampleRate: h.sampleRate) }
    }

    /// Allocates for the host rate and largest block, then runs the warm-up.
    public func prepare(sampleRate: Double, maxBlockSize: Int) throws {
        precondition(sampleRate > 0 && maxBlockSize > 0)
        hostRate = sampleRate
        self.maxBlockSize = maxBlockSize
        let wetStream = try HostStream(modelRate: modelRate, hostRate: sampleRate, frameSize: frameSize, maxBlockSize: maxBlockSize)
        self.wetStream = wetStream
        let synthesises = options.pipeline?.role != .controls
        dryStream = options.produceDry && synthesises ? try HostStream(modelRate: modelRate, hostRate: sampleRate, frameSize: frameSize, maxBlockSize: maxBlockSize) : nil
        sideStream = options.stereo && synthesises ? try HostStream(modelRate: modelRate, hostRate: sampleRate, frameSize: frameSize, maxBlockSize: maxBlockSize) : nil
        sideBlock = [Float](repeating: 0, count: options.stereo ? maxBlockSize : 0)
        // The resampler emits each output sample as soon as its newest input sample arrives, so
        // one frame of pad keeps every frame's events ahead of its synthesis (the block-size
        // tests check this at 16 and 48 kHz).
        padding = frameSize
        let capacity = 4096
        pendingFrames = [Int](repeating: 0, count: capacity)
        pendingMessages = [MIDIMessage](repeating: .controlChange(channel: 0, controller: 0, value: 0), count: capacity)
        pendingOnGrid = [Bool](repeating: false, count: capacity)
        reset()
    }

    /// Back to silence: notes, pedals, recurrent state, phases, reverb tail; then the warm-up.
    /// (Not for the audio thread: it runs the warm-up frames.)
    public func reset() {
        let saved = cfloatenv_enter_ftz()
        defer { cfloatenv_restore(saved) }
        network?.reset()
        network?.setInstrument(instrument)
        network?.mono.idle.enabled = options.keepsIdleVoices
        v2Network?.mono.idle.enabled = options.keepsIdleVoices
        v2Network?.reset()
        v2Network?.setInstrument(instrument)
        switchFrom = instrument
        switchStep = 0
        synth.reset(seed: options.seed)
        synth.setInstrument(instrument, fadeFrames: 1)
        // Own buffers everywhere: a buffer shared with `priors` would be copied on its first
        // write, on the audio thread.
        estimator = NormalizationEstimator(prior: PianoEngine.uniqueCopy(priors[instrument]), mode: options.normalization,
                                           skipsSilence: true)
        fixedStatistics = PianoEngine.uniqueCopy(priors[instrument])
        previousBlend = PianoEngine.uniqueCopy(priors[instrument])
        live = LiveConditioning(voices: model.hyper.voices, sustainPedalHolds: options.sustainPedalHolds)
        controlFrame = 0
        pipelineFrames = 0
        script = options.script
        script?.rewind()
        precondition(script.map { $0.voices == model.hyper.voices } ?? true, "a script needs one pair of columns per voice")
        wetStream?.reset()
        dryStream?.reset()
        sideStream?.reset()
        controllers = Controllers()
        controllerGain = 1
        for i in keyMap.indices { keyMap[i] = -1 }
        for v in voicePan.indices { voicePan[v] = 0 }
        // The image opens from mono over the first frame, whatever the width: the same after
        // any reset (a driver's warm-up ends in one), so live and offline renders agree.
        widthPlaying = 0
        pendingHead = 0; pendingCount = 0
        hostSamples = 0
        paddingLeft = padding
        // Warm-up: frames −W … −1 of silence through the networks and the synth, as upstream
        // renders 0.5 s of empty input before the music (GRU states, phases, reverb settle).
        let w = max(0, options.warmUpFrames)
        computeControls(into: &current)
        for _ in 0..<w {
            computeControls(into: &next)
            if options.pipeline?.role == .controls { continue }
            dry.withUnsafeMutableBufferPointer { d in
                wet.withUnsafeMutableBufferPointer { o in
                    synth.render(current: current, next: next, dry: d.baseAddress!, wet: o.baseAddress!)
                }
            }
            swap(&current, &next)
        }
        audioFrame = 0
    }

    /// Latency from an event to the start of its sound, in host samples: the frame quantisation
    /// (0…1 frame, here counted at its maximum) plus the pad and the resampler's delay.
    public var latencySamples: Int {
        let model = Double(padding)
        return Int((model * hostRate / Double(modelRate) + (wetStream?.delay ?? 0)).rounded(.up))
    }

    /// The resampler's delay in host samples (0 at 16 kHz).
    public var streamDelay: Double { wetStream?.delay ?? 0 }

    /// Voice rows of the monophonic network kept from the last frame (`IdleRows`) and computed,
    /// since the last reset.
    public var idleVoiceRows: (kept: Int, computed: Int) {
        if let m = network?.mono.idle { return (m.keptCount, m.computedCount) }
        if let m = v2Network?.mono.idle { return (m.keptCount, m.computedCount) }
        return (0, 0)
    }

    /// Notes currently sounding (held or sustained).
    public var soundingNotes: Int { live.soundingCount }

    // MARK: - Real-time path

    /// Renders `output.count` (≤ maxBlockSize) samples; `events` are sorted by offset within the
    /// block. `dry` (same length) receives the unreverbed mix when `produceDry` is set.
    /// With `options.stereo`, this is the mid (the mono render); the side is discarded.
    public func render(events: UnsafeBufferPointer<EngineEvent>, into output: UnsafeMutableBufferPointer<Float>,
                       dry dryOut: UnsafeMutableBufferPointer<Float>? = nil) {
        renderMid(events: events, into: output, dry: dryOut)
        sideStream?.discard(output.count)
    }

    /// The mono output (the mid); the side waits in its stream for the caller to take it.
    private func renderMid(events: UnsafeBufferPointer<EngineEvent>, into output: UnsafeMutableBufferPointer<Float>,
                           dry dryOut: UnsafeMutableBufferPointer<Float>?) {
        let n = output.count
        precondition(n <= maxBlockSize, "block larger than prepared")
        guard let wetStream else { preconditionFailure("render before prepare") }
        let saved = cfloatenv_enter_ftz()
        defer { cfloatenv_restore(saved) }
        let ratio = Double(modelRate) / hostRate
        for e in events {
            let offset = min(max(0, e.offset), max(0, n - 1))
            let modelTime = Double(hostSamples + offset) * ratio
            let position = modelTime / Double(frameSize)
            let frame = Int(position.rounded(.down)) + 1
            if frame <= audioFrame {
                // Late (cannot happen with sorted offsets): it joins the next frame.
                enqueue(frame: audioFrame + 1, e.message, onGrid: false)
            } else {
                enqueue(frame: frame, e.message, onGrid: position == position.rounded(.down))
            }
        }
        while wetStream.count < n { produce() }
        wetStream.pop(into: output.baseAddress!, count: n, gain: gain)
        if let dryStream {
            if let d = dryOut { dryStream.pop(into: d.baseAddress!, count: min(n, d.count), gain: gain) }
            else { dryStream.discard(n) }
        }
        hostSamples += n
    }

    /// Stereo: `left` and `right` (same length) get L = M − S and R = M + S (`StereoImage`); without
    /// `options.stereo`, both get the mono output.
    public func render(events: UnsafeBufferPointer<EngineEvent>, left: UnsafeMutableBufferPointer<Float>,
                       right: UnsafeMutableBufferPointer<Float>, dry dryOut: UnsafeMutableBufferPointer<Float>? = nil) {
        precondition(right.count >= left.count, "right shorter than left")
        renderMid(events: events, into: left, dry: dryOut)
        let n = left.count
        guard let sideStream else {
            right.baseAddress!.update(from: left.baseAddress!, count: n)
            return
        }
        sideBlock.withUnsafeMutableBufferPointer { s in
            sideStream.pop(into: s.baseAddress!, count: left.count, gain: gain)
            for i in 0..<n {
                let m = left[i], d = s[i]
                left[i] = m - d
                right[i] = m + d
            }
        }
    }

    static func clampWidth(_ w: Float) -> Float { w.isNaN ? 0 : min(StereoImage.widthRange.upperBound, max(0, w)) }

    /// Convenience for arrays (allocation-free when the caller's arrays are reused).
    public func render(events: [EngineEvent], into output: inout [Float]) {
        events.withUnsafeBufferPointer { e in
            output.withUnsafeMutableBufferPointer { o in render(events: e, into: o) }
        }
    }

    private func enqueue(frame: Int, _ message: MIDIMessage, onGrid: Bool) {
        let capacity = pendingFrames.count
        if pendingCount == capacity {
            // Full: make room by applying the oldest event now (never lose a note-off).
            apply(pendingMessages[pendingHead], onGrid: pendingOnGrid[pendingHead])
            pendingHead = (pendingHead + 1) % capacity
            pendingCount -= 1
            droppedEvents += 1
        }
        let slot = (pendingHead + pendingCount) % capacity
        pendingFrames[slot] = frame
        pendingMessages[slot] = message
        pendingOnGrid[slot] = onGrid
        pendingCount += 1
    }

    /// One more chunk into the FIFOs: pad samples first, then one synthesised frame.
    private func produce() {
        if paddingLeft > 0 {
            let chunk = min(paddingLeft, frameSize)
            for i in 0..<chunk { dry[i] = 0 }
            paddingLeft -= chunk
            dry.withUnsafeBufferPointer { d in
                wetStream!.push(d.baseAddress!, count: chunk)
                dryStream?.push(d.baseAddress!, count: chunk)
                sideStream?.push(d.baseAddress!, count: chunk)
            }
            return
        }
        computeControls(into: &next)
        if options.pipeline?.role == .controls {
            // The controls went to the ring; the stream only keeps the frame clock the
            // synthesis engine keeps (its frames are made exactly when they are here).
            silenceFrame = false
            dry.withUnsafeMutableBufferPointer { d in
                for i in 0..<frameSize { d[i] = 0 }
                wetStream!.push(d.baseAddress!, count: frameSize)
            }
            audioFrame += 1
            return
        }
        let w1 = options.stereo ? Self.clampWidth(width) : 0
        let stereoFrame = w1 > 0 || widthPlaying > 0
        dry.withUnsafeMutableBufferPointer { d in
        wet.withUnsafeMutableBufferPointer { o in
        side.withUnsafeMutableBufferPointer { sd in
            synth.render(current: current, next: next, dry: d.baseAddress!, wet: o.baseAddress!,
                         side: stereoFrame ? sd.baseAddress! : nil, width: (widthPlaying, w1))
            if !stereoFrame { for i in 0..<frameSize { sd[i] = 0 } }
            if silenceFrame {
                silenceFrame = false
                synth.silence()
                for i in 0..<frameSize { d[i] = 0; o[i] = 0; sd[i] = 0 }
            }
            applyControllerGain(o, d, sd)
            wetStream!.push(o.baseAddress!, count: frameSize)
            dryStream?.push(d.baseAddress!, count: frameSize)
            sideStream?.push(sd.baseAddress!, count: frameSize)
        }}}
        widthPlaying = w1
        swap(&current, &next)
        audioFrame += 1
    }

    /// CC7 · CC11 as a gain, one-pole smoothed per sample (exactly 1, untouched, until moved).
    private func applyControllerGain(_ o: UnsafeMutableBufferPointer<Float>, _ d: UnsafeMutableBufferPointer<Float>,
                                     _ sd: UnsafeMutableBufferPointer<Float>) {
        let target = controllers.gain
        if controllerGain == target && target == 1 { return }
        var g = controllerGain
        let a = gainSmoothing
        for i in 0..<frameSize {
            g += a * (target - g)
            o[i] *= g; d[i] *= g; sd[i] *= g
        }
        // Close enough to stop moving: snap (so that 1 is exact again, and no denormal tail).
        controllerGain = abs(target - g) < 1e-6 ? target : g
    }

    /// Applies the events of the frame `audioFrame + 1` and computes its controls.
    private func computeControls(into controls: inout SynthControls) {
        let frame = audioFrame + 1
        let capacity = pendingFrames.count
        while pendingCount > 0 && pendingFrames[pendingHead] <= frame {
            apply(pendingMessages[pendingHead], onGrid: pendingOnGrid[pendingHead])
            pendingHead = (pendingHead + 1) % capacity
            pendingCount -= 1
        }
        if switchStep > 0 {
            // Glide the per-piano values (embeddings, tuning; dafx22: also the fixed statistics)
            // from the old piano to the new one.
            let total = max(1, options.switchFrames)
            let t = Float(total - switchStep + 1) / Float(total)
            v2Network?.blendInstruments(from: switchFrom, to: instrument, amount: t)
            if network != nil {
                network!.blendInstruments(from: switchFrom, to: instrument, amount: t)
                PianoEngine.copy(fixedStatistics, into: &previousBlend)
                PianoEngine.blend(into: &fixedStatistics, priors[switchFrom], priors[instrument], t)
                // The running estimate keeps what it learned of the music and follows the glide.
                estimator.rebase(from: previousBlend, to: fixedStatistics)
            }
            switchStep -= 1
        }
        let row = controlFrame
        controlFrame += 1
        conditioningRow.withUnsafeMutableBufferPointer { c in
            pedalRow.withUnsafeMutableBufferPointer { p in
                if script != nil {
                    script!.row(row, conditioning: c.baseAddress!, pedal: p.baseAddress!)
                } else {
                    live.nextFrame(conditioning: c.baseAddress!, pedal: p.baseAddress!)
                }
                // A two-thread render: this engine's voices, and the context from the controls engine.
                let pipeline = options.pipeline
                let rows: Range<Int>? = pipeline.map { $0.role == .controls ? 0..<$0.split : $0.split..<model.hyper.voices }
                let given: UnsafePointer<Float>? = pipeline?.role == .synthesis ? UnsafePointer(pipeline!.ring.context(frame: pipelineFrames)) : nil
                if v2Network != nil {
                    v2Network!.step(conditioning: c.baseAddress!, pedal: p.baseAddress!, rows: rows, context: given)
                } else {
                    let statistics = options.normalization == .fixed ? fixedStatistics : estimator.statistics
                    network!.step(conditioning: c.baseAddress!, pedal: p.baseAddress!, statistics: statistics, rows: rows, context: given)
                }
                if let pipeline { exchange(pipeline) }
            }
        }
        if options.pipeline?.role == .controls {
            // No sound here: only what the next frames' networks need.
            if network != nil { estimator.observe(network!) }
            return
        }
        let tuning = Tuning.ratio(a4: a4, fineCents: controllers.fineTuningCents)
        if options.stereo {
            // Each voice's key position, held while it is idle (its release tail stays put).
            for v in 0..<voicePan.count {
                let pitch = conditioningRow[2 * v]
                if pitch > 0 { voicePan[v] = StereoImage.position(pitch: pitch) }
                controls.pan[v] = voicePan[v]
            }
        }
        if let v2 = v2Network {
            // `v2` shares the network's buffers (copy-on-write, nothing is written): no copy.
            v2.raw.withUnsafeBufferPointer { raw in
                v2.f0.withUnsafeBufferPointer { f0 in
                    v2.inharmCoefficient.withUnsafeBufferPointer { b in
                        controls.update(raw: raw.baseAddress!, f0: f0.baseAddress!, inharm: b.baseAddress!, sampleRate: modelRate,
                                        tuning: tuning)
                    }
                }
            }
            return
        }
        estimator.observe(network!)
        network!.mono.raw.withUnsafeBufferPointer { raw in
            network!.f0.withUnsafeBufferPointer { f0 in
                network!.inharmCoefficient.withUnsafeBufferPointer { b in
                    controls.update(raw: raw.baseAddress!, f0: f0.baseAddress!, inharm: b.baseAddress!, sampleRate: modelRate,
                                    tuning: tuning)
                }
            }
        }
    }


    /// The controls engine leaves the frame's context and its voices' outputs in the ring; the
    /// synthesis engine takes those voices' outputs from it (it took the context before its step).
    private func exchange(_ pipeline: ControlPipeline) {
        let ring = pipeline.ring, k = pipeline.split, frame = pipelineFrames
        pipelineFrames += 1
        switch pipeline.role {
        case .controls:
            let context = ring.context(frame: frame), raw = ring.raw(frame: frame)
            if let v2 = v2Network {
                v2.contextVector.withUnsafeBufferPointer { context.update(from: $0.baseAddress!, count: ring.contextWidth) }
                v2.raw.withUnsafeBufferPointer { raw.update(from: $0.baseAddress!, count: k * ring.rawWidth) }
            } else if let n = network {
                n.contextVector.withUnsafeBufferPointer { context.update(from: $0.baseAddress!, count: ring.contextWidth) }
                n.mono.raw.withUnsafeBufferPointer { raw.update(from: $0.baseAddress!, count: k * ring.rawWidth) }
            }
        case .synthesis:
            let raw = UnsafePointer(ring.raw(frame: frame))
            v2Network?.mono.setRaw(rows: 0..<k, from: raw)
            network?.mono.setRaw(rows: 0..<k, from: raw)
        }
    }

    static func uniqueCopy(_ s: NormalizationStatistics) -> NormalizationStatistics {
        var c = s
        c.monoMeans = s.monoMeans.map { $0 }
        c.monoVariances = s.monoVariances.map { $0 }
        return c
    }

    static func copy(_ s: NormalizationStatistics, into d: inout NormalizationStatistics) {
        d.contextMean = s.contextMean
        d.contextVariance = s.contextVariance
        for v in d.monoMeans.indices { d.monoMeans[v] = s.monoMeans[v]; d.monoVariances[v] = s.monoVariances[v] }
    }

    /// (1 − t)·a + t·b, written in place (no allocation).
    static func blend(into s: inout NormalizationStatistics, _ a: NormalizationStatistics, _ b: NormalizationStatistics, _ t: Float) {
        s.contextMean = (1 - t) * a.contextMean + t * b.contextMean
        s.contextVariance = (1 - t) * a.contextVariance + t * b.contextVariance
        for v in s.monoMeans.indices {
            s.monoMeans[v] = (1 - t) * a.monoMeans[v] + t * b.monoMeans[v]
            s.monoVariances[v] = (1 - t) * a.monoVariances[v] + t * b.monoVariances[v]
        }
    }

    private func apply(_ message: MIDIMessage, onGrid: Bool) {
        switch message {
        case let .noteOn(channel, pitch, _) where message.endsNote, let .noteOff(channel, pitch, _):
            let key = Int(channel & 0x0F) * 128 + Int(pitch & 0x7F)
            // The pitch the key started (transposition may have changed since), else today's.
            let played = keyMap[key] >= 0 ? Int(keyMap[key]) : Int(pitch) + transpose + controllers.coarseTuning
            keyMap[key] = -1
            if (0...127).contains(played) { live.noteOff(pitch: played, atFrameStart: onGrid) }
        case let .noteOn(channel, pitch, velocity):
            let played = Int(pitch) + transpose + controllers.coarseTuning
            let fraction = controllers.takeVelocityFraction(channel: Int(channel & 0x0F))
            guard (0...127).contains(played) else { return }   // transposed off the keyboard
            keyMap[Int(channel & 0x0F) * 128 + Int(pitch & 0x7F)] = Int16(played)
            live.noteOn(pitch: played, velocity: Int(velocity), fraction: fraction)
        case let .controlChange(channel, controller, value):
            if controllers.take(channel: Int(channel & 0x0F), controller: Int(controller), value: Int(value)) { return }
            live.controlChange(Int(controller), value: Int(value), atFrameStart: onGrid)
            if controller == 120 || controller == 123 {
                for i in keyMap.indices { keyMap[i] = -1 }
            }
            if controller == 120 {
                network?.silenceVoices()
                v2Network?.silenceVoices()
                silenceFrame = true
            }
        case let .programChange(_, program):
            selectInstrument(Int(program))
        }
    }

    /// Switches piano at the next frame, gliding over `switchFrames`. A piano the model does not
    /// play (out of range, or not built: `PianoModel.pianos`) is ignored.
    public func selectInstrument(_ index: Int) {
        guard model.plays(index) && index != instrument else { return }
        // A switch during a switch starts from the current target.
        switchFrom = instrument
        instrument = index
        switchStep = max(1, options.switchFrames)
        synth.setInstrument(index, fadeFrames: max(1, options.switchFrames))
    }
}
