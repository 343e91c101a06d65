import DDSPPiano
import Foundation
import CSndFile
#if canImport(Glibc)
import Glibc
#endif

/// Sample formats `ddsp-piano` writes: WAV (s16, s24, f32) or FLAC (lossless; `flac` holds the
/// samples of s24, `flac16` those of s16).
public enum AudioFormat: String, CaseIterable, Sendable {
    case s16, s24, f32, flac, flac16

    /// Integer formats hold [-1, 1) only; anything beyond is clipped (and counted).
    public var clips: Bool { self != .f32 }

    public var isFLAC: Bool { self == .flac || self == .flac16 }

    /// The usual file name extension: "wav" or "flac".
    public var fileExtension: String { isFLAC ? "flac" : "wav" }

    /// The format a file name asks for when none is given: `flac` for ".flac", else nil.
    public static func implied(by url: URL) -> AudioFormat? {
        url.pathExtension.lowercased() == "flac" ? .flac : nil
    }

    /// Bits per integer sample (nil: float).
    var integerBits: Int? {
        switch self {
        case .s16, .flac16: return 16
        case .s24, .flac: return 24
        case .f32: return nil
        }
    }

    var sndfileFormat: Int32 {
        let container = Int32(isFLAC ? SF_FORMAT_FLAC : SF_FORMAT_WAV)
        switch integerBits {
        case 16: return container | Int32(SF_FORMAT_PCM_16)
        case 24: return container | Int32(SF_FORMAT_PCM_24)
        default: return container | Int32(SF_FORMAT_FLOAT)
        }
    }
}

/// One line naming the file and the problem: "out.wav: directory '/x' does not exist".
public struct AudioFileError: CodedError, Equatable, Sendable {
    public var path: String
    public var problem: String
    public var code: ErrorCode
    public init(_ path: String, _ problem: String, code: ErrorCode = .badAudio) { self.path = path; self.problem = problem; self.code = code }
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

    /// Writes interleaved samples as WAV or FLAC (`format`), atomically: the data goes to a temporary file in the
    /// target directory which is renamed over `url` only when complete, so a failure never
    /// leaves a partial file and never destroys an existing one.
    ///
    /// Integer formats use the symmetric 2^(bits-1) scale (what libsndfile reads back), so a
    /// round trip is within half a step; values beyond ±1 are clipped and counted.
    @discardableResult
    public static func write(_ samples: [Float], channels: Int = 1, sampleRate: Int, format: AudioFormat,
                             to url: URL) throws -> AudioWriteReport {
        guard channels > 0, samples.count % channels == 0 else {
            throw AudioFileError(url.relativePath, "\(samples.count) samples do not divide into \(channels) channels", code: .usage)
        }
        let writer = try AudioFileWriter(url: url, channels: channels, sampleRate: sampleRate, format: format)
        try samples.withUnsafeBufferPointer { try writer.write($0) }
        return try writer.finish()
    }

    /// Rounds to `bits`-bit integers on the 2^(bits-1) scale, clamping (and counting) overs;
    /// into `ints` shifted to the top of an Int32 (libsndfile's `int` layout), or into `shorts`.
    static func quantize(_ chunk: UnsafeBufferPointer<Float>, bits: Int, into ints: UnsafeMutableBufferPointer<Int32>?,
                         shorts: UnsafeMutableBufferPointer<Int16>?, report: inout AudioWriteReport) {
        let scale = Float(1 << (bits - 1))
        let hi = Int32((1 << (bits - 1)) - 1), lo = Int32(-(1 << (bits - 1)))
        let shift = Int32(32 - bits)
        for i in 0..<chunk.count {
            let x = chunk[i]
            var q: Int32 = 0
            if x.isFinite {
                let a = abs(x)
                if a > report.peak { report.peak = a }
                if a > 1 { report.clippedSamples += 1 }
                // Clamp in Float first so the Int32 conversion cannot trap.
                q = Int32(min(max((x * scale).rounded(), Float(lo)), Float(hi)))
            } else {
                report.nonFiniteSamples += 1
            }
            if let shorts { shorts[i] = Int16(truncatingIfNeeded: q) } else { ints![i] = q << shift }
        }
    }

    /// Fails early (before a long render) when `url` could not be written: missing or
    /// unwritable directory, or a directory in the way. Leaves nothing behind.
    public static func checkWritable(_ url: URL) throws {
        if isStandardOutput(url) {
            // Binary audio on a terminal is never what was meant.
            guard isatty(1) == 0 else { throw AudioFileError(name(of: url), "is a terminal; redirect it to a file or pipe it to a program", code: .unwritable) }
            return
        }
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir), isDir.boolValue {
            throw AudioFileError(url.relativePath, "is a directory", code: .unwritable)
        }
        let (fd, tempPath) = try makeTemporaryFile(for: url)
        close(fd)
        unlink(tempPath)
    }

    /// A fresh file beside `url` (same directory, so the final rename is atomic).
    static func makeTemporaryFile(for url: URL) throws -> (Int32, String) {
        let path = url.relativePath
        let dir = url.deletingLastPathComponent().path
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir) else {
            throw AudioFileError(path, "directory '\(dir)' does not exist", code: .unwritable)
        }
        guard isDir.boolValue else { throw AudioFileError(path, "'\(dir)' is not a directory", code: .unwritable) }
        // Hidden name: a stray file (only after SIGKILL mid-write) is easy to tell from output.
        var template = Array((dir + "/." + url.lastPathComponent + ".tmp-XXXXXX").utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else {
            throw AudioFileError(path, "cannot create a file in '\(dir)': \(errnoText())", code: .unwritable)
        }
        // mkstemp makes 0600; output files get the usual 0666 & ~umask.
        let mask = umask(0o022); umask(mask)
        fchmod(fd, 0o666 & ~mask)
        return (fd, String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
    }

    private static func errnoText() -> String { String(cString: strerror(errno)) }

    // MARK: Standard output

    /// The output path that means standard output (`ddsp-piano render IN.mid -`).
    public static let standardOutput = URL(fileURLWithPath: "/dev/stdout")

    public static func isStandardOutput(_ url: URL) -> Bool { url.path == standardOutput.path }

    /// How messages name `url`: as the caller spelled it, or "standard output".
    public static func name(of url: URL) -> String { isStandardOutput(url) ? "standard output" : url.relativePath }

    /// The RIFF/WAVE header of a `frames`-long file, written before the samples where the file
    /// cannot be rewound to complete it (a pipe): what libsndfile would write, less its optional
    /// PEAK chunk. Float data gets the `fact` chunk WAVE requires of non-PCM formats.
    static func wavHeader(format: AudioFormat, channels: Int, sampleRate: Int, frames: Int) -> [UInt8]? {
        let bytesPerSample = (format.integerBits ?? 32) / 8
        let dataBytes = frames * channels * bytesPerSample
        let isFloat = format.integerBits == nil
        let fmtBytes = isFloat ? 18 : 16
        let riffBytes = 4 + (8 + fmtBytes) + (isFloat ? 12 : 0) + 8 + dataBytes + (dataBytes & 1)
        guard riffBytes <= Int(UInt32.max) else { return nil }
        var h: [UInt8] = []
        func tag(_ t: String) { h += Array(t.utf8) }
        func u32(_ v: Int) { h += withUnsafeBytes(of: UInt32(v).littleEndian, Array.init) }
        func u16(_ v: Int) { h += withUnsafeBytes(of: UInt16(v).littleEndian, Array.init) }
        tag("RIFF"); u32(riffBytes); tag("WAVE")
        tag("fmt "); u32(fmtBytes)
        u16(isFloat ? 3 : 1); u16(channels); u32(sampleRate)
        u32(sampleRate * channels * bytesPerSample); u16(channels * bytesPerSample); u16(bytesPerSample * 8)
        if isFloat { u16(0); tag("fact"); u32(4); u32(frames) }
        tag("data"); u32(dataBytes)
        return h
    }

    /// write(2) until done (a pipe takes what it has room for).
    static func writeAll(_ fd: Int32, _ bytes: [UInt8], name: String) throws {
        var done = 0
        while done < bytes.count {
            let put = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + done, bytes.count - done) }
            if put < 0, errno == EINTR { continue }
            guard put > 0 else { throw AudioFileError(name, "write failed: \(errnoText())", code: .unwritable) }
            done += put
        }
    }

    // MARK: Reading

    /// Reads any file libsndfile understands (WAV, FLAC, ...): all channels, any rate.
    public static func read(_ url: URL) throws -> AudioData {
        let path = url.relativePath
        guard FileManager.default.fileExists(atPath: url.path) else { throw AudioFileError(path, "no such file", code: .notFound) }
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

    /// SIGINT/SIGTERM/SIGHUP delete any temporary file being written, then the process dies of
    /// the signal as usual (`Signals`). For executables; safe to call more than once.
    public static func removeTemporaryFilesOnSignals() {
        Signals.removeTemporaryFilesAndDie(on: [SIGINT, SIGTERM, SIGHUP])
    }
}

/// A WAV or FLAC file written as the samples come, in constant memory, with `AudioFile.write`'s
/// guarantees: the samples go to a temporary file beside `url` (deleted on SIGINT/SIGTERM/SIGHUP
/// once `AudioFile.removeTemporaryFilesOnSignals()` is installed), which `finish()` renames over
/// `url` only when complete. `cancel()`, or dropping an unfinished writer, deletes it: an
/// existing file at `url` is never touched by a write that did not finish.
///
/// Samples are buffered and converted in fixed chunks (allocated once, at `init`); integer
/// formats clip beyond ±1 and count it (`report`).
///
/// `AudioFile.standardOutput` streams instead (no temporary file, no rename; an unfinished
/// stream is cut short): FLAC as libFLAC writes to a pipe (its STREAMINFO leaves the length
/// unknown, which the format allows); WAV with the header first, made from `frames`, which must
/// then be given, and the samples after it as libsndfile writes them (raw).
public final class AudioFileWriter {
    public let url: URL
    public let channels: Int
    public let sampleRate: Int
    public let format: AudioFormat
    /// What was done to the samples so far (complete after `finish()`).
    public private(set) var report = AudioWriteReport()

    private var sf: OpaquePointer?
    private let tempPath: String
    private var done = false
    private static let chunkFrames = 65_536
    private let pending: UnsafeMutableBufferPointer<Float>
    private var pendingCount = 0
    private let ints: UnsafeMutableBufferPointer<Int32>
    private let shorts: UnsafeMutableBufferPointer<Int16>
    /// Standard output: the WAV length its header announced (nil for FLAC), checked at `finish()`.
    private let streaming: Bool
    private let announcedFrames: Int?

    public init(url: URL, channels: Int = 1, sampleRate: Int, format: AudioFormat, frames: Int? = nil) throws {
        let path = AudioFile.name(of: url) // as the caller spelled it, for messages
        guard channels > 0 else { throw AudioFileError(path, "invalid channel count \(channels)", code: .usage) }
        guard sampleRate > 0 else { throw AudioFileError(path, "invalid sample rate \(sampleRate)", code: .usage) }
        var info = SF_INFO()
        info.samplerate = Int32(sampleRate)
        info.channels = Int32(channels)
        info.format = format.sndfileFormat
        let kind = format.isFLAC ? "FLAC" : "WAV"
        if AudioFile.isStandardOutput(url) {
            tempPath = ""
            streaming = true
            announcedFrames = format.isFLAC ? nil : frames
            if !format.isFLAC {
                guard let frames else { throw AudioFileError(path, "a WAV stream needs its length in advance", code: .internal) }
                guard let header = AudioFile.wavHeader(format: format, channels: channels, sampleRate: sampleRate, frames: frames) else {
                    throw AudioFileError(path, "over 4 GiB, too long for WAV; use --format flac", code: .usage)
                }
                try AudioFile.writeAll(1, header, name: path)
                info.format = Int32(SF_FORMAT_RAW) | Int32(SF_ENDIAN_LITTLE) | (format.sndfileFormat & Int32(SF_FORMAT_SUBMASK))
            }
            guard let sf = sf_open_fd(1, Int32(SFM_WRITE), &info, 0) else {
                throw AudioFileError(path, "cannot write \(kind): \(String(cString: sf_strerror(nil)))", code: .unwritable)
            }
            self.sf = sf
        } else {
            streaming = false
            announcedFrames = nil
            let (fd, tempPath) = try AudioFile.makeTemporaryFile(for: url)
            Signals.registerTemporaryFile(tempPath)
            guard let sf = sf_open_fd(fd, Int32(SFM_WRITE), &info, 1) else {
                let reason = String(cString: sf_strerror(nil))
                close(fd)
                unlink(tempPath)
                Signals.unregisterTemporaryFile(tempPath)
                throw AudioFileError(path, "cannot write \(kind): \(reason)", code: .unwritable)
            }
            self.sf = sf
            self.tempPath = tempPath
        }
        self.url = url
        self.channels = channels
        self.sampleRate = sampleRate
        self.format = format
        let capacity = Self.chunkFrames * channels
        pending = .allocate(capacity: capacity)
        pending.initialize(repeating: 0)
        ints = .allocate(capacity: format.integerBits == 24 ? capacity : 0)
        ints.initialize(repeating: 0)
        shorts = .allocate(capacity: format.integerBits == 16 ? capacity : 0)
        shorts.initialize(repeating: 0)
    }

    deinit {
        cancel()
        pending.deallocate()
        ints.deallocate()
        shorts.deallocate()
    }

    /// Appends interleaved samples (whole frames).
    public func write(_ samples: UnsafeBufferPointer<Float>) throws {
        guard !done, sf != nil else { throw AudioFileError(url.relativePath, "write after the file was finished or cancelled", code: .internal) }
        guard samples.count % channels == 0 else {
            throw AudioFileError(url.relativePath, "\(samples.count) samples do not divide into \(channels) channels", code: .usage)
        }
        var start = 0
        while start < samples.count {
            let n = min(samples.count - start, pending.count - pendingCount)
            (pending.baseAddress! + pendingCount).update(from: samples.baseAddress! + start, count: n)
            pendingCount += n
            start += n
            if pendingCount == pending.count { try flush() }
        }
    }

    /// Writes what is buffered, closes, and renames the file into place. Returns the report.
    @discardableResult
    public func finish() throws -> AudioWriteReport {
        let path = AudioFile.name(of: url)
        guard !done, let sf else { throw AudioFileError(path, "finish after the file was finished or cancelled", code: .internal) }
        do {
            try flush()
        } catch {
            cancel()
            throw error
        }
        sf_write_sync(sf)
        let closeStatus = sf_close(sf)
        self.sf = nil
        guard closeStatus == 0 else {
            cancel()
            throw AudioFileError(path, "write failed: \(String(cString: sf_error_number(closeStatus)))", code: .unwritable)
        }
        if streaming {
            done = true
            if let announcedFrames {
                guard report.frames == announcedFrames else {
                    throw AudioFileError(path, "\(report.frames) frames written after a WAV header announcing \(announcedFrames)", code: .internal)
                }
                // RIFF chunks are padded to an even size.
                let dataBytes = report.frames * channels * ((format.integerBits ?? 32) / 8)
                if dataBytes & 1 == 1 { try AudioFile.writeAll(1, [0], name: path) }
            }
            return report
        }
        guard rename(tempPath, url.path) == 0 else {
            let reason = String(cString: strerror(errno))
            cancel()
            throw AudioFileError(path, "cannot replace the file: \(reason)", code: .unwritable)
        }
        done = true
        Signals.unregisterTemporaryFile(tempPath)
        // Persist the rename too; best effort (some filesystems refuse fsync on directories).
        let dfd = open(url.deletingLastPathComponent().path, O_RDONLY | O_DIRECTORY)
        if dfd >= 0 { fsync(dfd); close(dfd) }
        return report
    }

    /// Abandons the file: the temporary file is deleted, `url` is left as it was. Safe to call
    /// more than once, and after `finish()` (then it does nothing).
    public func cancel() {
        guard !done else { return }
        done = true
        if let sf { sf_close(sf) }
        sf = nil
        if streaming { return }
        unlink(tempPath)
        Signals.unregisterTemporaryFile(tempPath)
    }

    private func flush() throws {
        guard pendingCount > 0, let sf else { return }
        let chunk = UnsafeMutableBufferPointer(rebasing: pending[0..<pendingCount])
        let frames = sf_count_t(pendingCount / channels)
        pendingCount = 0
        report.frames += Int(frames)
        let written: sf_count_t
        switch format.integerBits {
        case nil:
            for i in chunk.indices {
                let x = chunk[i]
                if x.isFinite { report.peak = max(report.peak, abs(x)) } else { chunk[i] = 0; report.nonFiniteSamples += 1 }
            }
            written = sf_writef_float(sf, chunk.baseAddress!, frames)
        case 16:
            AudioFile.quantize(UnsafeBufferPointer(chunk), bits: 16, into: nil, shorts: shorts, report: &report)
            written = sf_writef_short(sf, shorts.baseAddress!, frames)
        default:
            // libsndfile takes 24-bit PCM from the top 24 bits of an Int32.
            AudioFile.quantize(UnsafeBufferPointer(chunk), bits: 24, into: ints, shorts: nil, report: &report)
            written = sf_writef_int(sf, ints.baseAddress!, frames)
        }
        if written != frames {
            throw AudioFileError(AudioFile.name(of: url), "write failed: \(String(cString: sf_strerror(sf)))", code: .unwritable)
        }
    }
}

/// Float samples parked in an anonymous temporary file (raw, native byte order), to be read back
/// in order: a long render's samples without keeping them in memory. The file is created beside
/// `url` (an output is going there anyway) and unlinked at once, so nothing is ever left behind,
/// whatever happens to the process.
public final class SampleScratchFile {
    private let fd: Int32
    private let path: String
    /// Samples appended so far.
    public var count: Int { stored + buffered }
    private var stored = 0
    private let buffer: UnsafeMutableBufferPointer<Float>
    private var buffered = 0

    public init(near url: URL) throws {
        // Nothing can be created beside standard output: the system's temporary directory then.
        let near = AudioFile.isStandardOutput(url) ? FileManager.default.temporaryDirectory.appendingPathComponent("ddsp-piano") : url
        let (fd, tempPath) = try AudioFile.makeTemporaryFile(for: near)
        unlink(tempPath)
        self.fd = fd
        path = url.relativePath
        buffer = .allocate(capacity: 65_536)
        buffer.initialize(repeating: 0)
    }

    deinit {
        close(fd)
        buffer.deallocate()
    }

    public func append(_ samples: UnsafeBufferPointer<Float>) throws {
        var start = 0
        while start < samples.count {
            let n = min(samples.count - start, buffer.count - buffered)
            (buffer.baseAddress! + buffered).update(from: samples.baseAddress! + start, count: n)
            buffered += n
            start += n
            if buffered == buffer.count { try flush() }
        }
    }

    /// Reads up to `into.count` samples from sample `offset`; returns how many were read.
    public func read(at offset: Int, into: UnsafeMutableBufferPointer<Float>) throws -> Int {
        try flush()
        let n = max(0, min(into.count, stored - offset))
        var done = 0
        while done < n * 4 {
            let got = pread(fd, UnsafeMutableRawPointer(into.baseAddress!) + done, n * 4 - done, off_t(offset * 4 + done))
            if got < 0, errno == EINTR { continue }
            guard got > 0 else { throw AudioFileError(path, "cannot read back the temporary samples: \(got < 0 ? String(cString: strerror(errno)) : "short file")", code: .unwritable) }
            done += got
        }
        return n
    }

    private func flush() throws {
        guard buffered > 0 else { return }
        let bytes = buffered * 4
        var done = 0
        while done < bytes {
            let put = write(fd, UnsafeRawPointer(buffer.baseAddress!) + done, bytes - done)
            if put < 0, errno == EINTR { continue }
            guard put > 0 else { throw AudioFileError(path, "cannot write temporary samples: \(put < 0 ? String(cString: strerror(errno)) : "no space")", code: .unwritable) }
            done += put
        }
        stored += buffered
        buffered = 0
    }
}
