/// The model input built exactly as upstream's `load_midi_as_conditioning` does: note_seq's
/// sustain and piano roll, then MIDIRoll2Conditioning's voice allocation, cropped or padded to
/// the target length, with the warm-up prepended as zero frames.
///
/// Quirks reproduced (see shared/reference/README.md):
/// * roll over pitches 21...108 (others skipped, but they count for the length); a note covers
///   frames [floor(fr*start), max(start frame + 1, ceil(fr*end))); a later-starting note
///   overwrites the velocity of an overlapping one;
/// * onset velocity = velocity/127 where an onset window (start frame -1 ... +1 of any note of
///   that pitch) meets an active frame: usually the first two frames, three on a re-strike;
/// * pedal[c] = (value + 1)/128 on the frame of each CC 64...67 event only, the last event of a
///   frame winning, events at or after frame floor(fr*totalTime) + 1 dropped;
/// * length: ceil(totalTime) seconds (or `duration` seconds), then `warmUp` seconds of zeros in front.
public enum UpstreamConditioning {
    public static let minPitch = 21
    public static let maxPitch = 108

    public static func make(midi: MIDIFile, warmUp: Double = UpstreamDefaults.warmUpSeconds, duration: Double? = nil,
                            voices: Int = 16, frameRate: Int = UpstreamDefaults.frameRate) -> FrameConditioning {
        make(sequence: NoteSequence(midi: midi).applyingSustain(), warmUp: warmUp, duration: duration,
             voices: voices, frameRate: frameRate)
    }

    /// Frames `make` returns (warm-up included), so a caller can refuse an absurd length before
    /// anything is allocated: a corrupt file can put a note hours away.
    public static func frameCount(midi: MIDIFile, warmUp: Double = UpstreamDefaults.warmUpSeconds, duration: Double? = nil, frameRate: Int = UpstreamDefaults.frameRate) -> Int {
        let layout = Layout(totalTime: NoteSequence(midi: midi).applyingSustain().totalTime,
                            warmUp: warmUp, duration: duration, frameRate: frameRate)
        return layout.frames
    }

    /// `sequence` must already have sustain applied (`applyingSustain()`), as upstream does.
    public static func make(sequence: NoteSequence, warmUp: Double = UpstreamDefaults.warmUpSeconds, duration: Double? = nil,
                            voices: Int = 16, frameRate: Int = UpstreamDefaults.frameRate) -> FrameConditioning {
        var rows = Rows(sequence: sequence, warmUp: warmUp, duration: duration, voices: voices, frameRate: frameRate)
        var out = FrameConditioning(frames: rows.frames, voices: voices)
        out.conditioning.withUnsafeMutableBufferPointer { c in
            out.pedal.withUnsafeMutableBufferPointer { p in
                for t in 0..<rows.frames {
                    rows.row(t, conditioning: c.baseAddress! + t * voices * 2, pedal: p.baseAddress! + t * 4)
                }
            }
        }
        return out
    }

    /// Upstream's conditioning made one row at a time, in order, as the engine plays a file:
    /// memory in proportion to the notes, not to the length (the whole table costs 36 KB per
    /// second of music: 130 MB for an hour). `make` is this, written into a table.
    public struct Rows: Sendable {
        /// Rows of the piece, warm-up included; rows past the end are silence.
        public let frames: Int
        public let voices: Int
        private let layout: Layout
        private let roll: Roll
        /// Pedal events by frame, in sequence order within a frame (the last one wins).
        private let pedalEvents: [(frame: Int, controller: Int, value: Float)]

        // Where the stream is (reset by `rewind`).
        private var produced = 0                 // rows made so far
        private var allocator: VoiceAllocator
        private var cursor = Roll.Cursor()
        private var pedalCursor = 0
        private var kept: [Int]
        private var keptVelocity: [Float]
        private var activePitch: [Int]
        private var activeVelocity: [Float]
        private var lastConditioning: [Float]    // the row made last, for a repeated request
        private var lastPedal: [Float]

        public init(midi: MIDIFile, warmUp: Double = UpstreamDefaults.warmUpSeconds, duration: Double? = nil,
                    voices: Int = 16, frameRate: Int = UpstreamDefaults.frameRate) {
            self.init(sequence: NoteSequence(midi: midi).applyingSustain(), warmUp: warmUp, duration: duration,
                      voices: voices, frameRate: frameRate)
        }

        /// `sequence` must already have sustain applied (`applyingSustain()`), as upstream does.
        public init(sequence: NoteSequence, warmUp: Double = UpstreamDefaults.warmUpSeconds, duration: Double? = nil,
                    voices: Int = 16, frameRate: Int = UpstreamDefaults.frameRate) {
            precondition(voices >= 1 && voices <= maxPitch - minPitch + 1, "voices must be in 1...88")
            precondition(frameRate > 0, "frame rate must be positive")
            layout = Layout(totalTime: sequence.totalTime, warmUp: warmUp, duration: duration, frameRate: frameRate)
            frames = layout.frames
            self.voices = voices
            let fr = Double(frameRate)
            roll = Roll(sequence: sequence, frameRate: fr, rollFrames: layout.rollFrames, limit: layout.limit)
            var events: [(frame: Int, controller: Int, value: Float)] = []
            for cc in sequence.controlChanges where (64...67).contains(cc.controller) {
                let frame = truncatedInt(cc.time * fr)
                guard frame < layout.rollFrames, frame < layout.target else { continue }
                events.append((frame, cc.controller - 64, Float(cc.value + 1) / 128))
            }
            // Stable: equal frames keep sequence order, so the last event of a frame wins.
            pedalEvents = events.indices.sorted { events[$0].frame != events[$1].frame ? events[$0].frame < events[$1].frame : $0 < $1 }
                .map { events[$0] }
            allocator = VoiceAllocator(voices: voices)
            kept = []; keptVelocity = []; activePitch = []; activeVelocity = []; lastConditioning = []; lastPedal = []
            rewind()
        }

        /// Back to row 0, with buffers of its own (allocates: call it before playing, not while).
        public mutating func rewind() {
            produced = 0
            allocator = VoiceAllocator(voices: voices)
            cursor = Roll.Cursor()
            pedalCursor = 0
            kept = [Int](repeating: 0, count: voices)
            keptVelocity = [Float](repeating: 0, count: voices)
            activePitch = [Int](repeating: 0, count: Roll.pitchCount)
            activeVelocity = [Float](repeating: 0, count: Roll.pitchCount)
            lastConditioning = [Float](repeating: 0, count: voices * 2)
            lastPedal = [Float](repeating: 0, count: 4)
        }

        /// Writes row `t` (`voices` × 2 values and 4 pedal values). Rows are asked in order: a row
        /// may be asked again, and skipped rows are made on the way; an earlier one needs
        /// `rewind()`. Does not allocate.
        public mutating func row(_ t: Int, conditioning c: UnsafeMutablePointer<Float>, pedal p: UnsafeMutablePointer<Float>) {
            precondition(t >= produced - 1, "rows are made in order; rewind() to start again")
            while produced <= t { makeNext() }
            lastConditioning.withUnsafeBufferPointer { c.update(from: $0.baseAddress!, count: voices * 2) }
            lastPedal.withUnsafeBufferPointer { p.update(from: $0.baseAddress!, count: 4) }
        }

        private mutating func makeNext() {
            let t = produced
            produced += 1
            let n = voices
            lastConditioning.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
            lastPedal.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
            let f = t - layout.warmUpFrames          // frame of the roll
            guard f >= 0 && f < layout.limit else { return }
            let count = roll.frame(f, cursor: &cursor, pitches: &activePitch, velocities: &activeVelocity)
            // The `voices` highest pitches, ascending, silent entries first (upstream's argsort layout).
            let keep = min(count, n)
            let silent = n - keep
            for i in 0..<silent {
                kept[i] = 0
                keptVelocity[i] = 0
            }
            for i in 0..<keep {
                kept[silent + i] = activePitch[count - keep + i]
                keptVelocity[silent + i] = activeVelocity[count - keep + i]
            }
            allocator.step(kept: kept)
            for s in 0..<n {
                let src = allocator.slotSources[s]
                lastConditioning[2 * s] = Float(kept[src])
                lastConditioning[2 * s + 1] = keptVelocity[src]
            }
            while pedalCursor < pedalEvents.count && pedalEvents[pedalCursor].frame < f { pedalCursor += 1 }
            while pedalCursor < pedalEvents.count && pedalEvents[pedalCursor].frame == f {
                let e = pedalEvents[pedalCursor]
                lastPedal[e.controller] = e.value
                pedalCursor += 1
            }
        }
    }

    /// Upstream's lengths, computed with the same float operations.
    struct Layout {
        var rollFrames: Int
        var target: Int
        var warmUpFrames: Int
        var frames: Int { target + warmUpFrames }
        /// Frames the roll actually fills: the roll has `rollFrames`, the output keeps `target`.
        var limit: Int { min(rollFrames, target) }

        init(totalTime: Double, warmUp: Double, duration: Double?, frameRate: Int) {
            let fr = Double(frameRate)
            rollFrames = truncatedInt(totalTime * fr + 1)
            if let duration {
                target = truncatedInt(duration * fr)
            } else {
                target = truncatedInt(totalTime.rounded(.up) * fr)
            }
            warmUpFrames = warmUp > 0 ? truncatedInt(warmUp * fr) : 0
        }
    }

    /// Python's int() on a non-negative float, clamped so that junk input cannot trap.
    static func truncatedInt(_ x: Double) -> Int {
        guard x.isFinite, x > 0 else { return 0 }
        return x >= 1e15 ? Int(1e15) : Int(x)
    }
}

/// note_seq's piano roll, kept per pitch as painted frame segments instead of a dense
/// [frames, 88] array, so long pieces cost memory in proportion to their notes.
struct Roll {
    static let pitchCount = UpstreamConditioning.maxPitch - UpstreamConditioning.minPitch + 1

    struct Segment {
        var start: Int
        var end: Int
        var velocity: Float
    }

    /// Per pitch: disjoint painted segments, sorted; and merged onset windows, sorted.
    var segments: [[Segment]]
    var onsets: [[Range<Int>]]

    init(sequence: NoteSequence, frameRate fr: Double, rollFrames: Int, limit: Int) {
        segments = [[Segment]](repeating: [], count: Roll.pitchCount)
        onsets = [[Range<Int>]](repeating: [], count: Roll.pitchCount)
        // Python's sorted(..., key=start_time) is stable: equal starts keep sequence order.
        let order = sequence.notes.indices.sorted {
            let a = sequence.notes[$0].start, b = sequence.notes[$1].start
            return a != b ? a < b : $0 < $1
        }
        for i in order {
            let note = sequence.notes[i]
            guard note.pitch >= UpstreamConditioning.minPitch && note.pitch <= UpstreamConditioning.maxPitch else { continue }
            let p = note.pitch - UpstreamConditioning.minPitch
            let start = UpstreamConditioning.truncatedInt(note.start * fr)
            let end = max(start + 1, UpstreamConditioning.truncatedInt((note.end * fr).rounded(.up)))
            // velocity / 127 in float64, stored in a float32 roll.
            let velocity = Float(Double(note.velocity) / 127.0)
            let paintEnd = min(end, limit)
            if start < paintEnd { Roll.paint(&segments[p], Segment(start: start, end: paintEnd, velocity: velocity)) }
            let onsetStart = max(0, start - 1)
            let onsetEnd = min(min(rollFrames, start + 2), limit)
            if onsetStart < onsetEnd {
                if let last = onsets[p].last, onsetStart <= last.upperBound {
                    onsets[p][onsets[p].count - 1] = last.lowerBound..<max(last.upperBound, onsetEnd)
                } else {
                    onsets[p].append(onsetStart..<onsetEnd)
                }
            }
        }
    }

    /// Overwrites [new.start, new.end) in a sorted list of disjoint segments.
    static func paint(_ list: inout [Segment], _ new: Segment) {
        // First segment ending after the new start; notes come in start order, so this is near the end.
        var first = list.count
        while first > 0 && list[first - 1].end > new.start { first -= 1 }
        var last = first
        while last < list.count && list[last].start < new.end { last += 1 }
        var replacement: [Segment] = []
        if first < last && list[first].start < new.start {
            replacement.append(Segment(start: list[first].start, end: new.start, velocity: list[first].velocity))
        }
        replacement.append(new)
        if first < last && list[last - 1].end > new.end {
            replacement.append(Segment(start: new.end, end: list[last - 1].end, velocity: list[last - 1].velocity))
        }
        list.replaceSubrange(first..<last, with: replacement)
    }

    struct Cursor {
        var segment = [Int](repeating: 0, count: Roll.pitchCount)
        var onset = [Int](repeating: 0, count: Roll.pitchCount)
    }

    /// Active pitches of frame `t` (ascending MIDI numbers) and their onset velocities; returns
    /// how many. Frames must be visited in increasing order with the same cursor.
    func frame(_ t: Int, cursor: inout Cursor, pitches: inout [Int], velocities: inout [Float]) -> Int {
        var count = 0
        for p in 0..<Roll.pitchCount {
            let segs = segments[p]
            var k = cursor.segment[p]
            while k < segs.count && segs[k].end <= t { k += 1 }
            cursor.segment[p] = k
            guard k < segs.count && segs[k].start <= t else { continue }
            let ons = onsets[p]
            var o = cursor.onset[p]
            while o < ons.count && ons[o].upperBound <= t { o += 1 }
            cursor.onset[p] = o
            let onset = o < ons.count && ons[o].lowerBound <= t
            pitches[count] = p + UpstreamConditioning.minPitch
            velocities[count] = onset ? segs[k].velocity : 0
            count += 1
        }
        return count
    }
}
