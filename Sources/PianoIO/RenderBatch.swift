import Foundation
import DDSPPiano

/// `ddsp-piano render-batch` minus the argument parsing: the list of files (a CSV or a folder),
/// the shard, and the renders on worker threads, each with its own engine on one shared model.
/// An output that exists is finished (`AudioFileWriter` renames a file into place only when
/// complete), so a batch run again renders only what is missing.
public struct RenderBatch: Sendable {
    /// One file to render.
    public struct Item: Sendable, Equatable {
        public var midi: URL
        /// The input's path relative to the list's root: the sort key, mirrored under OUTDIR.
        public var name: String
        /// From the CSV's piano column; nil: the batch's `--piano`.
        public var piano: String?
        public var output: URL

        public init(midi: URL, name: String, piano: String?, output: URL) {
            self.midi = midi; self.name = name; self.piano = piano; self.output = output
        }
    }

    /// Column names accepted in a CSV, first present wins: MAESTRO's (`midi_filename`, `year`,
    /// `split`), upstream's `synthesize_from_csv.py` list (`mid_file`, `piano_model`), or plain.
    public static let midiColumns = ["midi_filename", "mid_file", "midi"]
    public static let pianoColumns = ["piano", "piano_model", "year"]
    public static let splitColumn = "split"

    /// Every file's settings: piano (the default for rows without one), weights, format,
    /// normalisation and the engine's `RenderSettings`; `midi` and `output` are set per item.
    public var template: RenderJob
    public var outputDirectory: URL
    public var jobs: Int

    public init(template: RenderJob, outputDirectory: URL, jobs: Int) {
        self.template = template
        self.outputDirectory = outputDirectory
        self.jobs = jobs
    }

    // MARK: The list

    /// The rows of a CSV with a header line. MIDI paths are relative to `root` (default: the
    /// CSV's folder, where MAESTRO's CSV sits); `split` keeps the rows of that split only.
    /// Sorted by name. Rows that would write the same output get their piano appended to the
    /// name ("x-2011.wav"), so one piece can be listed once per piano.
    public func items(csv: URL, root: URL? = nil, split: String? = nil) throws -> [Item] {
        let text: String
        do { text = try String(contentsOf: csv, encoding: .utf8) } catch {
            throw RenderError(csv.relativePath, FileManager.default.fileExists(atPath: csv.path) ? "cannot read as UTF-8 text" : "no such file",
                              code: FileManager.default.fileExists(atPath: csv.path) ? .unreadable : .notFound)
        }
        let rows = CSV.records(text)
        guard let header = rows.first else { throw RenderError(csv.relativePath, "empty; expected a header line", code: .badData) }
        let columns = header.map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        guard let midiColumn = Self.midiColumns.lazy.compactMap({ columns.firstIndex(of: $0) }).first else {
            throw RenderError(csv.relativePath, "no MIDI column; expected one of " + Self.midiColumns.joined(separator: ", "), code: .badData)
        }
        let pianoColumn = Self.pianoColumns.lazy.compactMap { columns.firstIndex(of: $0) }.first
        let splitColumn = columns.firstIndex(of: Self.splitColumn)
        if split != nil, splitColumn == nil {
            throw RenderError(csv.relativePath, "--split needs a '\(Self.splitColumn)' column", code: .usage)
        }
        let rootPath = (root ?? csv.deletingLastPathComponent()).relativePath
        var listed: [(name: String, midi: URL, piano: String?)] = []
        for (n, row) in rows.dropFirst().enumerated() where !(row.count == 1 && row[0].isEmpty) {
            func field(_ i: Int) -> String? {
                guard i < row.count else { return nil }
                let v = row[i].trimmingCharacters(in: .whitespaces)
                return v.isEmpty ? nil : v
            }
            if let split, let splitColumn, field(splitColumn) != split { continue }
            guard let path = field(midiColumn) else {
                throw RenderError(csv.relativePath, "line \(n + 2): no MIDI file in column '\(columns[midiColumn])'", code: .badData)
            }
            let midi = path.hasPrefix("/") ? URL(fileURLWithPath: path) : URL(fileURLWithPath: rootPath + "/" + path)
            // Absolute paths mirror their place under the root when inside it, else their name.
            var name = path.hasPrefix("/") ? (Self.relative(path, to: URL(fileURLWithPath: rootPath).standardizedFileURL.path) ?? midi.lastPathComponent) : path
            // "../x.mid" must not write outside OUTDIR.
            name = name.split(separator: "/").filter { $0 != ".." && $0 != "." }.joined(separator: "/")
            listed.append((name, midi, pianoColumn.flatMap(field)))
        }
        var outputs: [String: Int] = [:]
        for row in listed { outputs[Self.stem(row.name), default: 0] += 1 }
        var items: [Item] = []
        var seen: [String: Int] = [:]
        for (n, row) in listed.enumerated() {
            var stem = Self.stem(row.name)
            if outputs[stem]! > 1 { stem += "-" + (row.piano ?? template.piano ?? "default") }
            if let first = seen[stem] {
                throw RenderError(csv.relativePath, "rows \(first + 2) and \(n + 2) both render \(row.name) on the same piano", code: .badData)
            }
            seen[stem] = n
            items.append(Item(midi: row.midi, name: row.name, piano: row.piano, output: output(stem: stem)))
        }
        return Self.sorted(items)
    }

    /// Every .mid/.midi file under `directory`, recursively (hidden files and folders left out),
    /// sorted by path.
    public func items(directory: URL) throws -> [Item] {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory.path, isDirectory: &isDir) else {
            throw RenderError(directory.relativePath, "no such file or folder", code: .notFound)
        }
        guard isDir.boolValue else { throw RenderError(directory.relativePath, "is not a folder or a .csv file", code: .usage) }
        guard let walk = FileManager.default.enumerator(at: directory.standardizedFileURL, includingPropertiesForKeys: [.isRegularFileKey],
                                                        options: [.skipsHiddenFiles]) else {
            throw RenderError(directory.relativePath, "cannot list the folder", code: .unreadable)
        }
        let base = directory.standardizedFileURL.path
        var items: [Item] = []
        for case let url as URL in walk where ["mid", "midi"].contains(url.pathExtension.lowercased()) {
            guard (try? url.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true,
                  let name = Self.relative(url.standardizedFileURL.path, to: base) else { continue }
            items.append(Item(midi: URL(fileURLWithPath: directory.relativePath + "/" + name), name: name, piano: nil, output: output(stem: Self.stem(name))))
        }
        return Self.sorted(items)
    }

    /// Shard `index` (1-based, as `split -n l/K/N`, GNU parallel's {#} and Slurm's
    /// `--array=1-N` count) of `count`: every count-th item of the sorted list, starting at
    /// item `index`. Shards 1...count partition the list; each gets whole files of every part
    /// of the corpus.
    public static func shard(_ items: [Item], index: Int, count: Int) -> [Item] {
        items.enumerated().filter { $0.offset % count == index - 1 }.map(\.element)
    }

    /// "I/N" with 1 <= I <= N.
    public static func parseShard(_ text: String) throws -> (index: Int, count: Int) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let i = Int(parts[0]), let n = Int(parts[1]), n >= 1, i >= 1, i <= n else {
            throw RenderError("--shard \(text)", "expected I/N with 1 <= I <= N (shards count from 1, e.g. 1/4 ... 4/4)")
        }
        return (i, n)
    }

    // MARK: Rendering

    /// What happened to one file, reported as it happens.
    public enum Event: Sendable {
        case rendered(Item, RenderJob.Summary)
        /// One line: "FILE: problem".
        case failed(Item, String)
    }

    public struct Outcome: Sendable {
        public var rendered = 0
        /// Outputs that were already there.
        public var skipped = 0
        public var failed = 0
        public var audioSeconds = 0.0
        public var wallSeconds = 0.0
        public var jobs = 1

        /// "12 rendered, 3 skipped (already there), 1 failed: 345.0 s of audio in 60.2 s (5.7x real time, 2 jobs)"
        public var line: String {
            let speed = wallSeconds > 0 && rendered > 0 ? String(format: "%.1fx", audioSeconds / wallSeconds) : "-"
            return "\(rendered) rendered, \(skipped) skipped (already there), \(failed) failed: "
                + String(format: "%.1f s of audio in %.1f s", audioSeconds, wallSeconds)
                + " (\(speed) real time, \(jobs) job\(jobs == 1 ? "" : "s"))"
        }
    }

    /// The options and the default piano, checked once before any file (a bad one would fail
    /// every file).
    public func check(model: (url: URL, model: PianoModel)) throws {
        try template.checkOptions()
        if let piano = template.piano, model.model.instrumentIndex(piano) == nil {
            let names = model.model.instruments.joined(separator: ", ")
            throw RenderError(model.url.relativePath, "no piano '\(piano)'; valid: 0...\(model.model.instruments.count - 1) or \(names)", code: .notFound)
        }
        guard jobs >= 1 else { throw RenderError("--jobs \(jobs)", "must be at least 1") }
    }

    /// The items whose output is not there yet.
    public static func pending(_ items: [Item]) -> [Item] {
        items.filter { !FileManager.default.fileExists(atPath: $0.output.path) }
    }

    /// Renders `items` on `jobs` threads, each file with its own engine on `model`; a file that
    /// fails is reported and the others go on. `report` is called from the worker threads, one
    /// call at a time.
    /// `report` gets each event with the number of files finished so far, this one included.
    public func run(_ items: [Item], model: (url: URL, model: PianoModel), report: @escaping @Sendable (Event, Int) -> Void) -> Outcome {
        let started = Date()
        let state = BatchState(items: items)
        let template = self.template
        let workers = max(1, min(jobs, items.count))
        let group = DispatchGroup()
        for _ in 0..<workers {
            group.enter()
            let thread = Thread {
                while let item = state.next() {
                    let event = Self.render(item, template: template, model: model)
                    state.record(event, report: report)
                }
                group.leave()
            }
            // The main thread's size, where `render` runs (a secondary thread's default is smaller).
            thread.stackSize = 8 << 20
            thread.start()
        }
        group.wait()
        var outcome = state.outcome
        outcome.wallSeconds = Date().timeIntervalSince(started)
        outcome.jobs = workers
        return outcome
    }

    static func render(_ item: Item, template: RenderJob, model: (url: URL, model: PianoModel)) -> Event {
        var job = template
        job.midi = item.midi
        job.output = item.output
        job.dryOutput = nil
        if let piano = item.piano { job.piano = piano }
        do {
            try FileManager.default.createDirectory(at: item.output.deletingLastPathComponent(), withIntermediateDirectories: true)
        } catch {
            return .failed(item, "\(item.output.deletingLastPathComponent().relativePath): cannot create the folder")
        }
        do {
            let prepared = try job.prepare(model: model)
            var summary = try job.render(prepared)
            // The input's warnings too: one list for the caller to print.
            summary.warnings = prepared.warnings + summary.warnings
            return .rendered(item, summary)
        } catch {
            return .failed(item, String(describing: error).split(whereSeparator: \.isNewline).joined(separator: " "))
        }
    }

    /// The CPUs this process may run on: its affinity mask (what Slurm, cgroup cpusets and
    /// taskset set), which `activeProcessorCount` ignores; else the online CPUs.
    public static func usableCPUs() -> Int {
        if let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
           let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Cpus_allowed:") }) {
            let bits = line.dropFirst("Cpus_allowed:".count).reduce(0) { $0 + (Int(String($1), radix: 16)?.nonzeroBitCount ?? 0) }
            if bits > 0 { return bits }
        }
        return max(1, ProcessInfo.processInfo.activeProcessorCount)
    }

    // MARK: Helpers

    func output(stem: String) -> URL {
        URL(fileURLWithPath: outputDirectory.relativePath + "/" + stem + "." + template.format.fileExtension)
    }

    /// The name without its .mid/.midi extension.
    static func stem(_ name: String) -> String {
        let ext = (name as NSString).pathExtension.lowercased()
        return ext == "mid" || ext == "midi" ? (name as NSString).deletingPathExtension : name
    }

    static func relative(_ path: String, to base: String) -> String? {
        let prefix = base.hasSuffix("/") ? base : base + "/"
        return path.hasPrefix(prefix) ? String(path.dropFirst(prefix.count)) : nil
    }

    /// By the bytes of the name (as `LC_ALL=C sort`), so every machine splits the same list alike.
    static func sorted(_ items: [Item]) -> [Item] {
        items.sorted { Array($0.name.utf8).lexicographicallyPrecedes(Array($1.name.utf8)) }
    }
}

/// The queue of items and the running totals the worker threads share.
private final class BatchState: @unchecked Sendable {
    private let lock = NSLock()
    private let items: [RenderBatch.Item]
    private var nextIndex = 0
    private(set) var outcome = RenderBatch.Outcome()

    init(items: [RenderBatch.Item]) { self.items = items }

    func next() -> RenderBatch.Item? {
        lock.lock(); defer { lock.unlock() }
        guard nextIndex < items.count else { return nil }
        defer { nextIndex += 1 }
        return items[nextIndex]
    }

    func record(_ event: RenderBatch.Event, report: (RenderBatch.Event, Int) -> Void) {
        lock.lock(); defer { lock.unlock() }
        switch event {
        case .rendered(_, let summary):
            outcome.rendered += 1
            outcome.audioSeconds += summary.audioSeconds
        case .failed: outcome.failed += 1
        }
        report(event, outcome.rendered + outcome.failed)
    }
}
