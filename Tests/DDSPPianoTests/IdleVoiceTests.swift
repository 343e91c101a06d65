import Foundation
import XCTest
import DDSPPiano

/// Issue 15, item 2: can a silent voice's network output be reused bit for bit? Only while its
/// input is constant and its recurrent state repeats exactly. This measures, per model, whether
/// the context and monophonic GRU states reach a bitwise fixed point or a short cycle (period
/// ≤ 8 frames) under constant input: a 4-note chord held 2 s, then 38 s of silence. The numbers
/// are in docs/PERFORMANCE.md. What is asserted is the premise of any exact reuse: the step is
/// deterministic (two runs give the same states, bit for bit).
final class IdleVoiceTests: XCTestCase {
    struct Trace: Equatable { var context: [[Float]] = [], mono: [[Float]] = [] }

    static func run(_ model: PianoModel, frames: Int) -> Trace {
        var cond = [Float](repeating: 0, count: 32)
        let pedal = [Float](repeating: 0, count: 4)
        var trace = Trace()
        var dafx = model.dafx22.map { w -> (PianoNetwork, NormalizationStatistics) in
            let i = min(9, w.instruments.count - 1)
            return (PianoNetwork(weights: w, instrument: i), w.normalizationPrior(instrument: i))
        }
        var v2 = model.v2.map { V2Network(weights: $0, instrument: min(9, $0.instruments.count - 1)) }
        for f in 0..<frames {
            for v in 0..<4 { cond[2 * v] = f < 500 ? Float(60 + 4 * v) : 0; cond[2 * v + 1] = f < 500 ? 0.7 : 0 }
            cond.withUnsafeBufferPointer { c in pedal.withUnsafeBufferPointer { p in
                if dafx != nil {
                    dafx!.0.step(conditioning: c.baseAddress!, pedal: p.baseAddress!, statistics: dafx!.1)
                    trace.context.append(dafx!.0.context.gru.state); trace.mono.append(dafx!.0.mono.gru.state)
                } else if v2 != nil {
                    v2!.step(conditioning: c.baseAddress!, pedal: p.baseAddress!)
                    trace.context.append(v2!.context.gru.state); trace.mono.append(v2!.mono.gru.state)
                }
            }}
        }
        return trace
    }

    /// The shortest p ≤ 8 with state(f) == state(f − p), bit for bit (0: none).
    static func period(_ states: [[Float]], at f: Int, row: Range<Int>? = nil) -> Int {
        func slice(_ s: [Float]) -> ArraySlice<Float> { row.map { s[$0] } ?? s[...] }
        for p in 1...8 where f - p >= 0 && slice(states[f - p]).elementsEqual(slice(states[f])) { return p }
        return 0
    }

    func testRecurrentStatesUnderConstantInput() throws {
        var models: [(String, PianoModel)] = [("bundled soundfont-grands", PianoModel(weights: try Fixtures.bundledWeights()))]
        if FileManager.default.fileExists(atPath: Fixtures.reference.appendingPathComponent("dafx22").path) {
            models.append(("upstream dafx22", PianoModel(weights: try Fixtures.dafx22Weights())))
        } else {
            print("upstream dafx22 part skipped: no reference fixtures")
        }
        if let v2 = try Fixtures.v2ReferenceModel() { models.append(("v2 reference checkpoint", v2)) }
        let frames = 10_000
        for (name, model) in models {
            let trace = Self.run(model, frames: frames)
            XCTAssertEqual(trace, Self.run(model, frames: frames), "\(name): the networks' step is not deterministic")
            for f in [400, 1000, 5000, frames - 1] {
                let units = trace.mono[f].count / 16
                let voices = (0..<16).map { Self.period(trace.mono, at: f, row: ($0 * units)..<(($0 + 1) * units)) }
                var moved: Float = 0
                for (a, b) in zip(trace.mono[f], trace.mono[f - 2]) { moved = max(moved, abs(a - b)) }
                print("\(name), frame \(f) (\(f < 500 ? "chord held" : "silence")): context period \(Self.period(trace.context, at: f)), "
                      + "voices' periods \(voices.map(String.init).joined(separator: ",")) (0: none ≤ 8), largest state change over 2 frames \(moved)")
            }
        }
    }

    /// Keeping idle rows changes nothing, bit for bit: every reference case (dafx22 streaming and
    /// `--exact` on two), v2) and the structural models on chords held and released, rendered with and
    /// without. Prints how many voice rows were kept.
    func testKeptRowsChangeNothing() throws {
        func render(_ model: PianoModel, _ midi: MIDIFile, piano: Int, exact: Bool, keep: Bool) throws -> [Float] {
            var s = RenderSettings()
            s.instrument = min(piano, model.instruments.count - 1)
            s.exact = exact
            s.noise = true
            s.engine.keepsIdleVoices = keep
            return try OfflineRenderer.render(midi: midi, model: model, settings: s).wet
        }
        var compared = 0
        func check(_ name: String, _ model: PianoModel, _ midi: MIDIFile, piano: Int, exact: Bool = false) throws {
            let with = try render(model, midi, piano: piano, exact: exact, keep: true)
            let without = try render(model, midi, piano: piano, exact: exact, keep: false)
            let differ = with.count == without.count ? zip(with, without).filter { $0.0.bitPattern != $0.1.bitPattern }.count : -1
            // How many rows were kept: the engine, as it plays the file (events, model rate).
            var options = PianoEngine.Options()
            options.instrument = min(piano, model.instruments.count - 1)
            let engine = PianoEngine(model: model, options: options)
            try engine.prepare(sampleRate: Double(model.hyper.sampleRate), maxBlockSize: 256)
            var out = [Float](repeating: 0, count: 256)
            var feed = BlockEventFeed(events: EventSchedule.events(from: NoteSequence(midi: midi).applyingSustain()),
                                      sampleRate: Double(model.hyper.sampleRate))
            var ev: [EngineEvent] = []
            var position = 0
            while position < with.count {
                feed.take(position: position, count: 256, into: &ev)
                engine.render(events: ev, into: &out)
                position += 256
            }
            let rows = engine.idleVoiceRows
            print("\(name)\(exact ? " (--exact)" : ""): \(with.count) samples, \(differ) differ with and without kept rows; "
                  + String(format: "the engine kept %d of %d voice rows (%.1f %%)", rows.kept, rows.kept + rows.computed,
                           100 * Double(rows.kept) / Double(max(1, rows.kept + rows.computed))))
            XCTAssertEqual(differ, 0, "\(name): keeping idle rows changed the output")
            compared += 1
        }
        for (name, model) in try Fixtures.structuralWeights() {
            try check(name, model, try RenderThreadsTests.midi(instruments: model.instruments.count), piano: 9)
        }
        if FileManager.default.fileExists(atPath: Fixtures.reference.appendingPathComponent("dafx22").path) {
            let dafx22 = PianoModel(weights: try Fixtures.dafx22Weights())
            for dir in try Fixtures.cases(withTensors: false) {
                let midi = try MIDIFile(bytes: [UInt8](try Data(contentsOf: dir.appendingPathComponent("input.mid"))))
                let piano = (try Fixtures.meta(dir)["piano_type"] as? Int) ?? 9
                try check("dafx22 " + dir.lastPathComponent, dafx22, midi, piano: piano)
                // --exact (two passes over the whole piece) on the chaotic case and the densest.
                if ["sustain_pedal_chords_p4", "dense_over16_p9"].contains(dir.lastPathComponent) {
                    try check("dafx22 " + dir.lastPathComponent, dafx22, midi, piano: piano, exact: true)
                }
            }
        } else {
            print("dafx22 reference cases skipped: no reference fixtures")
        }
        if let v2 = try Fixtures.v2ReferenceModel() {
            let dir = Fixtures.reference.appendingPathComponent("v2/cases")
            for name in try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted() {
                let url = dir.appendingPathComponent(name)
                let midi = try MIDIFile(bytes: [UInt8](try Data(contentsOf: url.appendingPathComponent("input.mid"))))
                let piano = (try Fixtures.meta(url)["piano_type"] as? Int) ?? 9
                try check("v2 " + name, v2, midi, piano: piano)
            }
        }
        XCTAssertGreaterThan(compared, 0)
    }
}
