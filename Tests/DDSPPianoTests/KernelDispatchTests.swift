import Foundation
import XCTest
import DDSPPiano
import PianoIO
import PianoTestKit

/// One binary for any x86-64 (issue 12, item 3): the engine's block kernels are compiled per
/// instruction set and chosen at run time (`PianoKernels`). Every variant this machine runs must
/// agree with the baseline within the parity tolerances, kernel by kernel and in a whole render;
/// and the built `ddsp-piano` must run, and choose right, on CPUs without AVX2 and without
/// AVX-512 (`qemu-x86_64 -cpu Nehalem` / `Haswell`, Debian's qemu-user).
final class KernelDispatchTests: XCTestCase {
    /// End-to-end parity's bar (EndToEndParityTests: a render against upstream's audio, 40 dB SNR).
    static let renderSNR = 40.0

    static var work: URL = FileManager.default.temporaryDirectory.appendingPathComponent("kernels-\(UUID().uuidString)")

    override class func setUp() {
        try? FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
    }

    override class func tearDown() {
        try? FileManager.default.removeItem(at: work)
    }

    static func variants() -> [(PianoKernels.Variant, PianoKernelSet)] {
        PianoKernels.supported.map { ($0, PianoKernels.kernels($0)!) }
    }

    // MARK: Choice

    func testChoiceFollowsTheCPUAndTheEnvironment() throws {
        print("kernels: this CPU runs \(PianoKernels.supported.map(\.rawValue)), the engine uses \(PianoKernels.selected.rawValue)")
        XCTAssertEqual(PianoKernels.supported.first, .sse)
        XCTAssertEqual(PianoKernels.supported, PianoKernels.supported.sorted())
        XCTAssertEqual(try PianoKernels.choose(nil).get(), PianoKernels.supported.last)
        XCTAssertEqual(try PianoKernels.choose("").get(), PianoKernels.supported.last)
        for v in PianoKernels.Variant.allCases {
            XCTAssertEqual(PianoKernels.kernels(v)?.name, PianoKernels.supported.contains(v) ? v.rawValue : nil)
            switch PianoKernels.choose(v.rawValue.uppercased()) {
            case .success(let chosen): XCTAssertEqual(chosen, v)
            case .failure(let e):
                XCTAssertFalse(PianoKernels.supported.contains(v))
                XCTAssertEqual(e.code, .usage)
                XCTAssertTrue(e.description.contains("this CPU lacks"), e.description)
            }
        }
        guard case .failure(let e) = PianoKernels.choose("neon") else { return XCTFail("accepted 'neon'") }
        XCTAssertEqual(e.code, .usage)
        XCTAssertEqual(e.description, "DDSP_PIANO_KERNELS=neon: unknown kernels; valid: sse, avx2, avx512")
        XCTAssertEqual(PianoKernels.active.name, PianoKernels.selected.rawValue)
        XCTAssertTrue(StructuralV2.model().summary.hasSuffix(", \(PianoKernels.selected.rawValue) kernels)"))
    }

    // MARK: Each kernel, every variant against the baseline, on random inputs

    /// Measured on a Zen 3 host (AVX2, no AVX-512; avx2 vs sse): GRU gates and noise convolution
    /// bit-identical (the gate ports are exact with or without FMA on these arguments; the
    /// convolution is not contracted into FMA); exp_sigmoid 4.6e-7 relative (FMA rounding in
    /// vexp/vlog); oscillator phases bit-identical (no FMA in the phase path), the oscillator
    /// output 2.0e-7 of its peak (the cosine polynomial's and the accumulation's FMA). The limits
    /// are 6–10x those; bit-identical kernels get 1e-6 in case another compiler contracts.
    func testEveryKernelAgreesWithTheBaseline() throws {
        let all = Self.variants()
        guard all.count > 1 else {
            print("skipped: this CPU runs only the baseline kernels (\(all.map(\.0.rawValue)))")
            throw XCTSkip("only the baseline kernels run here")
        }
        let base = all[0].1
        for (variant, k) in all.dropFirst() {
            let gru = Self.compareGRU(base, k)
            let es = Self.compareExpSigmoid(base, k)
            let conv = Self.compareConvolution(base, k)
            let osc = Self.compareOscillators(base, k)
            print(String(format: "kernels %@ vs sse: gruGates max |Δ| %.3g; expSigmoid max relative Δ %.3g; convolveAdd max |Δ| %.3g; "
                         + "additiveFrame max |Δ| %.3g of peak %.3g (%.3g relative), phase states max |Δ| %.3g",
                         variant.rawValue, gru, es, conv, osc.out, osc.peak, osc.out / osc.peak, osc.phase))
            XCTAssertLessThanOrEqual(gru, 1e-6, "\(variant) gruGates")
            XCTAssertLessThanOrEqual(es, 3e-6, "\(variant) expSigmoid")
            XCTAssertLessThanOrEqual(conv, 1e-6, "\(variant) convolveAdd")
            XCTAssertLessThanOrEqual(osc.out, 2e-6 * osc.peak, "\(variant) additiveFrame")
            XCTAssertEqual(osc.phase, 0, "\(variant) additiveFrame phases")
        }
    }

    /// The recurrent gates of every variant (8 lanes, AVX-512 16, a libm tail) equal the GRU's
    /// formula with libm's scalar expf and tanhf, bit for bit: the chaotic parity case needs
    /// exactly libm's gates (VectorMathTests sweeps the 8-lane ports; this covers each variant's
    /// own width). Inputs from 0.01 to 20 in magnitude, both signs; shapes with and without a tail.
    func testGRUGatesOfEveryVariantEqualLibm() {
        var rng = SplitMix64(seed: 41)
        for (rows, units) in [(16, 192), (2, 64), (3, 13), (1, 40)] {
            func draw(_ n: Int) -> [Float] {
                (0..<n).map { _ in
                    let m = Float(exp(Double(rng.next() % 10_000) / 10_000 * log(2000.0))) / 100
                    return rng.next() & 1 == 0 ? m : -m
                }
            }
            let xs = draw(rows * 3 * units), hq = draw(rows * 3 * units), prev = draw(rows * units).map { $0 / 20 }
            var expected = [Float](repeating: 0, count: rows * units * 6)
            for r in 0..<rows {
                for j in 0..<units {
                    let x = xs[(r * 3 * units)...], h = hq[(r * 3 * units)...], b = r * 3 * units
                    let z = 1 / (1 + expf(-(x[b + j] + h[b + j])))
                    let rg = 1 / (1 + expf(-(x[b + units + j] + h[b + units + j])))
                    let rh = h[b + 2 * units + j]
                    let c = tanhf(x[b + 2 * units + j] + rg * rh)
                    let new = z * prev[r * units + j] + (1 - z) * c
                    expected[r * units + j] = new                          // output
                    expected[rows * units + r * units + j] = new           // state
                    expected[2 * rows * units + b + j] = z                 // gates
                    expected[2 * rows * units + b + units + j] = rg
                    expected[2 * rows * units + b + 2 * units + j] = c
                    expected[5 * rows * units + r * units + j] = rh        // candidate
                }
            }
            for (variant, k) in Self.variants() {
                var out = [Float](repeating: 0, count: rows * units), state = prev
                var gates = [Float](repeating: 0, count: rows * 3 * units), cand = [Float](repeating: 0, count: rows * units)
                out.withUnsafeMutableBufferPointer { o in state.withUnsafeMutableBufferPointer { s in
                gates.withUnsafeMutableBufferPointer { g in cand.withUnsafeMutableBufferPointer { c in
                    k.gruGates(rows, units, xs, hq, prev, o.baseAddress!, s.baseAddress!, g.baseAddress!, c.baseAddress!)
                }}}}
                let got = out + state + gates + cand
                let differing = zip(got, expected).filter { $0.0.bitPattern != $0.1.bitPattern }.count
                print("gruGates \(variant.rawValue), \(rows) rows × \(units) units: \(differing) of \(got.count) values differ from libm's formula")
                XCTAssertEqual(differing, 0, "\(variant) gruGates on \(rows)×\(units)")
            }
        }
    }

    static func maxAbs(_ a: [Float], _ b: [Float]) -> Double {
        zip(a, b).reduce(0) { max($0, Double(abs($1.0 - $1.1))) }
    }

    static func compareGRU(_ a: PianoKernelSet, _ b: PianoKernelSet) -> Double {
        var worst = 0.0
        var rng = SplitMix64(seed: 12)
        for (rows, units) in [(16, 192), (1, 64), (3, 13)] {
            let xp = rng.array(rows * 3 * units, 6), hp = rng.array(rows * 3 * units, 6), prev = rng.array(rows * units)
            func run(_ k: PianoKernelSet) -> [Float] {
                var out = [Float](repeating: 0, count: rows * units), state = prev
                var gates = [Float](repeating: 0, count: rows * 3 * units), cand = [Float](repeating: 0, count: rows * units)
                out.withUnsafeMutableBufferPointer { o in state.withUnsafeMutableBufferPointer { s in
                gates.withUnsafeMutableBufferPointer { g in cand.withUnsafeMutableBufferPointer { c in
                    k.gruGates(rows, units, xp, hp, prev, o.baseAddress!, s.baseAddress!, g.baseAddress!, c.baseAddress!)
                }}}}
                return out + state + gates + cand
            }
            worst = max(worst, maxAbs(run(a), run(b)))
        }
        return worst
    }

    static func compareExpSigmoid(_ a: PianoKernelSet, _ b: PianoKernelSet) -> Double {
        var worst = 0.0
        var rng = SplitMix64(seed: 13)
        for count in [96, 64, 13, 100_000] {
            let x = rng.array(count, 20)
            func run(_ k: PianoKernelSet) -> [Float] {
                var out = [Float](repeating: 0, count: count)
                out.withUnsafeMutableBufferPointer { k.expSigmoid(x, -5, $0.baseAddress!, count) }
                return out
            }
            for (p, q) in zip(run(a), run(b)) { worst = max(worst, Double(abs(p - q) / max(abs(p), 1e-30))) }
        }
        return worst
    }

    static func compareConvolution(_ a: PianoKernelSet, _ b: PianoKernelSet) -> Double {
        var rng = SplitMix64(seed: 14)
        let x = rng.array(64), h = rng.array(126), start = rng.array(64 + 126)
        return maxAbs(convolve(a, x, h, start), convolve(b, x, h, start))
    }

    /// `k.convolveAdd` as its callers use it: `h` between `convolvePadding` zeros, room after
    /// the output (checked unchanged); the count + taps − 1 outputs.
    static func convolve(_ k: PianoKernelSet, _ x: [Float], _ h: [Float], _ start: [Float]) -> [Float] {
        let pad = [Float](repeating: 0, count: convolvePadding)
        let hp = pad + h + pad
        let tail: [Float] = (0..<convolvePadding).map { Float($0) - 0.5 }
        var out = start + tail
        hp.withUnsafeBufferPointer { hb in
            out.withUnsafeMutableBufferPointer { k.convolveAdd(x, x.count, hb.baseAddress! + convolvePadding, h.count, $0.baseAddress!) }
        }
        XCTAssertEqual(Array(out[start.count...]), tail, "\(k.name) convolveAdd changed the room after its output")
        return Array(out[..<start.count])
    }

    /// Every variant's convolveAdd gives the plain double loop's values (each output from its
    /// old value, in order of i, a multiply and an add per term) bit for bit, on the models'
    /// shapes (dafx22 64 × 126, v2 96 × 190) and on shapes shorter than a tile.
    func testConvolutionOfEveryVariantEqualsThePlainLoop() {
        var rng = SplitMix64(seed: 15)
        for (count, taps) in [(64, 126), (96, 190), (1, 1), (5, 3), (3, 70), (70, 2), (17, 33)] {
            let x = rng.array(count), h = rng.array(taps), start = rng.array(count + taps - 1)
            var expected = start
            for i in 0..<count { for j in 0..<taps { expected[i + j] = expected[i + j] + x[i] * h[j] } }
            for (variant, k) in Self.variants() {
                let got = Self.convolve(k, x, h, start)
                let differing = zip(got, expected).filter { $0.0 != $0.1 }.count
                print("convolveAdd \(variant.rawValue), \(count) × \(taps): \(differing) of \(got.count) outputs differ from the plain loop")
                XCTAssertEqual(differing, 0, "\(variant) convolveAdd \(count) × \(taps)")
            }
        }
    }

    /// Forty frames of 16 voices × 2 substrings × 96 partials at 16 kHz with random frequencies
    /// (some gliding, some above Nyquist), amplitudes (some zero) and silent voices, crossing two
    /// 1000-sample phase chunk ends; the state carried from frame to frame.
    static func compareOscillators(_ a: PianoKernelSet, _ b: PianoKernelSet) -> (out: Double, peak: Double, phase: Double) {
        let V = 16, S = 2, H = 96, N = 64, rate = 16_000, frames = 40
        var rng = SplitMix64(seed: 15)
        func controls() -> (f: [Float], a: [Float], silent: [Bool]) {
            var f = [Float](repeating: 0, count: V * S * H), amp = [Float](repeating: 0, count: V * H)
            for v in 0..<V {
                let f0 = 27.5 + 400 * (rng.uniform() + 1)
                for s in 0..<S { for k in 0..<H { f[(v * S + s) * H + k] = f0 * Float(k + 1) * (1 + 0.001 * Float(s)) } }
                for k in 0..<H { amp[v * H + k] = rng.below(4) == 0 ? 0 : abs(rng.uniform(0.01)) }
            }
            return (f, amp, (0..<V).map { _ in rng.below(5) == 0 })
        }
        var frameControls = (0...frames).map { _ in controls() }
        // Some voices hold their frequencies from frame to frame (the constant-rate path).
        for i in 1...frames { for v in 0..<4 { for j in 0..<(S * H) { frameControls[i].f[v * S * H + j] = frameControls[0].f[v * S * H + j] } } }
        let window = (0..<(2 * N)).map { Float(0.5 - 0.5 * cos(2 * Double.pi * Double($0) / Double(2 * N))) }
        func run(_ k: PianoKernelSet) -> (out: [Float], phases: [Float]) {
            var cp = [Float](repeating: 0, count: V * S * H), os = cp, off = cp
            var acc = [SIMD8<Float>](repeating: .zero, count: N), pending = [Int](repeating: 0, count: V * S * H / 8 + 1)
            var out = [Float](repeating: 0, count: frames * N)
            for frame in 0..<frames {
                let start = frame * N
                let lerp = (0..<N).map { r -> Float in let p = Float(start + r) * (1 / Float(N)); return p - p.rounded(.down) }
                let chunkEnd = 999 - start % 1000
                let c = frameControls[frame], n = frameControls[frame + 1]
                cp.withUnsafeMutableBufferPointer { cpb in os.withUnsafeMutableBufferPointer { osb in off.withUnsafeMutableBufferPointer { offb in
                acc.withUnsafeMutableBufferPointer { accb in pending.withUnsafeMutableBufferPointer { pb in out.withUnsafeMutableBufferPointer { ob in
                c.silent.withUnsafeBufferPointer { sc in n.silent.withUnsafeBufferPointer { sn in
                c.f.withUnsafeBufferPointer { fc in n.f.withUnsafeBufferPointer { fn in
                c.a.withUnsafeBufferPointer { ac in n.a.withUnsafeBufferPointer { an in
                window.withUnsafeBufferPointer { w in lerp.withUnsafeBufferPointer { lp in
                    k.additiveFrame(AdditiveFrame(
                        voices: V, substrings: S, harmonics: H, frameSize: N, sampleRate: rate,
                        chunk: chunkEnd < N ? chunkEnd + 1 : N, folds: chunkEnd < N,
                        silentCurrent: sc.baseAddress!, silentNext: sn.baseAddress!,
                        chunkPhase: cpb.baseAddress!, offsetSum: osb.baseAddress!, offset: offb.baseAddress!,
                        frequencyCurrent: fc.baseAddress!, frequencyNext: fn.baseAddress!,
                        amplitudeCurrent: ac.baseAddress!, amplitudeNext: an.baseAddress!,
                        window: w.baseAddress!, lerp: lp.baseAddress!, partialSums: accb.baseAddress!, pending: pb.baseAddress!,
                        out: ob.baseAddress! + start))
                }}}}}}}}}}}}}}
            }
            return (out, cp + os + off)
        }
        let x = run(a), y = run(b)
        return (maxAbs(x.out, y.out), Double(x.out.map { abs($0) }.max()!), maxAbs(x.phases, y.phases))
    }

    // MARK: Whole renders

    static func render(_ exe: URL, kernels: String?, qemuCPU: String? = nil, seconds: Double = 3, warmUp: Double = 0.5,
                       to name: String) throws -> (status: Int32, output: String, audio: [Float]) {
        let root = TestKit.packageRoot
        let out = work.appendingPathComponent(name + ".wav")
        var arguments = [exe.path, "render", "--weights", root.appendingPathComponent("weights/dafx22.safetensors").path,
                         "--duration", String(seconds), "--warm-up", String(warmUp), "--format", "f32",
                         root.appendingPathComponent("examples/arpeggios.mid").path, out.path]
        if let qemuCPU { arguments = ["-cpu", qemuCPU] + arguments }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: qemuCPU == nil ? exe.path : qemu!)
        p.arguments = Array(arguments.dropFirst(qemuCPU == nil ? 1 : 0))
        var env = ProcessInfo.processInfo.environment
        env["DDSP_PIANO_KERNELS"] = kernels
        p.environment = env
        let log = work.appendingPathComponent(name + ".log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        p.standardOutput = handle
        p.standardError = handle
        try p.run()
        p.waitUntilExit()
        try handle.close()
        let output = String(decoding: try Data(contentsOf: log), as: UTF8.self)
        let audio = p.terminationStatus == 0 ? try AudioFile.read(out).mono() : []
        return (p.terminationStatus, output, audio)
    }

    static func compare(_ x: [Float], _ reference: [Float]) -> (snr: Double, maxAbs: Double) {
        (EndToEndParityTests.snr(x[...], reference: reference[...]), maxAbs(x, reference))
    }

    /// The engine forced to each variant this CPU runs (`DDSP_PIANO_KERNELS`), against the
    /// baseline: the arpeggios example, 3 s with noise (same seed), bundled dafx22 weights.
    func testEveryVariantRendersLikeTheBaseline() throws {
        let exe = try RenderCommandTests.executable()
        let base = try Self.render(exe, kernels: "sse", to: "native-sse")
        XCTAssertEqual(base.status, 0, base.output)
        guard base.status == 0 else { return }
        XCTAssertEqual(base.audio.count, 3 * 16_000)
        for v in PianoKernels.supported.dropFirst() {
            let r = try Self.render(exe, kernels: v.rawValue, to: "native-\(v.rawValue)")
            XCTAssertEqual(r.status, 0, r.output)
            guard r.status == 0 else { continue }
            XCTAssertEqual(r.audio.count, base.audio.count)
            let d = Self.compare(r.audio, base.audio)
            print(String(format: "render with %@ kernels vs sse: SNR %.1f dB, max |Δ| %.3g (peak %.3g)",
                         v.rawValue, d.snr, d.maxAbs, Double(base.audio.map { abs($0) }.max()!)))
            XCTAssertGreaterThan(d.snr, Self.renderSNR, v.rawValue)
        }
        // A variant the CPU lacks is refused in one line, before anything is rendered.
        if let missing = PianoKernels.Variant.allCases.first(where: { !PianoKernels.supported.contains($0) }) {
            let r = try Self.render(exe, kernels: missing.rawValue, to: "native-refused")
            XCTAssertNotEqual(r.status, 0)
            XCTAssertTrue(r.output.contains("DDSP_PIANO_KERNELS=\(missing.rawValue): this CPU lacks"), r.output)
        }
    }

    static var qemu: String? {
        ["/usr/bin/qemu-x86_64", "/usr/local/bin/qemu-x86_64"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// The same binary on emulated CPUs: Nehalem (SSE4.2, no AVX) and Haswell (AVX2 + FMA, no
    /// AVX-512). Each renders 0.4 s after a 0.1 s warm-up (TCG emulates the network's 2 GFLOP per
    /// second of audio at about 1/100 of real time: 2.5 s took 3.5 min on Nehalem) within the
    /// parity bar of the same native render, and its choice shows in what it refuses: the next
    /// variant up, naming what this CPU runs.
    func testRunsUnderQEMUWithoutAVX2AndWithoutAVX512() throws {
        #if !arch(x86_64)
        throw XCTSkip("x86-64 only")
        #else
        guard Self.qemu != nil else {
            print("skipped: qemu-x86_64 is not installed (qemu-user)")
            throw XCTSkip("qemu-x86_64 is not installed (qemu-user)")
        }
        let exe = try RenderCommandTests.executable()
        let native = try Self.render(exe, kernels: nil, seconds: 0.4, warmUp: 0.1, to: "qemu-native")
        XCTAssertEqual(native.status, 0, native.output)
        guard native.status == 0 else { return }
        for (cpu, runs, refused) in [("Nehalem", "sse", "avx2"), ("Haswell", "sse, avx2", "avx512")] {
            let start = Date()
            let r = try Self.render(exe, kernels: nil, qemuCPU: cpu, seconds: 0.4, warmUp: 0.1, to: "qemu-\(cpu)")
            let seconds = Date().timeIntervalSince(start)
            XCTAssertEqual(r.status, 0, "\(cpu): \(r.output)")
            guard r.status == 0 else { continue }
            XCTAssertEqual(r.audio.count, native.audio.count, cpu)
            let d = Self.compare(r.audio, native.audio)
            let no = try Self.render(exe, kernels: refused, qemuCPU: cpu, seconds: 0.4, warmUp: 0.1, to: "qemu-\(cpu)-refused")
            XCTAssertNotEqual(no.status, 0, "\(cpu): \(no.output)")
            let expected = "DDSP_PIANO_KERNELS=\(refused): this CPU lacks"
            let line = no.output.split(separator: "\n").first { $0.contains(expected) } ?? ""
            XCTAssertTrue(line.hasSuffix("it runs \(runs)"), "\(cpu): \(no.output)")
            print(String(format: "qemu -cpu %@: render ran in %.1f s, chose %@ kernels (refuses %@: \"%@\"); vs native %@: SNR %.1f dB, max |Δ| %.3g",
                         cpu, seconds, String(runs.split(separator: " ").last!), refused, String(line),
                         PianoKernels.selected.rawValue, d.snr, d.maxAbs))
            XCTAssertGreaterThan(d.snr, Self.renderSNR, cpu)
        }
        #endif
    }
}
