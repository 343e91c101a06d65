import Foundation
import XCTest
import DDSPPiano

/// Builds Standard MIDI File bytes by hand for the parser tests.
enum SMF {
    static func vlq(_ value: Int) -> [UInt8] {
        var v = value
        var out: [UInt8] = [UInt8(v & 0x7F)]
        v >>= 7
        while v > 0 {
            out.insert(UInt8(v & 0x7F) | 0x80, at: 0)
            v >>= 7
        }
        return out
    }

    static func be32(_ v: Int) -> [UInt8] { [UInt8(v >> 24 & 0xFF), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }

    static func chunk(_ tag: String, _ body: [UInt8]) -> [UInt8] { Array(tag.utf8) + be32(body.count) + body }

    static func header(format: Int, tracks: Int, division: Int = 480) -> [UInt8] {
        chunk("MThd", [0, UInt8(format), UInt8(tracks >> 8), UInt8(tracks & 0xFF), UInt8(division >> 8 & 0xFF), UInt8(division & 0xFF)])
    }

    static func file(format: Int = 1, division: Int = 480, tracks: [[UInt8]]) -> [UInt8] {
        header(format: format, tracks: tracks.count, division: division) + tracks.flatMap { chunk("MTrk", $0) }
    }

    static func tempo(_ delta: Int, _ usPerQuarter: Int) -> [UInt8] {
        vlq(delta) + [0xFF, 0x51, 0x03, UInt8(usPerQuarter >> 16 & 0xFF), UInt8(usPerQuarter >> 8 & 0xFF), UInt8(usPerQuarter & 0xFF)]
    }

    static func on(_ delta: Int, _ pitch: UInt8, _ velocity: UInt8, channel: UInt8 = 0) -> [UInt8] { vlq(delta) + [0x90 | channel, pitch, velocity] }
    static func off(_ delta: Int, _ pitch: UInt8, channel: UInt8 = 0) -> [UInt8] { vlq(delta) + [0x80 | channel, pitch, 0x40] }
    static func cc(_ delta: Int, _ controller: UInt8, _ value: UInt8, channel: UInt8 = 0) -> [UInt8] { vlq(delta) + [0xB0 | channel, controller, value] }
    static func eot(_ delta: Int = 0) -> [UInt8] { vlq(delta) + [0xFF, 0x2F, 0x00] }
}

final class MIDIFileTests: XCTestCase {
    private func assertTimes(_ midi: MIDIFile, _ expected: [(Double, MIDIMessage)], file: StaticString = #filePath, line: UInt = #line) {
        let got = midi.events.map { ($0.time, $0.message) }
        print("events: " + got.map { "\($0.0)s \($0.1)" }.joined(separator: ", "))
        XCTAssertEqual(got.count, expected.count, "event count", file: file, line: line)
        for (g, e) in zip(got, expected) {
            XCTAssertEqual(g.0, e.0, accuracy: 1e-12, "time of \(e.1)", file: file, line: line)
            XCTAssertEqual(g.1, e.1, file: file, line: line)
        }
    }

    func testFormat0NotesAndDefaultTempo() throws {
        // No tempo event: 120 BPM, 480 ticks per quarter -> 1/960 s per tick.
        let bytes = SMF.file(format: 0, tracks: [SMF.on(0, 60, 100) + SMF.off(480, 60) + SMF.on(240, 64, 1) + SMF.off(240, 64) + SMF.eot()])
        let midi = try MIDIFile(bytes: bytes)
        XCTAssertEqual(midi.format, 0)
        XCTAssertEqual(midi.division, .ticksPerQuarter(480))
        XCTAssertEqual(midi.trackCount, 1)
        XCTAssertEqual(midi.warnings, [])
        XCTAssertFalse(midi.isTruncated)
        assertTimes(midi, [
            (0, .noteOn(channel: 0, pitch: 60, velocity: 100)),
            (0.5, .noteOff(channel: 0, pitch: 60, velocity: 0x40)),
            (0.75, .noteOn(channel: 0, pitch: 64, velocity: 1)),
            (1.0, .noteOff(channel: 0, pitch: 64, velocity: 0x40)),
        ])
        XCTAssertEqual(midi.events.map(\.tick), [0, 480, 720, 960])
        XCTAssertEqual(midi.endTime, 1.0, accuracy: 1e-12)
    }

    func testRunningStatusAndVelocityZeroNoteOn() throws {
        // 90 3C 64 | 60: 40 50 (running) | 60: 3C 00 (running note-on, velocity 0) | B1 40 7F | 10: 00 (running CC)
        let track: [UInt8] = [0x00, 0x90, 0x3C, 0x64, 0x60, 0x40, 0x50, 0x60, 0x3C, 0x00,
                              0x00, 0xB1, 0x40, 0x7F, 0x10, 0x40, 0x00] + SMF.eot()
        let midi = try MIDIFile(bytes: SMF.file(format: 0, division: 96, tracks: [track]))
        // 96 ticks per quarter at 120 BPM: 0x60 = 96 ticks = 0.5 s.
        assertTimes(midi, [
            (0, .noteOn(channel: 0, pitch: 60, velocity: 100)),
            (0.5, .noteOn(channel: 0, pitch: 64, velocity: 80)),
            (1.0, .noteOn(channel: 0, pitch: 60, velocity: 0)),
            (1.0, .controlChange(channel: 1, controller: 64, value: 127)),
            (1.0 + 16.0 / 192.0, .controlChange(channel: 1, controller: 64, value: 0)),
        ])
    }

    func testTempoMapFromTrack0AppliesToAllTracks() throws {
        // Tempo 500000 (120 BPM) at 0, 250000 (240 BPM) at tick 960 (= 1.0 s), 1000000 at tick 1440.
        let conductor = SMF.tempo(0, 500_000) + SMF.tempo(960, 250_000) + SMF.tempo(480, 1_000_000) + SMF.eot()
        let notes = SMF.on(480, 60, 90) + SMF.off(480, 60) + SMF.on(480, 62, 90) + SMF.off(480, 62) + SMF.eot()
        let midi = try MIDIFile(bytes: SMF.file(format: 1, tracks: [conductor, notes]))
        // tick 480 -> 0.5; 960 -> 1.0; 1440 -> 1.0 + 480 * 0.25/480 = 1.25; 1920 -> 1.25 + 480 * 1/480 = 2.25
        assertTimes(midi, [
            (0.5, .noteOn(channel: 0, pitch: 60, velocity: 90)),
            (1.0, .noteOff(channel: 0, pitch: 60, velocity: 0x40)),
            (1.25, .noteOn(channel: 0, pitch: 62, velocity: 90)),
            (2.25, .noteOff(channel: 0, pitch: 62, velocity: 0x40)),
        ])
        XCTAssertTrue(midi.events.allSatisfy { $0.track == 1 })
        XCTAssertEqual(midi.tempoChanges.map(\.microsecondsPerQuarter), [500_000, 250_000, 1_000_000])
        XCTAssertEqual(midi.tempoChanges.map(\.time), [0, 1.0, 1.25])
    }

    func testTempoInLaterTrackAndTempoSource() throws {
        let notes = SMF.on(0, 60, 90) + SMF.off(960, 60) + SMF.eot()
        let other = SMF.tempo(0, 1_000_000) + SMF.eot()  // 60 BPM, but in track 1
        let bytes = SMF.file(format: 1, tracks: [notes, other])
        let all = try MIDIFile(bytes: bytes)
        let first = try MIDIFile(bytes: bytes, tempoSource: .firstTrack)
        print("note-off at \(all.events[1].time) s (all tracks) vs \(first.events[1].time) s (track 0 only, like pretty_midi)")
        XCTAssertEqual(all.events[1].time, 2.0, accuracy: 1e-12)
        XCTAssertEqual(first.events[1].time, 1.0, accuracy: 1e-12)
    }

    func testRepeatedTempoDoesNotSplitTheMap() throws {
        let track = SMF.tempo(0, 600_000) + SMF.tempo(100, 600_000) + SMF.on(7, 60, 1) + SMF.eot()
        let midi = try MIDIFile(bytes: SMF.file(format: 0, division: 480, tracks: [track]))
        XCTAssertEqual(midi.tempoChanges.count, 1)
        // Same formula as pretty_midi: 107 * 60/((6e7/600000)*480).
        XCTAssertEqual(midi.events[0].time, 60.0 / ((6e7 / 600_000.0) * 480.0) * 107.0)
    }

    func testSysexMetaAndChannelMessagesSkipped() throws {
        let text = [UInt8](repeating: 0x41, count: 200)  // length 200 needs a two-byte VLQ (81 48)
        var track: [UInt8] = SMF.on(0, 60, 100)
        track += [0x00, 0xFF, 0x01] + SMF.vlq(text.count) + text                 // text meta
        track += [0x00, 0xF0, 0x05, 0x7E, 0x7F, 0x09, 0x01, 0xF7]                // sysex
        track += [0x00, 0xF7, 0x02, 0xF3, 0x01]                                  // escape sysex (any bytes)
        track += [0x00, 0xE0, 0x00, 0x40, 0x00, 0x7F, 0x7F]                      // pitch bend + running pitch bend
        track += [0x00, 0xA0, 0x3C, 0x10, 0x00, 0xD0, 0x20, 0x00, 0x21]          // poly + channel aftertouch (running)
        track += [0x00, 0xFF, 0x7F, 0x03, 0x00, 0x00, 0x41]                      // sequencer-specific meta
        track += [0x00, 0xC0, 0x05]                                              // program change
        track += [0x60, 0x80, 0x3C, 0x00] + SMF.eot()
        let midi = try MIDIFile(bytes: SMF.file(format: 0, division: 96, tracks: [track]))
        XCTAssertEqual(midi.warnings, [])
        assertTimes(midi, [
            (0, .noteOn(channel: 0, pitch: 60, velocity: 100)),
            (0, .programChange(channel: 0, program: 5)),
            (0.5, .noteOff(channel: 0, pitch: 60, velocity: 0)),
        ])
    }

    func testRunningStatusSurvivesMeta() throws {
        let track: [UInt8] = [0x00, 0x90, 0x3C, 0x64, 0x00, 0xFF, 0x01, 0x01, 0x41, 0x10, 0x3C, 0x00] + SMF.eot()
        let midi = try MIDIFile(bytes: SMF.file(format: 0, tracks: [track]))
        XCTAssertEqual(midi.events.map(\.message), [.noteOn(channel: 0, pitch: 60, velocity: 100), .noteOn(channel: 0, pitch: 60, velocity: 0)])
    }

    func testEqualTimesKeepTrackThenFileOrder() throws {
        let t0 = SMF.cc(10, 64, 127) + SMF.on(0, 50, 1) + SMF.eot()
        let t1 = SMF.on(10, 40, 2) + SMF.on(0, 41, 3) + SMF.eot()
        let t2 = SMF.on(5, 30, 4) + SMF.eot()
        let midi = try MIDIFile(bytes: SMF.file(format: 1, tracks: [t0, t1, t2]))
        XCTAssertEqual(midi.events.map(\.message), [
            .noteOn(channel: 0, pitch: 30, velocity: 4),
            .controlChange(channel: 0, controller: 64, value: 127),
            .noteOn(channel: 0, pitch: 50, velocity: 1),
            .noteOn(channel: 0, pitch: 40, velocity: 2),
            .noteOn(channel: 0, pitch: 41, velocity: 3),
        ])
        XCTAssertEqual(midi.events.map(\.track), [2, 0, 0, 1, 1])
    }

    func testSMPTEDivision() throws {
        // -25 fps (0xE7), 40 ticks per frame: 1000 ticks per second; tempo events are ignored.
        let track = SMF.tempo(0, 1_000_000) + SMF.on(500, 60, 64) + SMF.off(1500, 60) + SMF.eot()
        let bytes = SMF.header(format: 0, tracks: 1, division: 0xE728) + SMF.chunk("MTrk", track)
        let midi = try MIDIFile(bytes: bytes)
        XCTAssertEqual(midi.division, .smpte(framesPerSecond: 25, ticksPerFrame: 40))
        assertTimes(midi, [(0.5, .noteOn(channel: 0, pitch: 60, velocity: 64)), (2.0, .noteOff(channel: 0, pitch: 60, velocity: 0x40))])
    }

    func testFormat2TracksPlayOneAfterAnother() throws {
        let a = SMF.on(0, 60, 64) + SMF.off(480, 60) + SMF.eot(480)                // 1.0 s at 120 BPM
        let b = SMF.tempo(0, 1_000_000) + SMF.on(0, 62, 64) + SMF.off(480, 62) + SMF.eot()  // 60 BPM
        let midi = try MIDIFile(bytes: SMF.file(format: 2, tracks: [a, b]))
        assertTimes(midi, [
            (0, .noteOn(channel: 0, pitch: 60, velocity: 64)),
            (0.5, .noteOff(channel: 0, pitch: 60, velocity: 0x40)),
            (1.0, .noteOn(channel: 0, pitch: 62, velocity: 64)),
            (2.0, .noteOff(channel: 0, pitch: 62, velocity: 0x40)),
        ])
    }

    func testUnknownChunksAndRIFFWrapperAreHandled() throws {
        let track = SMF.on(0, 60, 64) + SMF.off(480, 60) + SMF.eot()
        let smf = SMF.header(format: 1, tracks: 1) + SMF.chunk("XFIH", [1, 2, 3]) + SMF.chunk("MTrk", track)
        let midi = try MIDIFile(bytes: smf)
        XCTAssertEqual(midi.events.count, 2)
        // RIFF RMID: little-endian chunk sizes, the SMF inside "data".
        func le32(_ v: Int) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v >> 16 & 0xFF), UInt8(v >> 24 & 0xFF)] }
        let data = Array("data".utf8) + le32(smf.count) + smf
        let riff = Array("RIFF".utf8) + le32(4 + data.count) + Array("RMID".utf8) + data
        XCTAssertEqual(try MIDIFile(bytes: riff).events, midi.events)
    }

    func testErrorsNameTheProblem() {
        func message(_ bytes: [UInt8]) -> String {
            do {
                _ = try MIDIFile(bytes: bytes)
                return "no error"
            } catch {
                return "\(error)"
            }
        }
        let good = SMF.on(0, 60, 64) + SMF.off(480, 60) + SMF.eot()
        let cases: [(String, [UInt8], String)] = [
            ("empty", [], "not a MIDI file (no MThd header)"),
            ("text", Array("hello world, not midi".utf8), "not a MIDI file (no MThd header)"),
            ("short header", Array("MThd".utf8) + SMF.be32(6) + [0, 0], "truncated MThd header"),
            ("format 3", SMF.header(format: 3, tracks: 1), "unsupported MIDI format 3 (only 0, 1 and 2 exist)"),
            ("division 0", SMF.header(format: 0, tracks: 1, division: 0) + SMF.chunk("MTrk", good), "invalid time division: 0 ticks per quarter note"),
            ("smpte 27", SMF.header(format: 0, tracks: 1, division: 0xE5_28) + SMF.chunk("MTrk", good), "unsupported SMPTE frame rate 27 in time division"),
            // Track 0's chunk claims 5 bytes: the delta at byte 26 starts an event the chunk cannot hold.
            ("event past chunk", SMF.header(format: 1, tracks: 2) + Array("MTrk".utf8) + SMF.be32(5) + [0x00, 0x90, 0x3C, 0x40, 0x60]
                + SMF.chunk("MTrk", good), "truncated track 0 at byte 26"),
            ("no running status", SMF.file(format: 0, tracks: [[0x00, 0x3C, 0x40] + SMF.eot()]), "data byte 0x3C without a running status in track 0 at byte 23"),
            ("bad data byte", SMF.file(format: 0, tracks: [[0x00, 0x90, 0x3C, 0xC0] + SMF.eot()]), "invalid data byte 0xC0 after status 0x90 in track 0 at byte 25"),
            ("undefined status", SMF.file(format: 0, tracks: [[0x00, 0xF4] + SMF.eot()]), "undefined status byte 0xF4 in track 0 at byte 22"),
        ]
        for (name, bytes, expected) in cases {
            let got = message(bytes)
            print("\(name): \(got)")
            XCTAssertEqual(got, expected, name)
            XCTAssertFalse(got.contains("\n"), name)
        }
    }

    func testTruncatedLastTrackIsTolerated() throws {
        let track = SMF.on(0, 60, 64) + SMF.off(480, 60) + SMF.on(0, 62, 64) + SMF.eot()
        var bytes = SMF.file(format: 0, tracks: [track])
        bytes.removeLast(5)  // cuts the last note-on (and end of track)
        let midi = try MIDIFile(bytes: bytes)
        print("warnings: \(midi.warnings)")
        XCTAssertEqual(midi.events.map(\.message), [.noteOn(channel: 0, pitch: 60, velocity: 64), .noteOff(channel: 0, pitch: 60, velocity: 0x40)])
        XCTAssertEqual(midi.warnings.count, 2)
        XCTAssertTrue(midi.isTruncated)
        XCTAssertTrue(midi.warnings[0].hasPrefix("track chunk at byte 14 declares"))
        XCTAssertEqual(midi.warnings[1], "track 0 is truncated at byte 31; the events before it were kept")
        // The line a render's error quotes: the parser's, which says where the events stop.
        XCTAssertEqual(midi.truncation, "track 0 is truncated at byte 31; the events before it were kept")

        // Fewer tracks than announced, and junk after end-of-track: read, with warnings.
        let two = SMF.header(format: 1, tracks: 3) + SMF.chunk("MTrk", track + [0x00, 0xF4, 0x00]) + SMF.chunk("MTrk", track)
        let m2 = try MIDIFile(bytes: two)
        print("warnings: \(m2.warnings)")
        XCTAssertEqual(m2.trackCount, 2)
        XCTAssertTrue(m2.isTruncated)
        XCTAssertEqual(m2.events.count, 6)
        XCTAssertEqual(m2.warnings, ["ignored 3 bytes after the end of track 0 (at byte 39)", "header announces 3 tracks, file holds 2"])
        XCTAssertEqual(m2.truncation, "header announces 3 tracks, file holds 2")
    }

    /// Every corpus file parses to sane events (sorted, finite, non-negative times).
    func testCorpusFilesParse() throws {
        let files = corpusFiles()
        guard !files.isEmpty else {
            print("skipped: no MIDI corpus at \(Fixtures.shared.appendingPathComponent("midi").path)")
            throw XCTSkip("no MIDI corpus")
        }
        var failures: [String] = []
        for url in files {
            let bytes = [UInt8](try Data(contentsOf: url))
            do {
                let midi = try MIDIFile(bytes: bytes)
                let times = midi.events.map(\.time)
                XCTAssertTrue(times.allSatisfy { $0.isFinite && $0 >= 0 }, url.lastPathComponent)
                XCTAssertTrue(zip(times, times.dropFirst()).allSatisfy { $0 <= $1 }, url.lastPathComponent)
                let notes = midi.events.filter { if case let .noteOn(_, _, v) = $0.message { return v > 0 } else { return false } }.count
                let seq = NoteSequence(midi: midi).applyingSustain()
                XCTAssertTrue(seq.notes.allSatisfy { $0.end >= $0.start && $0.start >= 0 }, url.lastPathComponent)
                print("\(url.lastPathComponent): format \(midi.format), \(midi.trackCount) tracks, \(midi.events.count) events, \(notes) note-ons, \(seq.notes.count) notes, \(String(format: "%.2f", seq.totalTime)) s\(midi.warnings.isEmpty ? "" : ", warnings: \(midi.warnings)")")
            } catch {
                failures.append("\(url.lastPathComponent): \(error)")
            }
        }
        print("corpus: \(files.count) files, \(failures.count) refused")
        XCTAssertEqual(failures, [])
    }
}

/// The MIDI files of ../shared/midi (empty when absent).
func corpusFiles() -> [URL] {
    let root = Fixtures.shared.appendingPathComponent("midi")
    guard let walker = FileManager.default.enumerator(at: root, includingPropertiesForKeys: nil) else { return [] }
    var out: [URL] = []
    for case let url as URL in walker where ["mid", "midi", "kar", "rmi"].contains(url.pathExtension.lowercased()) {
        out.append(url)
    }
    return out.sorted { $0.path < $1.path }
}
