import CKissFFT

/// The instrument's learned room: output = dry + dry ∗ IR, with the IR's first sample zeroed
/// (ddsp Reverb masks the direct path, the dry signal is added instead).
///
/// Uniformly partitioned overlap-save convolution, one frame (64 samples) per partition, so it
/// adds no latency: each block costs one 128-point FFT, 375 complex multiply-adds per bin and
/// one inverse FFT, instead of 24 000 multiply-adds per sample.
// @unchecked Sendable: one stream's state (its spectra are the immutable, shared ReverbSpectra), used by the thread that renders that stream.
public final class Reverb: @unchecked Sendable {
    public let blockSize: Int
    public let partitions: Int
    let fftSize: Int
    let bins: Int

    private let forward: kiss_fftr_cfg
    private let inverse: kiss_fftr_cfg
    /// IR partition spectra of every instrument: immutable, shared with the model.
    public let spectra: ReverbSpectra
    public let instruments: Int
    /// The IR in use, and while a crossfade runs, the one it fades from.
    public private(set) var active = 0
    private var fadingFrom = 0
    private var fadeBlocks = 0, fadeDone = 0
    private var accOldRe: [Float], accOldIm: [Float]
    private var timeOld: [Float]
    /// Frequency-domain delay line of input spectra, ring of `partitions`.
    private var fdlRe: [Float], fdlIm: [Float]
    private var head = 0
    private var input: [Float]            // last 2·block input samples
    private var spectrum: [kiss_fft_cpx]  // [bins]
    private var time: [Float]             // [fftSize]
    private var accRe: [Float], accIm: [Float]

    /// `impulseResponses` holds `count` IRs of `length` samples each, back to back.
    public convenience init(impulseResponses ir: UnsafeBufferPointer<Float>, count: Int, blockSize: Int, active: Int = 0) {
        self.init(spectra: ReverbSpectra(impulseResponses: ir, count: count, blockSize: blockSize), active: active)
    }

    /// This stream's convolution state over spectra built once (`PianoModel.reverbSpectra`).
    public init(spectra: ReverbSpectra, active: Int = 0) {
        precondition(active >= 0 && active < spectra.instruments)
        self.spectra = spectra
        blockSize = spectra.blockSize
        instruments = spectra.instruments
        fftSize = 2 * blockSize
        bins = spectra.bins
        partitions = spectra.partitions
        forward = kiss_fftr_alloc(Int32(fftSize), 0, nil, nil)
        inverse = kiss_fftr_alloc(Int32(fftSize), 1, nil, nil)
        // Every buffer gets its own storage: a shared copy-on-write buffer would be copied on
        // its first write, possibly on the audio thread.
        func zeros(_ n: Int) -> [Float] { [Float](repeating: 0, count: n) }
        fdlRe = zeros(partitions * bins)
        fdlIm = zeros(partitions * bins)
        input = zeros(fftSize)
        spectrum = [kiss_fft_cpx](repeating: kiss_fft_cpx(r: 0, i: 0), count: bins)
        time = zeros(fftSize)
        timeOld = zeros(fftSize)
        accRe = zeros(bins); accIm = zeros(bins); accOldRe = zeros(bins); accOldIm = zeros(bins)
        self.active = active
        fadingFrom = active
    }

    public convenience init(impulseResponse ir: UnsafeBufferPointer<Float>, blockSize: Int) {
        self.init(impulseResponses: ir, count: 1, blockSize: blockSize)
    }

    /// Switches to another instrument's IR, crossfading the two reverb outputs (computed on
    /// the same dry history) over `fadeBlocks` blocks so the old tail fades into the new room.
    public func select(_ instrument: Int, fadeBlocks blocks: Int) {
        precondition(instrument >= 0 && instrument < instruments)
        guard instrument != active else { return }
        fadingFrom = active
        active = instrument
        fadeBlocks = max(1, blocks)
        fadeDone = 0
    }

    deinit {
        ckiss_fftr_free(forward)
        ckiss_fftr_free(inverse)
    }

    public func reset() {
        for i in fdlRe.indices { fdlRe[i] = 0; fdlIm[i] = 0 }
        for i in input.indices { input[i] = 0 }
        head = 0
        fadeBlocks = 0
        fadingFrom = active
    }

    /// Convolves one block of `dry` and writes dry + wet to `out` (which may alias `dry`).
    public func process(_ dry: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>) {
        let B = blockSize, K = bins, P = partitions
        for i in 0..<B { input[i] = input[B + i]; input[B + i] = dry[i] }
        head = head == 0 ? P - 1 : head - 1
        let h = head
        input.withUnsafeBufferPointer { t in
            spectrum.withUnsafeMutableBufferPointer { s in kiss_fftr(forward, t.baseAddress, s.baseAddress) }
        }
        for k in 0..<K { fdlRe[h * K + k] = spectrum[k].r; fdlIm[h * K + k] = spectrum[k].i }
        accumulate(instrument: active, re: &accRe, im: &accIm)
        inverseFFT(accRe, accIm, into: &time)
        if fadeBlocks > 0 {
            accumulate(instrument: fadingFrom, re: &accOldRe, im: &accOldIm)
            inverseFFT(accOldRe, accOldIm, into: &timeOld)
            // Equal-gain linear crossfade across the fade, sample by sample.
            let total = Float(fadeBlocks * B)
            for i in 0..<B {
                let g = Float(fadeDone * B + i + 1) / total
                time[B + i] = g * time[B + i] + (1 - g) * timeOld[B + i]
            }
            fadeDone += 1
            if fadeDone >= fadeBlocks { fadeBlocks = 0; fadingFrom = active }
        }
        for i in 0..<B { out[i] = dry[i] + time[B + i] }
    }

    /// Σ_p X_{b−p} · H_p over the frequency-domain delay line, for one instrument's IR.
    private func accumulate(instrument: Int, re: inout [Float], im: inout [Float]) {
        let K = bins, P = partitions, h = head, base = instrument * P * K
        fdlRe.withUnsafeBufferPointer { xr in
        fdlIm.withUnsafeBufferPointer { xi in
        spectra.re.withUnsafeBufferPointer { hr in
        spectra.im.withUnsafeBufferPointer { hi in
        re.withUnsafeMutableBufferPointer { ar in
        im.withUnsafeMutableBufferPointer { ai in
            // Partition p meets the input from p blocks ago, which sits p slots after `head`.
            PianoKernels.active.spectralAccumulate(P, K, h, xr.baseAddress!, xi.baseAddress!, hr.baseAddress! + base,
                                                   hi.baseAddress! + base, ar.baseAddress!, ai.baseAddress!)
        }}}}}}
    }

    private func inverseFFT(_ re: [Float], _ im: [Float], into out: inout [Float]) {
        for k in 0..<bins { spectrum[k] = kiss_fft_cpx(r: re[k], i: im[k]) }
        spectrum.withUnsafeBufferPointer { s in
            out.withUnsafeMutableBufferPointer { t in kiss_fftri(inverse, s.baseAddress, t.baseAddress) }
        }
    }
}

/// Every instrument's IR as the spectra of its block-sized partitions (sample 0 treated as
/// zero: ddsp's Reverb adds the dry signal instead), with the inverse FFT's 1/N folded in.
/// Immutable: built once per model and shared by every stream's `Reverb`.
public final class ReverbSpectra: Sendable {
    public let blockSize: Int
    public let partitions: Int
    public let bins: Int
    public let instruments: Int
    /// Split complex: [instruments, partitions, bins].
    let re: [Float], im: [Float]

    /// `impulseResponses` holds `count` IRs of equal length, back to back; `only` (nil: all):
    /// the IRs to transform, the others' spectra left 0.
    public init(impulseResponses ir: UnsafeBufferPointer<Float>, count: Int, blockSize: Int, only: Set<Int>? = nil) {
        precondition(count >= 1 && ir.count % count == 0 && blockSize >= 1)
        let length = ir.count / count
        self.blockSize = blockSize
        instruments = count
        let fftSize = 2 * blockSize
        let bins = blockSize + 1
        self.bins = bins
        let partitions = max(1, (length + blockSize - 1) / blockSize)
        self.partitions = partitions
        var re = [Float](repeating: 0, count: count * partitions * bins)
        var im = re
        let forward = kiss_fftr_alloc(Int32(fftSize), 0, nil, nil)
        defer { ckiss_fftr_free(forward) }
        var time = [Float](repeating: 0, count: fftSize)
        var spectrum = [kiss_fft_cpx](repeating: kiss_fft_cpx(r: 0, i: 0), count: bins)
        let scale = 1 / Float(fftSize)
        for slot in 0..<count where only?.contains(slot) ?? true {
            let base = slot * partitions * bins
            for p in 0..<partitions {
                for i in 0..<fftSize { time[i] = 0 }
                for j in 0..<blockSize {
                    let n = p * blockSize + j
                    if n > 0 && n < length { time[j] = ir[slot * length + n] }
                }
                time.withUnsafeBufferPointer { t in
                    spectrum.withUnsafeMutableBufferPointer { s in kiss_fftr(forward, t.baseAddress, s.baseAddress) }
                }
                for k in 0..<bins {
                    re[base + p * bins + k] = spectrum[k].r * scale
                    im[base + p * bins + k] = spectrum[k].i * scale
                }
            }
        }
        self.re = re
        self.im = im
    }
}
