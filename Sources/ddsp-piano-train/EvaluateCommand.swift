import ArgumentParser
import DDSPPiano
import Foundation
import PianoIO
import PianoTraining

struct EvaluateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "evaluate",
        abstract: "Multi-scale spectral distance between a model's renders of MIDI files and recordings of them.",
        discussion: """
        DIR holds one sub-folder per instrument with .wav/.flac + .mid pairs (as `dataset` \
        writes DATA/heldout). Each MIDI file is rendered as `ddsp-piano render` would (streaming \
        engine, at the model's rate; --exact for dafx22's two-pass path) on the piano of the same name in the \
        weight file, or on --piano for all, and compared with its recording: FFT sizes \
        2048…64 with 75 % overlap, mean |ΔS| + mean |Δlog S| summed over sizes (lower is closer).
        """
    )

    @Option(help: ArgumentHelp("Weight file.", valueName: "file"))
    var weights: String

    @Option(help: ArgumentHelp("Folder of pairs, one sub-folder per instrument.", valueName: "dir"))
    var data: String

    @Option(help: ArgumentHelp("Render every folder on this piano (index or name) instead of the one named like the folder.", valueName: "N|NAME"))
    var piano: String?

    @Flag(name: .customLong("all-pianos"), help: "Report every piano of the weight file on every folder.")
    var allPianos = false

    @Flag(help: "Render with the exact two-pass normalisation instead of the streaming engine.")
    var exact = false

    @Option(name: .customLong("max-seconds"), help: ArgumentHelp("Compare only the first seconds of each piece.", valueName: "s"))
    var maxSeconds: Double?

    @Option(name: .customLong("sample-rate"), help: ArgumentHelp("Compare at this rate (default: the model's); 16000 puts a v2 model and a dafx22 one on equal terms.", valueName: "Hz"))
    var sampleRate: Int?

    @Option(help: ArgumentHelp("Also write the results as JSON here.", valueName: "file"))
    var json: String?

    func validate() throws {
        if let r = sampleRate { guard (8_000...192_000).contains(r) else { throw ValidationError("--sample-rate must be between 8000 and 192000") } }
    }

    func run() throws {
        do { try evaluate() } catch let e as TrainingDataError {
            FileHandle.standardError.write(Data("ddsp-piano-train: \(e.description)\n".utf8)); throw ExitCode(1)
        } catch let e as WeightStoreError {
            FileHandle.standardError.write(Data("ddsp-piano-train: \(e)\n".utf8)); throw ExitCode(1)
        }
    }

    func pianoIndex(_ text: String, _ w: WeightFile) throws -> Int {
        if let i = w.instruments.firstIndex(of: text) { return i }
        if let i = Int(text), i >= 0, i < w.instruments.count { return i }
        throw TrainingDataError("\(weights): no piano '\(text)' (it has \(w.instruments.joined(separator: ", ")))")
    }

    func evaluate() throws {
        let w = try WeightStore.readFile(URL(fileURLWithPath: weights))
        let model = try PianoModel(w)
        var settings = RenderSettings()
        settings.exact = exact
        var rows: [[String: Any]] = []
        var means: [String: (sum: Double, n: Int)] = [:]
        for (name, url) in try TrainingSet.instrumentFolders(URL(fileURLWithPath: data)) {
            let (pairs, skipped) = try TrainingPairs.scan(folder: url)
            for s in skipped { FileHandle.standardError.write(Data("ddsp-piano-train: \(s.path): \(s.reason); skipped\n".utf8)) }
            let pianos: [Int]
            if allPianos { pianos = Array(w.instruments.indices) }
            else if let p = piano { pianos = [try pianoIndex(p, w)] }
            else if let i = w.instruments.firstIndex(of: name) { pianos = [i] }
            else { throw TrainingDataError("\(weights): no piano named '\(name)' for \(url.path); choose one with --piano or --all-pianos") }
            for pair in pairs {
                for p in pianos {
                    let r: (distance: Double, seconds: Double)
                    do {
                        r = try Evaluation.distance(audio: URL(fileURLWithPath: pair.audio), midi: URL(fileURLWithPath: pair.midi), model: model,
                                                    piano: p, settings: settings, maxSeconds: maxSeconds, sampleRate: sampleRate)
                    } catch let e as TrainingDataError {
                        FileHandle.standardError.write(Data("ddsp-piano-train: \(e.description); skipped\n".utf8)); continue
                    }
                    let stem = (pair.stem as NSString).lastPathComponent
                    print(String(format: "%@/%@  piano %@  %.1f s  distance %.4f", name, stem, w.instruments[p], r.seconds, r.distance))
                    rows.append(["folder": name, "piece": stem, "piano": w.instruments[p], "seconds": r.seconds, "distance": r.distance])
                    let key = "\(name) on \(w.instruments[p])"
                    means[key, default: (0, 0)].sum += r.distance; means[key, default: (0, 0)].n += 1
                }
            }
        }
        guard !rows.isEmpty else { throw TrainingDataError("\(data): no pair could be evaluated") }
        var summary: [[String: Any]] = []
        for key in means.keys.sorted() {
            let m = means[key]!
            print(String(format: "mean %@: %.4f over %d pieces", key, m.sum / Double(m.n), m.n))
            summary.append(["case": key, "mean_distance": m.sum / Double(m.n), "pieces": m.n])
        }
        let total = rows.map { $0["distance"] as! Double }.reduce(0, +) / Double(rows.count)
        print(String(format: "mean over all %d renders: %.4f", rows.count, total))
        if let json {
            let obj: [String: Any] = ["weights": weights, "data": data, "exact": exact, "pieces": rows, "means": summary, "mean": total]
            let bytes = try JSONSerialization.data(withJSONObject: obj, options: [.prettyPrinted, .sortedKeys])
            try WeightStore.writeAtomically([UInt8](bytes), to: URL(fileURLWithPath: json))
        }
    }
}
