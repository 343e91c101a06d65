import DDSPPiano
import Foundation

/// A published upstream checkpoint that `weights fetch` can download, pinned by commit and
/// by the SHA-256 of every file.
public struct WeightRelease: Sendable {
    public struct File: Sendable {
        public var name: String
        public var sha256: String
    }

    public var name: String
    public var baseURL: String
    public var files: [File]
    public var instruments: [String]
    public var upstream: String
    public var summary: String
    public var license: String

    /// Overrides the base URL (mirrors, tests); `--base-url` overrides this in turn.
    public static let baseURLEnvironmentVariable = "DDSP_PIANO_WEIGHTS_URL"

    /// The DAFx 2022 paper model (Renault, Mignot, Roebel), trained on ten MAESTRO years.
    public static let dafx22 = WeightRelease(
        name: "dafx22",
        baseURL: "https://raw.githubusercontent.com/lrenault/ddsp-piano/e868b7ccd3fe31b39132048a72561d7fcf1b465f/ddsp_piano/model_weights/dafx22/",
        files: [
            File(name: "checkpoint", sha256: "e2306f452dd92e8909319b219cd3b12e4d804c134043b077245a85da8dca698e"),
            File(name: "ckpt-0.index", sha256: "814e10172e4616cab735140fec56725597228504058553394b01c7bf34639fec"),
            File(name: "ckpt-0.data-00000-of-00001", sha256: "bfa9c4abc8a2888f221e695919e946ce1f8b483d77c883dce3ac71c9c4b47d24"),
        ],
        instruments: PianoWeights.dafx22Instruments,
        upstream: "https://github.com/lrenault/ddsp-piano commit e868b7ccd3fe31b39132048a72561d7fcf1b465f, ddsp_piano/model_weights/dafx22",
        summary: "DDSP-Piano (Renault, Mignot, Roebel, DAFx 2022), one instrument per MAESTRO v3 recording year",
        license: "Apache-2.0 (upstream repository license)"
    )

    public static let all = [dafx22]

    public static func named(_ name: String) -> WeightRelease? { all.first { $0.name == name } }

    /// The release whose every file has exactly these hashes (keyed by file name), if any.
    public static func matching(_ hashes: [String: String]) -> WeightRelease? {
        all.first { release in release.files.allSatisfy { hashes[$0.name] == $0.sha256 } }
    }

    /// Base URL precedence: explicit, then `$DDSP_PIANO_WEIGHTS_URL`, then the pinned upstream URL.
    public func resolveBaseURL(_ explicit: String?, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> URL {
        var text = explicit ?? environment[Self.baseURLEnvironmentVariable].flatMap { $0.isEmpty ? nil : $0 } ?? baseURL
        if !text.contains("://") { text = URL(fileURLWithPath: text).absoluteString }  // a plain folder path
        if !text.hasSuffix("/") { text += "/" }
        guard let url = URL(string: text), url.scheme != nil else {
            throw WeightStoreError(file: text, problem: "not a valid base URL")
        }
        return url
    }

    /// Downloads every file, checks each SHA-256, converts, and installs at `destination`
    /// atomically. Nothing is written unless every step succeeded.
    /// - Parameter progress: (file name, bytes received, total if known), for a progress line.
    @discardableResult
    public func fetch(baseURL: URL, to destination: URL,
                      progress: (@Sendable (String, Int64, Int64?) -> Void)? = nil) throws -> PianoWeights {
        var contents: [String: [UInt8]] = [:]
        for file in files {
            let url = baseURL.appendingPathComponent(file.name)
            let name = file.name
            let fileProgress: Download.Progress? = progress.map { report in
                { @Sendable received, expected in report(name, received, expected) }
            }
            let bytes = try Download.fetch(url, progress: fileProgress)
            let actual = SHA256.hex(bytes)
            guard actual == file.sha256 else {
                throw WeightStoreError(file: url.absoluteString, problem: "SHA-256 mismatch: expected \(file.sha256), got \(actual) (\(bytes.count) bytes); nothing was installed")
            }
            contents[file.name] = bytes
        }
        let hashes = Dictionary(uniqueKeysWithValues: files.map { ($0.name, $0.sha256) })
        let weights: PianoWeights
        do {
            // The pinned hashes make these errors unreachable short of a bug; they still get one line.
            let stateText = String(decoding: contents["checkpoint"] ?? [], as: UTF8.self)
            let prefix = try TFCheckpoint.modelCheckpointPath(stateFile: stateText)
            guard let index = contents[prefix + ".index"] else { throw CheckpointError("release has no \(prefix).index") }
            let parsed = try TFCheckpoint.Index(bytes: index)
            let shards = try (0..<parsed.header.shardCount).map { i -> [UInt8] in
                let name = prefix + TFCheckpoint.shardSuffix(i, of: parsed.header.shardCount)
                guard let shard = contents[name] else { throw CheckpointError("release has no \(name)") }
                return shard
            }
            let checkpoint = try TFCheckpoint(index: parsed, shards: shards)
            try checkpoint.verifyChecksums()
            weights = try CheckpointImport.weights(from: checkpoint, source: baseURL.absoluteString,
                                                   fileHashes: hashes, importer: "ddsp-piano weights fetch \(name)")
        } catch let e as CheckpointError {
            throw WeightStoreError(file: baseURL.absoluteString, problem: e.description)
        } catch let e as WeightsError {
            throw WeightStoreError(file: baseURL.absoluteString, problem: e.description)
        }
        try WeightStore.install(weights, at: destination)
        return weights
    }
}
