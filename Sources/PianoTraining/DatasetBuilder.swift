import DDSPPiano
import Foundation
import PianoIO
import PianoStudy

// The `ddsp-piano-train dataset` pipeline: generated exercises and corpus MIDI, normalised to
// one clean piano track, split (train / validation / held-out), rendered through SoundFont
// pianos with fluidsynth, and described in manifest.json.

// MARK: - Determinism helpers (the seeded generator is the project's one SplitMix64, in DDSPPiano)

public enum StableHash {
    /// FNV-1a over UTF-8: the same on every machine and run (Swift's Hasher is seeded per process).
    public static func fnv1a(_ text: String) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in text.utf8 { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
        return h
    }
}

// MARK: - Generated material

/// Exercises that cover what a corpus of real pieces covers badly: every key, every velocity,
/// dense and sparse chords, fast repetitions, all three pedals, long free decays.
public enum GeneratedMaterial {
    public enum Kind: String, CaseIterable, Sendable {
        case chromatic, chords, sustain, repeated, scales, long, staccato, pedalChanges = "pedal-changes", unaCorda = "una-corda", sostenuto
    }

    public struct Piece: Sendable {
        public var name: String
        public var kind: Kind
        public var part: PianoPart
        public var index: Int
    }

    public static let lowest = 21, highest = 108

    /// Pieces of 20–60 s until `minutes` of music (at least one piece when `minutes` > 0).
    /// Piece 0 is a chromatic run over the whole keyboard in which every velocity 1…127 occurs.
    public static func pieces(seed: UInt64, minutes: Double) -> [Piece] {
        guard minutes > 0 else { return [] }
        let kinds = Kind.allCases
        var out: [Piece] = []
        var total = 0.0
        var i = 0
        while total < minutes * 60 || out.isEmpty {
            let kind = kinds[i % kinds.count]
            var rng = SplitMix64(seed: seed ^ (UInt64(i) &* 0xD6E8_FEB8_6659_FD93))
            // Tiny budgets (tests) get short pieces; normal ones 20–60 s as asked.
            let target = min(rng.int(20_000...60_000), max(Int(minutes * 60_000), 8_000))
            var part = compose(kind, target: target, rng: &rng)
            part.sanitize()
            out.append(Piece(name: String(format: "gen-%03d-%@", i, kind.rawValue), kind: kind, part: part, index: i))
            total += Double(part.lastEventTime) / 1000
            i += 1
        }
        return out
    }

    static func compose(_ kind: Kind, target: Int, rng: inout SplitMix64) -> PianoPart {
        var c = Composer()
        switch kind {
        case .chromatic: c.chromatic(target, &rng)
        case .chords: c.chords(target, &rng)
        case .sustain: c.sustain(target, &rng)
        case .repeated: c.repeated(target, &rng)
        case .scales: c.scales(target, &rng)
        case .long: c.longNotes(target, &rng)
        case .staccato: c.staccato(target, &rng)
        case .pedalChanges: c.pedalChanges(target, &rng)
        case .unaCorda: c.unaCorda(target, &rng)
        case .sostenuto: c.sostenuto(target, &rng)
        }
        c.t += 300
        // Every piece ends with the pedals up, so nothing sustains past the file.
        for cc in [64, 66, 67] { c.cc(c.t, cc, 0) }
        return PianoPart(notes: c.notes, controls: c.controls)
    }

    /// Writes notes and pedal moves at a time cursor `t` (milliseconds).
    struct Composer {
        var notes: [PianoPart.Note] = []
        var controls: [PianoPart.Control] = []
        var t = 300

        mutating func note(_ pitch: Int, _ velocity: Int, _ start: Int, _ duration: Int) {
            guard (GeneratedMaterial.lowest...GeneratedMaterial.highest).contains(pitch) else { return }
            notes.append(.init(pitch: pitch, velocity: min(max(velocity, 1), 127), start: start, end: start + max(duration, 1)))
        }

        mutating func cc(_ time: Int, _ controller: Int, _ value: Int) {
            controls.append(.init(time: time, controller: controller, value: value))
        }

        static func clampPitch(_ p: Int) -> Int { min(max(p, GeneratedMaterial.lowest), GeneratedMaterial.highest) }

        /// Chromatic runs over all 88 keys, up then down; velocities step through 1…127 in turn
        /// (so any 127 consecutive notes hold every velocity once).
        mutating func chromatic(_ target: Int, _ rng: inout SplitMix64) {
            var k = rng.int(0...126)
            var runs = 0
            while runs < 2 || t < target {
                let step = rng.int(90...220)
                // A run is long: stop rather than overshoot the target by most of one.
                if runs >= 2 && t + step * 44 > target { break }
                let hold = Double(rng.int(40...130)) / 100
                let up = runs % 2 == 0
                for j in 0...(GeneratedMaterial.highest - GeneratedMaterial.lowest) {
                    let pitch = up ? GeneratedMaterial.lowest + j : GeneratedMaterial.highest - j
                    note(pitch, k % 127 + 1, t, Int(Double(step) * hold))
                    k += 1
                    t += step
                }
                t += rng.int(300...900)
                runs += 1
            }
        }

        /// Major scales in all keys over the whole range, in octaves or single, with constant,
        /// rising or falling dynamics.
        mutating func scales(_ target: Int, _ rng: inout SplitMix64) {
            let major = [0, 2, 4, 5, 7, 9, 11]
            while t < target {
                let tonic = rng.int(0...11)
                let keyPitches = (GeneratedMaterial.lowest...GeneratedMaterial.highest).filter { major.contains(($0 - tonic + 120) % 12) }
                let lo = rng.int(0...(keyPitches.count / 3)), hi = rng.int((2 * keyPitches.count / 3)...(keyPitches.count - 1))
                var run = Array(keyPitches[lo...hi])
                if rng.chance(0.5) { run.reverse() }
                let step = rng.int(70...260)
                let octaves = rng.chance(0.4)
                let v0 = rng.int(1...127), v1 = rng.int(1...127)
                let legato = Double(rng.int(50...120)) / 100
                for (j, p) in run.enumerated() {
                    let v = v0 + (v1 - v0) * j / max(run.count - 1, 1) + rng.int(-4...4)
                    note(p, v, t, Int(Double(step) * legato))
                    if octaves { note(p - 12, v - rng.int(0...10), t + rng.int(0...8), Int(Double(step) * legato)) }
                    t += step
                }
                t += rng.int(300...1200)
            }
        }

        /// Chords of 2–8 notes, block or rolled, soft to loud, short to long.
        mutating func chords(_ target: Int, _ rng: inout SplitMix64) {
            while t < target {
                let count = rng.int(2...8)
                let root = rng.int(GeneratedMaterial.lowest...96)
                let span = rng.int(max(count, 7)...30)
                var pitches = Set<Int>([root])
                while pitches.count < count { pitches.insert(Self.clampPitch(root + rng.int(1...span))) }
                let v = rng.int(1...127)
                let duration = rng.int(250...2500)
                // Rolled chords spread over at most half the chord, so they stay one chord.
                let roll = rng.chance(0.2) ? min(rng.int(20...60), duration / 16) : 0
                for (j, p) in pitches.sorted().enumerated() {
                    note(p, v + rng.int(-6...6), t + (roll > 0 ? j * roll : rng.int(0...12)), duration)
                }
                t += duration + rng.int(40...700)
            }
        }

        /// One key struck again and again at 2–16 notes a second.
        mutating func repeated(_ target: Int, _ rng: inout SplitMix64) {
            while t < target {
                let pitch = rng.int(GeneratedMaterial.lowest...GeneratedMaterial.highest)
                let period = 1000 / rng.pick([2, 3, 4, 6, 8, 10, 12, 16])
                let count = rng.int(6...24)
                let v0 = rng.int(1...127), v1 = rng.int(1...127)
                let gate = Double(rng.int(25...85)) / 100
                for j in 0..<count {
                    note(pitch, v0 + (v1 - v0) * j / max(count - 1, 1), t, Int(Double(period) * gate))
                    t += period
                }
                t += rng.int(200...800)
            }
        }

        /// Single notes (sometimes a dyad) held 2–8 s: the free decay of every register.
        mutating func longNotes(_ target: Int, _ rng: inout SplitMix64) {
            while t < target {
                let pitch = rng.int(GeneratedMaterial.lowest...GeneratedMaterial.highest)
                let hold = rng.int(2000...8000)
                let v = rng.int(1...127)
                note(pitch, v, t, hold)
                if rng.chance(0.25) { note(Self.clampPitch(pitch + rng.int(3...12)), v + rng.int(-10...10), t, hold) }
                t += hold + rng.int(200...700)
            }
        }

        /// Short detached notes in both hands.
        mutating func staccato(_ target: Int, _ rng: inout SplitMix64) {
            var right = rng.int(60...84), left = rng.int(33...55)
            while t < target {
                let period = rng.int(110...350)
                let v = rng.int(1...127)
                for _ in 0..<rng.int(8...24) {
                    right = min(max(right + rng.int(-4...4), 55), GeneratedMaterial.highest)
                    note(right, v + rng.int(-8...8), t, rng.int(25...110))
                    if rng.chance(0.5) {
                        left = min(max(left + rng.int(-5...5), GeneratedMaterial.lowest), 60)
                        note(left, v + rng.int(-12...4), t + rng.int(0...10), rng.int(25...110))
                    }
                    t += period
                }
                t += rng.int(200...900)
            }
        }

        /// A broken chord over a bass note, `length` ms long; returns nothing, advances `t`.
        mutating func arpeggio(_ length: Int, velocity v: Int, _ rng: inout SplitMix64) {
            let bass = rng.int(28...52)
            let third = rng.pick([3, 4])
            let chord = [0, 7, 12, 12 + third, 19, 24].map { bass + $0 }
            let notesPerBar = rng.int(4...10)
            let step = length / notesPerBar
            let start = t
            note(bass, v + rng.int(-5...5), start, rng.int(150...min(900, length)))
            for j in 1..<notesPerBar {
                note(Self.clampPitch(chord[j % chord.count] + (j >= chord.count ? 12 : 0)), v + rng.int(-10...10), start + j * step, rng.int(120...400))
            }
            if rng.chance(0.6) {
                // A melody note over the figure.
                note(Self.clampPitch(bass + 24 + rng.pick([12, 14, 16, 19, 24])), min(v + rng.int(5...20), 127), start + rng.int(0...2) * step, rng.int(400...length))
            }
            t = start + length
        }

        /// Phrases played under one long sustain-pedal hold (3–8 s), then released; with
        /// occasional gradual (half-pedal) presses as recorded performances have.
        mutating func sustain(_ target: Int, _ rng: inout SplitMix64) {
            while t < target {
                let v = rng.int(1...127)
                let down = t
                if rng.chance(0.3) {
                    for s in 0..<6 { cc(down + s * 15, 64, min(127, 20 + s * 22)) }
                } else {
                    cc(down, 64, 127)
                }
                let end = t + rng.int(3000...8000)
                while t < end { arpeggio(rng.int(800...2000), velocity: v + rng.int(-15...15), &rng) }
                if rng.chance(0.3) {
                    for s in 0..<6 { cc(t + s * 20, 64, max(0, 107 - s * 22)) }
                    t += 120
                } else {
                    cc(t, 64, 0)
                }
                t += rng.int(600...2000) // the release rings out
            }
        }

        /// Legato pedalling: the pedal is lifted as each new harmony is struck and pressed again
        /// just after, as pianists change pedal.
        mutating func pedalChanges(_ target: Int, _ rng: inout SplitMix64) {
            let v = rng.int(1...127)
            cc(t, 64, 127)
            while t < target {
                let bar = t
                arpeggio(rng.int(900...2500), velocity: v + rng.int(-30...30), &rng)
                if t < target {
                    cc(t + rng.int(0...20), 64, 0)
                    cc(t + rng.int(60...160), 64, 127)
                }
                _ = bar
            }
            cc(t, 64, 0)
            t += 1500
        }

        /// Passages with the soft pedal (CC67) down, alternating with the same material without.
        mutating func unaCorda(_ target: Int, _ rng: inout SplitMix64) {
            while t < target {
                let soft = rng.chance(0.6)
                if soft { cc(t, 67, 127) }
                let v = rng.int(1...110)
                let pedal = rng.chance(0.5)
                if pedal { cc(t, 64, 127) }
                for _ in 0..<rng.int(2...4) { arpeggio(rng.int(900...2000), velocity: v + rng.int(-10...10), &rng) }
                if pedal { cc(t, 64, 0) }
                if soft { cc(t + rng.int(0...300), 67, 0) }
                t += rng.int(500...1500)
            }
        }

        /// A bass chord caught by the sostenuto pedal (CC66) after it is struck, held while
        /// short notes above stay dry; released at the end of the section.
        mutating func sostenuto(_ target: Int, _ rng: inout SplitMix64) {
            while t < target {
                let bass = rng.int(24...50)
                let v = rng.int(1...127)
                for p in [bass, bass + 7, bass + 12] { note(p, v + rng.int(-5...5), t, 600) }
                cc(t + rng.int(150...450), 66, 127)
                t += 700
                let period = rng.int(150...400)
                var p = rng.int(60...84)
                for _ in 0..<rng.int(6...20) {
                    p = min(max(p + rng.int(-5...5), 55), GeneratedMaterial.highest)
                    note(p, rng.int(1...127), t, Int(Double(period) * 0.5))
                    t += period
                }
                cc(t, 66, 0)
                t += rng.int(800...1800)
            }
        }
    }
}

// MARK: - Corpus

/// One row of the corpus's SOURCES.txt (tab-separated, `#` comments, a header row).
public struct CorpusSource: Sendable, Equatable {
    public var file: String
    public var package: String
    public var version: String
    public var license: String
    public var kind: String
    public var note: String
    public var pathInPackage: String
}

public enum CorpusSources {
    /// Rows keyed by their `file` column (a path relative to the corpus folder).
    public static func parse(_ text: String) throws -> [String: CorpusSource] {
        var header: [String]?
        var out: [String: CorpusSource] = [:]
        for line in text.split(omittingEmptySubsequences: true, whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            if line.hasPrefix("#") { continue }
            let cols = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            guard let h = header else {
                guard cols.contains("file"), cols.contains("license") else {
                    throw TrainingDataError("SOURCES.txt: the header row has no 'file' and 'license' columns")
                }
                header = cols
                continue
            }
            func col(_ name: String) -> String {
                guard let i = h.firstIndex(of: name), i < cols.count else { return "" }
                return cols[i]
            }
            let file = col("file")
            guard !file.isEmpty else { continue }
            out[file] = CorpusSource(file: file, package: col("package"), version: col("version"), license: col("license"),
                                     kind: col("kind"), note: col("note"), pathInPackage: col("path_in_package"))
        }
        guard header != nil else { throw TrainingDataError("SOURCES.txt: no header row") }
        return out
    }

    /// Non-commercial licences (CC BY-NC…): such files must never enter a dataset we ship from.
    public static func isNonCommercial(_ license: String) -> Bool {
        let tokens = license.uppercased().split(whereSeparator: { !$0.isLetter && !$0.isNumber })
        let flat = license.lowercased().replacingOccurrences(of: "-", with: "").replacingOccurrences(of: " ", with: "")
        return tokens.contains("NC") || flat.contains("noncommercial")
    }

    /// Files that are versions of one another (a transcription and its reference, variants of
    /// one score) share a group, so the split never puts one in training and the other in the
    /// evaluation set. Rows are linked when one's note names the other's file or package path.
    public static func groups(_ rows: [CorpusSource]) -> [String: String] {
        var parent: [String: String] = [:]
        for r in rows { parent[r.file] = r.file }
        func find(_ x: String) -> String {
            var x = x
            while let p = parent[x], p != x { x = p }
            return x
        }
        for a in rows where !a.note.isEmpty {
            for b in rows where b.file != a.file {
                let name = (b.file as NSString).lastPathComponent
                let tail = b.pathInPackage.split(separator: "/").suffix(2).joined(separator: "/")
                if a.note.contains(name) || (!tail.isEmpty && tail.contains("/") && a.note.contains(tail)) {
                    let ra = find(a.file), rb = find(b.file)
                    if ra != rb { parent[max(ra, rb)] = min(ra, rb) }
                }
            }
        }
        var out: [String: String] = [:]
        for r in rows { out[r.file] = find(r.file) }
        return out
    }
}

public enum CorpusNormalizer {
    public struct Result: Sendable {
        public var part: PianoPart
        /// The file ran longer than the limit and was cut.
        public var cut: Bool
        /// Seconds of leading silence removed.
        public var shifted: Double
        public var droppedNotes: Int
    }

    /// GM programs 0–7 are the piano family.
    public static let pianoPrograms = 0...7

    /// A corpus file as one clean piano part: read as the renderer reads it (tempo map of the
    /// first track, pretty_midi's note grouping), non-drum piano-family notes in the model's
    /// 21…108 range plus the three pedals, leading silence cut to 0.5 s, cut at `maxSeconds`
    /// with every pedal released there.
    public static func normalize(bytes: [UInt8], maxSeconds: Double?) throws -> Result {
        let midi = try MIDIFile(bytes: bytes, tempoSource: .firstTrack)
        let sequence = NoteSequence(midi: midi)
        var dropped = 0
        var notes: [PianoPart.Note] = []
        for n in sequence.notes {
            guard !n.isDrum, pianoPrograms.contains(n.program),
                  (UpstreamConditioning.minPitch...UpstreamConditioning.maxPitch).contains(n.pitch) else { dropped += 1; continue }
            let s = Int((n.start * 1000).rounded()), e = Int((n.end * 1000).rounded())
            notes.append(.init(pitch: n.pitch, velocity: n.velocity, start: s, end: max(e, s + 1)))
        }
        guard let first = notes.map(\.start).min() else {
            throw MIDIError(sequence.notes.isEmpty ? "no notes" : "no piano notes in 21…108 (only drums, other instruments or out-of-range keys)")
        }
        var controls: [PianoPart.Control] = sequence.controlChanges
            .filter { !$0.isDrum && pianoPrograms.contains($0.program) && [64, 66, 67].contains($0.controller) }
            .map { .init(time: Int(($0.time * 1000).rounded()), controller: $0.controller, value: $0.value) }
            .sorted { $0.time < $1.time }

        // Leading silence teaches nothing; keep half a second. Pedal state at the new start is
        // carried over as events at time 0.
        let shift = max(0, first - 500)
        if shift > 0 {
            var state: [Int: Int] = [:]
            var kept: [PianoPart.Control] = []
            for c in controls {
                if c.time < shift { state[c.controller] = c.value } else { kept.append(.init(time: c.time - shift, controller: c.controller, value: c.value)) }
            }
            controls = state.keys.sorted().map { .init(time: 0, controller: $0, value: state[$0]!) } + kept
            notes = notes.map { .init(pitch: $0.pitch, velocity: $0.velocity, start: $0.start - shift, end: $0.end - shift) }
        }

        var cut = false
        if let maxSeconds, maxSeconds > 0 {
            let limit = Int(maxSeconds * 1000)
            if notes.contains(where: { $0.end > limit }) || controls.contains(where: { $0.time > limit }) {
                cut = true
                let before = notes.count
                notes = notes.filter { $0.start < limit - 1 }.map { .init(pitch: $0.pitch, velocity: $0.velocity, start: $0.start, end: min($0.end, limit)) }
                dropped += before - notes.count
                var down = Set<Int>()
                controls = controls.filter { $0.time < limit }
                for c in controls { if c.value >= 64 { down.insert(c.controller) } else { down.remove(c.controller) } }
                // Release what is still held so the piece ends where it was cut.
                for cc in down.sorted() { controls.append(.init(time: limit, controller: cc, value: 0)) }
            }
        }
        var part = PianoPart(notes: notes, controls: controls)
        part.sanitize()
        return Result(part: part, cut: cut, shifted: Double(shift) / 1000, droppedNotes: dropped)
    }

    /// How long the engine (and the trainer) takes the written file to last: the end of the
    /// last note after the sustain pedal, as note_seq computes it.
    public static func duration(ofMIDI bytes: [UInt8]) throws -> Double {
        NoteSequence(midi: try MIDIFile(bytes: bytes, tempoSource: .firstTrack)).applyingSustain().totalTime
    }
}

// MARK: - Split

public enum DatasetSplit: String, CaseIterable, Sendable, Codable {
    case train, validation, heldout

    /// Shares of the corpus files held out for evaluation, and of the rest kept for validation.
    public static let heldoutShare = 0.15
    public static let validationShare = 0.08

    /// The split of every corpus file, from `groups` (file -> group key; see
    /// `CorpusSources.groups`). Groups are ranked by a stable hash of their key and taken in
    /// that order until the share of files is reached, so the choice does not depend on the
    /// seed or the order of listing, and a group's files always share a split.
    public static func forCorpus(groups: [String: String]) -> [String: DatasetSplit] {
        let members = Dictionary(grouping: groups.keys, by: { groups[$0]! })
        var out: [String: DatasetSplit] = [:]
        var remaining = Array(members.keys)
        for (split, share) in [(DatasetSplit.heldout, heldoutShare), (.validation, validationShare)] {
            let files = remaining.reduce(0) { $0 + members[$1]!.count }
            let target = Int((Double(files) * share).rounded())
            let ranked = remaining.sorted {
                (StableHash.fnv1a(split.rawValue + ":" + $0), $0) < (StableHash.fnv1a(split.rawValue + ":" + $1), $1)
            }
            var taken = 0
            var rest: [String] = []
            for g in ranked {
                if taken < target {
                    for f in members[g]! { out[f] = split }
                    taken += members[g]!.count
                } else {
                    rest.append(g)
                }
            }
            remaining = rest
        }
        for g in remaining { for f in members[g]! { out[f] = .train } }
        return out
    }

    /// Generated pieces: every 7th (from the 4th) held out, every 13th (from the 6th) for
    /// validation; the first three, which cover the keyboard and velocities, always train.
    public static func forGenerated(index: Int) -> DatasetSplit {
        if index % 7 == 3 { return .heldout }
        if index % 13 == 5 { return .validation }
        return .train
    }
}

// MARK: - Instruments

/// A piano preset in a SoundFont, rendered as one instrument of the dataset.
public struct SoundFontPiano: Sendable, Equatable {
    public var name: String
    public var soundfont: String
    public var program: Int
    public var preset: String

    public init(name: String, soundfont: String, program: Int, preset: String) {
        self.name = name; self.soundfont = soundfont; self.program = program; self.preset = preset
    }

    /// The pianos of Debian's fluid-soundfont-gm and musescore-general-soundfont.
    public static let debian: [SoundFontPiano] = [
        .init(name: "fluidr3-yamaha-grand", soundfont: "/usr/share/sounds/sf2/FluidR3_GM.sf2", program: 0, preset: "Yamaha Grand Piano"),
        .init(name: "fluidr3-bright-yamaha-grand", soundfont: "/usr/share/sounds/sf2/FluidR3_GM.sf2", program: 1, preset: "Bright Yamaha Grand"),
        .init(name: "musescore-grand", soundfont: "/usr/share/sounds/sf3/MuseScore_General.sf3", program: 0, preset: "Grand Piano"),
    ]

    /// `NAME` (one of `debian`) or `NAME=PATH[:PROGRAM]` for any other SoundFont.
    public static func parse(_ spec: String) throws -> SoundFontPiano {
        if let eq = spec.firstIndex(of: "=") {
            let name = String(spec[..<eq])
            var path = String(spec[spec.index(after: eq)...])
            var program = 0
            if let colon = path.lastIndex(of: ":"), let p = Int(path[path.index(after: colon)...]), (0...127).contains(p) {
                program = p
                path = String(path[..<colon])
            }
            guard !name.isEmpty, !name.contains("/"), !name.hasPrefix("."), !path.isEmpty else {
                throw TrainingDataError("--soundfont \(spec): expected NAME=PATH[:PROGRAM]")
            }
            return SoundFontPiano(name: name, soundfont: path, program: program, preset: "program \(program)")
        }
        guard let known = debian.first(where: { $0.name == spec }) else {
            throw TrainingDataError("--soundfont \(spec): unknown piano (known: \(debian.map(\.name).joined(separator: ", ")); or NAME=PATH[:PROGRAM])")
        }
        return known
    }
}

// MARK: - Rendering

public struct FluidSynth: Sendable {
    public var path: String
    public var version: String

    /// `explicit` or the first `fluidsynth` on the PATH.
    public static func locate(_ explicit: String?) throws -> FluidSynth {
        let fm = FileManager.default
        var found: String?
        if let explicit {
            guard fm.isExecutableFile(atPath: explicit) else { throw TrainingDataError("\(explicit): fluidsynth not found or not executable") }
            found = explicit
        } else {
            let dirs = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":")
            found = dirs.map { "\($0)/fluidsynth" }.first { fm.isExecutableFile(atPath: $0) }
        }
        guard let path = found else {
            throw TrainingDataError("fluidsynth: not found on the PATH (Debian: apt-get install fluidsynth), or give --fluidsynth PATH")
        }
        let (status, output) = runCapturing(path, ["--version"])
        let line = output.split(separator: "\n").first { $0.contains("FluidSynth") && $0.contains("version") }
        guard status == 0, let line else { throw TrainingDataError("\(path): does not run as fluidsynth (--version failed)") }
        let version = line.split(separator: " ").last.map(String.init) ?? String(line)
        return FluidSynth(path: path, version: version)
    }

    /// Renders `midi` to a float WAV (no clipping inside fluidsynth: levels are checked after).
    /// Reverb and chorus off: the model adds its own reverb. Samples of the presets in use are
    /// loaded on demand, which makes the compressed MuseScore SoundFont start 3x faster.
    public func render(midi: URL, soundfont: String, gain: Double, sampleRate: Int, to wav: URL) throws {
        let args = ["-ni", "-q", "-R", "0", "-C", "0", "-g", String(gain), "-r", String(sampleRate),
                    "-o", "audio.file.format=float", "-o", "synth.dynamic-sample-loading=1",
                    "-F", wav.path, soundfont, midi.path]
        let (status, output) = Self.runCapturing(path, args)
        guard status == 0, FileManager.default.fileExists(atPath: wav.path) else {
            let why = output.split(separator: "\n").last.map(String.init) ?? "exit status \(status)"
            throw TrainingDataError("\(midi.lastPathComponent): fluidsynth failed: \(why)")
        }
    }

    static func runCapturing(_ path: String, _ args: [String]) -> (Int32, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        p.standardInput = FileHandle.nullDevice
        do { try p.run() } catch { return (-1, "\(error)") }
        // Read to the end before waiting: a full pipe would block the child.
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}

/// The Debian package that holds a file, its version and licence (from its copyright file).
struct DebianPackageInfo {
    var package: String
    var version: String
    var license: String

    static func lookup(_ path: String) -> DebianPackageInfo? {
        let resolved = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
        let query = "/usr/bin/dpkg-query"
        guard FileManager.default.isExecutableFile(atPath: query) else { return nil }
        let (s1, owner) = FluidSynth.runCapturing(query, ["-S", resolved])
        guard s1 == 0, let pkg = owner.split(separator: ":").first.map({ String($0).trimmingCharacters(in: .whitespaces) }), !pkg.isEmpty else { return nil }
        let (s2, version) = FluidSynth.runCapturing(query, ["-W", "-f=${Version}", pkg])
        let copyright = "/usr/share/doc/\(pkg)/copyright"
        var license = "see \(copyright)"
        if let text = try? String(contentsOfFile: copyright, encoding: .utf8) {
            // Both Debian piano SoundFonts state MIT there; anything else is left to the reader.
            if text.contains("MIT license") || text.contains("(MIT") { license = "MIT (\(copyright))" }
        }
        return DebianPackageInfo(package: pkg, version: s2 == 0 ? version.trimmingCharacters(in: .whitespacesAndNewlines) : "", license: license)
    }
}

// MARK: - Manifest

public struct DatasetManifest: Codable, Sendable {
    public struct Instrument: Codable, Sendable {
        public var name: String
        public var soundfont: String
        public var soundfontResolved: String
        public var program: Int
        public var preset: String
        public var debianPackage: String?
        public var packageVersion: String?
        public var license: String
    }

    public struct File: Codable, Sendable {
        public var split: DatasetSplit
        public var instrument: String
        public var stem: String
        public var wav: String
        public var midi: String
        /// Corpus path relative to the MIDI folder, or "generated:<kind>".
        public var source: String
        public var license: String
        public var package: String?
        public var seconds: Double
        public var midiSeconds: Double
        public var peak: Double
        public var clipped: Bool
        public var cut: Bool
    }

    public struct Skipped: Codable, Sendable {
        public var file: String
        public var problem: String
    }

    public var tool: String = "ddsp-piano-train dataset"
    public var created: String
    public var seed: UInt64
    public var sampleRate: Int
    public var fluidsynth: String
    public var fluidsynthVersion: String
    public var gain: Double
    public var midiFolder: String
    public var maxSecondsPerFile: Double
    public var generatedMinutes: Double
    public var corpusMinutes: Double
    public var instruments: [Instrument]
    public var files: [File]
    public var excludedNonCommercial: [String]
    public var skipped: [Skipped]
    /// Seconds of audio per split, then per instrument.
    public var seconds: [String: [String: Double]]
}

// MARK: - Builder

public struct DatasetBuilder {
    public struct Options: Sendable {
        public var out: URL
        public var midi: URL?
        public var pianos: [SoundFontPiano] = SoundFontPiano.debian
        public var fluidsynth: String?
        public var seed: UInt64 = 1
        public var generatedMinutes: Double = 15
        /// Training-side corpus music per instrument (validation and held-out files come on top).
        public var corpusMinutes: Double = 45
        public var maxSecondsPerFile: Double = 240
        public var jobs: Int = 2
        public var gain: Double = 0.5
        /// Audio kept after the MIDI's end (release of the last notes).
        public var tail: Double = 1.0
        public var sampleRate: Int = PianoWeights.Hyper.dafx22.sampleRate
        public var showProgress: Bool = TerminalProgress.stderrIsTerminal

        public init(out: URL, midi: URL?) { self.out = out; self.midi = midi }
    }

    public struct Summary: Sendable {
        public var manifest: DatasetManifest
        public var elapsed: Double
        public var clippedFiles: Int { manifest.files.filter(\.clipped).count }
        public var peak: Double { manifest.files.map(\.peak).max() ?? 0 }
    }

    /// One file to render: a part, for one piano, in one split.
    struct Job {
        var split: DatasetSplit
        var piano: SoundFontPiano
        var stem: String
        var part: PianoPart
        var source: String
        var license: String
        var package: String?
        var cut: Bool
        var seconds: Double
    }

    let options: Options
    /// One line per problem (skipped file, clipping), as they happen.
    let log: @Sendable (String) -> Void

    public init(options: Options, log: @escaping @Sendable (String) -> Void) {
        self.options = options
        self.log = log
    }

    public func run() throws -> Summary {
        let started = Date()
        let fm = FileManager.default
        let fluid = try FluidSynth.locate(options.fluidsynth)
        guard !options.pianos.isEmpty else { throw TrainingDataError("no SoundFont piano selected") }
        for p in options.pianos where !fm.fileExists(atPath: p.soundfont) {
            let hint = SoundFontPiano.debian.contains(p)
                ? "; Debian: apt-get install \(p.soundfont.contains("MuseScore") ? "musescore-general-soundfont" : "fluid-soundfont-gm")" : ""
            throw TrainingDataError("\(p.soundfont): SoundFont not found (for \(p.name)\(hint))")
        }
        guard Set(options.pianos.map(\.name)).count == options.pianos.count else { throw TrainingDataError("two selected pianos have the same name") }
        try prepareOutput()

        var skipped: [DatasetManifest.Skipped] = []
        var excluded: [String] = []
        var jobs: [Job] = []

        // Corpus.
        if let midiDir = options.midi {
            let corpus = try loadCorpus(midiDir, skipped: &skipped, excluded: &excluded)
            jobs += corpus
        }
        // Generated material: the same pieces for every piano.
        for piece in GeneratedMaterial.pieces(seed: options.seed, minutes: options.generatedMinutes) {
            let bytes = MIDIWriter.bytes(piece.part)
            let seconds = (try? CorpusNormalizer.duration(ofMIDI: bytes)) ?? Double(piece.part.lastEventTime) / 1000
            for piano in options.pianos {
                var part = piece.part
                part.program = piano.program
                jobs.append(Job(split: DatasetSplit.forGenerated(index: piece.index), piano: piano, stem: piece.name, part: part,
                                source: "generated:\(piece.kind.rawValue)", license: "generated by ddsp-piano-train (seed \(options.seed))",
                                package: nil, cut: false, seconds: seconds))
            }
        }
        guard !jobs.isEmpty else { throw TrainingDataError("nothing to render: no usable corpus file and no generated material") }

        let files = try render(jobs, fluid: fluid, skipped: &skipped)
        try? fm.removeItem(at: options.out.appendingPathComponent(".tmp"))

        var seconds: [String: [String: Double]] = [:]
        for f in files { seconds[f.split.rawValue, default: [:]][f.instrument, default: 0] += f.seconds }
        seconds = seconds.mapValues { $0.mapValues { ($0 * 1000).rounded() / 1000 } }
        let instruments = options.pianos.map { p -> DatasetManifest.Instrument in
            let info = DebianPackageInfo.lookup(p.soundfont)
            return .init(name: p.name, soundfont: p.soundfont, soundfontResolved: URL(fileURLWithPath: p.soundfont).resolvingSymlinksInPath().path,
                         program: p.program, preset: p.preset, debianPackage: info?.package, packageVersion: info?.version,
                         license: info?.license ?? "unknown (not from a Debian package)")
        }
        let manifest = DatasetManifest(
            created: ISO8601DateFormatter().string(from: Date()), seed: options.seed, sampleRate: options.sampleRate,
            fluidsynth: fluid.path, fluidsynthVersion: fluid.version, gain: options.gain, midiFolder: options.midi?.path ?? "",
            maxSecondsPerFile: options.maxSecondsPerFile, generatedMinutes: options.generatedMinutes, corpusMinutes: options.corpusMinutes,
            instruments: instruments, files: files, excludedNonCommercial: excluded, skipped: skipped, seconds: seconds)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.keyEncodingStrategy = .convertToSnakeCase
        let manifestURL = options.out.appendingPathComponent("manifest.json")
        do { try encoder.encode(manifest).write(to: manifestURL, options: .atomic) }
        catch { throw TrainingDataError("\(manifestURL.path): cannot write: \(error.localizedDescription)") }
        return Summary(manifest: manifest, elapsed: Date().timeIntervalSince(started))
    }

    /// The output folder must be new, empty, or an earlier dataset (whose splits are replaced).
    func prepareOutput() throws {
        let fm = FileManager.default
        let out = options.out
        var isDir: ObjCBool = false
        if fm.fileExists(atPath: out.path, isDirectory: &isDir) {
            guard isDir.boolValue else { throw TrainingDataError("\(out.path): exists and is not a folder") }
            let entries = (try? fm.contentsOfDirectory(atPath: out.path)) ?? []
            let ours: Set<String> = Set(DatasetSplit.allCases.map(\.rawValue) + ["manifest.json", ".tmp"])
            if let foreign = entries.first(where: { !ours.contains($0) }) {
                throw TrainingDataError("\(out.path): not empty and not a dataset folder (holds '\(foreign)'); choose another --out")
            }
            for e in entries { try fm.removeItem(at: out.appendingPathComponent(e)) }
        }
        do {
            try fm.createDirectory(at: out.appendingPathComponent(".tmp"), withIntermediateDirectories: true)
            for split in DatasetSplit.allCases {
                for p in options.pianos {
                    try fm.createDirectory(at: out.appendingPathComponent(split.rawValue).appendingPathComponent(p.name), withIntermediateDirectories: true)
                }
            }
        } catch {
            throw TrainingDataError("\(out.path): cannot create the dataset folders: \(error.localizedDescription)")
        }
    }

    /// Reads, licence-checks, normalises and splits the corpus; picks each piano's training files.
    func loadCorpus(_ dir: URL, skipped: inout [DatasetManifest.Skipped], excluded: inout [String]) throws -> [Job] {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: dir.path, isDirectory: &isDir), isDir.boolValue else {
            throw TrainingDataError("\(dir.path): MIDI folder not found")
        }
        var sources: [String: CorpusSource]?
        let sourcesURL = dir.appendingPathComponent("SOURCES.txt")
        if fm.fileExists(atPath: sourcesURL.path) {
            let text: String
            do { text = try String(contentsOf: sourcesURL, encoding: .utf8) }
            catch { throw TrainingDataError("\(sourcesURL.path): cannot read: \(error.localizedDescription)") }
            sources = try CorpusSources.parse(text)
        } else {
            log("\(sourcesURL.path): not found; licences of the corpus files are recorded as unknown")
        }

        var relPaths: [String] = []
        if let e = fm.enumerator(at: dir, includingPropertiesForKeys: [.isRegularFileKey], options: [.skipsHiddenFiles]) {
            let base = dir.standardizedFileURL.path
            for case let url as URL in e where ["mid", "midi"].contains(url.pathExtension.lowercased()) {
                let full = url.standardizedFileURL.path
                relPaths.append(full.hasPrefix(base + "/") ? String(full.dropFirst(base.count + 1)) : url.lastPathComponent)
            }
        }
        relPaths.sort()

        struct Loaded { var rel: String; var stem: String; var result: CorpusNormalizer.Result; var seconds: Double; var source: CorpusSource? }
        var loaded: [Loaded] = []
        for rel in relPaths {
            let source = sources?[rel]
            if let sources {
                guard let s = sources[rel] else {
                    let problem = "not listed in SOURCES.txt (licence unknown); skipped"
                    log("\(rel): \(problem)")
                    skipped.append(.init(file: rel, problem: problem))
                    continue
                }
                if CorpusSources.isNonCommercial(s.license) { excluded.append(rel); continue }
            }
            do {
                let bytes = [UInt8](try Data(contentsOf: dir.appendingPathComponent(rel)))
                let result = try CorpusNormalizer.normalize(bytes: bytes, maxSeconds: options.maxSecondsPerFile)
                let seconds = try CorpusNormalizer.duration(ofMIDI: MIDIWriter.bytes(result.part))
                let stem = ((rel as NSString).lastPathComponent as NSString).deletingPathExtension
                loaded.append(Loaded(rel: rel, stem: stem, result: result, seconds: seconds, source: source))
            } catch {
                let problem = (error as? MIDIError)?.description ?? error.localizedDescription
                log("\(rel): \(problem); skipped")
                skipped.append(.init(file: rel, problem: problem))
            }
        }
        // Same names in different folders get the folder in their stem.
        let stemCounts = Dictionary(grouping: loaded, by: \.stem).mapValues(\.count)
        for i in loaded.indices where stemCounts[loaded[i].stem]! > 1 {
            loaded[i].stem = ((loaded[i].rel as NSString).deletingPathExtension).replacingOccurrences(of: "/", with: "__")
        }

        var groups = sources.map { s in CorpusSources.groups(loaded.compactMap { $0.source ?? s[$0.rel] }) } ?? [:]
        for l in loaded where groups[l.rel] == nil { groups[l.rel] = l.rel }
        let splits = DatasetSplit.forCorpus(groups: groups)
        var jobs: [Job] = []
        func job(_ l: Loaded, _ split: DatasetSplit, _ piano: SoundFontPiano) -> Job {
            var part = l.result.part
            part.program = piano.program
            return Job(split: split, piano: piano, stem: l.stem, part: part, source: l.rel, license: l.source?.license ?? "unknown",
                       package: l.source.map { "\($0.package) \($0.version)" }, cut: l.result.cut, seconds: l.seconds)
        }
        var trainSide: [Loaded] = []
        for l in loaded {
            let split = splits[l.rel] ?? .train
            if split == .train { trainSide.append(l); continue }
            // Evaluation and validation files are rendered through every piano.
            for piano in options.pianos { jobs.append(job(l, split, piano)) }
        }
        // Each piano takes human performances first (the best material), then the rest in an
        // order of its own, until its budget: the pianos share the music but not all of it.
        for piano in options.pianos {
            let ordered = trainSide.sorted { a, b in
                let pa = a.source?.kind == "performance", pb = b.source?.kind == "performance"
                if pa != pb { return pa }
                return StableHash.fnv1a(piano.name + ":" + a.rel) < StableHash.fnv1a(piano.name + ":" + b.rel)
            }
            var total = 0.0
            for l in ordered where total < options.corpusMinutes * 60 {
                jobs.append(job(l, .train, piano))
                total += l.seconds
            }
        }
        return jobs
    }

    /// Renders the jobs on `options.jobs` threads, longest first so the last ones finish together.
    func render(_ jobs: [Job], fluid: FluidSynth, skipped: inout [DatasetManifest.Skipped]) throws -> [DatasetManifest.File] {
        let order = jobs.indices.sorted { jobs[$0].seconds > jobs[$1].seconds }
        let totalSeconds = jobs.reduce(0) { $0 + $1.seconds + 3 } // + a fixed cost per process
        let progress = TerminalProgress(label: "rendering", enabled: options.showProgress)
        /// Shared between the worker threads, always under `lock`.
        // @unchecked Sendable: every access is under `lock`.
        final class Shared: @unchecked Sendable {
            let lock = NSLock()
            var next = 0
            var doneSeconds = 0.0
            var results: [Int: Result<DatasetManifest.File, Error>] = [:]
        }
        let shared = Shared()

        let workers = max(1, min(options.jobs, jobs.count))
        let group = DispatchGroup()
        for _ in 0..<workers {
            group.enter()
            Thread {
                defer { group.leave() }
                while true {
                    shared.lock.lock()
                    guard shared.next < order.count else { shared.lock.unlock(); return }
                    let i = order[shared.next]
                    shared.next += 1
                    shared.lock.unlock()
                    let r = Result { try self.renderOne(jobs[i], fluid: fluid) }
                    shared.lock.lock()
                    shared.results[i] = r
                    shared.doneSeconds += jobs[i].seconds + 3
                    let fraction = shared.doneSeconds / totalSeconds
                    shared.lock.unlock()
                    if case let .failure(e) = r { self.log("\(e)") }
                    if case let .success(f) = r, f.clipped {
                        self.log("\(f.wav): clipped (peak \(String(format: "%.3f", f.peak))); lower --gain")
                    }
                    progress.update(fraction)
                }
            }.start()
        }
        group.wait()
        progress.finish()
        let results = shared.results

        var files: [DatasetManifest.File] = []
        for i in jobs.indices {
            switch results[i] {
            case let .success(f)?: files.append(f)
            case let .failure(e)?: skipped.append(.init(file: "\(jobs[i].split.rawValue)/\(jobs[i].piano.name)/\(jobs[i].stem)", problem: "\(e)"))
            case nil: break
            }
        }
        return files.sorted { ($0.split.rawValue, $0.instrument, $0.stem) < ($1.split.rawValue, $1.instrument, $1.stem) }
    }

    /// Writes the MIDI where the trainer will read it, renders exactly that file, downmixes to
    /// mono and cuts the audio `tail` seconds after the MIDI's end (fluidsynth renders until
    /// every voice is silent, which for some presets is many seconds of near-silence).
    /// fluidsynth starts events at its next 64-sample block, so onsets land 0–4 ms late (within
    /// one 250 Hz frame of the model); nothing else shifts the audio against the MIDI.
    func renderOne(_ job: Job, fluid: FluidSynth) throws -> DatasetManifest.File {
        let rel = "\(job.split.rawValue)/\(job.piano.name)/\(job.stem)"
        let midiURL = options.out.appendingPathComponent(rel + ".mid")
        let wavURL = options.out.appendingPathComponent(rel + ".wav")
        let bytes = MIDIWriter.bytes(job.part, trackName: job.stem)
        do { try Data(bytes).write(to: midiURL, options: .atomic) }
        catch { throw TrainingDataError("\(midiURL.path): cannot write: \(error.localizedDescription)") }
        let midiSeconds = try CorpusNormalizer.duration(ofMIDI: bytes)

        let tmp = options.out.appendingPathComponent(".tmp").appendingPathComponent("\(job.split.rawValue)-\(job.piano.name)-\(job.stem).wav")
        defer { try? FileManager.default.removeItem(at: tmp) }
        try fluid.render(midi: midiURL, soundfont: job.piano.soundfont, gain: options.gain, sampleRate: options.sampleRate, to: tmp)
        let audio = try AudioFile.read(tmp)
        guard audio.sampleRate == options.sampleRate else {
            throw TrainingDataError("\(rel): fluidsynth wrote \(audio.sampleRate) Hz, not \(options.sampleRate)")
        }
        var mono = audio.mono()
        let keep = Int((midiSeconds + options.tail) * Double(options.sampleRate))
        if mono.count > keep {
            mono.removeLast(mono.count - keep)
            // A short fade so the cut does not click.
            let fade = min(mono.count, options.sampleRate / 20)
            for j in 0..<fade { mono[mono.count - fade + j] *= Float(fade - j) / Float(fade) }
        }
        var peak: Float = 0
        for x in mono { peak = max(peak, abs(x)) }
        guard peak > 0 else { throw TrainingDataError("\(rel): fluidsynth rendered silence (is program \(job.piano.program) in \(job.piano.soundfont)?)") }
        try AudioFile.write(mono, channels: 1, sampleRate: options.sampleRate, format: .f32, to: wavURL)
        return DatasetManifest.File(
            split: job.split, instrument: job.piano.name, stem: job.stem, wav: rel + ".wav", midi: rel + ".mid", source: job.source,
            license: job.license, package: job.package, seconds: (Double(mono.count) / Double(options.sampleRate) * 1000).rounded() / 1000,
            midiSeconds: (midiSeconds * 1000).rounded() / 1000, peak: (Double(peak) * 10000).rounded() / 10000, clipped: peak >= 1,
            cut: job.cut)
    }
}
