import Atomics
import DDSPPiano
import Foundation
import PianoIO
import PianoLive
#if canImport(Glibc)
import Glibc
#endif

/// What a take's file says about how it was played (meta events at tick 0, and its name).
struct TakeContext {
    var pianoIndex: Int
    var pianoName: String
    var model: String
    var gainDB: Double
    var velocityCurve: String
    var sampleRate: Int
    /// The live settings, for `render --live --a4 --transpose --width` (the take holds the keys
    /// as played, before the engine's transposition).
    var a4: Double = 440
    var transpose: Int = 0
    var width: Double = 0
}

/// Ticks for a take: one tick is exactly half a sample at the engine's rate (ticks per quarter
/// and tempo chosen so; every common rate has such a pair), and an event at engine sample s
/// (counted from the take's origin) is written at tick 2s + 1, the middle of its sample, so
/// any reader's floor(time · rate) lands on s whatever its floating-point rounding: the timing
/// error is zero samples. Rates without an exact pair (none of the usual ones) get 32000 ticks
/// per quarter at a rounded tempo: error below 1 µs per quarter (2e-6 relative).
public struct TakeTiming: Equatable, Sendable {
    public var ticksPerQuarter: Int
    public var microsecondsPerQuarter: Int
    public var exact: Bool

    public init(rate: Int) {
        func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? a : gcd(b, a % b) }
        // tick = 1 / (2 · rate) s  ⇔  tempo = ticksPerQuarter · 500000 / rate µs.
        let base = rate / gcd(rate, 500_000)
        if rate > 0, base <= 32767 {
            ticksPerQuarter = base * (32767 / base)
            microsecondsPerQuarter = ticksPerQuarter * 500_000 / rate
            exact = microsecondsPerQuarter <= 0xFF_FFFF
            if exact { return }
        }
        ticksPerQuarter = 32000
        microsecondsPerQuarter = min(0xFF_FFFF, Int((32000 * 500_000 / Double(max(rate, 1))).rounded()))
        exact = false
    }
}

/// The takes archive (like Pianoteq's MIDI archive): every take played is kept as a Standard
/// MIDI File. Runs on the control loop: it drains the audio thread's `TakeEvent` queue, tracks
/// held notes and pedals, and writes the take when `silence` seconds of engine time have passed
/// with no note held, no pedal down and nothing played (or at shutdown, or when the engine is
/// replaced). A take without a note-on (a panic, a pedal touched) is not kept.
final class TakeArchive {
    let directory: URL
    let silence: Double
    private var events: [TakeEvent] = []
    private var notes = 0
    private var held = Set<Int>()      // channel << 7 | pitch
    private var pedals = Set<Int>()    // channel << 7 | controller
    private var startedAt = Date()
    private var context: TakeContext?
    private var lostAtStart = 0
    private let log: (String) -> Void
    private(set) var lastWritten: URL?

    init(directory: URL, silence: Double, log: @escaping (String) -> Void) {
        self.directory = directory
        self.silence = silence
        self.log = log
    }

    /// `${XDG_DATA_HOME:-~/.local/share}/ddsp-piano/takes`.
    static func defaultDirectory(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        let base = environment["XDG_DATA_HOME"].flatMap { $0.hasPrefix("/") ? $0 : nil }
            ?? ((environment["HOME"] ?? NSHomeDirectory()) + "/.local/share")
        return base + "/ddsp-piano/takes"
    }

    var inProgress: (notes: Int, seconds: Double)? {
        guard let first = events.first, let last = events.last, let c = context else { return nil }
        return (notes, Double(last.sample - first.sample) / Double(c.sampleRate))
    }

    /// Drains the queue; ends the take when it is over (`force`: now, as at shutdown).
    /// `make`: the context of a take starting on that piano.
    func service(core: AudioCore, context make: (Int) -> TakeContext, force: Bool = false) {
        let now = core.stats.engineSamples.load(ordering: .relaxed)
        while let e = core.takeEvents.pop() {
            if e.status == 0 { finish(core: core); continue }
            if events.isEmpty {
                let c = make(Int(e.instrument))
                context = c
                startedAt = Date(timeIntervalSinceNow: -Double(max(0, now - e.sample)) / Double(max(1, c.sampleRate)))
                lostAtStart = core.stats.takeEventsLost.load(ordering: .relaxed)
            }
            events.append(e)
            let ch = Int(e.status & 0x0F)
            switch e.status & 0xF0 {
            case 0x90: held.insert(ch << 7 | Int(e.data1)); notes += 1
            case 0x80: held.remove(ch << 7 | Int(e.data1))
            case 0xB0:
                switch e.data1 {
                case 64, 66, 67: if e.data2 >= 64 { pedals.insert(ch << 7 | Int(e.data1)) } else { pedals.remove(ch << 7 | Int(e.data1)) }
                case 121: pedals = pedals.filter { $0 >> 7 != ch }
                case 120, 123: held = held.filter { $0 >> 7 != ch }
                default: break
                }
            default: break
            }
        }
        guard let last = events.last, let c = context else { return }
        let quiet = held.isEmpty && pedals.isEmpty && Double(now - last.sample) >= silence * Double(c.sampleRate)
        if force || quiet { finish(core: core) }
    }

    private func finish(core: AudioCore) {
        defer { events.removeAll(); notes = 0; held.removeAll(); pedals.removeAll(); context = nil }
        guard notes > 0, let c = context else { return }
        do {
            let lost = core.stats.takeEventsLost.load(ordering: .relaxed) - lostAtStart
            let url = try write(c, lost: lost)
            lastWritten = url
            log("take written: \(url.path) (\(notes) notes, \(String(format: "%.1f", Double(events.last!.sample - events[0].sample) / Double(c.sampleRate))) s)")
        } catch {
            log("take not written: \(error)")
        }
    }

    /// The take's bytes: meta events at tick 0, then the played events at tick 2s + 1.
    static func bytes(_ events: [TakeEvent], _ c: TakeContext, lost: Int = 0) -> [UInt8] {
        let timing = TakeTiming(rate: c.sampleRate)
        let origin = events.first?.sample ?? 0
        let index = c.pianoIndex
        var list: [(tick: Int, data: [UInt8])] = [
            (0, MIDIWriter.meta(0x03, "ddsp-piano take")),
            (0, MIDIWriter.tempo(timing.microsecondsPerQuarter)),
            (0, MIDIWriter.meta(0x01, "piano \(index) (\(c.pianoName))")),
            (0, MIDIWriter.meta(0x01, "model \(c.model)")),
            (0, MIDIWriter.meta(0x01, String(format: "gain_db %.1f", c.gainDB))),
            (0, MIDIWriter.meta(0x01, "velocity_curve \(c.velocityCurve) (applied: velocities as played)")),
            (0, MIDIWriter.meta(0x01, "sample_rate \(c.sampleRate)")),
            (0, MIDIWriter.meta(0x01, "a4_hz \(DaemonRules.shown(c.a4)) transpose \(c.transpose) width \(DaemonRules.shown(c.width))")),
            (0, MIDIWriter.meta(0x01, "engine_sample \(origin) (tick 2n+1: engine sample \(origin)+n\(timing.exact ? "" : ", approximate"))")),
        ]
        if lost > 0 { list.append((0, MIDIWriter.meta(0x01, "events lost \(lost) (queue full)"))) }
        list.append((0, MIDIWriter.meta(0x06, "take start")))
        list.append((0, [0xC0, UInt8(clamping: max(0, min(127, index)))]))
        for e in events {
            let tick = 2 * (e.sample - origin) + 1
            let data: [UInt8] = (0xC0...0xDF).contains(e.status) ? [e.status, e.data1] : [e.status, e.data1, e.data2]
            list.append((tick, data))
        }
        return MIDIWriter.file(list, ticksPerQuarter: timing.ticksPerQuarter)
    }

    /// Writes a new file (never over an existing one: -2, -3, … are added to the name).
    private func write(_ c: TakeContext, lost: Int) throws -> URL {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.dateFormat = "yyyy-MM-dd'T'HH-mm-ss"
        let safe = String(c.pianoName.map { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "-") ? $0 : "-" })
        let stem = "\(f.string(from: startedAt))_piano-\(safe.isEmpty ? "piano" : safe)"
        let data = Self.bytes(events, c, lost: lost)
        for n in 1...1000 {
            let url = directory.appendingPathComponent(n == 1 ? "\(stem).mid" : "\(stem)-\(n).mid")
            let fd = open(url.path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
            if fd < 0 && errno == EEXIST { continue }
            guard fd >= 0 else { throw Daemon.Failure(description: "\(url.path): \(String(cString: strerror(errno)))", status: 1, code: .unwritable) }
            defer { close(fd) }
            let written = data.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            guard written == data.count else {
                throw Daemon.Failure(description: "\(url.path): write failed", status: 1, code: .unwritable)
            }
            fsync(fd)
            return url
        }
        throw Daemon.Failure(description: "\(directory.path): too many takes named \(stem)", status: 1, code: .unwritable)
    }

    /// One line per take in the directory, oldest first: name, length, notes.
    static func list(_ directory: URL, limit: Int = 200) -> [String] {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? [])
            .filter { $0.hasSuffix(".mid") }.sorted()
        var lines = ["\(names.count) take\(names.count == 1 ? "" : "s") in \(directory.path)"
                     + (names.count > limit ? " (the last \(limit))" : "")]
        for name in names.suffix(limit) {
            let url = directory.appendingPathComponent(name)
            guard let data = try? Data(contentsOf: url), let midi = try? MIDIFile(bytes: [UInt8](data)) else {
                lines.append("\(name)  unreadable")
                continue
            }
            let notes = midi.events.filter { if case .noteOn(_, _, let v) = $0.message { return v > 0 }; return false }.count
            let seconds = (midi.events.last?.time ?? 0) - (midi.events.first?.time ?? 0)
            lines.append(String(format: "%@  %.1f s  %d notes", name, seconds, notes))
        }
        return lines
    }
}

/// `ctl record start FILE.wav` … `stop`: the daemon's output, as the audio thread copies it
/// into `AudioCore.recorder`'s ring, written to a WAV file (32-bit float, the driver's channels)
/// by a writer thread of its own. The file appears under its name when the recording stops
/// (`stop`, or the daemon's shutdown on SIGINT/SIGTERM); an existing file is refused.
// @unchecked Sendable: while the writer thread runs, it alone uses `writer` and `failure`; the
// control thread reads them only after joining it (`finished`); the ring is SPSC with atomics.
final class WAVRecorder: @unchecked Sendable {
    private let ring: OutputRecorderRing
    private var writer: AudioFileWriter?
    private var thread: Thread?
    private let stopping = ManagedAtomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)
    private var failure: String?
    private(set) var url: URL?
    private var rate = 0

    init(ring: OutputRecorderRing) { self.ring = ring }

    var isRecording: Bool { url != nil }
    var seconds: Double { rate > 0 ? Double(ring.recordedFrames.load(ordering: .relaxed)) / Double(rate) : 0 }

    func start(path: String, rate: Int, channels: Int) throws -> String {
        if let url { throw Daemon.Failure(description: "already recording to \(url.path) (record stop first)", status: 1, code: .usage) }
        guard path.hasPrefix("/") else { throw Daemon.Failure(description: "record start takes an absolute path, not '\(path)'", status: 1, code: .usage) }
        let target = URL(fileURLWithPath: path)
        var st = stat()
        if lstat(path, &st) == 0 {
            throw Daemon.Failure(description: "\(path) exists: not overwritten (choose another name)", status: 1, code: .unwritable)
        }
        let w = try AudioFileWriter(url: target, channels: channels, sampleRate: rate, format: .f32)
        // Between recordings nothing enters the ring (the stop was acknowledged): leftovers go.
        ring.discard()
        ring.channels.store(channels, ordering: .relaxed)
        ring.startSample.store(-1, ordering: .relaxed)
        ring.recordedFrames.store(0, ordering: .relaxed)
        ring.overrunFrames.store(0, ordering: .relaxed)
        writer = w
        url = target
        self.rate = rate
        failure = nil
        stopping.store(false, ordering: .relaxed)
        let t = Thread { [self] in drain(channels: channels); finished.signal() }
        t.name = "ddsp-piano recorder"
        thread = t
        t.start()
        ring.request.wrappingIncrement(ordering: .releasing)     // odd: recording
        return "recording to \(path) (\(channels) channel\(channels == 1 ? "" : "s"), \(rate) Hz, 32-bit float)"
    }

    /// The writer thread: moves what the ring holds into the file until told to stop and drained.
    private func drain(channels: Int) {
        guard let w = writer else { return }
        let buffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: 16384 * channels)
        defer { buffer.deallocate() }
        while true {
            let last = stopping.load(ordering: .acquiring)
            let n = ring.read(into: buffer, frameWidth: channels)
            if n > 0 {
                if failure == nil {
                    do { try w.write(UnsafeBufferPointer(rebasing: buffer[0..<n])) } catch { failure = "\(error)" }
                }
                continue
            }
            if last { return }
            usleep(5000)
        }
    }

    /// Ends the recording: waits (at most a second) for the audio thread to stop copying, lets
    /// the writer drain the ring, closes the file. The reply line.
    func stop() -> (ok: Bool, message: String) {
        guard let url, let writer else { return (false, "not recording") }
        let r = ring.request.wrappingIncrementThenLoad(ordering: .releasing)   // even: stopped
        let deadline = monotonicNanoseconds() + 1_000_000_000
        while ring.acknowledged.load(ordering: .acquiring) != r && monotonicNanoseconds() < deadline { usleep(1000) }
        stopping.store(true, ordering: .releasing)
        finished.wait()
        thread = nil
        self.writer = nil
        self.url = nil
        let frames = ring.recordedFrames.load(ordering: .relaxed), over = ring.overrunFrames.load(ordering: .relaxed)
        let start = ring.startSample.load(ordering: .relaxed)
        if let failure {
            writer.cancel()
            return (false, "recording to \(url.path) failed: \(failure)")
        }
        do { try writer.finish() } catch { return (false, "recording to \(url.path) failed: \(error)") }
        return (true, String(format: "recorded %@: %d frames (%.2f s), %d channel%@, from engine sample %d, overruns %d frames",
                             url.path, frames, Double(frames) / Double(max(rate, 1)), writer.channels, writer.channels == 1 ? "" : "s", start, over))
    }
}
