import DDSPPiano
import Foundation

/// A TensorFlow checkpoint's files on disk, read into memory with their SHA-256s.
public struct CheckpointFiles: Sendable {
    /// The bundle prefix, e.g. `.../dafx22/ckpt-0`.
    public var prefix: URL
    /// The `checkpoint` state file, when the checkpoint was given as a folder that has one.
    public var stateFile: URL?
    /// Lower-case hex SHA-256 of every file read, keyed by file name.
    public var sha256: [String: String] = [:]
    public var checkpoint: TFCheckpoint

    /// Reads a checkpoint given as a folder (holding `checkpoint`, or a single `*.index`),
    /// as its prefix (`dir/ckpt-0`), or as the `.index` file itself.
    public init(path: String) throws {
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: path, isDirectory: &isDirectory) || fm.fileExists(atPath: path + ".index") else {
            throw WeightStoreError(file: path, problem: "no such file or directory")
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
            throw WeightStoreError(file: indexURL.path, problem: "checkpoint index not found" + (state.map { " (named by \($0.path))" } ?? ""))
        }
        let indexBytes = try WeightStore.readBytes(indexURL)
        let index: TFCheckpoint.Index
        do { index = try TFCheckpoint.Index(bytes: indexBytes) } catch let e as CheckpointError {
            throw WeightStoreError(file: indexURL.path, problem: e.description)
        }
        var shards: [[UInt8]] = []
        var hashes: [String: String] = [indexURL.lastPathComponent: SHA256.hex(indexBytes)]
        if let state, let stateBytes { hashes[state.lastPathComponent] = SHA256.hex(stateBytes) }
        for i in 0..<index.header.shardCount {
            let url = URL(fileURLWithPath: prefix.path + TFCheckpoint.shardSuffix(i, of: index.header.shardCount))
            guard fm.fileExists(atPath: url.path) else {
                throw WeightStoreError(file: url.path, problem: "checkpoint data shard not found")
            }
            let bytes = try WeightStore.readBytes(url)
            hashes[url.lastPathComponent] = SHA256.hex(bytes)
            shards.append(bytes)
        }
        do {
            checkpoint = try TFCheckpoint(index: index, shards: shards)
            try checkpoint.verifyChecksums()
        } catch let e as CheckpointError {
            throw WeightStoreError(file: prefix.path, problem: e.description)
        }
        self.prefix = prefix
        self.stateFile = state
        self.sha256 = hashes
    }
}

/// Turns checkpoint tensors into our readable weights, with provenance metadata.
public enum CheckpointImport {
    /// Metadata key for each file's SHA-256: "sha256.<file name>".
    public static let sha256KeyPrefix = "sha256."

    /// - Parameters:
    ///   - instruments: names for the embedding rows; by default the ten MAESTRO years when
    ///     the checkpoint has ten instruments (the dafx22 training set), else "0", "1", ...
    ///   - fileHashes: SHA-256 of the checkpoint files, recorded in the metadata, and used
    ///     to recognise a published release.
    public static func weights(from checkpoint: TFCheckpoint, instruments: [String]? = nil,
                               source: String, fileHashes: [String: String], importer: String,
                               date: Date = Date()) throws -> PianoWeights {
        let raw = try checkpoint.floatTensors()
        let embeddingKey = PianoWeights.upstreamKeys["z_encoder.embedding"]! + PianoWeights.upstreamSuffix
        let rows = raw[embeddingKey].flatMap { $0.shape.count == 2 ? $0.shape[0] : nil }
        let release = WeightRelease.matching(fileHashes)
        var names: [String]
        if let instruments {
            names = instruments
            if let rows, rows != names.count {
                throw WeightsError("the checkpoint has \(rows) instruments but \(names.count) names were given")
            }
        } else if let release {
            names = release.instruments
        } else if let rows, rows != PianoWeights.dafx22Instruments.count {
            names = (0..<rows).map(String.init)
        } else {
            names = PianoWeights.dafx22Instruments
        }
        var weights = try PianoWeights(upstreamCheckpoint: raw, instruments: names)
        var meta: [String: String] = [
            "source": source,
            "imported": ISO8601DateFormatter().string(from: date),
            "importer": importer,
        ]
        for (file, hash) in fileHashes { meta[sha256KeyPrefix + file] = hash }
        if let release {
            meta["release"] = release.name
            meta["upstream"] = release.upstream
            meta["description"] = release.summary
            meta["license"] = release.license
        }
        weights.provenance = meta
        return weights
    }
}
