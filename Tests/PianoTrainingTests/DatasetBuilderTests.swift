import DDSPPiano
import Foundation
import PianoIO
import PianoTestKit
import PianoTraining
import XCTest

final class DatasetBuilderTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("ddsp-dataset-\(getpid())-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(at: dir) }

    // MARK: MIDI writer

    func testWriterRoundTripsThroughTheEngineReader() throws {
        var part = PianoPart(program: 1)
        part.notes = [
            .init(pitch: 21, velocity: 1, start: 0, end: 1234),
            .init(pitch: 60, velocity: 64, start: 500, end: 1501),
            .init(pitch: 108, velocity: 127, start: 2999, end: 3000),
            .init(pitch: 60, velocity: 90, start: 1501, end: 9000),  // re-struck where the first ends
        ]
        part.controls = [
            .init(time: 100, controller: 64, value: 127), .init(time: 2500, controller: 64, value: 0),
            .init(time: 300, controller: 67, value: 127), .init(time: 7000, controller: 67, value: 0),
            .init(time: 400, controller: 66, value: 100),
        ]
        part.sanitize()
        let bytes = MIDIWriter.bytes(part, trackName: "round trip")
        for source in [MIDIFile.TempoSource.allTracks, .firstTrack] {
            let midi = try MIDIFile(bytes: bytes, tempoSource: source)
            XCTAssertEqual(midi.format, 0)
            XCTAssertTrue(midi.warnings.isEmpty, "\(midi.warnings)")
            XCTAssertTrue(midi.events.contains { $0.message == .programChange(channel: 0, program: 1) })
            let seq = NoteSequence(midi: midi)
            let got = seq.notes.sorted { ($0.start, $0.pitch) < ($1.start, $1.pitch) }
            XCTAssertEqual(got.count, part.notes.count)
            for (g, w) in zip(got, part.notes) {
                XCTAssertEqual(g.pitch, w.pitch)
                XCTAssertEqual(g.velocity, w.velocity)
                XCTAssertEqual(g.program, 1)
                XCTAssertEqual(g.start, Double(w.start) / 1000, accuracy: 1e-3)
                XCTAssertEqual(g.end, Double(w.end) / 1000, accuracy: 1e-3)
            }
            let ccs = seq.controlChanges.map { [Int(($0.time * 1000).rounded()), $0.controller, $0.value] }
            XCTAssertEqual(ccs, part.controls.map { [$0.time, $0.controller, $0.value] })
        }
    }

    func testSanitizeMakesOverlapsAndZeroLengthNotesPlayable() {
        var part = PianoPart(notes: [
            .init(pitch: 60, velocity: 80, start: 0, end: 1000),
            .init(pitch: 60, velocity: 90, start: 400, end: 800),    // struck again while held
            .init(pitch: 62, velocity: 50, start: 100, end: 100),    // zero length
            .init(pitch: 64, velocity: 40, start: 200, end: 300),
            .init(pitch: 64, velocity: 70, start: 200, end: 250),    // doubled: the louder stays
        ])
        part.sanitize()
        XCTAssertEqual(part.notes, [
            .init(pitch: 60, velocity: 80, start: 0, end: 400),
            .init(pitch: 62, velocity: 50, start: 100, end: 101),
            .init(pitch: 64, velocity: 70, start: 200, end: 250),
            .init(pitch: 60, velocity: 90, start: 400, end: 800),
        ])
    }

    // MARK: Generated material

    func testGeneratedMaterialCoversKeysVelocitiesAndPedals() throws {
        let pieces = GeneratedMaterial.pieces(seed: 7, minutes: 15)
        XCTAssertEqual(pieces.map(\.name), GeneratedMaterial.pieces(seed: 7, minutes: 15).map(\.name))
        XCTAssertEqual(pieces.map(\.part), GeneratedMaterial.pieces(seed: 7, minutes: 15).map(\.part), "not deterministic")
        XCTAssertNotEqual(pieces.map(\.part), GeneratedMaterial.pieces(seed: 8, minutes: 15).map(\.part), "seed ignored")
        let minutes = pieces.reduce(0) { $0 + Double($1.part.lastEventTime) } / 60_000
        XCTAssertGreaterThanOrEqual(minutes, 15)
        XCTAssertLessThan(minutes, 16.5)
        XCTAssertEqual(Set(pieces.map(\.kind)), Set(GeneratedMaterial.Kind.allCases))
        for p in pieces {
            let seconds = Double(p.part.lastEventTime) / 1000
            XCTAssertTrue((15...75).contains(seconds), "\(p.name) lasts \(seconds) s")
        }

        // Coverage on the training side alone, so held-out pieces are not needed for it.
        let train = pieces.filter { DatasetSplit.forGenerated(index: $0.index) == .train }
        let notes = train.flatMap(\.part.notes)
        XCTAssertEqual(Set(notes.map(\.velocity)), Set(1...127))
        XCTAssertEqual(Set(notes.map(\.pitch)), Set(21...108))
        // A chord: notes starting before its first note ends (chords never overlap).
        var chordSizes = Set<Int>()
        for p in train where p.kind == .chords {
            var firstEnd = -1, size = 0
            for n in p.part.notes {
                if n.start < firstEnd { size += 1; continue }
                if size > 0 { chordSizes.insert(size) }
                firstEnd = n.end; size = 1
            }
            chordSizes.insert(size)
        }
        XCTAssertTrue(chordSizes.isSuperset(of: [2, 8]), "chord sizes \(chordSizes.sorted())")
        let controls = train.flatMap(\.part.controls)
        for cc in [64, 66, 67] {
            XCTAssertTrue(controls.contains { $0.controller == cc && $0.value >= 64 }, "no CC\(cc) press")
        }
        // Pedal changes: the sustain pedal goes down again after being lifted within a piece.
        let changes = train.filter { $0.kind == .pedalChanges }.map { $0.part.controls.filter { $0.controller == 64 }.count }
        XCTAssertTrue(changes.allSatisfy { $0 >= 6 })

        // Every piece reads back through the engine's reader as written, pedals released at the end.
        for p in pieces.prefix(10) {
            let seq = NoteSequence(midi: try MIDIFile(bytes: MIDIWriter.bytes(p.part), tempoSource: .firstTrack))
            XCTAssertEqual(seq.notes.count, p.part.notes.count, p.name)
            let last = Dictionary(grouping: p.part.controls, by: \.controller).mapValues { $0.last!.value }
            XCTAssertTrue(last.values.allSatisfy { $0 == 0 }, p.name)
        }
    }

    // MARK: Corpus and split

    func testLicencesGroupsAndSplitAreStable() throws {
        XCTAssertTrue(CorpusSources.isNonCommercial("package MIT; content from MAESTRO dataset (CC BY-NC-SA 4.0)"))
        XCTAssertTrue(CorpusSources.isNonCommercial("non-commercial use only"))
        XCTAssertFalse(CorpusSources.isNonCommercial("BSD-3-Clause (package); some may restrict commercial use"))
        XCTAssertFalse(CorpusSources.isNonCommercial("MIT (package metadata)"))

        // 400 files, two of them a pair that must stay together.
        var keys = Dictionary(uniqueKeysWithValues: (0..<400).map { ("score/file\($0).mid", "score/file\($0).mid") })
        keys["score/file7.mid"] = "score/file3.mid"
        let splits = DatasetSplit.forCorpus(groups: keys)
        XCTAssertEqual(splits, DatasetSplit.forCorpus(groups: keys))
        XCTAssertEqual(Set(splits.keys), Set(keys.keys), "every file gets exactly one split")
        XCTAssertEqual(splits["score/file7.mid"], splits["score/file3.mid"])
        let heldout = splits.values.filter { $0 == .heldout }.count, validation = splits.values.filter { $0 == .validation }.count
        XCTAssertTrue((60...61).contains(heldout), "\(heldout) of 400 held out")
        XCTAssertTrue((27...28).contains(validation), "\(validation) of 400 for validation")
        // Adding a file moves at most the boundary, not the whole held-out list.
        var more = keys
        more["score/new.mid"] = "score/new.mid"
        let moved = keys.keys.filter { (splits[$0] == .heldout) != (DatasetSplit.forCorpus(groups: more)[$0] == .heldout) }
        XCTAssertLessThanOrEqual(moved.count, 2)
        XCTAssertEqual((0..<3).map(DatasetSplit.forGenerated), [.train, .train, .train])
        XCTAssertTrue((0..<30).contains { DatasetSplit.forGenerated(index: $0) == .heldout })
        XCTAssertTrue((0..<30).contains { DatasetSplit.forGenerated(index: $0) == .validation })

        let sourcesURL = TestKit.shared.appendingPathComponent("midi/SOURCES.txt")
        guard let text = try? String(contentsOf: sourcesURL, encoding: .utf8) else {
            print("skipped: no corpus (\(sourcesURL.path))")
            return
        }
        let rows = try CorpusSources.parse(text)
        let groups = CorpusSources.groups(Array(rows.values))
        // A transcription and its reference travel together.
        if rows["performance/mpteval__pred.mid"] != nil, rows["score/mpteval__ref.mid"] != nil {
            XCTAssertEqual(groups["performance/mpteval__pred.mid"], groups["score/mpteval__ref.mid"])
        }
        let usable = rows.values.filter { !CorpusSources.isNonCommercial($0.license) }
        let corpusSplits = DatasetSplit.forCorpus(groups: groups.filter { f, _ in usable.contains { $0.file == f } })
        let held = usable.filter { corpusSplits[$0.file] == .heldout }
        XCTAssertFalse(held.isEmpty)
        XCTAssertLessThan(held.count, usable.count / 3)
    }

    func testNormalizerKeepsPianoNotesAndPedalsAndCuts() throws {
        // Two tracks: piano with pedal on channel 0, drums on channel 9; then cut at 2 s.
        func track(_ events: [(Int, [UInt8])]) -> [UInt8] {
            var out: [UInt8] = [], now = 0
            // Stable by tick: events at one tick keep their listed order.
            for (_, (t, e)) in events.enumerated().sorted(by: { ($0.element.0, $0.offset) < ($1.element.0, $1.offset) }) {
                out += vlq(t - now) + e; now = t
            }
            out += [0, 0xFF, 0x2F, 0]
            return Array("MTrk".utf8) + be32(out.count) + out
        }
        func vlq(_ v: Int) -> [UInt8] {
            var out = [UInt8(v & 0x7F)], x = v >> 7
            while x > 0 { out.insert(UInt8(x & 0x7F) | 0x80, at: 0); x >>= 7 }
            return out
        }
        func be32(_ v: Int) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }
        // 480 ticks per quarter at 120 bpm: 960 ticks a second. Music starts at 3 s.
        let s = 2880
        let piano = track([(0, [0xFF, 0x51, 3, 0x07, 0xA1, 0x20]), (s, [0xB0, 64, 127]), (s, [0x90, 60, 70]), (s + 480, [0x80, 60, 0]),
                           (s, [0x90, 10, 70]), (s + 100, [0x80, 10, 0]), (s + 960, [0xB0, 7, 100]),
                           (s + 1920, [0x90, 64, 90]), (s + 3840, [0x80, 64, 0]), (s + 4800, [0xB0, 64, 0])])
        let drums = track([(s, [0x99, 36, 100]), (s + 100, [0x89, 36, 0])])
        let bytes = Array("MThd".utf8) + [0, 0, 0, 6, 0, 1, 0, 2, 0x01, 0xE0] + piano + drums

        let whole = try CorpusNormalizer.normalize(bytes: bytes, maxSeconds: nil)
        XCTAssertEqual(whole.part.notes, [.init(pitch: 60, velocity: 70, start: 500, end: 1000), .init(pitch: 64, velocity: 90, start: 2500, end: 4500)])
        XCTAssertEqual(whole.part.controls, [.init(time: 500, controller: 64, value: 127), .init(time: 5500, controller: 64, value: 0)])
        XCTAssertEqual(whole.shifted, 2.5, accuracy: 1e-9)
        XCTAssertEqual(whole.droppedNotes, 2) // drum, and the key below A0
        XCTAssertFalse(whole.cut)

        let cut = try CorpusNormalizer.normalize(bytes: bytes, maxSeconds: 3)
        XCTAssertTrue(cut.cut)
        XCTAssertEqual(cut.part.notes.last, .init(pitch: 64, velocity: 90, start: 2500, end: 3000))
        XCTAssertEqual(cut.part.controls.last, .init(time: 3000, controller: 64, value: 0))
        XCTAssertEqual(try CorpusNormalizer.duration(ofMIDI: MIDIWriter.bytes(cut.part)), 3, accuracy: 1e-6)

        XCTAssertThrowsError(try CorpusNormalizer.normalize(bytes: Array("RIFF junk".utf8), maxSeconds: nil))
    }

    // MARK: End to end

    /// The built `ddsp-piano-train`, when the test run built it beside this bundle.
    static func trainTool() -> URL? {
        let fm = FileManager.default
        var dirs = [Bundle.main.bundleURL, Bundle.main.bundleURL.deletingLastPathComponent(),
                    URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()]
        dirs += Bundle.allBundles.map { $0.bundleURL.deletingLastPathComponent() }
        return dirs.map { $0.appendingPathComponent("ddsp-piano-train") }.first { fm.isExecutableFile(atPath: $0.path) }
    }

    func testRendersASmallDatasetEndToEnd() throws {
        let fm = FileManager.default
        let corpus = TestKit.shared.appendingPathComponent("midi")
        let fluid = ["/usr/bin/fluidsynth", "/usr/local/bin/fluidsynth"].first { fm.isExecutableFile(atPath: $0) }
        let pianos = [SoundFontPiano.debian[0], SoundFontPiano.debian[2]]   // one per SoundFont file
        guard fluid != nil, pianos.allSatisfy({ fm.fileExists(atPath: $0.soundfont) }) else {
            print("skipped: no fluidsynth or no Debian piano SoundFonts")
            return
        }
        guard let text = try? String(contentsOf: corpus.appendingPathComponent("SOURCES.txt"), encoding: .utf8) else {
            print("skipped: no corpus (\(corpus.path))")
            return
        }
        // A corpus of two small files, a non-commercial one (must be left out) and a broken one.
        let midi = dir.appendingPathComponent("midi")
        try fm.createDirectory(at: midi.appendingPathComponent("score"), withIntermediateDirectories: true)
        try fm.createDirectory(at: midi.appendingPathComponent("performance"), withIntermediateDirectories: true)
        let picked = ["score/pianoplayer__test_octaves.mid", "performance/parangonar__mozart_k265_var1.mid"]
        let lines = text.split(separator: "\n").map(String.init)
        let header = lines.first { $0.hasPrefix("file\t") }!
        let nc = lines.first { $0.contains("BY-NC") && !$0.hasPrefix("#") }!.split(separator: "\t")
        var rows = [header]
        for p in picked {
            rows.append(lines.first { $0.hasPrefix(p + "\t") }!)
            try fm.copyItem(at: corpus.appendingPathComponent(p), to: midi.appendingPathComponent(p))
        }
        rows.append(nc.joined(separator: "\t").replacingOccurrences(of: String(nc[0]), with: "performance/nc.mid"))
        try Data(MIDIWriter.bytes(PianoPart(notes: [.init(pitch: 60, velocity: 80, start: 0, end: 500)]))).write(to: midi.appendingPathComponent("performance/nc.mid"))
        rows.append("score/broken.mid\tx\t1\tx\tMIT\tscore\t1\t1\t1\t1\t0\t0\t0\t0\t1\t1\t0:0\tbroken on purpose")
        try Data("MThd\0\0\0\u{6}\0\0\0\u{1}".utf8).write(to: midi.appendingPathComponent("score/broken.mid"))
        try rows.joined(separator: "\n").write(to: midi.appendingPathComponent("SOURCES.txt"), atomically: true, encoding: .utf8)

        let out = dir.appendingPathComponent("data")
        let args = ["dataset", "--out", out.path, "--midi", midi.path, "--generated-minutes", "0.15", "--seed", "3",
                    "--soundfont", pianos[0].name, "--soundfont", pianos[1].name, "--jobs", "2"]
        var stderrText = ""
        if let tool = Self.trainTool() {
            let p = Process()
            p.executableURL = tool
            p.arguments = args
            let errPipe = Pipe(), outPipe = Pipe()
            p.standardError = errPipe
            p.standardOutput = outPipe
            try p.run()
            let errData = errPipe.fileHandleForReading.readDataToEndOfFile()
            let outData = outPipe.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            stderrText = String(decoding: errData, as: UTF8.self)
            let stdoutText = String(decoding: outData, as: UTF8.self)
            XCTAssertEqual(p.terminationStatus, 0, stderrText)
            XCTAssertTrue(stdoutText.contains("dataset: "), stdoutText)
        } else {
            // No executable beside the tests: the same pipeline through the library.
            print("note: ddsp-piano-train not built beside the tests; running DatasetBuilder directly")
            var options = DatasetBuilder.Options(out: out, midi: midi)
            options.generatedMinutes = 0.15
            options.seed = 3
            options.pianos = pianos
            options.showProgress = false
            final class Lines: @unchecked Sendable { var text = ""; let lock = NSLock() }
            let lines = Lines()
            _ = try DatasetBuilder(options: options, log: { l in lines.lock.lock(); lines.text += l + "\n"; lines.lock.unlock() }).run()
            stderrText = lines.text
        }
        // The broken file: one line naming it; the rest went on.
        XCTAssertEqual(stderrText.split(separator: "\n").filter { $0.contains("broken.mid") }.count, 1, stderrText)

        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("manifest.json"))) as! [String: Any]
        XCTAssertEqual(manifest["excluded_non_commercial"] as? [String], ["performance/nc.mid"])
        XCTAssertEqual((manifest["skipped"] as? [[String: Any]])?.compactMap { $0["file"] as? String }, ["score/broken.mid"])
        let files = manifest["files"] as! [[String: Any]]
        // 2 corpus files + 1 generated piece, through 2 pianos.
        XCTAssertEqual(files.count, 6)
        var splitOf: [String: Set<String>] = [:]
        for f in files {
            let wav = out.appendingPathComponent(f["wav"] as! String)
            let mid = out.appendingPathComponent(f["midi"] as! String)
            XCTAssertEqual(wav.deletingPathExtension().path, mid.deletingPathExtension().path)
            XCTAssertFalse((f["source"] as! String).contains("nc.mid"))
            splitOf[f["stem"] as! String, default: []].insert(f["split"] as! String)

            let audio = try AudioFile.read(wav)
            XCTAssertEqual(audio.sampleRate, 16_000)
            XCTAssertEqual(audio.channels, 1)
            let peak = audio.samples.map { abs($0) }.max() ?? 0
            XCTAssertGreaterThan(peak, 0.01, "\(wav.path) is silent")
            XCTAssertLessThan(peak, 1, "\(wav.path) clips")
            let midiSeconds = NoteSequence(midi: try MIDIFile(bytes: [UInt8](Data(contentsOf: mid)), tempoSource: .firstTrack)).applyingSustain().totalTime
            XCTAssertEqual(audio.duration, midiSeconds, accuracy: 1.5, wav.path)
            XCTAssertEqual(f["seconds"] as! Double, audio.duration, accuracy: 1e-3)
            // The trainer's loader takes every pair.
            XCTAssertNoThrow(try PerformanceLoader.load(audio: wav, midi: mid))
        }
        XCTAssertTrue(splitOf.values.allSatisfy { $0.count == 1 }, "a piece in two splits: \(splitOf)")
        let instruments = (manifest["instruments"] as! [[String: Any]]).map { $0["name"] as! String }
        XCTAssertEqual(instruments, pianos.map(\.name))
    }
}
