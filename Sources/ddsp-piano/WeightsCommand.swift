import ArgumentParser
import DDSPPiano
import Foundation
import PianoFormats
import PianoIO
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

struct WeightsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "weights",
        abstract: "Import, inspect and fetch model weights.",
        discussion: """
        Two models: v2 (upstream's default, maestro-v2.gin, 24 kHz) and dafx22 (the DAFx 2022 \
        paper's, 16 kHz). Commands that need weights look, in order, at: an explicit path; \
        $\(WeightStore.environmentVariable); \(installedDirectoryText)/\(WeightStore.installedV2FileName) \
        (written by 'weights fetch v2'); \(installedDirectoryText)/\(WeightStore.installedFileName) \
        (written by 'weights fetch dafx22'); PREFIX/share/ddsp-piano/weights of an installation \
        (beside the executable's bin/); a weights/ folder above the executable; \
        /usr/local/share/ddsp-piano/weights; /usr/share/ddsp-piano/weights. \
        'weights info' without a file says which one that is, and why.
        """,
        subcommands: [Fetch.self, Import.self, Info.self, Calibrate.self]
    )

    /// Runs a subcommand body; user errors become one line `ddsp-piano: FILE: problem` and exit 1.
    static func reportingErrors(_ body: () throws -> Void) throws {
        do {
            try body()
        } catch let e as ExitCode {
            throw e
        } catch {
            // WeightStoreError and the others print as "FILE: problem" or a plain sentence.
            FileHandle.standardError.write(Data("ddsp-piano: \(error)\n".utf8))
            throw ExitCode.failure
        }
    }

    static func grouped(_ n: Int) -> String {
        let digits = Array(String(n))
        var out = ""
        for (i, c) in digits.enumerated() {
            if i > 0, (digits.count - i) % 3 == 0 { out.append(",") }
            out.append(c)
        }
        return out
    }

    static let installedDirectoryText = "${XDG_DATA_HOME:-~/.local/share}/ddsp-piano/weights"

    /// After installing at the default location: a note when `render` would still use other weights.
    static func noteIfShadowed(_ installed: URL) -> String? {
        guard let chosen = try? WeightStore().locate(), chosen.url.standardizedFileURL.path != installed.standardizedFileURL.path else { return nil }
        return "note: render and the daemon use \(chosen.url.path) (\(chosen.origin.rawValue)) before it; see 'ddsp-piano weights info'"
    }
}

extension WeightsCommand {
    struct Import: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "import",
            abstract: "Convert a TensorFlow DDSP-Piano checkpoint (v2 or dafx22) into a ddsp-piano weight file.",
            discussion: """
            Reads the tensor bundle natively (no TensorFlow needed), checks the crc32c the index \
            records for every tensor, tells the model by its variables (v2: maestro-v2.gin's FiLM \
            context network and feedback-delay reverb; else dafx22), maps the upstream variables \
            to readable names (optimizer slots and counters are left out) and writes a .safetensors \
            file with provenance metadata (source, import date, SHA-256 of each checkpoint file; for a \
            pinned upstream release its URL, commit and hashes instead, no date or path, so the file is \
            byte-identical to what 'weights fetch' installs). \
            Default output: \(WeightsCommand.installedDirectoryText)/\(WeightStore.installedV2FileName) \
            for a v2 checkpoint, .../\(WeightStore.installedFileName) for a dafx22 one.
            """
        )

        @Argument(help: ArgumentHelp(
            "Checkpoint folder (holding 'checkpoint', PREFIX.index, PREFIX.data-*), or a prefix such as DIR/ckpt-0.",
            valueName: "checkpoint-dir"))
        var checkpoint: String

        @Option(name: .shortAndLong, help: ArgumentHelp(
            "Weight file to write (default: the installed weights of the checkpoint's model, \(WeightsCommand.installedDirectoryText)/{v2,dafx22}.safetensors).",
            valueName: "file.safetensors"))
        var output: String?

        @Option(help: ArgumentHelp(
            "Comma-separated instrument names, one per embedding row (default: the ten MAESTRO years for a 10-instrument checkpoint).",
            valueName: "a,b,c"))
        var instruments: String?

        func run() throws {
            try WeightsCommand.reportingErrors {
                let names = instruments.map {
                    $0.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
                }
                if let names, names.isEmpty || names.contains(where: \.isEmpty) {
                    throw ValidationFailure("--instruments: empty instrument name in '\(instruments!)'")
                }
                let files = try CheckpointFiles(path: checkpoint)
                let weights: WeightFile
                do {
                    weights = try CheckpointImport.weightFile(
                        from: files.checkpoint, instruments: names, release: files.release,
                        source: "TensorFlow checkpoint \(files.prefix.path)",
                        fileHashes: files.sha256, importer: "ddsp-piano weights import")
                } catch let e as CheckpointError {
                    throw WeightStoreError(file: files.prefix.path, problem: e.description)
                } catch let e as WeightsError {
                    throw WeightStoreError(file: files.prefix.path, problem: e.description)
                }
                let destination = output.map { URL(fileURLWithPath: $0) } ?? WeightStore().installedURL(architecture: weights.architecture)
                try WeightStore.install(weights, at: destination)
                let release = weights.provenance["release"].map { ", release \($0)" } ?? ""
                print("wrote \(destination.path): \(weights.architecture) model (\(weights.sampleRate) Hz), \(weights.instruments.count) instruments, \(WeightsCommand.grouped(weights.parameterCount)) parameters\(release)")
                if output == nil, let note = WeightsCommand.noteIfShadowed(destination) { print(note) }
            }
        }
    }

    struct Info: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "info",
            abstract: "Describe a weight file: architecture, rates, instruments, tensors, provenance.",
            discussion: """
            Without FILE, describes the weights that 'render' and the daemon would use, and says \
            why those: $\(WeightStore.environmentVariable), else the installed v2 weights, else the \
            installed dafx22 weights, else the bundled weights.
            """
        )

        @Argument(help: ArgumentHelp("Weight file (.safetensors).", valueName: "file"))
        var file: String?

        static func reason(_ location: WeightStore.Location, store: WeightStore) -> String {
            switch location.origin {
            case .explicit:
                return "given on the command line"
            case .environment:
                return "named by $\(WeightStore.environmentVariable), which comes before installed and bundled weights"
            case .installed:
                let others = store.installedURLs.filter { $0 != location.url && FileManager.default.fileExists(atPath: $0.path) }
                var text = "no file given and $\(WeightStore.environmentVariable) unset; installed weights come next (\(WeightStore.installedFileNames.joined(separator: " before ")))"
                if !others.isEmpty { text += "; also installed, not used: \(others.map(\.lastPathComponent).joined(separator: ", "))" }
                return text
            case .bundled:
                return "no file given, $\(WeightStore.environmentVariable) unset, nothing installed in \(store.dataDirectory.path); the first bundled weight file"
            }
        }

        static func number(_ v: Float) -> String { String(format: "%.6g", Double(v)) }

        static func table(_ header: [String], _ rows: [[String]]) -> String {
            var widths = header.map(\.count)
            for r in rows { for (i, c) in r.enumerated() { widths[i] = max(widths[i], c.count) } }
            func line(_ cells: [String]) -> String {
                "  " + cells.enumerated().map { i, c in
                    i == cells.count - 1 ? c : c.padding(toLength: widths[i], withPad: " ", startingAt: 0)
                }.joined(separator: "  ") + "\n"
            }
            return line(header) + rows.map(line).joined()
        }

        func run() throws {
            try WeightsCommand.reportingErrors {
                let store = WeightStore()
                let location = try store.locate(explicit: file)
                let (meta, weightFile) = try WeightStore.readFileAndMetadata(location.url)
                var out = "file: \(location.url.path)"
                if location.origin != .explicit { out += " (\(location.origin.rawValue))" }
                out += "\n"
                if file == nil { out += "why: \(Self.reason(location, store: store))\n" }
                out += "format: \(meta["format"] ?? PianoWeights.formatName) \(meta["format_version"] ?? "?")\n"
                switch weightFile {
                case .dafx22(let w): out += describe(w, meta: meta)
                case .v2(let w): out += describe(w)
                }
                print(out, terminator: "")
            }
        }

        func describe(_ w: PianoWeights, meta: [String: String]) -> String {
            let h = w.hyper
            var out = "architecture: \(meta["architecture"] ?? "dafx22")\n"
            out += "sample rate: \(h.sampleRate) Hz\n"
            out += "frame rate: \(h.frameRate) frames/s (\(h.samplesPerFrame) samples per frame)\n"
            out += "voices: \(h.voices)\n"
            out += "instruments: \(w.instruments.count)\n"
            for (i, name) in w.instruments.enumerated() { out += "  \(i)  \(name)\n" }
            out += "parameters: \(WeightsCommand.grouped(w.parameterCount))\n"
            out += "release time: \(Self.number(w.releaseDuration.values[0])) s\n"
            let tensors = w.safetensors().tensors
            out += "tensors: \(tensors.count)\n"
            let width = PianoWeights.tensorNames.map(\.count).max() ?? 0
            for name in PianoWeights.tensorNames {
                guard let t = tensors[name] else { continue }
                let shape = "[" + t.shape.map(String.init).joined(separator: ", ") + "]"
                out += "  " + name.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + shape + "\n"
            }
            out += "normalisation calibration: " + (w.calibration.map { "\($0.instruments) instruments x \($0.voices) voices (calibration.* tensors)\n" } ?? "none (generic prior; see 'weights calibrate')\n")
            out += Self.provenance(w.provenance)
            return out
        }

        func describe(_ w: V2Weights) -> String {
            var out = "architecture: \(V2Weights.architecture) (upstream's default model, maestro-v2.gin)\n"
            out += "sample rate: \(V2Weights.sampleRate) Hz\n"
            out += "frame rate: \(V2Weights.frameRate) frames/s (\(V2Weights.sampleRate / V2Weights.frameRate) samples per frame)\n"
            out += "voices: \(V2Weights.voices)\n"
            out += "instruments: \(w.instruments.count)\n"
            for (i, name) in w.instruments.enumerated() { out += "  \(i)  \(name)\n" }
            out += "parameters: \(WeightsCommand.grouped(w.parameterCount))\n"
            let release = w.releaseDuration
            out += "release time: \(Self.number(release)) s (\(Self.number(release * Float(V2Weights.frameRate))) frames)\n"
            let n = w.instruments.count
            out += "tuning per piano (inharmonicity and tuning model, 7 values):\n"
            out += Self.table(["piano"] + V2Weights.tuningParameters, (0..<n).map { p in
                ["\(p) \(w.instruments[p])"] + V2Weights.tuningParameters.map { Self.number(w["tuning.\($0)"].values[p]) }
            })
            out += "reverb per piano (feedback delay network, 8 lines; reverb time before relu):\n"
            out += Self.table(["piano", "reverb time (s)", "alpha_tone"], (0..<n).map { p in
                ["\(p) \(w.instruments[p])", Self.number(w["reverb.time_rev_0_sec"].values[p]), Self.number(w["reverb.alpha_tone"].values[p])]
            })
            let layout = V2Weights.layout(instruments: n)
            out += "tensors: \(layout.count)\n"
            let width = layout.map(\.name.count).max() ?? 0
            for e in layout {
                let shape = "[" + w[e.name].shape.map(String.init).joined(separator: ", ") + "]"
                out += "  " + e.name.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + shape + "\n"
            }
            out += Self.provenance(w.provenance)
            return out
        }

        static func provenance(_ p: [String: String]) -> String {
            var out = "provenance:" + (p.isEmpty ? " none\n" : "\n")
            for key in p.keys.sorted() { out += "  \(key): \(p[key]!)\n" }
            return out
        }
    }

    struct Fetch: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "fetch",
            abstract: "Download published weights, verify them, convert and install them.",
            discussion: """
            Weights available (upstream lrenault/ddsp-piano, commit \(WeightRelease.upstreamCommit)):
            \(Fetch.releaseList)
            Downloads the upstream TensorFlow checkpoint pinned by commit, checks every file \
            against its pins (SHA-256; for v2's data file, whose SHA-256 is not published: its \
            size, its git blob id and the crc32c the SHA-256-pinned index records for each of its \
            tensors), converts it and installs it at \(WeightsCommand.installedDirectoryText)/NAME.safetensors \
            (or -o). Nothing is installed unless every file downloaded and verified; an existing \
            file is replaced atomically. The base URL can also be set with \
            $\(WeightRelease.baseURLEnvironmentVariable) (http, https, file URL or folder). \
            Without NAME, lists the weights available.
            """
        )

        static var releaseList: String {
            let width = WeightRelease.all.map(\.name.count).max() ?? 0
            return WeightRelease.all.map { r in
                "  " + r.name.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + r.summary
            }.joined(separator: "\n") + "\n"
        }

        @Argument(help: ArgumentHelp("Weights to fetch: \(WeightRelease.all.map(\.name).joined(separator: ", ")). Without it, lists them.", valueName: "name"))
        var name: String?

        @Option(name: .shortAndLong, help: ArgumentHelp("Weight file to write instead of the installed location.", valueName: "file.safetensors"))
        var output: String?

        @Option(name: .customLong("base-url"), help: ArgumentHelp("Download from this mirror instead of GitHub.", valueName: "url"))
        var baseURL: String?

        func run() throws {
            try WeightsCommand.reportingErrors {
                guard let name else {
                    print("weights available to fetch ('ddsp-piano weights fetch NAME'):\n" + Self.releaseList, terminator: "")
                    return
                }
                guard let release = WeightRelease.named(name) else {
                    throw WeightStoreError(file: name, problem: "unknown weights (available: \(WeightRelease.all.map(\.name).joined(separator: ", ")))", code: .notFound)
                }
                let base = try release.resolveBaseURL(baseURL)
                let destination = output.map { URL(fileURLWithPath: $0) } ?? WeightStore().installedURL(architecture: release.architecture)
                let existed = FileManager.default.fileExists(atPath: destination.path)
                let progress = isatty(STDERR_FILENO) == 1 ? ProgressLine() : nil
                let weights: WeightFile
                do {
                    weights = try release.fetch(baseURL: base, to: destination, progress: progress.map { p in { @Sendable file, received, expected in p.update(file, received, expected) } })
                } catch {
                    progress?.finish()
                    throw error
                }
                progress?.finish()
                let verified = release.files.allSatisfy { $0.sha256 != nil } ? "SHA-256 verified"
                    : "verified: " + release.files.map { "\($0.name) by \($0.pinsText)" }.joined(separator: "; ") + ", every tensor by crc32c"
                print("\(existed ? "replaced" : "installed") \(destination.path): \(release.name), \(weights.instruments.count) instruments, \(WeightsCommand.grouped(weights.parameterCount)) parameters (\(verified))")
                if output == nil, let note = WeightsCommand.noteIfShadowed(destination) { print(note) }
            }
        }
    }
}

extension WeightsCommand {
    /// A thrown user error that is not about a file (bad option values).
    struct ValidationFailure: CodedError {
        var description: String
        var code: ErrorCode { .usage }
        init(_ description: String) { self.description = description }
    }

    /// One self-overwriting progress line on a terminal's stderr.
    // @unchecked Sendable: its state is under `lock` (the download reports progress from its own queue).
    final class ProgressLine: @unchecked Sendable {
        private let lock = NSLock()
        private var shown = false
        private var last = ""

        static func size(_ n: Int64) -> String {
            n < 1 << 20 ? "\((n + 1023) / 1024) kB" : String(format: "%.1f MB", Double(n) / 1_048_576)
        }

        func update(_ file: String, _ received: Int64, _ expected: Int64?) {
            lock.lock()
            defer { lock.unlock() }
            var text = "downloading \(file): \(Self.size(received))"
            if let expected, expected > 0 {
                text += " of \(Self.size(expected)) (\(Int(100 * received / expected))%)"
            }
            // Redraw only when the line changes, not for every network chunk.
            guard text != last else { return }
            last = text
            FileHandle.standardError.write(Data(("\r" + text + "\u{1b}[K").utf8))
            shown = true
        }

        func finish() {
            lock.lock()
            defer { lock.unlock() }
            if shown { FileHandle.standardError.write(Data("\r\u{1b}[K".utf8)) }
            shown = false
        }
    }
}
