/// (Moved here from PianoTraining so that the daemon's take archive writes MIDI with the same
/// encoder; training's dataset builder uses it from here.)
///
/// A piano part on one channel, in whole milliseconds: what the dataset builder writes to MIDI
/// and hands to fluidsynth. Milliseconds because the written file runs at 1 tick = 1 ms.
public struct PianoPart: Sendable, Equatable {
    public struct Note: Sendable, Equatable {
        public var pitch: Int
        public var velocity: Int
        /// Milliseconds from the start.
        public var start: Int
        public var end: Int
        public init(pitch: Int, velocity: Int, start: Int, end: Int) {
            self.pitch = pitch; self.velocity = velocity; self.start = start; self.end = end
        }
    }

    public struct Control: Sendable, Equatable {
        /// Milliseconds from the start.
        public var time: Int
        public var controller: Int
        public var value: Int
        public init(time: Int, controller: Int, value: Int) {
            self.time = time; self.controller = controller; self.value = value
        }
    }

    public var notes: [Note]
    public var controls: [Control]
    /// GM program sent on channel 0 at time 0 (FluidR3: 0 Yamaha Grand, 1 Bright Yamaha Grand).
    public var program: Int

    public init(notes: [Note] = [], controls: [Control] = [], program: Int = 0) {
        self.notes = notes; self.controls = controls; self.program = program
    }

    /// End of the last note or control change, in milliseconds (pedal not applied).
    public var lastEventTime: Int {
        max(notes.map(\.end).max() ?? 0, controls.map(\.time).max() ?? 0)
    }

    /// Makes the part play the same through fluidsynth and through the engine's reader:
    /// same-pitch overlaps are cut where the next strike starts (a note-off would otherwise close
    /// both notes in the reader but only retrigger in fluidsynth), notes last at least 1 ms (the
    /// reader drops zero-length notes, fluidsynth would still click), values are clamped to
    /// MIDI's ranges, and everything is sorted.
    public mutating func sanitize() {
        var byPitch: [Int: [Note]] = [:]
        for var n in notes where (0...127).contains(n.pitch) {
            n.velocity = min(max(n.velocity, 1), 127)
            n.start = max(n.start, 0)
            n.end = max(n.end, n.start + 1)
            byPitch[n.pitch, default: []].append(n)
        }
        var out: [Note] = []
        for (_, list) in byPitch {
            // Of two strikes at the same instant keep the louder (doubled voices in a score).
            let sorted = list.sorted { ($0.start, -$0.velocity, -$0.end) < ($1.start, -$1.velocity, -$1.end) }
            var kept: [Note] = []
            for n in sorted {
                if var last = kept.last {
                    if last.start == n.start { continue }
                    if last.end > n.start { last.end = n.start; kept[kept.count - 1] = last }
                }
                kept.append(n)
            }
            out += kept
        }
        notes = out.sorted { ($0.start, $0.pitch) < ($1.start, $1.pitch) }
        controls = controls.enumerated()
            .map { (i, c) in (i, PianoPart.Control(time: max(c.time, 0), controller: min(max(c.controller, 0), 127), value: min(max(c.value, 0), 127))) }
            .sorted { ($0.1.time, $0.0) < ($1.1.time, $1.0) }
            .map { $0.1 }
        program = min(max(program, 0), 127)
    }
}

/// Writes a Standard MIDI File, format 0, one track on channel 0: tempo 500000 µs per quarter
/// at 500 ticks per quarter, so one tick is exactly one millisecond and the times the engine's
/// reader computes are the milliseconds written (no tempo map to disagree about).
public enum MIDIWriter {
    public static let ticksPerQuarter = 500
    public static let microsecondsPerQuarter = 500_000

    /// Events at the same tick go: program, control changes (file order), note-offs, note-ons.
    /// Pedal before notes is how note_seq orders equal times; note-off before note-on keeps a
    /// re-struck pitch sounding in fluidsynth.
    public static func bytes(_ part: PianoPart, trackName: String? = nil) -> [UInt8] {
        struct Event { var tick: Int; var rank: Int; var order: Int; var data: [UInt8] }
        var events: [Event] = []
        events.reserveCapacity(part.notes.count * 2 + part.controls.count + 3)
        var order = 0
        func add(_ tick: Int, _ rank: Int, _ data: [UInt8]) {
            events.append(Event(tick: tick, rank: rank, order: order, data: data)); order += 1
        }
        func clamp7(_ v: Int) -> UInt8 { UInt8(min(max(v, 0), 127)) }

        add(0, 0, tempo(microsecondsPerQuarter))
        if let trackName {
            let name = Array(trackName.utf8.prefix(127))
            add(0, 0, [0xFF, 0x03] + variableLength(name.count) + name)
        }
        add(0, 1, [0xC0, clamp7(part.program)])
        for c in part.controls { add(max(c.time, 0), 2, [0xB0, clamp7(c.controller), clamp7(c.value)]) }
        for n in part.notes {
            add(max(n.start, 0), 4, [0x90, clamp7(n.pitch), UInt8(min(max(n.velocity, 1), 127))])
            add(max(n.end, n.start, 0), 3, [0x80, clamp7(n.pitch), 0x40])
        }
        events.sort { ($0.tick, $0.rank, $0.order) < ($1.tick, $1.rank, $1.order) }
        return file(events.map { ($0.tick, $0.data) }, ticksPerQuarter: ticksPerQuarter)
    }

    /// A format-0 Standard MIDI File of one track: `events` (absolute tick, the event's bytes:
    /// a channel message in full, or a meta event FF type length data) in the order given (ticks
    /// must not decrease), then end of track. The one SMF encoder (training's parts, the
    /// daemon's takes).
    public static func file(_ events: [(tick: Int, data: [UInt8])], ticksPerQuarter: Int) -> [UInt8] {
        var track: [UInt8] = []
        track.reserveCapacity(events.count * 5 + 8)
        var tick = 0
        for e in events {
            track += variableLength(e.tick - tick)
            track += e.data
            tick = max(tick, e.tick)
        }
        track += [0x00, 0xFF, 0x2F, 0x00]

        var out: [UInt8] = Array("MThd".utf8) + be32(6) + [0, 0, 0, 1]
        out += [UInt8(ticksPerQuarter >> 8 & 0x7F), UInt8(ticksPerQuarter & 0xFF)]
        out += Array("MTrk".utf8) + be32(track.count) + track
        return out
    }

    /// A meta event's bytes: FF type, length, data (text cut to 127 bytes at a character boundary).
    public static func meta(_ type: UInt8, _ text: String) -> [UInt8] {
        var data = Array(text.utf8)
        if data.count > 127 { data = Array(String(decoding: data.prefix(127), as: UTF8.self).utf8.prefix(127)) }
        return [0xFF, type] + variableLength(data.count) + data
    }

    /// A tempo meta event (FF 51 03).
    public static func tempo(_ microsecondsPerQuarter: Int) -> [UInt8] {
        let t = microsecondsPerQuarter
        return [0xFF, 0x51, 0x03, UInt8(t >> 16 & 0xFF), UInt8(t >> 8 & 0xFF), UInt8(t & 0xFF)]
    }

    static func be32(_ v: Int) -> [UInt8] {
        [UInt8(v >> 24 & 0xFF), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)]
    }

    static func variableLength(_ value: Int) -> [UInt8] {
        var v = max(value, 0)
        var out: [UInt8] = [UInt8(v & 0x7F)]
        v >>= 7
        while v > 0 {
            out.insert(UInt8(v & 0x7F) | 0x80, at: 0)
            v >>= 7
        }
        return out
    }
}
