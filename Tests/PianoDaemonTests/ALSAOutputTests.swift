import CMallocCounter
import DDSPPiano
import Foundation
import PianoDaemon
import PianoIO
import PianoTestKit
import XCTest

/// `--audio alsa` on the host, where there is no sound card: its settings (config keys and
/// flags, one rule for both), and the driver's loop on alsa-lib's "null" PCM (a real PCM that
/// discards what it is given): every format, the allocator calls of its cycles, the device
/// error. The real device (snd-aloop) is ALSAOutputGuestTests'.
final class ALSAOutputTests: XCTestCase {
    static func command(_ arguments: [String]) -> DaemonCommand? {
        if case .run(let c) = DaemonCommand.parsed(arguments) { return c }
        return nil
    }

    static func failure(_ arguments: [String]) -> (status: Int32, message: String)? {
        if case .exit(let s, let m) = DaemonCommand.parsed(arguments) { return (s, m) }
        return nil
    }

    func testFlagsAndConfigKeysShareTheRules() throws {
        let defaults = DaemonSettings()
        XCTAssertEqual(defaults.alsaDevice, "default")
        XCTAssertEqual(defaults.period, 256)
        XCTAssertEqual(defaults.periods, 3)
        for key in ["alsa_device", "period", "periods"] { XCTAssertTrue(DaemonSettings.keys.contains(key), key) }

        let s = Self.command(["--audio", "alsa", "--alsa-device", "hw:Loopback,0,0", "--period", "128", "--periods", "4",
                              "--sample-rate", "44100"])?.applied(to: defaults)
        XCTAssertEqual(s?.audio, "alsa")
        XCTAssertEqual(s?.alsaDevice, "hw:Loopback,0,0")
        XCTAssertEqual(s?.period, 128)
        XCTAssertEqual(s?.periods, 4)
        XCTAssertEqual(s?.sampleRate, 44100)

        let file = try DaemonSettings().applying(try MiniTOML.parse("""
            audio = "alsa"
            alsa_device = "plughw:1"
            period = 512
            periods = 2
            """, file: "c.toml"), file: "c.toml")
        XCTAssertEqual(file.audio, "alsa")
        XCTAssertEqual(file.alsaDevice, "plughw:1")
        XCTAssertEqual(file.period, 512)
        XCTAssertEqual(file.periods, 2)
        // A flag wins over the file.
        XCTAssertEqual(Self.command(["--period", "64"])?.applied(to: file).period, 64)
        XCTAssertEqual(Self.command(["--alsa-device", "hw:0"])?.applied(to: file).alsaDevice, "hw:0")

        // Refused by both, in the same words; every message one line.
        for (flag, key, value, toml, rule) in [
            ("--period", "period", "15", "15", DaemonRules.periodRule),
            ("--period", "period", "8193", "8193", DaemonRules.periodRule),
            ("--period", "period", "many", "\"many\"", DaemonRules.periodRule),
            ("--periods", "periods", "1", "1", DaemonRules.periodsRule),
            ("--periods", "periods", "17", "17", DaemonRules.periodsRule),
            ("--alsa-device", "alsa_device", "", "\"\"", DaemonRules.alsaDeviceRule),
            ("--alsa-device", "alsa_device", "hw:0\n1", "\"hw:0\\n1\"", DaemonRules.alsaDeviceRule),
            ("--audio", "audio", "pulse", "\"pulse\"", DaemonRules.audioRule),
        ] {
            let f = Self.failure([flag, value])
            XCTAssertEqual(f?.status, 2, "\(flag) \(value)")
            XCTAssertTrue(f?.message.contains(rule) ?? false, "\(flag) \(value): \(f?.message ?? "accepted")")
            XCTAssertFalse(f?.message.contains("\n") ?? true, "\(flag): \(f?.message ?? "")")
            XCTAssertThrowsError(try DaemonSettings().applying(try MiniTOML.parse("\(key) = \(toml)", file: "c.toml"), file: "c.toml")) {
                XCTAssertTrue("\($0)".contains(rule), "\(key) = \(toml): \($0)")
                XCTAssertTrue("\($0)".hasPrefix("c.toml"), "\($0)")
                XCTAssertFalse("\($0)".contains("\n"), "\($0)")
            }
        }
        XCTAssertEqual(Self.failure(["--period", "15"])?.message, "ddsp-pianod: --period takes frames 16…8192, not '15'")
        XCTAssertEqual(Self.failure(["--periods", "1"])?.message, "ddsp-pianod: --periods takes a count 2…16, not '1'")
        XCTAssertEqual(DaemonRules.audioRule, "jack, null or alsa")
        // The edges are accepted.
        for (flag, key, value) in [("--period", "period", "16"), ("--period", "period", "8192"),
                                   ("--periods", "periods", "2"), ("--periods", "periods", "16")] {
            XCTAssertNotNil(Self.command([flag, value]), "\(flag) \(value)")
            XCTAssertNoThrow(try DaemonSettings().applying(try MiniTOML.parse("\(key) = \(value)", file: "c.toml"), file: "c.toml"))
        }
    }

    func testHelpShowsTheALSAFlags() {
        guard case .exit(let status, let help) = DaemonCommand.parsed(["--help"]) else { return XCTFail("no help") }
        XCTAssertEqual(status, 0)
        for text in ["--audio <jack|null|alsa>", "--alsa-device <NAME>", "--period <N>", "--periods <N>", "16…8192", "2…16",
                     "cannot be opened or failed"] {
            XCTAssertTrue(help.contains(text), "help lacks \(text):\n\(help)")
        }
    }

    /// The default preset documents the ALSA keys, and its example lines are valid settings.
    func testDefaultPresetMentionsTheALSAKeys() throws {
        let url = TestKit.packageRoot.appendingPathComponent("presets/default.toml")
        let text = try String(contentsOf: url, encoding: .utf8)
        XCTAssertNoThrow(try DaemonSettings().applying(file: url.path))
        let examples = text.split(separator: "\n").filter { $0.hasPrefix("# alsa_device") || $0.hasPrefix("# period") }
        XCTAssertEqual(examples.count, 3, text)
        let s = try DaemonSettings().applying(try MiniTOML.parse(examples.map { String($0.dropFirst(2)) }.joined(separator: "\n"), file: "d.toml"), file: "d.toml")
        XCTAssertEqual(s.period, DaemonSettings().period)
        XCTAssertEqual(s.periods, DaemonSettings().periods)
        XCTAssertEqual(s.alsaDevice, DaemonSettings().alsaDevice)
    }

    static func nullOutput(_ core: AudioCore, formats: [ALSAOutput.Format] = ALSAOutput.Format.allCases,
                           rate: Int = 48_000, period: Int = 256) throws -> ALSAOutput {
        let o = ALSAOutput(core: core, device: "null", sampleRate: rate, period: period, periods: 3, formats: formats)
        do { try o.open() } catch {
            print("skipped: alsa-lib's null PCM is not available (\(error))")
            throw XCTSkip("no null PCM")
        }
        return o
    }

    /// The cycle the loop's thread runs (render, convert, snd_pcm_writei, the clock read), on
    /// the null PCM: no allocator call over thousands of periods with notes and pedals.
    func testCycleDoesNotAllocate() throws {
        let (_, weights) = try DaemonSupport.bundledWeights()
        let core = AudioCore()
        let output = try Self.nullOutput(core)
        defer { output.close() }
        XCTAssertEqual(output.format, .float)
        let engine = PianoEngine(weights: weights, options: Daemon.engineOptions(instrument: 0, noise: true))
        try engine.prepare(sampleRate: Double(output.sampleRate), maxBlockSize: output.period)
        core.install(engine: engine)
        core.install(router: MIDIRouter(instruments: weights.instruments.count))
        output.warmUp(engine: engine)
        print("null PCM: \(output.summary), buffer \(output.latencyFrames) frames")
        XCTAssertEqual(output.latencyFrames, output.period * output.periods)

        malloc_counter_start()
        var peak: Float = 0
        for i in 0..<2000 {
            if i % 50 == 0 { core.controlMIDIQueue.push(TimedMIDI(time: monotonicNanoseconds(), status: 0x90, data1: UInt8(40 + i / 50), data2: 90)) }
            if i % 50 == 25 { core.controlMIDIQueue.push(TimedMIDI(time: monotonicNanoseconds(), status: 0x80, data1: UInt8(40 + i / 50), data2: 0)) }
            if i % 400 == 0 { core.controlMIDIQueue.push(TimedMIDI(time: monotonicNanoseconds(), status: 0xB0, data1: 64, data2: i % 800 == 0 ? 127 : 0)) }
            XCTAssertTrue(output.cycle())
            for x in output.lastPeriod { peak = max(peak, abs(x)) }
        }
        let calls = malloc_counter_stop()
        print("ALSA output cycle on the null PCM: 2000 periods, notes \(core.stats.notesReceived.load(ordering: .relaxed)), peak \(peak), " +
              "allocator calls \(calls), xruns \(core.stats.xruns.load(ordering: .relaxed))")
        XCTAssertEqual(calls, 0, "the ALSA output's cycle called the allocator")
        XCTAssertEqual(core.stats.notesReceived.load(ordering: .relaxed), 40)
        XCTAssertGreaterThan(peak, 0.01, "it played")
        XCTAssertEqual(output.failure.load(ordering: .relaxed), 0)
    }

    /// Each format the device may insist on, from the same floats: the mono model on every
    /// channel, rounded and clipped for the integer formats.
    func testEveryFormatIsTheModelsFloatsConverted() throws {
        let (_, weights) = try DaemonSupport.bundledWeights()
        for format in ALSAOutput.Format.allCases {
            let core = AudioCore()
            let output = try Self.nullOutput(core, formats: [format], rate: 44_100, period: 128)
            defer { output.close() }
            XCTAssertEqual(output.format, format)
            XCTAssertEqual(output.sampleRate, 44_100)
            XCTAssertEqual(output.channels, 2)
            let engine = PianoEngine(weights: weights, options: Daemon.engineOptions(instrument: 0, noise: true))
            try engine.prepare(sampleRate: Double(output.sampleRate), maxBlockSize: output.period)
            core.install(engine: engine)
            core.install(router: MIDIRouter(instruments: weights.instruments.count))
            core.controlMIDIQueue.push(TimedMIDI(time: monotonicNanoseconds(), status: 0x90, data1: 60, data2: 127))
            var worst = 0.0, loud: Float = 0
            for _ in 0..<200 {
                output.cycle()
                let f = output.lastPeriod, raw = output.lastWritten
                for i in 0..<output.period {
                    let x = Double(min(max(f[i], -1), 1))
                    loud = max(loud, abs(f[i]))
                    for c in 0..<output.channels {
                        let k = i * output.channels + c
                        let y: Double
                        switch format {
                        case .float: y = Double(raw.load(fromByteOffset: 4 * k, as: Float.self))
                        case .s32: y = Double(raw.load(fromByteOffset: 4 * k, as: Int32.self)) / 2_147_483_647
                        case .s16: y = Double(raw.load(fromByteOffset: 2 * k, as: Int16.self)) / 32767
                        }
                        worst = max(worst, abs(y - x))
                    }
                }
            }
            // s16: half a step of rounding, plus the float32 rounding of x · 32767 before it
            // (|x| · 2⁻²⁴ of full scale; a sample near a half step showed 2e-12 beyond the first).
            let bound = format == .s16 ? 0.5 / 32767 + 0x1p-24 : format == .s32 ? 1e-9 : 0
            print("\(format.name): worst difference from the model's float \(worst) (bound \(bound)), peak \(loud)")
            XCTAssertLessThanOrEqual(worst, bound, format.name)
            XCTAssertGreaterThan(loud, 0.01)
        }
    }

    /// A device that is not there: one line naming it and ALSA's reason.
    func testMissingDeviceIsOneLineNamingIt() {
        let o = ALSAOutput(core: AudioCore(), device: "hw:31,0", sampleRate: 48_000, period: 256, periods: 3)
        XCTAssertThrowsError(try o.open()) {
            let text = "\($0)"
            print(text)
            XCTAssertTrue(text.hasPrefix("cannot open ALSA device 'hw:31,0': "), text)
            XCTAssertFalse(text.contains("\n"), text)
        }
    }

    /// The daemon itself: status 3 and one line for a device it cannot open; with the null
    /// PCM it plays, reports the device, the buffer's latency and xruns, and stops cleanly.
    func testDaemonWithALSAOutput() throws {
        let dir = try DaemonSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let weights = try DaemonSupport.syntheticWeights(in: dir)
        let bad = try DaemonProcess(arguments: ["--weights", weights.path, "--audio", "alsa", "--alsa-device", "hw:31,0"], dir: dir)
        bad.process.waitUntilExit()
        XCTAssertEqual(bad.process.terminationStatus, 3, bad.output)
        let errors = bad.output.split(separator: "\n").filter { !$0.contains("ALSA sequencer") }
        XCTAssertEqual(errors.count, 1, bad.output)
        XCTAssertTrue(errors.first?.hasPrefix("ddsp-pianod: cannot open ALSA device 'hw:31,0': ") ?? false, bad.output)

        let d = try DaemonProcess(arguments: ["--weights", weights.path, "--audio", "alsa", "--alsa-device", "null",
                                              "--sample-rate", "44100", "--period", "300", "--periods", "2"], dir: dir)
        XCTAssertTrue(d.waitReady(60), d.output)
        let status = try d.status()
        print(status)
        XCTAssertEqual(status["audio"], "alsa null 44100 Hz, 300 frames x 2 periods, FLOAT_LE, 2 channels")
        XCTAssertEqual(status["output latency samples"], "600")
        XCTAssertEqual(status["xruns"], "0")
        XCTAssertTrue(DaemonSupport.waitUntil(10) { Int((try? d.status()["cycles"]) ?? "") ?? 0 > 10 }, d.output)
        XCTAssertEqual(d.stop(), 0, d.output)
        XCTAssertTrue(d.output.contains("on ALSA null 44100 Hz, 300 frames x 2 periods"), d.output)
    }
}
