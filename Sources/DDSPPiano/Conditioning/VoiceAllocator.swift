/// Upstream's voice allocation (MIDIRoll2Conditioning), one frame at a time, so the offline
/// conditioning and a live engine make the same decisions.
///
/// Each frame keeps the `voices` highest active pitches. If that set did not change, every
/// slot keeps its pitch. Otherwise slots whose pitch stopped are freed, held pitches keep their
/// slot, and new pitches (lowest first) take the free slot at or after a round-robin cursor
/// (the slot after the one last assigned). Quirks kept on purpose: when all slots were full, the
/// first slot freed (lowest index) becomes the cursor; and the cursor also walks over the free
/// slots once per silent slot, which brings it back where it was.
public struct VoiceAllocator: Sendable {
    public let voices: Int
    /// Pitch held by each slot (0 = free), after the last step.
    public private(set) var slotPitches: [Int]
    /// Per slot, the index into the last `step(kept:)` input that the slot plays.
    public private(set) var slotSources: [Int]
    /// Scratch for the next `slotSources`, kept so that a live engine's step does not allocate.
    private var reorder: [Int]
    /// Next slot to fill; -1 while every slot is taken (upstream's sentinel).
    private var cursor = 0
    private var started = false

    public init(voices: Int = 16) {
        precondition(voices >= 1, "at least one voice")
        self.voices = voices
        slotPitches = [Int](repeating: 0, count: voices)
        slotSources = Array(0..<voices)
        reorder = Array(0..<voices)   // its own buffer: a shared one would be copied on the first step
    }

    public mutating func reset() {
        self = VoiceAllocator(voices: voices)
    }

    /// One frame from the set of sounding pitches (any order, distinct, each > 0; more than
    /// `voices` is fine: the lowest are dropped). Returns the pitch of each slot (0 = silent).
    @discardableResult
    public mutating func step(activePitches: [Int]) -> [Int] {
        let sorted = activePitches.sorted()
        let top = sorted.suffix(voices)
        var input = [Int](repeating: 0, count: voices - top.count)
        input.append(contentsOf: top)
        step(kept: input)
        return (0..<voices).map { input[slotSources[$0]] }
    }

    /// One frame in upstream's layout: exactly `voices` entries, the kept pitches ascending with
    /// zeros (silent) first. Afterwards slot `s` plays `kept[slotSources[s]]`.
    public mutating func step(kept pitches: [Int]) {
        precondition(pitches.count == voices, "step(kept:) needs exactly \(voices) entries")
        let n = voices
        if started && sameSet(pitches, slotPitches) {
            return
        }
        started = true
        for i in 0..<n { reorder[i] = 0 }
        // Free the slots whose pitch is gone.
        for c in 0..<n where !pitches.contains(slotPitches[c]) {
            slotPitches[c] = 0
            if cursor == -1 { advanceCursor() }
        }
        // Held pitches stay in their slot.
        for c in 0..<n where pitches[c] != 0 {
            if let j = slotPitches.firstIndex(of: pitches[c]) { reorder[j] = c }
        }
        // New pitches take the next free slots.
        for c in 0..<n where !slotPitches.contains(pitches[c]) {
            let j = slot(cursor)
            reorder[j] = c
            slotPitches[j] = pitches[c]
            advanceCursor()
        }
        // Silent entries fill the remaining slots.
        for c in 0..<n where pitches[c] == 0 {
            reorder[slot(cursor)] = c
            advanceCursor()
        }
        swap(&slotSources, &reorder)
    }

    /// Python's index -1 is the last slot.
    private func slot(_ i: Int) -> Int { i < 0 ? voices + i : i }

    private mutating func advanceCursor() {
        cursor = (cursor + 1) % voices
        if !slotPitches.contains(0) {
            cursor = -1
        } else {
            while slotPitches[cursor] != 0 { cursor = (cursor + 1) % voices }
        }
    }

    /// Set equality of two small arrays (numpy intersect1d/unique test upstream).
    private func sameSet(_ a: [Int], _ b: [Int]) -> Bool {
        for x in a where !b.contains(x) { return false }
        for x in b where !a.contains(x) { return false }
        return true
    }
}
