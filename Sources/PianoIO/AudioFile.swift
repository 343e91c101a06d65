import Foundation
import CSndFile
#if canImport(Glibc)
import Glibc
#endif

/// Sample formats `ddsp-piano` writes (all WAV).
public enum AudioFormat: String, CaseIterable, Sendable {
    case s16, s24, f32

    /// Integer formats hold [-1, 1) only; anything beyond is clipped (and counted).
    public var clips: Bool { self != .f32 }

    var sndfileSubtype: Int32 {
        switch self {
        case .s16: return Int32(SF_FORMAT_PCM_16)
        case .s24: return Int32(SF_FORMAT_PCM_24)
        case .f32: return Int32(SF_FORMAT_FLOAT)
        }
    }
}

/// One line naming the file and the problem: "out.wav: directory '/x' does not exist".
public struct AudioFileError: Error, CustomStringConvertible, Equatable {
    public var path: String
    public var problem: String
    public init(_ path: String, _ problem: String) { self.path = path; self.problem = problem }
    public var description: String { "\(path): \(problem)" }
}

/// What a write did to the samples, so the caller can warn (we never clip silently).
public struct AudioWriteReport: Sendable, Equatable {
    /// Samples with |x| > 1, clipped to full scale (s16/s24 only; f32 keeps them).
    public var clippedSamples: Int = 0
    /// NaN or infinite samples, written as 0 in every format.
    public var nonFiniteSamples: Int = 0
    /// Largest |x| among the finite input samples.
    public var peak: Float = 0
    public var frames: Int = 0
}

/// Decoded audio: interleaved Float samples in [-1, 1] for integer files.
public struct AudioData: Sendable, Equatable {
    public var samples: [Float]
    public var channels: Int
    public var sampleRate: Int
    public var frames: Int { channels > 0 ? samples.count / channels : 0 }
    public var duration: Double { sampleRate > 0 ? Double(frames) / Double(sampleRate) : 0 }

    public init(samples: [Float], channels: Int, sampleRate: Int) {
        self.samples = samples; self.channels = channels; self.sampleRate = sampleRate
    }

    /// The channels averaged into one.
    public func mono() -> [Float] {
        if channels == 1 { return samples }
        var out = [Float](repeating: 0, count: frames)
        let scale = 1 / Float(channels)
        samples.withUnsafeBufferPointer { s in
            for f in 0..<out.count {
                var acc: Float = 0
                for c in 0..<channels { acc += s[f * channels + c] }
                out[f] = acc * scale
            }
        }
        return out
    }
}

/// WAV/FLAC through libsndfile (LGPL-2.1+, dynamically linked).
public enum AudioFile {
    // MARK: Writing

    /// Writes interleaved samples as WAV, atomically: the data goes to a temporary file in the
    /// target directory which is renamed over `url` only when complete, so a failure never
    /// leaves a partial file and never destroys an existing one.
    ///
    /// Integer formats use the symmetric 2^(bits-1) scale (what libsndfile reads back), so a
    /// round trip is within half a step; values beyond ±1 are clipped and counted.
    @discardableResult
    public static func write(_ samples: [Float], channels: Int = 1, sampleRate: Int, format: AudioFormat,
                             to url: URL) throws -> AudioWriteReport {
        let path = url.relativePath // as the caller spelled it, for messages
        guard channels > 0, samples.count % channels == 0 else {
            throw AudioFileError(path, "\(samples.count) samples do not divide into \(channels) channels")
        }
        guard sampleRate > 0 else { throw AudioFileError(path, "invalid sample rate \(sampleRate)") }

        let (fd, tempPath) = try makeTemporaryFile(for: url)
        TempFileRegistry.add(tempPath)
        defer { TempFileRegistry.remove(tempPath) }
        var renamed = false
        defer { if !renamed { unlink(tempPath) } }

        var info = SF_INFO()
        info.samplerate = Int32(sampleRate)
        info.channels = Int32(channels)
        info.format = Int32(SF_FORMAT_WAV) | format.sndfileSubtype
        guard let sf = sf_open_fd(fd, Int32(SFM_WRITE), &info, 1) else {
            let reason = String(cString: sf_strerror(nil))
            close(fd)
            throw AudioFileError(path, "cannot write WAV: \(reason)")
        }
        var report = AudioWriteReport(frames: samples.count / channels)
        var failure: String?
        // Convert in chunks: bounded extra memory whatever the length.
        let chunkFrames = 65_536
        samples.withUnsafeBufferPointer { all in
            var start = 0
            while start < all.count, failure == nil {
                let end = min(all.count, start + chunkFrames * channels)
                let chunk = UnsafeBufferPointer(rebasing: all[start..<end])
                let frames = sf_count_t(chunk.count / channels)
                let written: sf_count_t
                switch format {
                case .f32:
                    var buf = [Float](chunk)
                    for i in buf.indices {
                        let x = buf[i]
                        if x.isFinite { report.peak = max(report.peak, abs(x)) } else { buf[i] = 0; report.nonFiniteSamples += 1 }
                    }
                    written = sf_writef_float(sf, buf, frames)
                case .s16:
                    let buf = quantize(chunk, bits: 16, report: &report).map { Int16(truncatingIfNeeded: $0) }
                    written = sf_writef_short(sf, buf, frames)
                case .s24:
                    // libsndfile takes 24-bit PCM from the top 24 bits of an Int32.
                    let buf = quantize(chunk, bits: 24, report: &report).map { $0 << 8 }
                    written = sf_writef_int(sf, buf, frames)
                }
                if written != frames { failure = String(cString: sf_strerror(sf)) }
                start = end
            }
        }
        if failure == nil {
            sf_write_sync(sf)
        }
        let closeStatus = sf_close(sf)
        if let failure { throw AudioFileError(path, "write failed: \(failure)") }
        guard closeStatus == 0 else { throw AudioFileError(path, "write failed: \(String(cString: sf_error_number(closeStatus)))") }
        guard rename(tempPath, url.path) == 0 else {
            throw AudioFileError(path, "cannot replace the file: \(errnoText())")
        }
        renamed = true
        // Persist the rename too; best effort (some filesystems refuse fsync on directories).
        let dfd = open(url.deletingLastPathComponent().path, O_RDONLY | O_DIRECTORY)
        if dfd >= 0 { fsync(dfd); close(dfd) }
        return report
    }

    /// Rounds to `bits`-bit integers on the 2^(bits-1) scale, clamping (and counting) overs.
    private static func quantize(_ chunk: UnsafeBufferPointer<Float>, bits: Int, report: inout AudioWriteReport) -> [Int32] {
        let scale = Float(1 << (bits - 1))
        let hi = Int32((1 << (bits - 1)) - 1), lo = Int32(-(1 << (bits - 1)))
        var out = [Int32](repeating: 0, count: chunk.count)
        for i in 0..<chunk.count {
            let x = chunk[i]
            guard x.isFinite else { report.nonFiniteSamples += 1; continue }
            let a = abs(x)
            if a > report.peak { report.peak = a }
            if a > 1 { report.clippedSamples += 1 }
            // Clamp in Float first so the Int32 conversion cannot trap.
            let v = min(max((x * scale).rounded(), Float(lo)), Float(hi))
            out[i] = Int32(v)
        }
        return out
    }

    /// Fails early (before a long render) when `url` could not be written: missing or
    /// unwritable directory, or a directory in the way. Leaves nothing behind.
    public static func checkWritable(_ url: URL) throws {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir), isDir.boolValue {
            throw AudioFileError(url.relativePath, "is a directory")
        }
        let (fd, tempPath) = try makeTemporaryFile(for: url)
        close(fd)
        unlink(tempPath)
    }

    /// A fresh file beside `url` (same directory, so the final rename is atomic).
    private static func makeTemporaryFile(for url: URL) throws -> (Int32, String) {
        let path = url.relativePath
        let dir = url.deletingLastPathComponent().path
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir) else {
            throw AudioFileError(path, "directory '\(dir)' does not exist")
        }
        guard isDir.boolValue else { throw AudioFileError(path, "'\(dir)' is not a directory") }
        // Hidden name: a stray file (only after SIGKILL mid-write) is easy to tell from output.
        var template = Array((dir + "/." + url.lastPathComponent + ".tmp-XXXXXX").utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else {
            throw AudioFileError(path, "cannot create a file in '\(dir)': \(errnoText())")
        }
        // mkstemp makes 0600; output files get the usual 0666 & ~umask.
        let mask = umask(0o022); umask(mask)
        fchmod(fd, 0o666 & ~mask)
        return (fd, String(cString: template))
    }

    private static func errnoText() -> String { String(cString: strerror(errno)) }

    // MARK: Reading

    /// Reads any file libsndfile understands (WAV, FLAC, ...): all channels, any rate.
    public static func read(_ url: URL) throws -> AudioData {
        let path = url.relativePath
        guard FileManager.default.fileExists(atPath: url.path) else { throw AudioFileError(path, "no such file") }
        var info = SF_INFO()
        guard let sf = sf_open(url.path, Int32(SFM_READ), &info) else {
            throw AudioFileError(path, "cannot read audio: \(String(cString: sf_strerror(nil)))")
        }
        defer { sf_close(sf) }
        let channels = Int(info.channels)
        guard channels > 0, info.samplerate > 0 else { throw AudioFileError(path, "no channels or no sample rate") }
        var samples: [Float] = []
        if info.frames > 0, info.frames < Int64(Int32.max) { samples.reserveCapacity(Int(info.frames) * channels) }
        // Chunked until EOF: frame counts can be missing or wrong in damaged files.
        let chunkFrames = 65_536
        var buf = [Float](repeating: 0, count: chunkFrames * channels)
        while true {
            let got = Int(sf_readf_float(sf, &buf, sf_count_t(chunkFrames)))
            if got <= 0 { break }
            samples.append(contentsOf: buf[0..<(got * channels)])
        }
        let err = sf_error(sf)
        if err != 0 { throw AudioFileError(path, "read failed: \(String(cString: sf_error_number(err)))") }
        return AudioData(samples: samples, channels: channels, sampleRate: Int(info.samplerate))
    }

    // MARK: Interruption

    /// Installs SIGINT/SIGTERM/SIGHUP handlers that delete any temporary file being written,
    /// then die of the signal as usual. For executables; safe to call more than once.
    public static func removeTemporaryFilesOnSignals() {
        TempFileRegistry.installHandlers()
    }
}

/// Paths of temporary files being written, kept in fixed C buffers a signal handler can read
/// without allocating or locking (unlink is async-signal-safe).
enum TempFileRegistry {
    static let slots = 8
    static let slotSize = 4096
    nonisolated(unsafe) static let buffer: UnsafeMutablePointer<CChar> = {
        let p = UnsafeMutablePointer<CChar>.allocate(capacity: slots * slotSize)
        p.initialize(repeating: 0, count: slots * slotSize)
        return p
    }()
    static let lock = NSLock()
    nonisolated(unsafe) static var installed = false

    static func add(_ path: String) {
        let bytes = Array(path.utf8CString)
        guard bytes.count <= slotSize else { return }
        _ = buffer // initialise outside the handler
        lock.lock(); defer { lock.unlock() }
        for s in 0..<slots where buffer[s * slotSize] == 0 {
            // Write the tail first and the first byte last: the handler never sees half a path.
            for i in 1..<bytes.count { buffer[s * slotSize + i] = bytes[i] }
            buffer[s * slotSize] = bytes[0]
            return
        }
    }

    static func remove(_ path: String) {
        lock.lock(); defer { lock.unlock() }
        for s in 0..<slots where buffer[s * slotSize] != 0 && String(cString: buffer + s * slotSize) == path {
            buffer[s * slotSize] = 0
        }
    }

    static func installHandlers() {
        lock.lock(); defer { lock.unlock() }
        guard !installed else { return }
        installed = true
        _ = buffer
        for sig in [SIGINT, SIGTERM, SIGHUP] {
            signal(sig) { sig in
                let b = TempFileRegistry.buffer
                for s in 0..<TempFileRegistry.slots where b[s * TempFileRegistry.slotSize] != 0 {
                    unlink(b + s * TempFileRegistry.slotSize)
                }
                signal(sig, SIG_DFL)
                raise(sig)
            }
        }
    }
}
