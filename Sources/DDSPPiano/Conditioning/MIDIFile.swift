/// A Standard MIDI File reader: bytes in, time-sorted channel events out. Pure, no I/O.
///
/// Timing follows pretty_midi (what upstream reads MIDI with), so that event times, and hence
/// the frames derived from them, match upstream to the last bit: one tempo map in tick
/// segments, `time = segmentStart + secondsPerTick * (tick - segmentTick)`, 120 BPM until the
/// first tempo event, a repeated tempo does not start a new segment.
///
/// Tolerance (documented choices):
/// * unknown chunk types are skipped; bytes after the last announced track are ignored;
/// * a last track whose declared length runs past the end of the file is read up to the last
///   complete event (a warning is recorded); so are missing trailing tracks (fewer MTrk chunks
///   than the header announces); an event running past the end of a complete chunk is an error;
/// * anything malformed after an end-of-track meta event ends the track with a warning;
/// * running status survives meta events (as in mido) and sysex events (lenient);
/// * format 2: the tracks are independent sequences played one after the other, each with its
///   own tempo map;
/// * SMPTE division: seconds per tick = 1 / (frames per second * ticks per frame), tempo
///   events ignored (29 means 29.97 drop-frame).
public struct MIDIFile: Sendable {
    public struct Event: Sendable, Equatable {
        /// Seconds from the start of the file.
        public var time: Double
        public var message: MIDIMessage
        /// Index of the MTrk chunk the event came from (0-based).
        public var track: Int
        /// Absolute tick within its track.
        public var tick: Int

        public init(time: Double, message: MIDIMessage, track: Int = 0, tick: Int = 0) {
            self.time = time
            self.message = message
            self.track = track
            self.tick = tick
        }
    }

    public enum TimeDivision: Sendable, Equatable {
        case ticksPerQuarter(Int)
        case smpte(framesPerSecond: Int, ticksPerFrame: Int)
    }

    /// Where tempo (FF 51) events are taken from in formats 0 and 1.
    public enum TempoSource: Sendable {
        /// Tempo events of every track form one tempo map (what most players do).
        case allTracks
        /// Only track 0's tempo events count, as pretty_midi (and so upstream) does.
        case firstTrack
    }

    public struct TempoChange: Sendable, Equatable {
        public var tick: Int
        public var time: Double
        public var microsecondsPerQuarter: Int
    }

    public let format: Int
    public let division: TimeDivision
    /// Number of MTrk chunks read.
    public private(set) var trackCount: Int = 0
    /// Note, control-change and program-change events of all tracks, sorted by time; equal times
    /// keep track order, then file order.
    public private(set) var events: [Event] = []
    /// The tempo map's segments actually used (formats 0 and 1 with ticks per quarter).
    public private(set) var tempoChanges: [TempoChange] = []
    /// Time of the last event of any track (end-of-track events included).
    public private(set) var endTime: Double = 0
    /// Problems that were tolerated (truncation, trailing garbage, ignored tempo events).
    public private(set) var warnings: [String] = []
    /// Where the file ended early (its last track was cut, or tracks the header announces are
    /// missing), as one line for a message; nil for a complete file.
    public private(set) var truncation: String?
    public var isTruncated: Bool { truncation != nil }

    /// Per track, in file order: what NoteSequence needs to group events the way pretty_midi does
    /// (including pitch bends, which create its "straggler" instruments).
    var trackEvents: [[TrackEvent]] = []

    struct TrackEvent: Sendable {
        enum Kind: Sendable {
            case message(MIDIMessage)
            case pitchBend(channel: UInt8)
        }
        var tick: Int
        var time: Double
        var kind: Kind
    }

    /// Largest absolute tick accepted; far beyond any real file (pretty_midi refuses 1e7), it
    /// keeps times finite and tick arithmetic far from overflow.
    static let maxTick = 1 << 32

    public init(bytes: [UInt8]) throws {
        try self.init(bytes: bytes, tempoSource: .allTracks)
    }

    public init(bytes: [UInt8], tempoSource: TempoSource) throws {
        var reader = ChunkReader(bytes: bytes)
        let header = try reader.header()
        format = header.format
        division = header.division

        var raw: [RawTrack] = []
        var trackWarnings: [String] = []
        while raw.count < header.trackCount, let chunk = reader.nextTrackChunk() {
            var track = try TrackParser.parse(bytes: bytes, range: chunk.range, track: raw.count, clipped: chunk.clipped)
            if let w = track.warning { trackWarnings.append(w) }
            if chunk.clipped, truncation == nil {
                // The parser's own line says where the events stop; else the chunk's.
                truncation = track.cutShort ? track.warning : chunk.warning
            }
            track.warning = nil
            raw.append(track)
        }
        warnings = reader.warnings + trackWarnings
        if raw.count < header.trackCount {
            let w = "header announces \(header.trackCount) tracks, file holds \(raw.count)"
            if truncation == nil { truncation = w }
            warnings.append(w)
        }
        trackCount = raw.count
        buildTimes(raw, tempoSource: tempoSource)
    }

    private mutating func buildTimes(_ raw: [RawTrack], tempoSource: TempoSource) {
        var tracks: [[TrackEvent]] = []
        tracks.reserveCapacity(raw.count)

        switch division {
        case let .smpte(fps, tpf):
            let rate = fps == 29 ? 30000.0 / 1001.0 : Double(fps)
            let secondsPerTick = 1.0 / (rate * Double(tpf))
            var offset = 0.0
            for track in raw {
                let map = TempoMap(secondsPerTick: secondsPerTick)
                tracks.append(timed(track, map: map, offset: offset))
                let end = offset + map.time(track.endTick)
                endTime = max(endTime, end)
                if format == 2 { offset = end }
            }
        case let .ticksPerQuarter(resolution):
            if format == 2 {
                // Each pattern has its own tempo events and starts where the previous one ended.
                var offset = 0.0
                for track in raw {
                    let map = TempoMap(resolution: resolution, tempos: track.tempos.map { ($0.tick, $0.value) })
                    tracks.append(timed(track, map: map, offset: offset))
                    offset += map.time(track.endTick)
                    endTime = offset
                }
            } else {
                var tempos: [(tick: Int, value: Int)] = []
                for (t, track) in raw.enumerated() where tempoSource == .allTracks || t == 0 {
                    tempos.append(contentsOf: track.tempos)
                }
                if tempoSource == .allTracks && raw.count > 1 {
                    // Stable merge by tick: track order, then file order for equal ticks.
                    tempos = tempos.enumerated().sorted {
                        ($0.element.tick, $0.offset) < ($1.element.tick, $1.offset)
                    }.map { $0.element }
                }
                let map = TempoMap(resolution: resolution, tempos: tempos)
                tempoChanges = map.segments.map {
                    TempoChange(tick: $0.tick, time: $0.startTime, microsecondsPerQuarter: $0.tempo)
                }
                for track in raw {
                    tracks.append(timed(track, map: map, offset: 0))
                    endTime = max(endTime, map.time(track.endTick))
                }
            }
        }

        var merged: [(event: Event, order: Int)] = []
        merged.reserveCapacity(tracks.reduce(0) { $0 + $1.count })
        for (t, track) in tracks.enumerated() {
            for e in track {
                if case let .message(m) = e.kind {
                    merged.append((Event(time: e.time, message: m, track: t, tick: e.tick), merged.count))
                }
            }
        }
        // Explicit tie-breaks: Swift's sort is not documented as stable.
        merged.sort { a, b in
            if a.event.time != b.event.time { return a.event.time < b.event.time }
            if a.event.track != b.event.track { return a.event.track < b.event.track }
            return a.order < b.order
        }
        events = merged.map { $0.event }
        trackEvents = tracks
    }

    private func timed(_ track: RawTrack, map: TempoMap, offset: Double) -> [TrackEvent] {
        var out: [TrackEvent] = []
        out.reserveCapacity(track.events.count)
        var cursor = TempoMap.Cursor()
        for e in track.events {
            let local = map.time(e.tick, cursor: &cursor)
            out.append(TrackEvent(tick: e.tick, time: offset + local, kind: e.kind))
        }
        return out
    }
}

public struct MIDIError: CodedError, Equatable, Sendable {
    /// One line naming the problem.
    public var description: String
    public var code: ErrorCode
    public init(_ description: String, code: ErrorCode = .badMIDI) { self.description = description; self.code = code }
}

public enum MIDIMessage: Equatable, Sendable {
    case noteOn(channel: UInt8, pitch: UInt8, velocity: UInt8)
    case noteOff(channel: UInt8, pitch: UInt8, velocity: UInt8)
    case controlChange(channel: UInt8, controller: UInt8, value: UInt8)
    case programChange(channel: UInt8, program: UInt8)
}

// MARK: - Tempo map

/// pretty_midi's tick-to-time mapping, computed the same way so times agree bit for bit.
struct TempoMap {
    struct Segment {
        var tick: Int
        var secondsPerTick: Double
        var startTime: Double
        var tempo: Int
    }
    var segments: [Segment]

    struct Cursor { var index = 0 }

    init(secondsPerTick: Double) {
        segments = [Segment(tick: 0, secondsPerTick: secondsPerTick, startTime: 0, tempo: 500_000)]
    }

    /// `tempos` sorted by tick, in microseconds per quarter (0 is skipped: upstream would divide by it).
    init(resolution: Int, tempos: [(tick: Int, value: Int)]) {
        let res = Double(resolution)
        var scales: [(tick: Int, scale: Double, tempo: Int)] = [(0, 60.0 / (120.0 * res), 500_000)]
        for (tick, tempo) in tempos where tempo > 0 {
            let bpm = 6e7 / Double(tempo)
            let scale = 60.0 / (bpm * res)
            if tick == 0 {
                // A tempo at tick 0 replaces the default (pretty_midi).
                scales = [(0, scale, tempo)]
            } else if scale != scales[scales.count - 1].scale {
                scales.append((tick, scale, tempo))
            }
        }
        var segs: [Segment] = []
        segs.reserveCapacity(scales.count)
        var lastEnd = 0.0
        for (i, s) in scales.enumerated() {
            if i > 0 {
                let prev = scales[i - 1]
                lastEnd = lastEnd + prev.scale * Double(s.tick - prev.tick)
            }
            segs.append(Segment(tick: s.tick, secondsPerTick: s.scale, startTime: lastEnd, tempo: s.tempo))
        }
        segments = segs
    }

    func time(_ tick: Int) -> Double {
        var c = Cursor()
        return time(tick, cursor: &c)
    }

    /// `cursor` speeds up monotone queries; any order is still correct.
    func time(_ tick: Int, cursor: inout Cursor) -> Double {
        var i = min(cursor.index, segments.count - 1)
        if segments[i].tick > tick { i = 0 }
        while i + 1 < segments.count && segments[i + 1].tick <= tick { i += 1 }
        cursor.index = i
        let s = segments[i]
        return s.startTime + s.secondsPerTick * Double(tick - s.tick)
    }
}

// MARK: - Chunks

struct RawTrack {
    struct RawEvent {
        var tick: Int
        var kind: MIDIFile.TrackEvent.Kind
    }
    var events: [RawEvent] = []
    var tempos: [(tick: Int, value: Int)] = []
    /// Tick of the last event of any kind (end-of-track included).
    var endTick = 0
    var warning: String?
    /// `warning` says the track is cut short (the file ends inside it).
    var cutShort = false
}

private struct ChunkReader {
    let bytes: [UInt8]
    var pos = 0
    var end: Int
    var warnings: [String] = []

    init(bytes: [UInt8]) {
        self.bytes = bytes
        end = bytes.count
    }

    private func tag(at p: Int) -> String {
        String(decoding: bytes[p..<p + 4].map { (0x20...0x7E).contains($0) ? $0 : UInt8(ascii: "?") }, as: UTF8.self)
    }

    private func be32(_ p: Int) -> Int {
        Int(bytes[p]) << 24 | Int(bytes[p + 1]) << 16 | Int(bytes[p + 2]) << 8 | Int(bytes[p + 3])
    }

    private func be16(_ p: Int) -> Int { Int(bytes[p]) << 8 | Int(bytes[p + 1]) }

    struct Header {
        var format: Int
        var trackCount: Int
        var division: MIDIFile.TimeDivision
    }

    mutating func header() throws -> Header {
        if bytes.count >= 12 && tag(at: 0) == "RIFF" && tag(at: 8) == "RMID" {
            try unwrapRIFF()
        }
        guard end - pos >= 8, tag(at: pos) == "MThd" else {
            throw MIDIError("not a MIDI file (no MThd header)")
        }
        let length = be32(pos + 4)
        guard length >= 6 else { throw MIDIError("MThd header too short (\(length) bytes, need 6)") }
        guard end - pos - 8 >= length else { throw MIDIError("truncated MThd header") }
        let format = be16(pos + 8)
        let trackCount = be16(pos + 10)
        let rawDivision = be16(pos + 12)
        pos += 8 + length
        guard format <= 2 else { throw MIDIError("unsupported MIDI format \(format) (only 0, 1 and 2 exist)") }
        let division: MIDIFile.TimeDivision
        if rawDivision & 0x8000 != 0 {
            let fps = 256 - (rawDivision >> 8)
            let tpf = rawDivision & 0xFF
            guard [24, 25, 29, 30].contains(fps) else {
                throw MIDIError("unsupported SMPTE frame rate \(fps) in time division")
            }
            guard tpf > 0 else { throw MIDIError("SMPTE time division with 0 ticks per frame") }
            division = .smpte(framesPerSecond: fps, ticksPerFrame: tpf)
        } else {
            guard rawDivision > 0 else { throw MIDIError("invalid time division: 0 ticks per quarter note") }
            division = .ticksPerQuarter(rawDivision)
        }
        return Header(format: format, trackCount: trackCount, division: division)
    }

    /// RIFF MIDI (.rmi): the SMF is the payload of the "data" chunk.
    private mutating func unwrapRIFF() throws {
        var p = 12
        while end - p >= 8 {
            let length = Int(bytes[p + 4]) | Int(bytes[p + 5]) << 8 | Int(bytes[p + 6]) << 16 | Int(bytes[p + 7]) << 24
            if tag(at: p) == "data" {
                pos = p + 8
                end = min(end, pos + length)
                return
            }
            p += 8 + length + (length & 1)
        }
        throw MIDIError("not a MIDI file (RIFF RMID without a data chunk)")
    }

    /// The next MTrk chunk's body; unknown chunks are skipped. nil at the end of the file.
    mutating func nextTrackChunk() -> (range: Range<Int>, clipped: Bool, warning: String?)? {
        while pos < end {
            guard end - pos >= 8 else {
                warnings.append("ignored \(end - pos) trailing bytes at byte \(pos)")
                pos = end
                return nil
            }
            let isTrack = tag(at: pos) == "MTrk"
            let name = tag(at: pos)
            let length = be32(pos + 4)
            let body = pos + 8
            if end - body < length {
                if isTrack {
                    let cut = "track chunk at byte \(pos) declares \(length) bytes but only \(end - body) remain"
                    warnings.append(cut + "; reading what is there")
                    pos = end
                    return (body..<end, true, cut)
                }
                warnings.append("chunk '\(name)' at byte \(pos) runs past the end of the file; ignored")
                pos = end
                return nil
            }
            pos = body + length
            if isTrack { return (body..<pos, false, nil) }
        }
        return nil
    }
}

// MARK: - Track events

private enum TrackParser {
    struct Stop: Error {
        var message: String
        /// Data ran out (as opposed to malformed data).
        var truncated: Bool
    }

    static func parse(bytes: [UInt8], range: Range<Int>, track: Int, clipped: Bool) throws -> RawTrack {
        var out = RawTrack()
        out.events.reserveCapacity(range.count / 3)
        var p = range.lowerBound
        let end = range.upperBound
        var tick = 0
        var running: UInt8? = nil
        var sawEndOfTrack = false

        func byte() throws -> UInt8 {
            guard p < end else { throw Stop(message: "", truncated: true) }
            defer { p += 1 }
            return bytes[p]
        }
        func varLen() throws -> Int {
            var value = 0
            while true {
                let b = try byte()
                value = value << 7 | Int(b & 0x7F)
                guard value <= 0xFFFF_FFFF else {
                    throw Stop(message: "variable-length quantity too large in track \(track) at byte \(p - 1)", truncated: false)
                }
                if b < 0x80 { return value }
            }
        }
        func skip(_ n: Int) throws {
            guard end - p >= n else { throw Stop(message: "", truncated: true) }
            p += n
        }
        func dataByte(_ status: UInt8) throws -> UInt8 {
            let b = try byte()
            guard b < 0x80 else {
                throw Stop(message: "invalid data byte 0x\(hex(b)) after status 0x\(hex(status)) in track \(track) at byte \(p - 1)", truncated: false)
            }
            return b
        }

        while p < end {
            let eventStart = p
            do {
                let delta = try varLen()
                let newTick = tick + delta
                guard newTick <= MIDIFile.maxTick else {
                    throw Stop(message: "tick \(newTick) in track \(track) at byte \(eventStart) is beyond any sane length (corrupt file?)", truncated: false)
                }
                var status = try byte()
                if status < 0x80 {
                    guard let r = running else {
                        throw Stop(message: "data byte 0x\(hex(status)) without a running status in track \(track) at byte \(p - 1)", truncated: false)
                    }
                    status = r
                    p -= 1
                } else if status < 0xF0 {
                    running = status
                }
                switch status {
                case 0x80...0xEF:
                    let channel = status & 0x0F
                    let d1 = try dataByte(status)
                    let kind = status & 0xF0
                    let d2: UInt8 = try (kind == 0xC0 || kind == 0xD0) ? 0 : dataByte(status)
                    switch kind {
                    case 0x80: out.events.append(.init(tick: newTick, kind: .message(.noteOff(channel: channel, pitch: d1, velocity: d2))))
                    case 0x90: out.events.append(.init(tick: newTick, kind: .message(.noteOn(channel: channel, pitch: d1, velocity: d2))))
                    case 0xB0: out.events.append(.init(tick: newTick, kind: .message(.controlChange(channel: channel, controller: d1, value: d2))))
                    case 0xC0: out.events.append(.init(tick: newTick, kind: .message(.programChange(channel: channel, program: d1))))
                    case 0xE0: out.events.append(.init(tick: newTick, kind: .pitchBend(channel: channel)))
                    default: break  // aftertouch: parsed, not needed
                    }
                case 0xFF:
                    let type = try byte()
                    let length = try varLen()
                    let dataStart = p
                    try skip(length)
                    if type == 0x51 {
                        if length >= 3 {
                            let tempo = Int(bytes[dataStart]) << 16 | Int(bytes[dataStart + 1]) << 8 | Int(bytes[dataStart + 2])
                            if tempo > 0 {
                                out.tempos.append((newTick, tempo))
                            } else if out.warning == nil {
                                out.warning = "tempo 0 in track \(track) at byte \(eventStart) ignored"
                            }
                        } else if out.warning == nil {
                            out.warning = "short tempo event (\(length) bytes) in track \(track) at byte \(eventStart) ignored"
                        }
                    } else if type == 0x2F {
                        sawEndOfTrack = true
                    }
                case 0xF0, 0xF7:
                    try skip(try varLen())
                case 0xF1, 0xF3:
                    _ = try dataByte(status)
                case 0xF2:
                    _ = try dataByte(status)
                    _ = try dataByte(status)
                case 0xF6, 0xF8, 0xFA, 0xFB, 0xFC, 0xFE:
                    break
                default:
                    throw Stop(message: "undefined status byte 0x\(hex(status)) in track \(track) at byte \(eventStart)", truncated: false)
                }
                tick = newTick
                out.endTick = tick
            } catch let stop as Stop {
                // Tolerated: a file cut inside its last track, or junk after end-of-track.
                if stop.truncated && clipped {
                    out.warning = "track \(track) is truncated at byte \(eventStart); the events before it were kept"
                    out.cutShort = true
                    break
                }
                if sawEndOfTrack {
                    out.warning = "ignored \(end - eventStart) bytes after the end of track \(track) (at byte \(eventStart))"
                    break
                }
                throw MIDIError(stop.truncated ? "truncated track \(track) at byte \(eventStart)" : stop.message)
            }
        }
        return out
    }

    static func hex(_ b: UInt8) -> String {
        let digits = Array("0123456789ABCDEF")
        return String([digits[Int(b >> 4)], digits[Int(b & 0xF)]])
    }
}

extension MIDIFile {
    /// The file with every note moved by `semitones` (what `--transpose` plays: the same as a
    /// transposed file); notes moved outside 0…127 are left out, note-on and note-off alike.
    public func transposed(by semitones: Int) -> MIDIFile {
        guard semitones != 0 else { return self }
        func moved(_ m: MIDIMessage) -> MIDIMessage?? {
            switch m {
            case let .noteOn(c, p, v):
                let q = Int(p) + semitones
                return (0...127).contains(q) ? .noteOn(channel: c, pitch: UInt8(q), velocity: v) : .some(nil)
            case let .noteOff(c, p, v):
                let q = Int(p) + semitones
                return (0...127).contains(q) ? .noteOff(channel: c, pitch: UInt8(q), velocity: v) : .some(nil)
            default: return m
            }
        }
        var t = self
        // Both views of the file: the merged events and the per-track ones (NoteSequence's).
        t.events = events.compactMap { e in
            guard let m = moved(e.message) ?? nil else { return nil }
            var e = e
            e.message = m
            return e
        }
        t.trackEvents = trackEvents.map { track in
            track.compactMap { e in
                guard case .message(let message) = e.kind else { return e }
                guard let m = moved(message) ?? nil else { return nil }
                var e = e
                e.kind = .message(m)
                return e
            }
        }
        return t
    }
}
