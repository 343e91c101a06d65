import DDSPPiano
import Foundation
import PianoTestKit
import PianoTraining
import XCTest

/// Per-component timing of one training step at the real hyperparameters (3-second segments,
/// 16 voices, 96 harmonics, 2 substrings). Opt-in, a measurement and not an assertion:
///   DDSP_TRAINING_TIMING=1 swift test -c release --filter TrainingStepTimingTests
/// With DDSP_TRAINING_REFERENCE=<file>, the step's intermediate results and every gradient are
/// written there when the file does not exist, and compared with it (relative L2 difference per
/// array) when it does: run once before a change to the training kernels and once after.
final class TrainingStepTimingTests: XCTestCase {
    func testStepTiming() throws {
        let env = ProcessInfo.processInfo.environment
        guard env["DDSP_TRAINING_TIMING"] != nil else { throw XCTSkip("set DDSP_TRAINING_TIMING=1 to time a training step") }
        let h = PianoWeights.Hyper()
        let B = 2, T = 3 * h.frameRate, V = h.voices, H = h.harmonics, n = T * h.samplesPerFrame
        let weights = randomWeights(h, instruments: 3, seed: 81, gain: 1)
        var batch = testBatch(h, batch: B, frames: T, instruments: [2, 0], seed: 82)
        // DDSP_TRAINING_TIMING_VOICES (default 6) voices play in each segment, the rest are silent.
        let active = Int(env["DDSP_TRAINING_TIMING_VOICES"] ?? "") ?? 6
        for b in 0..<B { for t in 0..<T { for v in active..<V { for c in 0..<2 { batch.conditioning[((b * T + t) * V + v) * 2 + c] = 0 } } } }
        var rng = SplitMix64(seed: 83)
        let target = rng.array(B * n, 0.1)
        let model = PianoModelTraining(weights: weights)
        let rv = ReverbTraining(samples: n, irLength: h.reverbLength)

        var times: [String: Double] = [:]
        var order: [String] = []
        func time<R>(_ name: String, _ body: () -> R) -> R {
            let t0 = DispatchTime.now().uptimeNanoseconds
            let r = body()
            let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            if times[name] == nil { order.append(name) }
            times[name, default: 0] += dt
            return r
        }
        var outputs: [(String, [Float])] = []
        let repeats = Int(env["DDSP_TRAINING_TIMING_REPEATS"] ?? "") ?? 1
        var spectralLoss = 0.0
        for rep in 0..<repeats {
            model.network.zeroGrad()
            let (out, netCache) = time("network forward") { model.network.forward(batch) }
            let S = out.substrings
            let (c, cCache) = time("controls forward") {
                model.controls.forward(raw: out.raw, f0: out.f0, inharm: out.inharm, sequences: B * V, frames: T, substrings: S)
            }
            let harmonic = time("additive forward") {
                model.additive.forward(harmonicAmplitude: c.harmonicAmplitude, harmonicFrequency: c.harmonicFrequency,
                                       batch: B, voices: V, frames: T, substrings: S, harmonics: H)
            }
            let x = time("noise signal") { model.noiseSignal(sequences: B * V, samples: n, seed: 7) }
            let noisy = time("noise forward") { model.noise.forward(magnitudes: c.magnitudes, noise: x, batch: B, voices: V, frames: T) }
            var dry = harmonic
            for i in dry.indices { dry[i] += noisy[i] }
            let ir = model.network.reverb.forward(batch.instruments)
            let wet = time("reverb forward") { rv.forward(dry: dry, ir: ir, batch: B) }
            var dWet = [Float](repeating: 0, count: B * n)
            spectralLoss = time("spectral loss fwd+bwd") {
                dWet.withUnsafeMutableBufferPointer { model.spectralLoss.loss(target: target, audio: wet, batch: B, samples: n, gradient: $0.baseAddress!) }
            }
            let (dDry, dIR) = time("reverb backward") { rv.backward(dWet, dry: dry, ir: ir, batch: B) }
            model.network.reverb.backward(dIR, indices: batch.instruments)
            let (dA, dF) = time("additive backward") {
                model.additive.backward(dDry, harmonicAmplitude: c.harmonicAmplitude, harmonicFrequency: c.harmonicFrequency,
                                        batch: B, voices: V, frames: T, substrings: S, harmonics: H)
            }
            let dM = time("noise backward") { model.noise.backward(dDry, noise: x, batch: B, voices: V, frames: T) }
            let (dRaw, dF0, dInharm) = time("controls backward") {
                model.controls.backward(dHarmonicAmplitude: dA, dHarmonicFrequency: dF, dMagnitudes: dM, cache: cCache)
            }
            time("network backward") { model.network.backward(dRaw: dRaw, dF0: dF0, dInharm: dInharm, outputs: out, cache: netCache) }
            if rep == 0 {
                outputs = [("harmonic", harmonic), ("noisy", noisy), ("wet", wet), ("dWet", dWet), ("dDry", dDry), ("dIR", dIR),
                           ("dA", dA), ("dF", dF), ("dM", dM), ("dRaw", dRaw), ("dF0", dF0), ("dInharm", dInharm)]
                model.network.forEachParameter { name, _, _, g in outputs.append(("grad " + name, g)) }
                // The loss's gradient is ill-conditioned (its log term weighs bins by 1/|X|: a
                // near-empty bin's direction turns with float32 rounding of the audio), so every
                // backward pass is also compared on a fixed upstream gradient.
                var prng = SplitMix64(seed: 84)
                let probe = prng.array(B * n, 1e-3)
                let pa = model.additive.backward(probe, harmonicAmplitude: c.harmonicAmplitude, harmonicFrequency: c.harmonicFrequency,
                                                 batch: B, voices: V, frames: T, substrings: S, harmonics: H)
                let pr = rv.backward(probe, dry: dry, ir: ir, batch: B)
                let pc = model.controls.backward(dHarmonicAmplitude: prng.array(dA.count, 1e-2), dHarmonicFrequency: prng.array(dF.count, 1e-4),
                                                 dMagnitudes: prng.array(dM.count, 1e-2), cache: cCache)
                outputs += [("probe additive dA", pa.dAmplitude), ("probe additive dF", pa.dFrequency),
                            ("probe noise dM", model.noise.backward(probe, noise: x, batch: B, voices: V, frames: T)),
                            ("probe reverb dDry", pr.dDry), ("probe reverb dIR", pr.dIR),
                            ("probe controls dRaw", pc.dRaw), ("probe controls dF0", pc.dF0), ("probe controls dInharm", pc.dInharm)]
                outputs.append(("spectral loss", [Float(spectralLoss)]))
            }
        }
        // The whole step as the trainer runs it.
        model.network.zeroGrad()
        let t0 = DispatchTime.now().uptimeNanoseconds
        for _ in 0..<repeats { _ = model.step(batch, target: target, noiseSeed: 7) }
        let whole = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9 / Double(repeats * B)

        var total = 0.0
        print("training step timing, seconds per segment (batch \(B), \(T) frames, \(active) of \(V) voices playing, \(H) harmonics, \(repeats) repeats):")
        for name in order {
            let s = times[name]! / Double(repeats * B)
            total += s
            print("  " + name.padding(toLength: 26, withPad: " ", startingAt: 0) + String(format: "%8.4f", s))
        }
        print("  " + "sum".padding(toLength: 26, withPad: " ", startingAt: 0) + String(format: "%8.4f", total))
        print("  " + "PianoModelTraining.step".padding(toLength: 26, withPad: " ", startingAt: 0) + String(format: "%8.4f", whole))
        print("spectral loss \(spectralLoss)")

        guard let path = env["DDSP_TRAINING_REFERENCE"] else { return }
        if let data = FileManager.default.contents(atPath: path) {
            let reference = Self.decode(data)
            var worst = 0.0
            for (name, a) in outputs {
                guard let r = reference[name], r.count == a.count else { print("  \(name): missing or resized in the reference"); continue }
                var num = 0.0, den = 0.0
                for i in a.indices { let d = Double(a[i]) - Double(r[i]); num += d * d; den += Double(r[i]) * Double(r[i]) }
                let rel = den > 0 ? (num / den).squareRoot() : num.squareRoot()
                worst = max(worst, rel)
                print("  vs reference " + name.padding(toLength: 42, withPad: " ", startingAt: 0) + String(format: "relative L2 difference %.3e", rel))
            }
            print(String(format: "  vs reference: worst %.3e", worst))
        } else {
            _ = FileManager.default.createFile(atPath: path, contents: Self.encode(outputs))
            print("reference written to \(path)")
        }
    }

    static func encode(_ arrays: [(String, [Float])]) -> Data {
        var d = Data()
        for (name, a) in arrays {
            let bytes = Array(name.utf8)
            let header = [UInt64(bytes.count), UInt64(a.count)]
            header.withUnsafeBytes { d.append(contentsOf: $0) }
            d.append(contentsOf: bytes)
            a.withUnsafeBytes { d.append(contentsOf: $0) }
        }
        return d
    }

    static func decode(_ d: Data) -> [String: [Float]] {
        var out: [String: [Float]] = [:]
        let bytes = [UInt8](d)
        var i = 0
        func u64() -> Int { let v = bytes[i..<(i + 8)].withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }; i += 8; return Int(v) }
        while i < bytes.count {
            let nl = u64(), count = u64()
            let name = String(decoding: bytes[i..<(i + nl)], as: UTF8.self); i += nl
            let a = bytes[i..<(i + 4 * count)].withUnsafeBytes { raw in (0..<count).map { raw.loadUnaligned(fromByteOffset: 4 * $0, as: Float.self) } }
            i += 4 * count
            out[name] = a
        }
        return out
    }
}
