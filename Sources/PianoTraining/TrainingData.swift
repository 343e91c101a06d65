import DDSPPiano
import Foundation
import PianoIO

// The data side of training, the parts that need no audio decoding: which files pair up, the
// MAESTRO v3 metadata, and cutting a performance into the model's segments (upstream:
// ddsp_piano/data_pipeline.py and utils/io_utils.py).

/// (audio, MIDI) pairs in a folder: a .wav or .flac and a .mid or .midi with the same path
/// without extension (case-insensitive extensions). Everything else is listed with a reason.
public enum TrainingPairs {
    public struct Pair: Sendable, Equatable {
        public var stem: String
        public var audio: String
        public var midi: String
        public init(stem: String, audio: String, midi: String) { self.stem = stem; self.audio = audio; self.midi = midi }
    }

    public struct Skipped: Sendable, Equatable {
        public var path: String
        public var reason: String
    }

    public static let audioExtensions: Set<String> = ["wav", "flac"]
    public static let midiExtensions: Set<String> = ["mid", "midi"]

    /// Pairs from a list of file paths (relative or absolute), sorted by stem.
    public static func match(_ paths: [String]) -> (pairs: [Pair], skipped: [Skipped]) {
        var audio: [String: [String]] = [:], midi: [String: [String]] = [:]
        var skipped: [Skipped] = []
        for path in paths {
            let ext = (path as NSString).pathExtension.lowercased()
            let stem = (path as NSString).deletingPathExtension
            if audioExtensions.contains(ext) { audio[stem, default: []].append(path) }
            else if midiExtensions.contains(ext) { midi[stem, default: []].append(path) }
            else { skipped.append(Skipped(path: path, reason: "neither audio (.wav, .flac) nor MIDI (.mid, .midi)")) }
        }
        var pairs: [Pair] = []
        for stem in Set(audio.keys).union(midi.keys).sorted() {
            let a = (audio[stem] ?? []).sorted(), m = (midi[stem] ?? []).sorted()
            if a.count > 1 {
                for p in a + m { skipped.append(Skipped(path: p, reason: "ambiguous: several audio files named \(stem) (\(a.joined(separator: ", ")))")) }
            } else if m.count > 1 {
                for p in a + m { skipped.append(Skipped(path: p, reason: "ambiguous: several MIDI files named \(stem) (\(m.joined(separator: ", ")))")) }
            } else if let a0 = a.first, let m0 = m.first {
                pairs.append(Pair(stem: stem, audio: a0, midi: m0))
            } else if let a0 = a.first {
                skipped.append(Skipped(path: a0, reason: "no MIDI file with the same name (\(stem).mid)"))
            } else if let m0 = m.first {
                skipped.append(Skipped(path: m0, reason: "no audio file with the same name (\(stem).wav or .flac)"))
            }
        }
        return (pairs, skipped.sorted { $0.path < $1.path })
    }

    /// Every regular file under `folder` (recursively, hidden files excluded), paired.
    public static func scan(folder: URL) throws -> (pairs: [Pair], skipped: [Skipped]) {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: folder.path, isDirectory: &isDir), isDir.boolValue else {
            throw TrainingDataError("\(folder.path): not a folder")
        }
        guard let e = fm.enumerator(at: folder, includingPropertiesForKeys: [.isRegularFileKey], options: [.skipsHiddenFiles]) else {
            throw TrainingDataError("\(folder.path): cannot list the folder")
        }
        var paths: [String] = []
        for case let url as URL in e where (try? url.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true {
            paths.append(url.path)
        }
        return match(paths)
    }
}

public struct TrainingDataError: CodedError, CustomStringConvertible, Equatable, Sendable {
    public var description: String
    public var code: ErrorCode
    public init(_ description: String, code: ErrorCode = .badData) { self.description = description; self.code = code }
}

/// One row of MAESTRO v3's maestro-v3.0.0.csv.
public struct MaestroEntry: Sendable, Equatable {
    public var composer: String
    public var title: String
    public var split: String        // train, validation, test
    public var year: String
    public var midiFilename: String
    public var audioFilename: String
    public var duration: Double
}

public enum MaestroCSV {
    static let required = ["canonical_composer", "canonical_title", "split", "year", "midi_filename", "audio_filename", "duration"]

    /// Parses the CSV (RFC 4180: quoted fields may hold commas, doubled quotes and newlines);
    /// columns are found by their header names.
    public static func parse(_ text: String) throws -> [MaestroEntry] {
        let rows = records(text)
        guard let header = rows.first else { throw TrainingDataError("MAESTRO CSV is empty") }
        var column: [String: Int] = [:]
        for (i, name) in header.enumerated() { column[name.trimmingCharacters(in: .whitespaces)] = i }
        let missing = required.filter { column[$0] == nil }
        guard missing.isEmpty else { throw TrainingDataError("MAESTRO CSV lacks column(s) \(missing.joined(separator: ", "))") }
        var out: [MaestroEntry] = []
        for (n, row) in rows.dropFirst().enumerated() where !(row.count == 1 && row[0].isEmpty) {
            func field(_ name: String) throws -> String {
                let i = column[name]!
                guard i < row.count else { throw TrainingDataError("MAESTRO CSV line \(n + 2): \(row.count) fields, no '\(name)'") }
                return row[i]
            }
            guard let duration = Double(try field("duration")) else {
                throw TrainingDataError("MAESTRO CSV line \(n + 2): duration '\(try field("duration"))' is not a number")
            }
            out.append(MaestroEntry(composer: try field("canonical_composer"), title: try field("canonical_title"), split: try field("split"),
                                    year: try field("year"), midiFilename: try field("midi_filename"),
                                    audioFilename: try field("audio_filename"), duration: duration))
        }
        return out
    }

    /// Upstream's instrument index: the year's position among the sorted distinct years of the
    /// rows it trains on (all ten for MAESTRO v3's train split, 2004 → 0 … 2018 → 9).
    public static func instrumentYears(_ entries: [MaestroEntry]) -> [String] {
        Array(Set(entries.map(\.year))).sorted()
    }

    static func records(_ text: String) -> [[String]] { CSV.records(text) }
}

/// A model-sized piece of a performance.
public struct TrainingSegment: Sendable, Equatable {
    public var audio: [Float]          // [samples]
    public var conditioning: [Float]   // [frames, voices, 2]
    public var pedal: [Float]          // [frames, 4]
    public var startFrame: Int         // in the performance's conditioning
}

/// Upstream's split_sequence_tf applied to audio and conditioning alike: windows of `seconds`
/// starting every seconds·(1 − overlap), only windows that fit entirely, as many as both the
/// audio and the conditioning give (the shorter wins), then windows where the piano roll holds
/// more than `maxPolyphony` notes at once dropped (the model cannot render them).
public enum Segmenter {
    /// Notes sounding per frame (pitches 21...108, after sustain), with the conditioning's frame
    /// rule: a note covers [floor(start·fr), max(start frame + 1, ceil(end·fr))).
    public static func polyphony(_ sequence: NoteSequence, frames: Int, frameRate: Int = UpstreamDefaults.frameRate) -> [Int] {
        var diff = [Int](repeating: 0, count: frames + 1)
        let fr = Double(frameRate)
        for note in sequence.notes where note.pitch >= UpstreamConditioning.minPitch && note.pitch <= UpstreamConditioning.maxPitch && !note.isDrum {
            let s = Int((note.start * fr).rounded(.down))
            let e = max(s + 1, Int((note.end * fr).rounded(.up)))
            let a = min(max(s, 0), frames), b = min(max(e, 0), frames)
            if a < b { diff[a] += 1; diff[b] -= 1 }
        }
        var out = [Int](repeating: 0, count: frames), run = 0
        for t in 0..<frames { run += diff[t]; out[t] = run }
        return out
    }

    public static func segments(audio: [Float], conditioning c: FrameConditioning, polyphony: [Int], seconds: Double = 3, overlap: Double = 0.5,
                                sampleRate: Int = PianoWeights.Hyper.dafx22.sampleRate, frameRate: Int = UpstreamDefaults.frameRate, maxPolyphony: Int = 16) -> (segments: [TrainingSegment], droppedForPolyphony: Int) {
        precondition(polyphony.count == c.frames)
        let n = Int(seconds * Double(sampleRate)), f = Int(seconds * Double(frameRate))
        let hopN = Int(Double(n) * (1 - overlap)), hopF = Int(Double(f) * (1 - overlap))
        precondition(hopN > 0 && hopF > 0, "overlap must be below 1")
        func count(_ length: Int, _ size: Int, _ hop: Int) -> Int { length < size ? 0 : (length - size) / hop + 1 }
        let windows = min(count(audio.count, n, hopN), count(c.frames, f, hopF))
        var out: [TrainingSegment] = [], dropped = 0
        let V = c.voices
        for w in 0..<windows {
            let a = w * hopN, s = w * hopF
            if polyphony[s..<(s + f)].contains(where: { $0 > maxPolyphony }) { dropped += 1; continue }
            out.append(TrainingSegment(audio: Array(audio[a..<(a + n)]),
                                       conditioning: Array(c.conditioning[(s * V * 2)..<((s + f) * V * 2)]),
                                       pedal: Array(c.pedal[(s * 4)..<((s + f) * 4)]), startFrame: s))
        }
        return (out, dropped)
    }
}

extension SegmentBatch {
    /// Stacks segments of equal length into one batch.
    public init(segments: [TrainingSegment], instruments: [Int], voices: Int) {
        precondition(!segments.isEmpty && segments.count == instruments.count)
        let frames = segments[0].pedal.count / 4
        precondition(segments.allSatisfy { $0.pedal.count == frames * 4 && $0.conditioning.count == frames * voices * 2 })
        self.init(batch: segments.count, frames: frames, voices: voices, conditioning: segments.flatMap(\.conditioning),
                  pedal: segments.flatMap(\.pedal), instruments: instruments)
    }
}
