import DDSPPiano
import Foundation
import PianoFormats

/// A published upstream checkpoint that `weights fetch` can download, pinned by commit and
/// by what is known of every file: its SHA-256, or (for a file whose SHA-256 is not known)
/// its size and git blob id, plus the crc32c that the SHA-256-pinned index records for every
/// tensor of a data file.
public struct WeightRelease: Sendable {
    public struct File: Sendable {
        public var name: String
        /// Lower-case hex SHA-256 of the file, when known.
        public var sha256: String?
        /// Size in bytes, when pinned (checked before anything else, and while downloading).
        public var size: Int?
        /// Git blob id (SHA-1 of "blob SIZE\0" + content, what `git hash-object` prints), when pinned.
        public var gitBlob: String?

        public init(name: String, sha256: String? = nil, size: Int? = nil, gitBlob: String? = nil) {
            self.name = name
            self.sha256 = sha256
            self.size = size
            self.gitBlob = gitBlob
        }

        /// What a download of this file is checked against, for messages.
        public var pinsText: String {
            var parts: [String] = []
            if sha256 != nil { parts.append("SHA-256") }
            if size != nil { parts.append("size") }
            if gitBlob != nil { parts.append("git blob id") }
            return parts.joined(separator: ", ")
        }
    }

    public var name: String
    /// The architecture the checkpoint holds: "dafx22" or "v2" (`V2Weights.architecture`).
    public var architecture: String
    public var baseURL: String
    /// Downloaded in this order (small files first, so a bad mirror fails fast).
    public var files: [File]
    public var instruments: [String]
    public var upstream: String
    public var summary: String
    public var license: String

    public init(name: String, architecture: String, baseURL: String, files: [File], instruments: [String],
                upstream: String, summary: String, license: String) {
        self.name = name
        self.architecture = architecture
        self.baseURL = baseURL
        self.files = files
        self.instruments = instruments
        self.upstream = upstream
        self.summary = summary
        self.license = license
    }

    /// Overrides the base URL (mirrors, tests); `--base-url` overrides this in turn.
    public static let baseURLEnvironmentVariable = "DDSP_PIANO_WEIGHTS_URL"

    /// The upstream commit both releases are pinned to ("Merge 'dev' branch into 'main' for v2 update (#7)").
    public static let upstreamCommit = "e868b7ccd3fe31b39132048a72561d7fcf1b465f"

    /// The DAFx 2022 paper model (Renault, Mignot, Roebel), trained on ten MAESTRO years.
    public static let dafx22 = WeightRelease(
        name: "dafx22",
        architecture: "dafx22",
        baseURL: "https://raw.githubusercontent.com/lrenault/ddsp-piano/\(upstreamCommit)/ddsp_piano/model_weights/dafx22/",
        files: [
            File(name: "checkpoint", sha256: "e2306f452dd92e8909319b219cd3b12e4d804c134043b077245a85da8dca698e"),
            File(name: "ckpt-0.index", sha256: "814e10172e4616cab735140fec56725597228504058553394b01c7bf34639fec"),
            File(name: "ckpt-0.data-00000-of-00001", sha256: "bfa9c4abc8a2888f221e695919e946ce1f8b483d77c883dce3ac71c9c4b47d24"),
        ],
        instruments: PianoWeights.dafx22Instruments,
        upstream: "https://github.com/lrenault/ddsp-piano commit \(upstreamCommit), ddsp_piano/model_weights/dafx22",
        summary: "DDSP-Piano (Renault, Mignot, Roebel, DAFx 2022), one instrument per MAESTRO v3 recording year",
        license: "Apache-2.0 (upstream repository license)"
    )

    /// Upstream's default model (`maestro-v2.gin`, 24 kHz), checkpoint `ckpt-225000`.
    /// The data file is an ordinary git blob at that commit (no LFS pointer), served as is
    /// by raw.githubusercontent.com. Its SHA-256 is not published; it is pinned by its size,
    /// its git blob id (from `git ls-tree` of the commit), and the crc32c of each of its 302
    /// tensors recorded in the SHA-256-pinned index.
    public static let v2 = WeightRelease(
        name: "v2",
        architecture: V2Weights.architecture,
        baseURL: "https://raw.githubusercontent.com/lrenault/ddsp-piano/\(upstreamCommit)/ddsp_piano/model_weights/v2/",
        files: [
            File(name: "checkpoint", sha256: "75f2e242641d846a2bf46eb4bf097ac16a333acae5f544a43abcf2ef174b1c50",
                 size: 176, gitBlob: "8103534162ea12a989be5b1f60f8b468456d1d5d"),
            File(name: "ckpt-225000.index", sha256: "9628c42a43aacb68d8eccf1ebf19e496b86a25d30fc575f7d97033674cf51982",
                 size: 21_577, gitBlob: "ac5eb920e38b533efebe571d58b160b78f2ea94c"),
            File(name: "ckpt-225000.data-00000-of-00001", size: 4_198_370, gitBlob: "c5dd414a7c7955e1ea6629b591fa7d45f8df5ff1"),
        ],
        instruments: V2Weights.defaultInstruments,
        upstream: "https://github.com/lrenault/ddsp-piano commit \(upstreamCommit), ddsp_piano/model_weights/v2 (maestro-v2.gin)",
        summary: "DDSP-Piano v2, upstream's default model (maestro-v2.gin, 24 kHz), one instrument per MAESTRO v3 recording year",
        license: "Apache-2.0 (upstream repository license)"
    )

    /// Upstream's default first.
    public static let all = [v2, dafx22]

    public static func named(_ name: String) -> WeightRelease? { all.first { $0.name == name } }

    /// The release whose every file matches: its SHA-256 when pinned, else its git blob id
    /// (and size) when pinned. Keyed by file name.
    public static func matching(_ hashes: [String: String], gitBlobs: [String: String] = [:], sizes: [String: Int] = [:]) -> WeightRelease? {
        all.first { $0.matches(hashes, gitBlobs: gitBlobs, sizes: sizes) }
    }

    public func matches(_ hashes: [String: String], gitBlobs: [String: String] = [:], sizes: [String: Int] = [:]) -> Bool {
        files.allSatisfy { file in
            if let sha = file.sha256 { return hashes[file.name] == sha }
            guard let blob = file.gitBlob, gitBlobs[file.name] == blob else { return false }
            if let size = file.size, let actual = sizes[file.name] { return actual == size }
            return true
        }
    }

    /// Base URL precedence: explicit, then `$DDSP_PIANO_WEIGHTS_URL`, then the pinned upstream URL.
    public func resolveBaseURL(_ explicit: String?, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> URL {
        var text = explicit ?? environment[Self.baseURLEnvironmentVariable].flatMap { $0.isEmpty ? nil : $0 } ?? baseURL
        if !text.contains("://") { text = URL(fileURLWithPath: text).absoluteString }  // a plain folder path
        if !text.hasSuffix("/") { text += "/" }
        guard let url = URL(string: text), url.scheme != nil else {
            throw WeightStoreError(file: text, problem: "not a valid base URL", code: .usage)
        }
        return url
    }

    /// Checks downloaded bytes against a file's pins: size, SHA-256, git blob id.
    /// Throws a one-line `WeightStoreError` naming `source`.
    public static func verify(_ bytes: [UInt8], against file: File, source: String) throws {
        if let size = file.size, bytes.count != size {
            throw WeightStoreError(file: source, problem: "size mismatch: expected \(size) bytes, got \(bytes.count)\(bytes.count < size ? " (truncated?)" : ""); nothing was installed", code: .download)
        }
        if let expected = file.sha256 {
            let actual = SHA256.hex(bytes)
            guard actual == expected else {
                throw WeightStoreError(file: source, problem: "SHA-256 mismatch: expected \(expected), got \(actual) (\(bytes.count) bytes); nothing was installed", code: .download)
            }
        }
        if let expected = file.gitBlob {
            let actual = GitBlob.id(bytes)
            guard actual == expected else {
                throw WeightStoreError(file: source, problem: "git blob id mismatch: expected \(expected), got \(actual) (\(bytes.count) bytes; corrupt or a different file); nothing was installed", code: .download)
            }
        }
    }

    /// Downloads every file, checks each against its pins, parses the checkpoint, checks the
    /// crc32c of every tensor of every data shard against the index, converts, and installs at
    /// `destination` atomically. Nothing is written unless every step succeeded.
    /// - Parameter progress: (file name, bytes received, total if known), for a progress line.
    @discardableResult
    public func fetch(baseURL: URL, to destination: URL,
                      progress: (@Sendable (String, Int64, Int64?) -> Void)? = nil) throws -> WeightFile {
        var contents: [String: [UInt8]] = [:]
        var urls: [String: URL] = [:]
        var hashes: [String: String] = [:]
        for file in files {
            let url = baseURL.appendingPathComponent(file.name)
            let name = file.name
            let fileProgress: Download.Progress? = progress.map { report in
                { @Sendable received, expected in report(name, received, expected) }
            }
            let bytes: [UInt8]
            do {
                bytes = try Download.fetch(url, expectedSize: file.size.map(Int64.init), progress: fileProgress)
            } catch let e as WeightStoreError {
                throw WeightStoreError(file: e.file, problem: e.problem + "; nothing was installed", code: e.code)
            }
            try Self.verify(bytes, against: file, source: url.absoluteString)
            contents[file.name] = bytes
            urls[file.name] = url
            hashes[file.name] = file.sha256 ?? SHA256.hex(bytes)
        }
        var blame = baseURL.absoluteString
        let weights: WeightFile
        do {
            // With pinned hashes these errors are unreachable short of a bug or a size/blob-only
            // pin; they still get one line.
            let stateText = String(decoding: contents["checkpoint"] ?? [], as: UTF8.self)
            let prefix = try TFCheckpoint.modelCheckpointPath(stateFile: stateText)
            guard let index = contents[prefix + ".index"] else { throw CheckpointError("release has no \(prefix).index") }
            blame = urls[prefix + ".index"]!.absoluteString
            let parsed = try TFCheckpoint.Index(bytes: index)
            let shardNames = (0..<parsed.header.shardCount).map { prefix + TFCheckpoint.shardSuffix($0, of: parsed.header.shardCount) }
            let shards = try shardNames.map { name -> [UInt8] in
                guard let shard = contents[name] else { throw CheckpointError("release has no \(name)") }
                return shard
            }
            let checkpoint = try CheckpointImport.checkedCheckpoint(index: parsed, shards: shards) { urls[shardNames[$0]]!.absoluteString }
            blame = baseURL.absoluteString
            weights = try CheckpointImport.weightFile(from: checkpoint, release: self, source: baseURL.absoluteString,
                                                      fileHashes: hashes, importer: "ddsp-piano weights fetch \(name)")
            guard weights.architecture == architecture else {
                throw CheckpointError("the checkpoint holds a \(weights.architecture) model, release \(name) is \(architecture)")
            }
        } catch let e as CheckpointError {
            throw WeightStoreError(file: blame, problem: e.description + "; nothing was installed")
        } catch let e as WeightsError {
            throw WeightStoreError(file: blame, problem: e.description + "; nothing was installed")
        } catch let e as WeightStoreError {
            throw WeightStoreError(file: e.file, problem: e.problem + "; nothing was installed", code: e.code)
        }
        try WeightStore.install(weights, at: destination)
        return weights
    }
}
