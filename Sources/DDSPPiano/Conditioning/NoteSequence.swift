/// Notes with absolute times, as note_seq builds them from a MIDI file through pretty_midi.
///
/// The grouping into instruments matters upstream: sustain is applied per instrument, and the
/// order of notes and control changes decides ties in the piano roll. pretty_midi's rules are
/// reproduced here:
/// * an instrument is (program, channel, track); it is created by the first *completed* note,
///   with the channel's program current at the note-off;
/// * a note-off (or note-on with velocity 0) closes every open note of that channel and pitch
///   that started on an earlier tick; a note opened on the same tick stays open, and a note that
///   would end on its own start tick is dropped; notes never closed are dropped;
/// * control changes go to the instrument of the current program; before it exists, to a
///   per-(channel, track) "straggler" list which the next instrument created on that channel and
///   track adopts (shares). Control changes of a channel/track that never completes a note are lost.
public struct NoteSequence: Sendable, Equatable {
    public struct Note: Sendable, Equatable {
        public var pitch: Int
        public var velocity: Int
        /// Seconds.
        public var start: Double
        public var end: Double
        /// Index of the (program, channel, track) instrument; sustain acts per instrument.
        public var instrument: Int
        public var program: Int
        public var isDrum: Bool

        public init(pitch: Int, velocity: Int, start: Double, end: Double, instrument: Int = 0, program: Int = 0, isDrum: Bool = false) {
            self.pitch = pitch
            self.velocity = velocity
            self.start = start
            self.end = end
            self.instrument = instrument
            self.program = program
            self.isDrum = isDrum
        }
    }

    public struct ControlChange: Sendable, Equatable {
        public var time: Double
        public var controller: Int
        public var value: Int
        public var instrument: Int
        public var program: Int
        public var isDrum: Bool

        public init(time: Double, controller: Int, value: Int, instrument: Int = 0, program: Int = 0, isDrum: Bool = false) {
            self.time = time
            self.controller = controller
            self.value = value
            self.instrument = instrument
            self.program = program
            self.isDrum = isDrum
        }
    }

    /// In note_seq order: instrument by instrument, each in note-off order.
    public var notes: [Note]
    /// Instrument by instrument, each in file order.
    public var controlChanges: [ControlChange]
    /// End of the last note (after `applySustain`, possibly the last sustain event).
    public var totalTime: Double

    /// `totalTime` nil: the latest note end (0 without notes).
    public init(notes: [Note] = [], controlChanges: [ControlChange] = [], totalTime: Double? = nil) {
        self.notes = notes
        self.controlChanges = controlChanges
        self.totalTime = totalTime ?? notes.reduce(0) { max($0, $1.end) }
    }

    public init(midi: MIDIFile) {
        struct Instrument {
            var program: Int
            var channel: Int
            var notes: [Note] = []
            var ccList: Int
        }
        var instruments: [Instrument] = []
        var instrumentIndex: [Int: Int] = [:]   // key (track, channel, program)
        var stragglers: [Int: Int] = [:]        // key (track, channel) -> cc list
        var ccLists: [[ControlChange]] = []

        for (track, events) in midi.trackEvents.enumerated() {
            // Open notes per (channel, pitch): (tick, time, velocity), oldest first.
            var open: [Int: [(tick: Int, time: Double, velocity: Int)]] = [:]
            var program = [Int](repeating: 0, count: 16)

            /// The cc list a control change (or pitch bend) goes to, creating a straggler if needed.
            func ccTarget(channel: Int) -> Int {
                if let i = instrumentIndex[(track << 16) | (channel << 8) | program[channel]] { return instruments[i].ccList }
                let key = (track << 8) | channel
                if let s = stragglers[key] { return s }
                ccLists.append([])
                stragglers[key] = ccLists.count - 1
                return ccLists.count - 1
            }

            for e in events {
                switch e.kind {
                case let .message(.programChange(channel, p)):
                    program[Int(channel)] = Int(p)
                case let .message(.noteOn(channel, pitch, velocity)) where !ReleasePolicy.endsNote(status: 0x90, velocity: velocity):
                    open[Int(channel) << 7 | Int(pitch), default: []].append((e.tick, e.time, Int(velocity)))
                case let .message(.noteOn(channel, pitch, _)), let .message(.noteOff(channel, pitch, _)):
                    let key = Int(channel) << 7 | Int(pitch)
                    guard let notesOpen = open[key] else { continue }
                    let toClose = notesOpen.filter { $0.tick != e.tick }
                    let toKeep = notesOpen.filter { $0.tick == e.tick }
                    let ch = Int(channel)
                    for n in toClose {
                        let instKey = (track << 16) | (ch << 8) | program[ch]
                        let i: Int
                        if let existing = instrumentIndex[instKey] {
                            i = existing
                        } else {
                            let list: Int
                            if let s = stragglers[(track << 8) | ch] {
                                list = s
                            } else {
                                ccLists.append([])
                                list = ccLists.count - 1
                            }
                            instruments.append(Instrument(program: program[ch], channel: ch, ccList: list))
                            i = instruments.count - 1
                            instrumentIndex[instKey] = i
                        }
                        instruments[i].notes.append(Note(pitch: Int(pitch), velocity: n.velocity, start: n.time, end: e.time))
                    }
                    if !toClose.isEmpty && !toKeep.isEmpty {
                        open[key] = toKeep
                    } else {
                        open[key] = nil
                    }
                case let .message(.controlChange(channel, controller, value)):
                    let list = ccTarget(channel: Int(channel))
                    ccLists[list].append(ControlChange(time: e.time, controller: Int(controller), value: Int(value)))
                case let .pitchBend(channel):
                    _ = ccTarget(channel: Int(channel))
                }
            }
        }

        var notes: [Note] = []
        var ccs: [ControlChange] = []
        for (i, inst) in instruments.enumerated() {
            let drum = inst.channel == 9
            for var n in inst.notes {
                n.instrument = i
                n.program = inst.program
                n.isDrum = drum
                notes.append(n)
            }
        }
        for (i, inst) in instruments.enumerated() {
            let drum = inst.channel == 9
            for var c in ccLists[inst.ccList] {
                c.instrument = i
                c.program = inst.program
                c.isDrum = drum
                ccs.append(c)
            }
        }
        self.init(notes: notes, controlChanges: ccs)
    }

    public func applyingSustain(controller: Int = 64) -> NoteSequence {
        var copy = self
        copy.applySustain(controller: controller)
        return copy
    }

    /// note_seq's apply_sustain_control_changes: per instrument, a note released while the pedal
    /// (value >= 64) is down lasts until the pedal goes up; striking the same pitch again under the
    /// pedal ends the earlier note there (dropping it if that leaves it zero-length); notes still
    /// held by the pedal at the end last until the time of the very last event. Drums are untouched.
    public mutating func applySustain(controller: Int = 64) {
        // Event kinds in processing order for equal times: pedal on, pedal off, note on, note off.
        var events: [(time: Double, kind: Int, ref: Int)] = []
        events.reserveCapacity(notes.count * 2 + controlChanges.count)
        for (i, n) in notes.enumerated() where !n.isDrum { events.append((n.start, 2, i)) }
        for (i, n) in notes.enumerated() where !n.isDrum { events.append((n.end, 3, i)) }
        for (i, c) in controlChanges.enumerated() where c.controller == controller {
            events.append((c.time, c.value >= 64 ? 0 : 1, i))
        }
        // Stable sort on (time, kind), like Python's list.sort with that key.
        events = events.enumerated().sorted {
            ($0.element.time, $0.element.kind, $0.offset) < ($1.element.time, $1.element.kind, $1.offset)
        }.map { $0.element }

        var active: [Int: [Int]] = [:]
        var sustained = Set<Int>()
        var removed = [Bool](repeating: false, count: notes.count)
        var time = 0.0
        for ev in events {
            time = ev.time
            switch ev.kind {
            case 0:
                sustained.insert(controlChanges[ev.ref].instrument)
            case 1:
                let inst = controlChanges[ev.ref].instrument
                sustained.remove(inst)
                guard let list = active[inst] else { continue }
                var keep: [Int] = []
                for n in list {
                    if notes[n].end < time {
                        notes[n].end = time
                        if time > totalTime { totalTime = time }
                    } else {
                        keep.append(n)
                    }
                }
                active[inst] = keep
            case 2:
                let note = notes[ev.ref]
                if sustained.contains(note.instrument), let list = active[note.instrument] {
                    var keep: [Int] = []
                    for n in list {
                        if notes[n].pitch == note.pitch {
                            notes[n].end = time
                            if notes[n].start == notes[n].end { removed[n] = true }
                        } else {
                            keep.append(n)
                        }
                    }
                    active[note.instrument] = keep
                }
                active[note.instrument, default: []].append(ev.ref)
            default:
                let note = notes[ev.ref]
                if !sustained.contains(note.instrument), var list = active[note.instrument] {
                    // Membership by value, as protobuf messages compare.
                    if let k = list.firstIndex(where: { notes[$0] == note }) {
                        list.remove(at: k)
                        active[note.instrument] = list
                    }
                }
            }
        }
        for list in active.values {
            for n in list {
                notes[n].end = time
                totalTime = time
            }
        }
        if removed.contains(true) {
            notes = notes.enumerated().filter { !removed[$0.offset] }.map { $0.element }
        }
    }
}
