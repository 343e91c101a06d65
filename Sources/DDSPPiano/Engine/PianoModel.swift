/// The immutable model: a weight file and everything derived from it (the synthesiser's
/// dimensions, every piano's reverb impulse response and its partitioned spectra), built once per weight file and shared by
/// reference between every stream that plays it — as whisper.cpp separates its context from
/// its state. Per-stream state (recurrent states, phases, voices, queues, scratch) lives in
/// `PianoEngine` and is allocated in `prepare`; the layers' weight arrays are shared with this
/// model's (Swift arrays are copy-on-write and never written after load).
public final class PianoModel: Sendable {
    public enum Architecture: String, Sendable, CaseIterable {
        /// The DAFx 2022 paper's model: 16 kHz, two substrings, whole-sequence normalisation.
        case dafx22
        /// Upstream's default (`maestro-v2.gin`, JAES 2023): 24 kHz, causal, FDN reverb.
        case v2
    }

    public let file: WeightFile
    public let architecture: Architecture
    /// The synthesiser's dimensions (rates, voices, partials, substrings, noise bands).
    public let hyper: PianoWeights.Hyper
    public let instruments: [String]
    /// Every piano's reverb IR back to back: [instruments, hyper.reverbLength]. dafx22 stores
    /// them; v2 computes them from each piano's FDN parameters, once, here.
    public let reverbImpulseResponses: [Float]
    /// The same IRs as partitioned spectra for the engine's frame-sized convolution.
    public let reverbSpectra: ReverbSpectra
    /// The pianos built (their reverbs); nil: every piano of the file.
    public let pianos: Set<Int>?

    /// Throws when a piano's reverb parameters give an unusable impulse response (not finite:
    /// e.g. a zero reverb time), naming the piano.
    /// Also throws when DDSP_PIANO_KERNELS asks for kernels this CPU lacks (`PianoKernels`).
    /// `parallel(count, body)` (optional, from a driver that has threads: the engine library has
    /// none) runs body(0..<count) on several cores and returns when all are done; v2 computes its
    /// ten reverb impulse responses that way (0.55 s on one core here).
    /// `pianos` (nil: all): the only pianos the model will play, for a render that never switches
    /// (v2 then computes one reverb, not ten); an engine ignores a switch to another one.
    public init(_ file: WeightFile, parallel: ((Int, @escaping @Sendable (Int) -> Void) -> Void)? = nil,
                pianos: Set<Int>? = nil) throws {
        try PianoKernels.check()
        self.file = file
        instruments = file.instruments
        if let pianos, let bad = pianos.first(where: { !(0..<file.instruments.count).contains($0) }) {
            throw WeightsError("piano \(bad) is out of range 0..<\(file.instruments.count)", code: .usage)
        }
        self.pianos = pianos
        switch file {
        case .dafx22(let w):
            architecture = .dafx22
            hyper = w.hyper
            reverbImpulseResponses = w.reverbImpulseResponses.values
        case .v2(let w):
            architecture = .v2
            hyper = V2Weights.synthHyper
            // Each piano's IR on its own (a 24001-bin 8×8 solve and a 48000-point inverse FFT):
            // side by side when the caller lends its cores (`parallel`), else one after another.
            let count = w.instruments.count, length = V2Weights.reverbLength
            let irs = UnsafeMutableBufferPointer<Float>.allocate(capacity: count * length)
            defer { irs.deallocate() }
            let shared = SharedSlots(irs)
            let each: @Sendable (Int) -> Void = { p in
                let ir = FDNReverb.impulseResponse(weights: w, instrument: p)
                precondition(ir.count == length, "an FDN impulse response of \(ir.count) samples")
                shared.write(ir, at: p * length)
            }
            let built = pianos.map { $0.sorted() } ?? Array(0..<count)
            if let parallel, built.count > 1 { parallel(built.count, { each(built[$0]) }) } else { for p in built { each(p) } }
            for p in built {
                let slice = UnsafeBufferPointer(rebasing: irs[(p * length)..<((p + 1) * length)])
                if let bad = slice.firstIndex(where: { !$0.isFinite }) {
                    throw WeightsError("the reverb parameters of piano \(p) (\(w.instruments[p])) give a non-finite impulse response (sample \(bad - p * length); reverb.time_rev_0_sec \(w["reverb.time_rev_0_sec"].values[p]) s)")
                }
            }
            reverbImpulseResponses = Array(irs)
        }
        let irs = reverbImpulseResponses, block = hyper.samplesPerFrame
        reverbSpectra = irs.withUnsafeBufferPointer {
            ReverbSpectra(impulseResponses: $0, count: file.instruments.count, blockSize: block, only: pianos)
        }
    }

    /// Whether `instrument` is one of the file's pianos and was built (`pianos`).
    public func plays(_ instrument: Int) -> Bool {
        instrument >= 0 && instrument < instruments.count && (pianos?.contains(instrument) ?? true)
    }

    /// A dafx22 model (its stored IRs were checked finite when the file was read).
    public convenience init(weights: PianoWeights) { try! self.init(.dafx22(weights)) }

    public var sampleRate: Int { hyper.sampleRate }

    /// The dafx22 weights, when this is a dafx22 model.
    public var dafx22: PianoWeights? { if case .dafx22(let w) = file { w } else { nil } }
    /// The v2 weights, when this is a v2 model.
    public var v2: V2Weights? { if case .v2(let w) = file { w } else { nil } }

    /// Resolves `--piano` text: an index ("9") or an instrument name ("2018").
    public func instrumentIndex(_ text: String) -> Int? { file.instrumentIndex(text) }

    /// One line for logs and summaries: "v2 (24 kHz, 10 pianos, avx2 kernels)".
    public var summary: String {
        "\(architecture.rawValue) (\(hyper.sampleRate / 1000) kHz, \(instruments.count) piano\(instruments.count == 1 ? "" : "s"), \(PianoKernels.description))"
    }
}

/// Disjoint slices of one buffer written from several threads (`PianoModel.init`'s reverbs).
private final class SharedSlots: @unchecked Sendable {   // each index written by one thread only
    let base: UnsafeMutableBufferPointer<Float>
    init(_ base: UnsafeMutableBufferPointer<Float>) { self.base = base }
    func write(_ values: [Float], at offset: Int) {
        values.withUnsafeBufferPointer { (base.baseAddress! + offset).update(from: $0.baseAddress!, count: $0.count) }
    }
}
