import DDSPPiano
import Foundation
import PianoIO

/// The performances of one split (train, validation, held-out) loaded into memory, and the
/// 3-second windows cut from them. Audio is decoded, resampled and conditioned once, when the
/// set is loaded (the "cache" upstream builds during its first epoch), and windows are views
/// into it, so an epoch costs no file access.
public struct TrainingSet: Sendable {
    public struct Window: Sendable, Equatable {
        public var performance: Int
        public var audioStart: Int
        public var frameStart: Int
    }

    public var instruments: [String]
    public var performances: [Performance] = []
    public var performanceInstrument: [Int] = []
    public var performanceNames: [String] = []
    /// Per performance, its place in the list of pairs it was loaded from (`Job`): a rank's
    /// share of a data-parallel run knows where its pieces stand among everyone's.
    public var performanceKeys: [Int] = []
    public var windows: [Window] = []
    public var skipped: [TrainingPairs.Skipped] = []
    public var droppedForPolyphony = 0
    public let segmentSeconds: Double
    public let overlap: Double
    /// The model's rate, which the audio is held at (dafx22 16 kHz, v2 24 kHz).
    public let sampleRate: Int

    public var seconds: Double { performances.reduce(0) { $0 + Double($1.audio.count) } / Double(sampleRate) }

    public init(instruments: [String], segmentSeconds: Double = 3, overlap: Double = 0.5,
                sampleRate: Int = PianoWeights.Hyper.dafx22.sampleRate) {
        self.instruments = instruments; self.segmentSeconds = segmentSeconds; self.overlap = overlap; self.sampleRate = sampleRate
    }

    /// Adds a loaded performance and its windows (upstream's split rule: windows every
    /// seconds·(1 − overlap) that fit entirely, minus those holding more than 16 notes at once).
    public mutating func add(_ p: Performance, instrument: Int, name: String, key: Int? = nil, frameRate: Int = UpstreamDefaults.frameRate) {
        let index = performances.count
        performances.append(p); performanceInstrument.append(instrument); performanceNames.append(name)
        performanceKeys.append(key ?? index)
        let n = Int(segmentSeconds * Double(sampleRate)), f = Int(segmentSeconds * Double(frameRate))
        let hopN = Int(Double(n) * (1 - overlap)), hopF = Int(Double(f) * (1 - overlap))
        func count(_ length: Int, _ size: Int, _ hop: Int) -> Int { length < size ? 0 : (length - size) / hop + 1 }
        let total = min(count(p.audio.count, n, hopN), count(p.conditioning.frames, f, hopF))
        for w in 0..<total {
            let a = w * hopN, s = w * hopF
            if p.polyphony[s..<(s + f)].contains(where: { $0 > p.conditioning.voices }) { droppedForPolyphony += 1; continue }
            windows.append(Window(performance: index, audioStart: a, frameStart: s))
        }
    }

    public func samplesPerSegment() -> Int { Int(segmentSeconds * Double(sampleRate)) }
    public func framesPerSegment(frameRate: Int = UpstreamDefaults.frameRate) -> Int { Int(segmentSeconds * Double(frameRate)) }

    /// One window's model inputs and target, as a batch holds them (what ranks send each other).
    public struct Record: Sendable, Equatable {
        public var conditioning: [Float]   // [frames, voices, 2]
        public var pedal: [Float]          // [frames, 4]
        public var target: [Float]         // [samples]
        public var instrument: Int
        public var voices: Int
    }

    public func record(_ i: Int) -> Record {
        let n = samplesPerSegment(), f = framesPerSegment()
        let w = windows[i], p = performances[w.performance], V = p.conditioning.voices
        return Record(conditioning: Array(p.conditioning.conditioning[(w.frameStart * V * 2)..<((w.frameStart + f) * V * 2)]),
                      pedal: Array(p.conditioning.pedal[(w.frameStart * 4)..<((w.frameStart + f) * 4)]),
                      target: Array(p.audio[w.audioStart..<(w.audioStart + n)]),
                      instrument: performanceInstrument[w.performance], voices: V)
    }

    /// Windows `indices` as a model batch and its target audio [batch, samples].
    public func batch(_ indices: [Int]) -> (batch: SegmentBatch, target: [Float]) {
        Self.batch(indices.map(record), frames: framesPerSegment())
    }

    /// Records as a model batch and its target audio [batch, samples].
    public static func batch(_ records: [Record], frames f: Int) -> (batch: SegmentBatch, target: [Float]) {
        let V = records[0].voices
        var conditioning = [Float](), pedal = [Float](), target = [Float](), instruments = [Int]()
        conditioning.reserveCapacity(records.count * f * V * 2); pedal.reserveCapacity(records.count * f * 4)
        target.reserveCapacity(records.count * (records[0].target.count))
        for r in records {
            conditioning += r.conditioning; pedal += r.pedal; target += r.target
            instruments.append(r.instrument)
        }
        return (SegmentBatch(batch: records.count, frames: f, voices: V, conditioning: conditioning, pedal: pedal, instruments: instruments), target)
    }

    // MARK: - Loading

    /// A data folder: `DIR/<instrument>/…` pairs (each sub-folder one instrument, its name the
    /// instrument's), or pairs directly in DIR (one instrument named after the folder).
    /// `ddsp-piano-train dataset` writes `DIR/train`, `DIR/validation`, `DIR/heldout` so laid out.
    public static func instrumentFolders(_ folder: URL) throws -> [(name: String, url: URL)] {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: folder.path, isDirectory: &isDir), isDir.boolValue else {
            throw TrainingDataError("\(folder.path): not a folder")
        }
        let entries = try fm.contentsOfDirectory(atPath: folder.path).filter { !$0.hasPrefix(".") }.sorted()
        let subfolders = entries.filter { name in
            var d: ObjCBool = false
            return fm.fileExists(atPath: folder.appendingPathComponent(name).path, isDirectory: &d) && d.boolValue
        }
        if subfolders.isEmpty { return [(folder.lastPathComponent, folder)] }
        return subfolders.map { ($0, folder.appendingPathComponent($0)) }
    }

    /// A pair to load: its files, its instrument's index, its name (instrument/stem).
    public typealias Job = (pair: TrainingPairs.Pair, instrument: Int, name: String)

    /// Every pair under the instrument folders of `folder`, in a fixed order; instruments not in
    /// `instruments` are appended to it. Unusable pairs are listed in `skipped` with the reason.
    public static func jobs(folder: URL, instruments: inout [String]) throws -> (jobs: [Job], skipped: [TrainingPairs.Skipped]) {
        var jobs: [Job] = []
        var skipped: [TrainingPairs.Skipped] = []
        for (name, url) in try instrumentFolders(folder) {
            let (pairs, s) = try TrainingPairs.scan(folder: url)
            skipped += s
            guard !pairs.isEmpty else { continue }
            if !instruments.contains(name) { instruments.append(name) }
            let index = instruments.firstIndex(of: name)!
            for p in pairs { jobs.append((p, index, name + "/" + (p.stem as NSString).lastPathComponent)) }
        }
        return (jobs, skipped)
    }

    /// Loads every pair under the instrument folders of `folder` (`jobs(folder:)`).
    /// Files are decoded on `threads` threads; the set's order does not depend on it.
    public static func load(folder: URL, instruments: inout [String], threads: Int = 2, maxSecondsPerFile: Double? = nil,
                            segmentSeconds: Double = 3, overlap: Double = 0.5, sampleRate: Int = PianoWeights.Hyper.dafx22.sampleRate,
                            progress: ((Double) -> Void)? = nil) throws -> TrainingSet {
        let (jobs, skipped) = try jobs(folder: folder, instruments: &instruments)
        return load(jobs: jobs, instruments: instruments, skipped: skipped, threads: threads, maxSecondsPerFile: maxSecondsPerFile,
                    segmentSeconds: segmentSeconds, overlap: overlap, sampleRate: sampleRate, progress: progress)
    }

    /// MAESTRO v3's pairs of `split` (`maestro-v3.0.0.csv` in `root`), instrument = the year
    /// (upstream's order: sorted distinct years of the training rows).
    public static func maestroJobs(root: URL, split: String, instruments: inout [String]) throws -> [Job] {
        let csvURL = root.appendingPathComponent("maestro-v3.0.0.csv")
        guard let text = try? String(contentsOf: csvURL, encoding: .utf8) else { throw TrainingDataError("\(csvURL.path): cannot read the MAESTRO CSV") }
        let entries: [MaestroEntry]
        do { entries = try MaestroCSV.parse(text) } catch { throw TrainingDataError("\(csvURL.path): \(error)") }
        if instruments.isEmpty { instruments = MaestroCSV.instrumentYears(entries.filter { $0.split == "train" }) }
        var jobs: [Job] = []
        for e in entries where e.split == split {
            if !instruments.contains(e.year) { instruments.append(e.year) }
            let pair = TrainingPairs.Pair(stem: e.midiFilename, audio: root.appendingPathComponent(e.audioFilename).path,
                                          midi: root.appendingPathComponent(e.midiFilename).path)
            jobs.append((pair, instruments.firstIndex(of: e.year)!, e.year + "/" + e.midiFilename))
        }
        return jobs
    }

    /// MAESTRO v3: the rows of `split` (`maestroJobs`), loaded.
    public static func loadMaestro(root: URL, split: String, instruments: inout [String], threads: Int = 2, maxSecondsPerFile: Double? = nil,
                                   progress: ((Double) -> Void)? = nil) throws -> TrainingSet {
        let jobs = try maestroJobs(root: root, split: split, instruments: &instruments)
        return load(jobs: jobs, instruments: instruments, skipped: [], threads: threads, maxSecondsPerFile: maxSecondsPerFile,
                    segmentSeconds: 3, overlap: 0.5, progress: progress)
    }

    /// Loads `jobs` on `threads` threads; `keys` (default: the jobs' positions) are the
    /// performances' `performanceKeys`. A pair that fails is listed in `skipped`.
    public static func load(jobs: [Job], keys: [Int]? = nil, instruments: [String],
                            skipped: [TrainingPairs.Skipped], threads: Int, maxSecondsPerFile: Double?,
                            segmentSeconds: Double = 3, overlap: Double = 0.5, sampleRate: Int = PianoWeights.Hyper.dafx22.sampleRate,
                            progress: ((Double) -> Void)?) -> TrainingSet {
        // @unchecked Sendable: shared fields are under `lock` (the next job, the slots); read after all workers joined.
        final class Results: @unchecked Sendable {
            var items: [Result<Performance, Error>?]
            var done = 0
            let lock = NSLock()
            init(_ n: Int) { items = Array(repeating: nil, count: n) }
        }
        let results = Results(jobs.count)
        let next = Results(0)
        let workers = max(1, min(threads, jobs.count))
        DispatchQueue.concurrentPerform(iterations: workers) { _ in
            while true {
                next.lock.lock(); let i = next.done; next.done += 1; next.lock.unlock()
                guard i < jobs.count else { return }
                let job = jobs[i]
                let r = Result {
                    var p = try PerformanceLoader.load(audio: URL(fileURLWithPath: job.pair.audio), midi: URL(fileURLWithPath: job.pair.midi),
                                                       sampleRate: sampleRate)
                    if let cap = maxSecondsPerFile { p = p.cropped(seconds: cap, sampleRate: sampleRate) }
                    return p
                }
                results.lock.lock(); results.items[i] = r; results.done += 1; let d = results.done; results.lock.unlock()
                progress?(Double(d) / Double(jobs.count))
            }
        }
        var set = TrainingSet(instruments: instruments, segmentSeconds: segmentSeconds, overlap: overlap, sampleRate: sampleRate)
        set.skipped = skipped
        for (i, job) in jobs.enumerated() {
            switch results.items[i]! {
            case .success(let p): set.add(p, instrument: job.instrument, name: job.name, key: keys?[i] ?? i)
            case .failure(let e):
                // The loader's messages start with the file they are about.
                let d = "\(e)"
                let path = [job.pair.audio, job.pair.midi].first { d.hasPrefix($0 + ": ") }
                set.skipped.append(TrainingPairs.Skipped(path: path ?? job.pair.audio, reason: path.map { String(d.dropFirst($0.count + 2)) } ?? d))
            }
        }
        return set
    }
}

extension Performance {
    /// The first `seconds` of the performance (audio and conditioning alike).
    public func cropped(seconds: Double, sampleRate: Int = PianoWeights.Hyper.dafx22.sampleRate, frameRate: Int = UpstreamDefaults.frameRate) -> Performance {
        let n = Int(seconds * Double(sampleRate)), f = Int(seconds * Double(frameRate))
        guard audio.count > n || conditioning.frames > f else { return self }
        var p = self
        if audio.count > n { p.audio = Array(audio[..<n]) }
        if conditioning.frames > f {
            let V = conditioning.voices
            var c = FrameConditioning(frames: f, voices: V)
            c.conditioning = Array(conditioning.conditioning[..<(f * V * 2)])
            c.pedal = Array(conditioning.pedal[..<(f * 4)])
            p.conditioning = c
            p.polyphony = Array(polyphony[..<f])
        }
        return p
    }
}
