import DDSPPiano
import Foundation
import PianoFormats

/// A TensorFlow checkpoint's files on disk, read into memory with their SHA-256s.
public struct CheckpointFiles: Sendable {
    /// The bundle prefix, e.g. `.../dafx22/ckpt-0`.
    public var prefix: URL
    /// The `checkpoint` state file, when the checkpoint was given as a folder that has one.
    public var stateFile: URL?
    /// Lower-case hex SHA-256 of every file read, keyed by file name.
    public var sha256: [String: String] = [:]
    /// Git blob id of every file read (what `git hash-object` prints), keyed by file name.
    public var gitBlobs: [String: String] = [:]
    /// Size in bytes of every file read, keyed by file name.
    public var sizes: [String: Int] = [:]
    /// Parsed, every entry inside its shard, every tensor's crc32c verified.
    public var checkpoint: TFCheckpoint

    /// Reads a checkpoint given as a folder (holding `checkpoint`, or a single `*.index`),
    /// as its prefix (`dir/ckpt-0`), or as the `.index` file itself.
    public init(path: String) throws {
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: path, isDirectory: &isDirectory) || fm.fileExists(atPath: path + ".index") else {
            throw WeightStoreError(file: path, problem: "no such file or directory", code: .notFound)
        }
        var state: URL?
        var stateBytes: [UInt8]?
        let prefix: URL
        if isDirectory.boolValue {
            let dir = URL(fileURLWithPath: path, isDirectory: true)
            let stateURL = dir.appendingPathComponent("checkpoint")
            if fm.fileExists(atPath: stateURL.path) {
                let bytes = try WeightStore.readBytes(stateURL, limit: 1 << 20)
                let relative: String
                do {
                    relative = try TFCheckpoint.modelCheckpointPath(stateFile: String(decoding: bytes, as: UTF8.self))
                } catch let e as CheckpointError {
                    throw WeightStoreError(file: stateURL.path, problem: e.description)
                }
                // TF writes the path relative to the folder; an absolute one may be from another machine.
                if relative.hasPrefix("/"), fm.fileExists(atPath: relative + ".index") {
                    prefix = URL(fileURLWithPath: relative)
                } else {
                    prefix = dir.appendingPathComponent((relative as NSString).lastPathComponent)
                }
                state = stateURL
                stateBytes = bytes
            } else {
                let names = (try? fm.contentsOfDirectory(atPath: dir.path)) ?? []
                let indexes = names.filter { $0.hasSuffix(".index") }.sorted()
                guard indexes.count == 1 else {
                    throw WeightStoreError(file: path, problem: indexes.isEmpty
                        ? "not a TensorFlow checkpoint folder (no 'checkpoint' file and no *.index file)"
                        : "holds several checkpoints (\(indexes.joined(separator: ", "))) and no 'checkpoint' file; pass a prefix such as \(dir.appendingPathComponent(String(indexes[0].dropLast(6))).path)")
                }
                prefix = dir.appendingPathComponent(String(indexes[0].dropLast(".index".count)))
            }
        } else if path.hasSuffix(".index") {
            prefix = URL(fileURLWithPath: String(path.dropLast(".index".count)))
        } else if fm.fileExists(atPath: path + ".index") {
            prefix = URL(fileURLWithPath: path)
        } else {
            throw WeightStoreError(file: path, problem: "not a TensorFlow checkpoint (expected a folder, a prefix with a .index file beside it, or the .index file)")
        }
        let indexURL = URL(fileURLWithPath: prefix.path + ".index")
        guard fm.fileExists(atPath: indexURL.path) else {
            throw WeightStoreError(file: indexURL.path, problem: "checkpoint index not found" + (state.map { " (named by \($0.path))" } ?? ""), code: .notFound)
        }
        let indexBytes = try WeightStore.readBytes(indexURL)
        let index: TFCheckpoint.Index
        do { index = try TFCheckpoint.Index(bytes: indexBytes) } catch let e as CheckpointError {
            throw WeightStoreError(file: indexURL.path, problem: e.description)
        }
        var shards: [[UInt8]] = []
        var shardURLs: [URL] = []
        var hashes: [String: String] = [indexURL.lastPathComponent: SHA256.hex(indexBytes)]
        var blobs: [String: String] = [indexURL.lastPathComponent: GitBlob.id(indexBytes)]
        var sizes: [String: Int] = [indexURL.lastPathComponent: indexBytes.count]
        if let state, let stateBytes {
            hashes[state.lastPathComponent] = SHA256.hex(stateBytes)
            blobs[state.lastPathComponent] = GitBlob.id(stateBytes)
            sizes[state.lastPathComponent] = stateBytes.count
        }
        for i in 0..<index.header.shardCount {
            let url = URL(fileURLWithPath: prefix.path + TFCheckpoint.shardSuffix(i, of: index.header.shardCount))
            guard fm.fileExists(atPath: url.path) else {
                throw WeightStoreError(file: url.path, problem: "checkpoint data shard not found", code: .notFound)
            }
            let bytes = try WeightStore.readBytes(url)
            hashes[url.lastPathComponent] = SHA256.hex(bytes)
            blobs[url.lastPathComponent] = GitBlob.id(bytes)
            sizes[url.lastPathComponent] = bytes.count
            shards.append(bytes)
            shardURLs.append(url)
        }
        do {
            checkpoint = try CheckpointImport.checkedCheckpoint(index: index, shards: shards) { shardURLs[$0].path }
        } catch let e as CheckpointError {
            throw WeightStoreError(file: indexURL.path, problem: e.description)
        }
        self.prefix = prefix
        self.stateFile = state
        self.sha256 = hashes
        self.gitBlobs = blobs
        self.sizes = sizes
    }

    /// The release these files are, if any (by SHA-256, or git blob id and size where no
    /// SHA-256 is pinned).
    public var release: WeightRelease? { WeightRelease.matching(sha256, gitBlobs: gitBlobs, sizes: sizes) }
}

/// Turns checkpoint tensors into our readable weights, with provenance metadata.
public enum CheckpointImport {
    /// Metadata key for each file's SHA-256: "sha256.<file name>".
    public static let sha256KeyPrefix = "sha256."

    /// Builds a checkpoint from a parsed index and its data shards and verifies it completely:
    /// every entry inside its shard (a short shard is reported as truncated, naming the shard),
    /// and the crc32c TensorFlow recorded in the index for every entry's bytes (numeric tensors,
    /// the object-graph string, optimizer slots: everything), so a flipped bit anywhere in a data
    /// file is found. Problems with a shard are `WeightStoreError`s naming `shardName(i)`;
    /// problems of the index itself are `CheckpointError`s.
    public static func checkedCheckpoint(index: TFCheckpoint.Index, shards: [[UInt8]],
                                         shardName: (Int) -> String) throws -> TFCheckpoint {
        if shards.count == index.header.shardCount {
            var needed = [Int](repeating: 0, count: shards.count)
            var last = [TFCheckpoint.Entry?](repeating: nil, count: shards.count)
            for e in index.entries where e.sliceCount == 0 && e.shard >= 0 && e.shard < shards.count && e.offset + e.size > needed[e.shard] {
                needed[e.shard] = e.offset + e.size
                last[e.shard] = e
            }
            for i in shards.indices where shards[i].count < needed[i] {
                let e = last[i]!
                throw WeightStoreError(file: shardName(i), problem: "truncated: \(shards[i].count) bytes, the index needs \(needed[i]) (bytes \(e.offset)..<\(e.offset + e.size) of entry \(TFCheckpoint.quoted(e.name)) lie outside data shard \(i))")
            }
        }
        let checkpoint = try TFCheckpoint(index: index, shards: shards)
        for e in checkpoint.entries where e.sliceCount == 0 {
            do { _ = try checkpoint.verifiedBytes(e) } catch let error as CheckpointError {
                throw WeightStoreError(file: shardName(e.shard), problem: error.description)
            }
        }
        return checkpoint
    }

    /// Whether a checkpoint holds upstream's v2 model (`maestro-v2.gin`), told by its keys.
    public static func isV2(_ checkpoint: TFCheckpoint) -> Bool {
        V2Weights.recognises(upstreamKeys: checkpoint.entries.lazy.map(\.name))
    }

    /// The instrument names for `rows` embedding rows: given names (their count checked), the
    /// release's, the ten MAESTRO years for ten rows, else "0", "1", ...
    static func instrumentNames(_ instruments: [String]?, rows: Int?, release: WeightRelease?, defaults: [String]) throws -> [String] {
        if let instruments {
            if let rows, rows != instruments.count {
                throw WeightsError("the checkpoint has \(rows) instruments but \(instruments.count) names were given")
            }
            return instruments
        }
        if let release, rows == nil || rows == release.instruments.count { return release.instruments }
        if let rows, rows != defaults.count { return (0..<rows).map(String.init) }
        return defaults
    }

    static func provenance(source: String, fileHashes: [String: String], importer: String, date: Date,
                           release: WeightRelease?) -> [String: String] {
        var meta: [String: String] = [:]
        for (file, hash) in fileHashes { meta[sha256KeyPrefix + file] = hash }
        guard let release else {
            meta["source"] = source
            meta["imported"] = ISO8601DateFormatter().string(from: date)
            meta["importer"] = importer
            return meta
        }
        // A pinned upstream release: the same file whoever converts it, wherever, whenever
        // (`weights fetch`, `weights import` of the same checkpoint files, the bundled copy),
        // so no date, local path or command; the files' origin and hashes say what it is.
        meta["source"] = release.baseURL
        meta["upstream_commit"] = WeightRelease.upstreamCommit
        meta["importer"] = "ddsp-piano (upstream release '\(release.name)', converted from its pinned checkpoint files)"
        meta["release"] = release.name
        meta["upstream"] = release.upstream
        meta["description"] = release.summary
        meta["license"] = release.license
        return meta
    }

    /// Converts a checkpoint of either architecture: v2 when its keys are those of
    /// `maestro-v2.gin`'s model (`V2Weights.recognises`), else dafx22. Optimizer slots,
    /// `save_counter` and the object graph are ignored.
    /// - Parameters:
    ///   - release: the published release the files are (recorded in the metadata); by default
    ///     the one `fileHashes` match, if any.
    public static func weightFile(from checkpoint: TFCheckpoint, instruments: [String]? = nil,
                                  release: WeightRelease? = nil, source: String,
                                  fileHashes: [String: String], importer: String,
                                  date: Date = Date()) throws -> WeightFile {
        guard isV2(checkpoint) else {
            return .dafx22(try weights(from: checkpoint, instruments: instruments, release: release, source: source,
                                       fileHashes: fileHashes, importer: importer, date: date))
        }
        let raw = try checkpoint.floatTensors()
        let embedding = raw["model/context_network/piano_id_head/embeddings" + PianoWeights.upstreamSuffix]
        let rows = embedding.flatMap { $0.shape.count == 2 ? $0.shape[0] : nil }
        let release = release ?? WeightRelease.matching(fileHashes)
        let names = try instrumentNames(instruments, rows: rows, release: release, defaults: V2Weights.defaultInstruments)
        var weights = try V2Weights(upstreamCheckpoint: raw, instruments: names)
        weights.provenance = provenance(source: source, fileHashes: fileHashes, importer: importer, date: date, release: release)
        return .v2(weights)
    }

    /// Converts a dafx22 checkpoint.
    /// - Parameters:
    ///   - instruments: names for the embedding rows; by default the ten MAESTRO years when
    ///     the checkpoint has ten instruments (the dafx22 training set), else "0", "1", ...
    ///   - fileHashes: SHA-256 of the checkpoint files, recorded in the metadata, and used
    ///     to recognise a published release.
    public static func weights(from checkpoint: TFCheckpoint, instruments: [String]? = nil,
                               release: WeightRelease? = nil,
                               source: String, fileHashes: [String: String], importer: String,
                               date: Date = Date()) throws -> PianoWeights {
        let raw = try checkpoint.floatTensors()
        let embeddingKey = PianoWeights.upstreamKeys["z_encoder.embedding"]! + PianoWeights.upstreamSuffix
        let rows = raw[embeddingKey].flatMap { $0.shape.count == 2 ? $0.shape[0] : nil }
        let release = release ?? WeightRelease.matching(fileHashes)
        let names = try instrumentNames(instruments, rows: rows, release: release, defaults: PianoWeights.dafx22Instruments)
        var weights = try PianoWeights(upstreamCheckpoint: raw, instruments: names)
        weights.provenance = provenance(source: source, fileHashes: fileHashes, importer: importer, date: date, release: release)
        return weights
    }
}
