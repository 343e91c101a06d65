import ArgumentParser
import DDSPPiano
import Foundation
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
        Commands that need weights look, in order, at: an explicit path; $\(WeightStore.environmentVariable); \
        ${XDG_DATA_HOME:-~/.local/share}/ddsp-piano/weights/\(WeightStore.installedFileName) (written by \
        'weights fetch'); a weights/ folder above the executable; /usr/local/share/ddsp-piano/weights; \
        /usr/share/ddsp-piano/weights.
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

    static let installedPathText = "${XDG_DATA_HOME:-~/.local/share}/ddsp-piano/weights/\(WeightStore.installedFileName)"
}

extension WeightsCommand {
    struct Import: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "import",
            abstract: "Convert a TensorFlow DDSP-Piano checkpoint into a ddsp-piano weight file.",
            discussion: """
            Reads the tensor bundle natively (no TensorFlow needed), checks every checksum, maps \
            the upstream variables to readable names and writes a .safetensors file with \
            provenance metadata (source, import date, SHA-256 of each checkpoint file).
            """
        )

        @Argument(help: ArgumentHelp(
            "Checkpoint folder (holding 'checkpoint', PREFIX.index, PREFIX.data-*), or a prefix such as DIR/ckpt-0.",
            valueName: "checkpoint-dir"))
        var checkpoint: String

        @Option(name: .shortAndLong, help: ArgumentHelp(
            "Weight file to write (default: the installed weights, \(WeightsCommand.installedPathText)).",
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
                let weights: PianoWeights
                do {
                    weights = try CheckpointImport.weights(
                        from: files.checkpoint, instruments: names,
                        source: "TensorFlow checkpoint \(files.prefix.path)",
                        fileHashes: files.sha256, importer: "ddsp-piano weights import")
                } catch let e as CheckpointError {
                    throw WeightStoreError(file: files.prefix.path, problem: e.description)
                } catch let e as WeightsError {
                    throw WeightStoreError(file: files.prefix.path, problem: e.description)
                }
                let destination = output.map { URL(fileURLWithPath: $0) } ?? WeightStore().installedURL
                try WeightStore.install(weights, at: destination)
                let release = weights.provenance["release"].map { " (\($0))" } ?? ""
                print("wrote \(destination.path): \(weights.instruments.count) instruments, \(WeightsCommand.grouped(weights.parameterCount)) parameters\(release)")
            }
        }
    }

    struct Info: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "info",
            abstract: "Describe a weight file: architecture, rates, instruments, tensors, provenance.",
            discussion: "Without FILE, describes the weights that 'render' would use."
        )

        @Argument(help: ArgumentHelp("Weight file (.safetensors).", valueName: "file"))
        var file: String?

        func run() throws {
            try WeightsCommand.reportingErrors {
                let location = try WeightStore().locate(explicit: file)
                let (meta, w) = try WeightStore.read(location.url)
                let h = w.hyper
                var out = "file: \(location.url.path)"
                if location.origin != .explicit { out += " (\(location.origin.rawValue))" }
                out += "\n"
                out += "format: \(meta["format"] ?? PianoWeights.formatName) \(meta["format_version"] ?? "?")\n"
                out += "architecture: \(meta["architecture"] ?? "dafx22")\n"
                out += "sample rate: \(h.sampleRate) Hz\n"
                out += "frame rate: \(h.frameRate) frames/s (\(h.samplesPerFrame) samples per frame)\n"
                out += "voices: \(h.voices)\n"
                out += "instruments: \(w.instruments.count)\n"
                for (i, name) in w.instruments.enumerated() { out += "  \(i)  \(name)\n" }
                out += "parameters: \(WeightsCommand.grouped(w.parameterCount))\n"
                let tensors = w.safetensors().tensors
                out += "tensors: \(tensors.count)\n"
                let width = PianoWeights.tensorNames.map(\.count).max() ?? 0
                for name in PianoWeights.tensorNames {
                    guard let t = tensors[name] else { continue }
                    let shape = "[" + t.shape.map(String.init).joined(separator: ", ") + "]"
                    out += "  " + name.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + shape + "\n"
                }
                out += "normalisation calibration: " + (w.calibration.map { "\($0.instruments) instruments x \($0.voices) voices (calibration.* tensors)\n" } ?? "none (generic prior; see 'weights calibrate')\n")
                out += "provenance:" + (w.provenance.isEmpty ? " none\n" : "\n")
                for key in w.provenance.keys.sorted() { out += "  \(key): \(w.provenance[key]!)\n" }
                print(out, terminator: "")
            }
        }
    }

    struct Fetch: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "fetch",
            abstract: "Download published weights, verify their SHA-256, convert and install them.",
            discussion: """
            Downloads the upstream TensorFlow checkpoint (pinned by commit and SHA-256), converts \
            it and installs it at \(WeightsCommand.installedPathText) (or -o). Nothing is \
            installed unless every file downloaded and verified; an existing file is replaced \
            atomically. The base URL can also be set with $\(WeightRelease.baseURLEnvironmentVariable) \
            (http, https, file URL or folder).
            """
        )

        @Argument(help: ArgumentHelp("Weights to fetch: \(WeightRelease.all.map(\.name).joined(separator: ", ")).", valueName: "name"))
        var name: String

        @Option(name: .shortAndLong, help: ArgumentHelp("Weight file to write instead of the installed location.", valueName: "file.safetensors"))
        var output: String?

        @Option(name: .customLong("base-url"), help: ArgumentHelp("Download from this mirror instead of GitHub.", valueName: "url"))
        var baseURL: String?

        func run() throws {
            try WeightsCommand.reportingErrors {
                guard let release = WeightRelease.named(name) else {
                    throw WeightStoreError(file: name, problem: "unknown weights (available: \(WeightRelease.all.map(\.name).joined(separator: ", ")))")
                }
                let base = try release.resolveBaseURL(baseURL)
                let destination = output.map { URL(fileURLWithPath: $0) } ?? WeightStore().installedURL
                let existed = FileManager.default.fileExists(atPath: destination.path)
                let progress = isatty(STDERR_FILENO) == 1 ? ProgressLine() : nil
                let weights: PianoWeights
                do {
                    weights = try release.fetch(baseURL: base, to: destination, progress: progress.map { p in { @Sendable file, received, expected in p.update(file, received, expected) } })
                } catch {
                    progress?.finish()
                    throw error
                }
                progress?.finish()
                print("\(existed ? "replaced" : "installed") \(destination.path): \(release.name), \(weights.instruments.count) instruments, \(WeightsCommand.grouped(weights.parameterCount)) parameters (SHA-256 verified)")
            }
        }
    }
}

extension WeightsCommand {
    /// A thrown user error that is not about a file (bad option values).
    struct ValidationFailure: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    /// One self-overwriting progress line on a terminal's stderr.
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
