/// MIDI messages with times in seconds, in the order a live player would send them.
public struct TimedMessage: Sendable, Equatable {
    public var time: Double
    public var message: MIDIMessage
    public init(time: Double, message: MIDIMessage) {
        self.time = time
        self.message = message
    }
}

public enum EventSchedule {
    /// The events of a note sequence for the streaming engine: note-ons at note starts,
    /// note-offs at ends, and the pedal controllers (CC64…67). Ties: controllers first (a pedal
    /// pressed with a release holds it, as in note_seq), then note-offs, then note-ons (a legato
    /// re-strike ends the old note before the new one starts).
    /// Pass a sequence with sustain already applied together with `sustainPedalHolds: false`
    /// engines, or a raw sequence for engines that apply the pedal themselves.
    public static func events(from sequence: NoteSequence) -> [TimedMessage] {
        var keyed: [(time: Double, kind: Int, order: Int, message: MIDIMessage)] = []
        keyed.reserveCapacity(2 * sequence.notes.count + sequence.controlChanges.count)
        var order = 0
        for c in sequence.controlChanges where (64...67).contains(c.controller) {
            keyed.append((c.time, 0, order, .controlChange(channel: 0, controller: UInt8(c.controller), value: UInt8(clamping: c.value))))
            order += 1
        }
        for n in sequence.notes where n.pitch >= 0 && n.pitch < 128 {
            keyed.append((n.end, 1, order, .noteOff(channel: 0, pitch: UInt8(n.pitch), velocity: 0)))
            keyed.append((n.start, 2, order, .noteOn(channel: 0, pitch: UInt8(n.pitch), velocity: UInt8(clamping: max(1, n.velocity)))))
            order += 1
        }
        keyed.sort { ($0.time, $0.kind, $0.order) < ($1.time, $1.kind, $1.order) }
        return keyed.map { TimedMessage(time: $0.time, message: $0.message) }
    }

    /// A file's raw channel messages (what a sequencer would play into the daemon).
    public static func events(from midi: MIDIFile) -> [TimedMessage] {
        midi.events.map { TimedMessage(time: $0.time, message: $0.message) }
    }
}

/// Hands timed messages to an engine block by block: the messages of the samples
/// [position, position + count) at `sampleRate`, with their offsets in the block.
public struct BlockEventFeed: Sendable {
    public let events: [TimedMessage]
    public let sampleRate: Double
    /// Samples added to every event's place (a pre-roll before the events' time 0).
    public var offset = 0
    private var next = 0

    public init(events: [TimedMessage], sampleRate: Double) {
        self.events = events
        self.sampleRate = sampleRate
    }

    /// Fills `block` (cleared first, capacity kept) with the messages due in the block.
    public mutating func take(position: Int, count: Int, into block: inout [EngineEvent]) {
        block.removeAll(keepingCapacity: true)
        while next < events.count {
            let at = Int((events[next].time * sampleRate).rounded(.down)) + offset
            guard at < position + count else { break }
            block.append(EngineEvent(offset: max(0, at - position), message: events[next].message))
            next += 1
        }
    }
}
