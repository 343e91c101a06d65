import CMallocCounter
import Foundation
import XCTest
import DDSPPiano
import PianoIO
import PianoTestKit

/// Issue 14, items 1–3 in the engine: the stereo image, tuning and transposition, controllers.
/// Every clone (the bundled dafx22 model, the structural v2 model).
final class StereoTuningTests: XCTestCase {
    typealias E = EngineTests

    static func dafx22() throws -> PianoModel {
        let url = TestKit.packageRoot.appendingPathComponent("weights/dafx22.safetensors")
        return try PianoModel(weights: PianoWeights(safetensors: Fixtures.safetensors(url)))
    }

    static func models() throws -> [(String, PianoModel)] {
        [("bundled dafx22", try dafx22()), ("structural v2", StructuralV2.model())]
    }

    /// Left and right of a fresh engine over `events`.
    static func renderStereo(_ model: PianoModel, options: PianoEngine.Options, events: [TimedMessage], seconds: Double,
                             rate: Double, block: Int = 256) throws -> (left: [Float], right: [Float]) {
        let engine = PianoEngine(model: model, options: options)
        try engine.prepare(sampleRate: rate, maxBlockSize: block)
        let total = Int(seconds * rate)
        var left = [Float](repeating: 0, count: total), right = left
        var feed = BlockEventFeed(events: events, sampleRate: rate)
        var blockEvents: [EngineEvent] = []
        var pos = 0
        while pos < total {
            let n = min(block, total - pos)
            feed.take(position: pos, count: n, into: &blockEvents)
            blockEvents.withUnsafeBufferPointer { ev in
                left.withUnsafeMutableBufferPointer { l in
                    right.withUnsafeMutableBufferPointer { r in
                        engine.render(events: ev, left: UnsafeMutableBufferPointer(rebasing: l[pos..<(pos + n)]),
                                      right: UnsafeMutableBufferPointer(rebasing: r[pos..<(pos + n)]))
                    }
                }
            }
            pos += n
        }
        return (left, right)
    }

    static func options(_ model: PianoModel, stereo: Bool = false, width: Float = 0) -> PianoEngine.Options {
        var o = PianoEngine.Options()
        o.instrument = min(o.instrument, model.instruments.count - 1)
        o.stereo = stereo
        o.width = width
        return o
    }

    static func snr(_ reference: [Float], _ x: [Float]) -> Double {
        var s = 0.0, e = 0.0
        for i in 0..<min(reference.count, x.count) {
            s += Double(reference[i]) * Double(reference[i])
            let d = Double(reference[i]) - Double(x[i])
            e += d * d
        }
        return e == 0 ? .infinity : 10 * log10(s / e)
    }

    static func energy(_ x: ArraySlice<Float>) -> Double { x.reduce(0) { $0 + Double($1) * Double($1) } }

    static func correlation(_ a: ArraySlice<Float>, _ b: ArraySlice<Float>) -> Double {
        var ab = 0.0, aa = 0.0, bb = 0.0
        for (x, y) in zip(a, b) { ab += Double(x) * Double(y); aa += Double(x) * Double(x); bb += Double(y) * Double(y) }
        return ab / max(1e-30, (aa * bb).squareRoot())
    }

    // MARK: 1. Stereo

    /// Width 0 is today's mono in both channels, bit for bit; at any width the fold-down
    /// (L + R)/2 is the mono render (mid/side), to float rounding.
    func testWidthZeroIsMonoAndTheFoldDownIsTheMonoRender() throws {
        for (name, model) in try Self.models() {
            let events = E.passage(program: 3)
            for rate in [Double(model.sampleRate), 48_000] {
                let mono = try renderEngine(model, options: Self.options(model), events: events, seconds: 2.5, rate: rate, block: 256)
                let zero = try Self.renderStereo(model, options: Self.options(model, stereo: true, width: 0), events: events, seconds: 2.5, rate: rate)
                XCTAssertEqual(zero.left, mono, "\(name) width 0 left")
                XCTAssertEqual(zero.right, mono, "\(name) width 0 right")
                let wide = try Self.renderStereo(model, options: Self.options(model, stereo: true, width: 0.5), events: events, seconds: 2.5, rate: rate)
                let fold = zip(wide.left, wide.right).map { ($0 + $1) / 2 }
                let foldSNR = Self.snr(mono, fold)
                let sideLevel = 10 * log10(Self.energy(zip(wide.left, wide.right).map { ($1 - $0) / 2 }[...]) / Self.energy(mono[...]))
                print("\(name) at \(Int(rate)) Hz: width 0 = mono bit for bit: \(zero.left == mono && zero.right == mono); width 0.5: fold-down (L+R)/2 vs mono render \(String(format: "%.1f", foldSNR)) dB SNR, side signal \(String(format: "%.1f", sideLevel)) dB relative to mid")
                XCTAssertGreaterThan(foldSNR, 100, "\(name): the fold-down is the mono render (linear, sum-compatible pan law)")
                XCTAssertGreaterThan(sideLevel, -30, "\(name): width 0.5 makes a side signal")
            }
        }
    }

    /// Each key is panned by its place: bass left. S = w·K + √w·D(reverb) (`StereoImage`), so two
    /// renders, at widths 1 and 1/4, give the keys' part exactly: K = 2·(S₁ − 2·S₁/₄). For one
    /// note, K = p·dry: its projection on the dry note is the key's position p, which must be
    /// (key − 64.5)/43.5 (clamped to ±1); the direct sound's level difference at width 0.5 is
    /// then 20·log10((1 + p/2)/(1 − p/2)). The total level of L and R at width 0.5 against the
    /// mono render (the room included) is printed.
    func testKeysArePannedAcrossTheKeyboard() throws {
        for (name, model) in try Self.models() {
            var rows: [String] = []
            for pitch: UInt8 in [21, 24, 36, 48, 60, 72, 84, 96, 108] {
                let events = [TimedMessage(time: 0.05, message: E.note(true, pitch, 90)), TimedMessage(time: 0.4, message: E.note(false, pitch))]
                let rate = Double(model.sampleRate)
                let total = Int(0.3 * rate)
                func side(_ width: Float) throws -> (side: [Float], dry: [Float], left: [Float], right: [Float]) {
                    var o = Self.options(model, stereo: true, width: width)
                    o.noise = false
                    o.produceDry = true
                    let engine = PianoEngine(model: model, options: o)
                    let block = 256
                    try engine.prepare(sampleRate: rate, maxBlockSize: block)
                    var l = [Float](repeating: 0, count: total), r = l, dry = l
                    var feed = BlockEventFeed(events: events, sampleRate: rate)
                    var blockEvents: [EngineEvent] = []
                    var pos = 0
                    while pos < total {
                        let n = min(block, total - pos)
                        feed.take(position: pos, count: n, into: &blockEvents)
                        blockEvents.withUnsafeBufferPointer { ev in l.withUnsafeMutableBufferPointer { lp in r.withUnsafeMutableBufferPointer { rp in
                            dry.withUnsafeMutableBufferPointer { dp in
                                engine.render(events: ev, left: UnsafeMutableBufferPointer(rebasing: lp[pos..<(pos + n)]),
                                              right: UnsafeMutableBufferPointer(rebasing: rp[pos..<(pos + n)]),
                                              dry: UnsafeMutableBufferPointer(rebasing: dp[pos..<(pos + n)]))
                            }
                        }}}
                        pos += n
                    }
                    return (zip(l, r).map { ($1 - $0) / 2 }, dry, l, r)
                }
                let one = try side(1), quarter = try side(0.25), half = try side(0.5)
                let range = Int(0.06 * rate)..<Int(0.21 * rate)
                var kd = 0.0, dd = 0.0
                for i in range {
                    let k = 2 * (Double(one.side[i]) - 2 * Double(quarter.side[i]))
                    kd += k * Double(one.dry[i]); dd += Double(one.dry[i]) * Double(one.dry[i])
                }
                let measured = kd / dd
                let p = Double(StereoImage.position(pitch: Float(pitch)))
                let el = Self.energy(half.left[range]), er = Self.energy(half.right[range])
                var mono = Self.options(model)
                mono.noise = false
                let m = try renderEngine(model, options: mono, events: events, seconds: 0.3, rate: rate, block: 256)
                let totalLevel = 10 * log10((el + er) / (2 * Self.energy(m[range])))
                let p2 = measured / 2
                rows.append(String(format: "%3d: position %+.4f (law %+.4f); at width 0.5 the direct sound R−L %+.2f dB, its power %+.2f dB; L+R with the room %+.2f dB vs mono",
                                   Int(pitch), measured, p, 20 * log10((1 + p2) / (1 - p2)), 10 * log10(1 + p2 * p2), totalLevel))
                XCTAssertEqual(measured, p, accuracy: 0.01, "\(name) key \(pitch)")
            }
            print("\(name), across the keyboard (first 150 ms of each note):\n  " + rows.joined(separator: "\n  "))
        }
    }

    /// The reverb tail's two channels are decorrelated: (1 − w)/(1 + w) expected for the
    /// mid/side image (0.33 at width 0.5, 0 at width 1); 1 in mono. On the real dafx22 model,
    /// whose notes die away (the structural v2 model's random weights keep voices sounding).
    func testReverbTailIsDecorrelated() throws {
        for (name, model) in [("bundled dafx22", try Self.dafx22())] {
            var events: [TimedMessage] = []
            for (i, p) in [48, 55, 60, 64, 67, 72].enumerated() {
                events.append(TimedMessage(time: 0.02 * Double(i), message: E.note(true, UInt8(p), 100)))
                events.append(TimedMessage(time: 0.5, message: E.note(false, UInt8(p))))
            }
            let rate = Double(model.sampleRate)
            var line: [String] = []
            for width: Float in [0, 0.5, 1] {
                var o = Self.options(model, stereo: true, width: width)
                o.noise = false
                let (l, r) = try Self.renderStereo(model, options: o, events: events, seconds: 1.6, rate: rate)
                // The tail: after the notes have died away (their release, 0.5 s + release time).
                let tail = Int(0.9 * rate)..<Int(1.6 * rate)
                let c = Self.correlation(l[tail], r[tail])
                let expected = Double((1 - width) / (1 + width))
                line.append(String(format: "width %.1f: %.3f (expected %.3f)", width, c, expected))
                XCTAssertEqual(c, expected, accuracy: width == 0 ? 1e-9 : 0.2, "\(name) width \(width)")
            }
            print("\(name): inter-channel correlation of the reverb tail (0.9–1.6 s): " + line.joined(separator: ", "))
        }
    }

    // MARK: 2. Tuning and transposition

    /// The fundamental of A4 by the peak of a Hann-windowed spectrum, refined by a parabola
    /// through the log magnitudes, then by a fine search of the DFT around it.
    static func fundamental(_ x: ArraySlice<Float>, rate: Double, near f: Double) -> Double {
        let n = x.count
        let base = x.startIndex
        func magnitude(_ freq: Double) -> Double {
            var re = 0.0, im = 0.0
            let w = 2 * Double.pi * freq / rate
            for i in 0..<n {
                let h = 0.5 - 0.5 * cos(2 * Double.pi * Double(i) / Double(n))
                let v = Double(x[base + i]) * h
                re += v * cos(w * Double(i)); im -= v * sin(w * Double(i))
            }
            return (re * re + im * im).squareRoot()
        }
        // The peak within ±6 % of `f` (a coarse scan, then a golden-section search).
        var a = f * 0.94, b = f * 1.06
        // Coarse scan first (the window's main lobe is 2·rate/n wide).
        let step = rate / Double(n) / 4
        var best = a, bestM = 0.0
        var g = a
        while g <= b { let m = magnitude(g); if m > bestM { bestM = m; best = g }; g += step }
        a = best - step; b = best + step
        let phi = (5.0.squareRoot() - 1) / 2
        var c = b - phi * (b - a), d = a + phi * (b - a)
        for _ in 0..<40 {
            if magnitude(c) > magnitude(d) { b = d } else { a = c }
            c = b - phi * (b - a); d = a + phi * (b - a)
        }
        return (a + b) / 2
    }

    /// A4 at 442 Hz: the note's fundamental moves by 442/440 within 1 cent; the model's own A4
    /// (440) and the 442 one are printed.
    func testA4TuningMovesThePitch() throws {
        for (name, model) in try Self.models() {
            let rate = Double(model.sampleRate)
            let events = [TimedMessage(time: 0.02, message: E.note(true, 69, 80))]
            var measured: [Float: Double] = [:]
            for a4: Float in [440, 442, 415] {
                var o = Self.options(model)
                o.noise = false
                o.a4 = a4
                let out = try renderEngine(model, options: o, events: events, seconds: 1.3, rate: rate, block: 256)
                // Near where the model's own A4 would move to (the structural model is not tuned to 440).
                let near = measured[440].map { $0 * Double(a4) / 440 } ?? 440
                measured[a4] = Self.fundamental(out[Int(0.3 * rate)..<Int(1.3 * rate)], rate: rate, near: near)
            }
            let cents442 = 1200 * log2(measured[442]! / measured[440]! / (442.0 / 440))
            let cents415 = 1200 * log2(measured[415]! / measured[440]! / (415.0 / 440))
            print(String(format: "%@: A4 fundamental %.3f Hz at the model's own tuning (a4 440), %.3f Hz at a4 442 (%.2f cents from 442), %.3f Hz at a4 415; the ratio is off by %.3f / %.3f cents",
                         name, measured[440]!, measured[442]!, 1200 * log2(measured[442]! / 442), measured[415]!, cents442, cents415))
            XCTAssertEqual(cents442, 0, accuracy: 1, name)
            XCTAssertEqual(cents415, 0, accuracy: 1, name)
        }
    }

    /// RPN 1 (fine tuning, +25 cents by data entry 0x50 0x00) moves the fundamental by 25 cents.
    func testRPNFineTuning() throws {
        let model = try Self.dafx22()
        let rate = Double(model.sampleRate)
        func rpn(_ t: Double, _ lsb: UInt8, _ msbValue: UInt8, _ lsbValue: UInt8?) -> [TimedMessage] {
            [TimedMessage(time: t, message: E.cc(101, 0)), TimedMessage(time: t, message: E.cc(100, lsb)),
             TimedMessage(time: t, message: E.cc(6, msbValue))] + (lsbValue.map { [TimedMessage(time: t, message: E.cc(38, $0))] } ?? [])
        }
        var o = Self.options(model)
        o.noise = false
        let note = [TimedMessage(time: 0.02, message: E.note(true, 69, 80))]
        let plain = try renderEngine(model, options: o, events: note, seconds: 1.3, rate: rate, block: 256)
        let tuned = try renderEngine(model, options: o, events: rpn(0.0, 1, 0x50, 0x00) + note, seconds: 1.3, rate: rate, block: 256)
        let f0 = Self.fundamental(plain[Int(0.3 * rate)..<Int(1.3 * rate)], rate: rate, near: 440)
        let f1 = Self.fundamental(tuned[Int(0.3 * rate)..<Int(1.3 * rate)], rate: rate, near: 447)
        let cents = 1200 * log2(f1 / f0)
        print(String(format: "RPN 1 fine tuning 0x50 0x00: %.3f Hz -> %.3f Hz, %.2f cents (expected 25)", f0, f1, cents))
        XCTAssertEqual(cents, 25, accuracy: 1)
    }

    /// Transposition in the engine equals the transposed notes, bit for bit; a held note keeps
    /// its pitch when the transposition changes (its note-off releases it); RPN 2 (coarse
    /// tuning) transposes too; a note transposed off 0…127 is not played.
    func testTranspositionEqualsTransposedNotes() throws {
        for (name, model) in try Self.models() {
            let rate = 48_000.0
            let events = E.passage(program: 3)
            func shifted(_ by: Int) -> [TimedMessage] {
                events.map { e in
                    var e = e
                    switch e.message {
                    case let .noteOn(c, p, v): e.message = .noteOn(channel: c, pitch: UInt8(Int(p) + by), velocity: v)
                    case let .noteOff(c, p, v): e.message = .noteOff(channel: c, pitch: UInt8(Int(p) + by), velocity: v)
                    default: break
                    }
                    return e
                }
            }
            var o = Self.options(model)
            let reference = try renderEngine(model, options: o, events: shifted(5), seconds: 2.5, rate: rate, block: 256)
            o.transpose = 5
            let transposed = try renderEngine(model, options: o, events: events, seconds: 2.5, rate: rate, block: 256)
            o.transpose = 0
            let coarse = [TimedMessage(time: 0, message: E.cc(101, 0)), TimedMessage(time: 0, message: E.cc(100, 2)),
                          TimedMessage(time: 0, message: E.cc(6, 64 + 5))]
            let rpn = try renderEngine(model, options: o, events: coarse + events, seconds: 2.5, rate: rate, block: 256)
            print("\(name): transposed +5 in the engine vs transposed notes: \(transposed == reference ? "bit-exact" : String(format: "%.1f dB", Self.snr(reference, transposed))); RPN 2 coarse +5: \(rpn == reference ? "bit-exact" : String(format: "%.1f dB", Self.snr(reference, rpn)))")
            XCTAssertEqual(transposed, reference, name)
            XCTAssertEqual(rpn, reference, name)
        }
        // A held note keeps its pitch across a change of transposition; off-keyboard notes are dropped.
        let model = try Self.dafx22()
        let engine = PianoEngine(model: model, options: Self.options(model))
        try engine.prepare(sampleRate: 16_000, maxBlockSize: 64)
        var out = [Float](repeating: 0, count: 64)
        engine.render(events: [EngineEvent(offset: 0, message: E.note(true, 60))], into: &out)
        for _ in 0..<4 { engine.render(events: [], into: &out) }
        engine.transpose = 7
        engine.render(events: [EngineEvent(offset: 0, message: E.note(false, 60))], into: &out)
        for _ in 0..<4 { engine.render(events: [], into: &out) }
        let afterRelease = engine.soundingNotes
        engine.transpose = 24
        engine.render(events: [EngineEvent(offset: 0, message: E.note(true, 120))], into: &out)   // 144: off the keyboard
        for _ in 0..<4 { engine.render(events: [], into: &out) }
        print("held note released after a transposition change: sounding \(afterRelease); note 120 at +24: sounding \(engine.soundingNotes)")
        XCTAssertEqual(afterRelease, 0)
        XCTAssertEqual(engine.soundingNotes, 0)
    }

    /// `RenderSettings.transpose` equals rendering a transposed MIDI file, bit for bit.
    func testTransposedRenderEqualsTransposedFile() throws {
        let model = try Self.dafx22()
        func file(_ shift: Int) throws -> MIDIFile {
            var track: [UInt8] = []
            for (i, p) in [60, 64, 67, 71, 74].enumerated() {
                track += SMF.on(i == 0 ? 0 : 120, UInt8(p + shift), UInt8(60 + 10 * i))
            }
            track += SMF.cc(240, 64, 127) + SMF.off(240, UInt8(64 + shift)) + SMF.cc(240, 64, 0)
            for p in [60, 67, 71, 74] { track += SMF.off(p == 60 ? 60 : 0, UInt8(p + shift)) }
            track += SMF.eot()
            return try MIDIFile(bytes: SMF.file(format: 0, tracks: [track]))
        }
        for conditioning in [ConditioningSource.automatic, .upstream, .live] {
            var settings = RenderSettings()
            settings.conditioning = conditioning
            let reference = try OfflineRenderer.render(midi: file(-3), model: model, settings: settings).wet
            settings.transpose = -3
            let transposed = try OfflineRenderer.render(midi: file(0), model: model, settings: settings).wet
            print("render with transpose -3 (\(conditioning)) vs the transposed file: \(transposed.count) samples, \(transposed == reference ? "bit-exact" : String(format: "%.1f dB", Self.snr(reference, transposed)))")
            XCTAssertEqual(transposed, reference, "\(conditioning)")
        }
    }

    // MARK: 3. Controllers

    /// CC7 and CC11 are a gain of (v/127)² each, smoothed (no step larger than a 10-ms one-pole
    /// allows), reset by CC121. Measured as the ratio of the output to the output without them.
    func testVolumeAndExpressionAreSmoothedGain() throws {
        let model = try Self.dafx22()
        let rate = Double(model.sampleRate)
        let notes: [TimedMessage] = [TimedMessage(time: 0.01, message: E.note(true, 57, 100)), TimedMessage(time: 0.01, message: E.note(true, 64, 90)),
                                     TimedMessage(time: 2.9, message: E.note(false, 57)), TimedMessage(time: 2.9, message: E.note(false, 64))]
        let controls = [TimedMessage(time: 0.5, message: E.cc(7, 64)), TimedMessage(time: 1.0, message: E.cc(11, 100)),
                        TimedMessage(time: 1.5, message: E.cc(121, 0))]
        let o = Self.options(model)
        let plain = try renderEngine(model, options: o, events: notes, seconds: 2, rate: rate, block: 256)
        let moved = try renderEngine(model, options: o, events: (notes + controls).sorted { $0.time < $1.time }, seconds: 2, rate: rate, block: 256)
        // The gain, sample by sample, where the signal is clear of zero.
        var gains: [(Int, Double)] = []
        for i in 0..<plain.count where abs(plain[i]) > 1e-3 { gains.append((i, Double(moved[i]) / Double(plain[i]))) }
        func gain(near t: Double) -> Double {
            let target = Int(t * rate)
            let near = gains.filter { abs($0.0 - target) < Int(0.01 * rate) }.map(\.1)
            return near.reduce(0, +) / Double(max(1, near.count))
        }
        var largestStep = 0.0
        for k in 1..<gains.count where gains[k].0 == gains[k - 1].0 + 1 { largestStep = max(largestStep, abs(gains[k].1 - gains[k - 1].1)) }
        let vol: Double = (64.0 / 127) * (64.0 / 127), expr: Double = (100.0 / 127) * (100.0 / 127)
        print(String(format: "gain: %.4f before, %.4f after CC7 64 (expected %.4f), %.4f after CC11 100 (expected %.4f), %.4f after CC121 (expected 1); largest step between samples %.5f",
                     gain(near: 0.4), gain(near: 0.9), vol, gain(near: 1.4), vol * expr, gain(near: 1.9), largestStep))
        XCTAssertEqual(gain(near: 0.4), 1, accuracy: 1e-6)
        XCTAssertEqual(gain(near: 0.9), vol, accuracy: 1e-3)
        XCTAssertEqual(gain(near: 1.4), vol * expr, accuracy: 1e-3)
        XCTAssertEqual(gain(near: 1.9), 1, accuracy: 1e-3)
        // A 10-ms one-pole moves at most 1/(0.01·rate) of the jump per sample (0.0047 of 0.75 here).
        XCTAssertLessThan(largestStep, 1 - vol, "smoothed")
        XCTAssertLessThan(largestStep, 0.01, "no zipper: no step beyond what the smoothing allows")
    }

    /// CC88 adds value/128 to the next note-on's velocity on its channel, once; RPN and NRPN
    /// selection, data entry and CC121 as `Controllers` documents.
    func testControllersState() {
        var c = Controllers()
        XCTAssertFalse(c.take(channel: 0, controller: 64, value: 127), "pedals go on to the conditioning")
        XCTAssertTrue(c.take(channel: 2, controller: 88, value: 64))
        XCTAssertEqual(c.takeVelocityFraction(channel: 0), 0, "another channel")
        XCTAssertEqual(c.takeVelocityFraction(channel: 2), 0.5)
        XCTAssertEqual(c.takeVelocityFraction(channel: 2), 0, "once")
        _ = c.take(channel: 0, controller: 6, value: 70)
        XCTAssertEqual(c.coarseTuning, 0, "no RPN selected: data entry ignored")
        _ = c.take(channel: 0, controller: 101, value: 0); _ = c.take(channel: 0, controller: 100, value: 2)
        _ = c.take(channel: 0, controller: 6, value: 62)
        XCTAssertEqual(c.coarseTuning, -2)
        _ = c.take(channel: 0, controller: 100, value: 1)
        _ = c.take(channel: 0, controller: 6, value: 0x50); _ = c.take(channel: 0, controller: 38, value: 0)
        XCTAssertEqual(c.fineTuningCents, 25, accuracy: 1e-4)
        _ = c.take(channel: 0, controller: 38, value: 0x40)
        XCTAssertEqual(c.fineTuningCents, 25 + 64 * 100 / 8192, accuracy: 1e-4)
        _ = c.take(channel: 0, controller: 100, value: 0)
        _ = c.take(channel: 0, controller: 6, value: 12)
        XCTAssertEqual(c.coarseTuning, -2, "RPN 0 (pitch-bend range) is ignored")
        _ = c.take(channel: 0, controller: 99, value: 1)
        _ = c.take(channel: 0, controller: 6, value: 99)
        XCTAssertEqual(c.coarseTuning, -2, "an NRPN deselects the RPN")
        _ = c.take(channel: 0, controller: 7, value: 0); _ = c.take(channel: 0, controller: 11, value: 10)
        _ = c.take(channel: 1, controller: 88, value: 3)
        XCTAssertEqual(c.gain, 0)
        XCTAssertFalse(c.take(channel: 0, controller: 121, value: 0), "CC121 goes on to the conditioning too (sustain up)")
        XCTAssertEqual(c.gain, 1)
        XCTAssertEqual(c.takeVelocityFraction(channel: 1), 0, "CC121 forgets a pending CC88")
        XCTAssertEqual(c.coarseTuning, -2, "CC121 keeps the tunings")
        var live = LiveConditioning()
        live.noteOn(pitch: 60, velocity: 64, fraction: 0.5)
        var cond = [Float](repeating: 0, count: 32), pedal = [Float](repeating: 0, count: 4)
        live.nextFrame(conditioning: &cond, pedal: &pedal)
        let slot = (0..<16).first { cond[2 * $0] == 60 } ?? 0
        print("CC88 64 then note-on velocity 64: conditioning velocity \(cond[2 * slot + 1]) (64.5/127 = \(Float(64.5) / 127))")
        XCTAssertEqual(cond[2 * slot + 1], Float(64.5) / 127, accuracy: 1e-7)
    }

    /// The stereo engine with every controller and live setting moving does not allocate.
    func testStereoAndControllersDoNotAllocate() throws {
        for (name, model) in try Self.models() {
            let engine = PianoEngine(model: model, options: Self.options(model, stereo: true, width: 0.5))
            let block = 128
            try engine.prepare(sampleRate: 48_000, maxBlockSize: block)
            var left = [Float](repeating: 0, count: block), right = left
            var events = [EngineEvent](repeating: EngineEvent(offset: 0, message: E.cc(1, 0)), count: 16)
            left.withUnsafeMutableBufferPointer { l in right.withUnsafeMutableBufferPointer { r in
                engine.render(events: UnsafeBufferPointer(start: nil, count: 0), left: l, right: r)
            }}
            var allocations: Int64 = 0
            left.withUnsafeMutableBufferPointer { l in right.withUnsafeMutableBufferPointer { r in
                malloc_counter_start()
                for b in 0..<2000 {
                    var count = 0
                    if b % 5 == 0 {
                        events[count] = EngineEvent(offset: 3, message: E.cc(88, UInt8(b % 128))); count += 1
                        events[count] = EngineEvent(offset: 7, message: E.note(true, UInt8(30 + (b * 7) % 70), 80)); count += 1
                        events[count] = EngineEvent(offset: block - 1, message: E.note(false, UInt8(30 + ((b - 15) * 7 % 70 + 70) % 70))); count += 1
                    }
                    if b % 13 == 0 { events[count] = EngineEvent(offset: 9, message: E.cc(7, UInt8(b % 128))); count += 1 }
                    if b % 17 == 0 { events[count] = EngineEvent(offset: 9, message: E.cc(11, UInt8((b * 3) % 128))); count += 1 }
                    if b % 101 == 0 {
                        events[count] = EngineEvent(offset: 0, message: E.cc(101, 0)); count += 1
                        events[count] = EngineEvent(offset: 0, message: E.cc(100, UInt8(1 + b % 2))); count += 1
                        events[count] = EngineEvent(offset: 0, message: E.cc(6, UInt8(60 + b % 8))); count += 1
                    }
                    if b % 333 == 0 { events[count] = EngineEvent(offset: 1, message: E.cc(121, 0)); count += 1 }
                    engine.width = Float(b % 11) / 10
                    engine.a4 = 430 + Float(b % 20)
                    engine.transpose = b % 7 - 3
                    events.withUnsafeBufferPointer { e in
                        engine.render(events: UnsafeBufferPointer(rebasing: e[0..<count]), left: l, right: r)
                    }
                }
                allocations = malloc_counter_stop()
            }}
            print("allocator calls (\(name), stereo, controllers, width/a4/transpose moving) in 2000 blocks of \(block) at 48000 Hz: \(allocations)")
            XCTAssertEqual(allocations, 0, name)
        }
    }
}
