/// The synthesis chain of one instrument: 16 voices of additive + filtered noise, summed
/// (the dry mix), then the instrument's reverb. One frame (64 samples for dafx22, 96 for v2) per call.
// @unchecked Sendable: one stream's state, used by the thread that renders that stream.
public final class PianoSynth: @unchecked Sendable {
    public let frameSize: Int
    public var additive: AdditiveSynth
    public var noise: FilteredNoise
    public let reverb: Reverb
    public var noiseEnabled: Bool
    /// Stereo (after `prepareStereo`): the reverb's decorrelator and a frame of scratch.
    private var decorrelator: Decorrelator?
    private var room: [Float] = []

    public convenience init(weights w: PianoWeights, instrument: Int, seed: UInt64, noise enabled: Bool = true) {
        self.init(hyper: w.hyper, impulseResponses: w.reverbImpulseResponses.values, instruments: w.instruments.count,
                  instrument: instrument, seed: seed, noise: enabled)
    }

    /// The reverb spectra are the model's (built once, shared).
    public init(model: PianoModel, instrument: Int, seed: UInt64, noise enabled: Bool = true) {
        let h = model.hyper
        frameSize = h.samplesPerFrame
        additive = AdditiveSynth(hyper: h)
        noise = FilteredNoise(hyper: h, seed: seed)
        noiseEnabled = enabled
        reverb = Reverb(spectra: model.reverbSpectra, active: instrument)
    }

    /// `impulseResponses`: [instruments, reverb length] back to back.
    public init(hyper h: PianoWeights.Hyper, impulseResponses: [Float], instruments: Int, instrument: Int, seed: UInt64,
                noise enabled: Bool = true) {
        frameSize = h.samplesPerFrame
        additive = AdditiveSynth(hyper: h)
        noise = FilteredNoise(hyper: h, seed: seed)
        noiseEnabled = enabled
        reverb = impulseResponses.withUnsafeBufferPointer {
            Reverb(impulseResponses: $0, count: instruments, blockSize: h.samplesPerFrame, active: instrument)
        }
    }

    /// Switches the room; the old reverb tail crossfades into the new one over `fadeFrames`.
    public func setInstrument(_ index: Int, fadeFrames: Int = 1) {
        reverb.select(index, fadeBlocks: fadeFrames)
    }

    /// MIDI all-sound-off: the reverb tail is dropped (phases and the noise run on: idle voices
    /// breathe their faint noise as always, as upstream's do).
    public func silence() {
        reverb.reset()
    }

    public func reset(seed: UInt64) {
        additive.reset()
        noise.reset(seed: seed)
        reverb.reset()
        decorrelator?.reset()
    }

    /// Allocates what the side signal needs (`StereoImage`); not for the audio thread.
    public func prepareStereo(sampleRate: Int) {
        noise.prepareSide()
        if decorrelator == nil { decorrelator = Decorrelator(sampleRate: sampleRate) }
        if room.isEmpty { room = [Float](repeating: 0, count: frameSize) }
    }

    /// Renders frame F from the controls of F and F+1: `dry` gets the voice mix, `wet` dry + reverb.
    /// `additiveOnly` (optional) receives the additive part alone.
    /// `side` (stereo, after `prepareStereo`) receives the side signal S of `StereoImage` for
    /// a width gliding from `width.start` to `width.end` across the frame.
    public func render(current: SynthControls, next: SynthControls,
                       dry: UnsafeMutablePointer<Float>, wet: UnsafeMutablePointer<Float>,
                       additiveOnly: UnsafeMutablePointer<Float>? = nil,
                       side: UnsafeMutablePointer<Float>? = nil, width: (start: Float, end: Float) = (0, 0)) {
        let N = frameSize
        for i in 0..<N { dry[i] = 0 }
        let side = decorrelator == nil ? nil : side
        if let side { for i in 0..<N { side[i] = 0 } }
        additive.render(current: current, next: next, into: dry, side: side)
        if let a = additiveOnly { a.update(from: dry, count: N) }
        if noiseEnabled { noise.render(current: current, next: next, into: dry, side: side) }
        reverb.process(dry, into: wet)
        guard let side else { return }
        // S = width · (the voices by key position) + √width · D(reverb), the width glided per sample.
        let w0 = width.start, dw = (width.end - width.start) / Float(N)
        room.withUnsafeMutableBufferPointer { r in
            for i in 0..<N {
                let w = w0 + dw * Float(i)
                side[i] *= w
                r[i] = wet[i] - dry[i]
            }
            if width.start == width.end {
                decorrelator!.process(r.baseAddress!, count: N, amount: StereoImage.roomAmount(width: w0), addInto: side)
            } else {
                // A glide: the decorrelated room into scratch first, then weighted per sample.
                let start = StereoImage.roomAmount(width: width.start), end = StereoImage.roomAmount(width: width.end)
                decorrelator!.processInPlace(r.baseAddress!, count: N)
                for i in 0..<N { side[i] += (start + (end - start) * Float(i) / Float(N)) * r[i] }
            }
        }
    }
}
