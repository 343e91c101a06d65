import ArgumentParser
import DDSPPiano
import Foundation
import PianoIO

/// ddsp-pianod's command line. Every setting of the config file is also a flag; a flag wins
/// (`applied(to:)`). Values are checked by the rules the config file uses (`DaemonRules`,
/// `MIDIRouter.gamma(forCurve:)`), with the same wording. A usage error is one line on stderr
/// and status 2 (`parsed(_:)`), like a bad configuration.
public struct DaemonCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "ddsp-pianod",
        abstract: "The DDSP-Piano instrument daemon.",
        discussion: """
        MIDI in (ALSA sequencer "\(ALSAInput.clientName)", JACK midi_in), audio out (JACK client \
        "ddsp-piano", ports out_L/out_R; or, with --audio alsa, straight into an ALSA PCM device \
        without a sound server), controlled with 'ddsp-piano ctl'. Every option is also a \
        setting of the configuration file (gain_db, velocity_curve, alsa_device, ...; a flag \
        wins over the file).

        Exit status: 0 after SIGINT/SIGTERM, 1 bad weights or socket, 2 bad configuration or \
        arguments, 3 no JACK server with --no-wait, or the ALSA device cannot be opened or \
        failed.
        """,
        version: PianoVersion.current
    )

    private static let defaults = DaemonSettings()

    @Option(parsing: .unconditional, help: ArgumentHelp("TOML configuration file, or the name of an installed preset (2004 ... 2018, default; see share/ddsp-piano/presets). Default: $XDG_CONFIG_HOME/ddsp-piano/ddsp-pianod.toml when it exists. SIGHUP or 'ddsp-piano ctl reload' re-reads it.", valueName: "FILE|PRESET"))
    var config: String?

    @Option(parsing: .unconditional, help: ArgumentHelp("Weight file (default: the lookup of 'ddsp-piano render').", valueName: "FILE"))
    var weights: String?

    @Option(parsing: .unconditional, help: ArgumentHelp("Instrument: index or name (default \(UpstreamDefaults.piano), i.e. 2018).", valueName: "N|YEAR"))
    var piano: String?

    @Option(parsing: .unconditional, help: ArgumentHelp("Output gain in dB (\(DaemonRules.shown(DaemonRules.gainDB)), default \(DaemonRules.shown(DaemonCommand.defaults.gainDB))).", valueName: "DB"))
    var gain: String?

    @Option(name: .customLong("velocity-curve"), parsing: .unconditional,
            help: ArgumentHelp("\(DaemonRules.velocityCurveRule) (default \(DaemonCommand.defaults.velocityCurve)).", valueName: "C"))
    var velocityCurve: String?

    @Option(parsing: .unconditional, help: ArgumentHelp("MIDI channels played, e.g. 1,2 or all (default all).", valueName: "LIST"))
    var channels: String?

    @Option(parsing: .unconditional, help: ArgumentHelp("JACK, a timer-clocked engine with no output, or an ALSA PCM device without a sound server (default \(DaemonCommand.defaults.audio)).", valueName: DaemonRules.audioBackends.joined(separator: "|")))
    var audio: String?

    @Option(name: .customLong("connect-audio"), parsing: .unconditional,
            help: ArgumentHelp("system | none | REGEX of JACK input ports (default \(DaemonCommand.defaults.connectAudio)).", valueName: "SPEC"))
    var connectAudio: String?

    @Option(name: .customLong("connect-midi"), parsing: .unconditional,
            help: ArgumentHelp("all | none | REGEX of MIDI sources, ALSA and JACK (default \(DaemonCommand.defaults.connectMIDI)).", valueName: "SPEC"))
    var connectMIDI: String?

    @Option(name: .customLong("control-socket"), parsing: .unconditional,
            help: ArgumentHelp("Control socket (default: $XDG_RUNTIME_DIR/ddsp-piano/control.sock, else /tmp/ddsp-piano-UID/control.sock).", valueName: "PATH"))
    var controlSocket: String?

    @Option(parsing: .unconditional,
            help: ArgumentHelp("This daemon's name: its JACK client, its ALSA sequencer client, and its control socket NAME.sock beside the default one ('ddsp-piano ctl --name NAME'), so that two can run side by side; \(DaemonRules.nameRule) (default \(DaemonRules.defaultName)).", valueName: "NAME"))
    var name: String?

    @Flag(name: .customLong("no-wait"), help: "Exit with status 3 when there is no JACK server (or it goes away) instead of waiting and reconnecting.")
    var noWait = false

    @Flag(name: .customLong("no-noise"), help: "Leave out the filtered-noise part of the sound.")
    var noNoise = false

    @Option(name: .customLong("sample-rate"), parsing: .unconditional,
            help: ArgumentHelp("Null and ALSA audio's rate (default \(DaemonCommand.defaults.sampleRate); ALSA: the device's nearest; JACK sets its own).", valueName: "HZ"))
    var sampleRate: String?

    @Option(name: .customLong("block-size"), parsing: .unconditional,
            help: ArgumentHelp("Null audio's block (default \(DaemonCommand.defaults.blockSize)).", valueName: "N"))
    var blockSize: String?

    @Option(name: .customLong("alsa-device"), parsing: .unconditional,
            help: ArgumentHelp("ALSA audio's PCM device, e.g. hw:0,0, plughw:1 or default (default \(DaemonCommand.defaults.alsaDevice)).", valueName: "NAME"))
    var alsaDevice: String?

    @Option(parsing: .unconditional,
            help: ArgumentHelp("ALSA audio's period in frames, \(DaemonRules.shown(DaemonRules.alsaPeriodFrames)) (default \(DaemonCommand.defaults.period); the device's nearest).", valueName: "N"))
    var period: String?

    @Option(parsing: .unconditional,
            help: ArgumentHelp("ALSA audio's periods in the buffer, \(DaemonRules.shown(DaemonRules.alsaPeriodCount)) (default \(DaemonCommand.defaults.periods)); output latency is period x periods.", valueName: "N"))
    var periods: String?

    @Option(parsing: .unconditional,
            help: ArgumentHelp("A4 in hertz, \(DaemonRules.shown(DaemonRules.a4Hz)) (default \(DaemonRules.shown(DaemonCommand.defaults.a4Hz)): the model's own tuning); 'ddsp-piano ctl tune' changes it live.", valueName: "HZ"))
    var a4: String?

    @Option(parsing: .unconditional,
            help: ArgumentHelp("Transpose by N semitones, \(DaemonRules.shown(DaemonRules.transposeSemitones)) (default 0).", valueName: "N"))
    var transpose: String?

    @Option(parsing: .unconditional,
            help: ArgumentHelp("Stereo width \(DaemonRules.shown(DaemonRules.stereoWidth)): keys panned bass-left, the reverb decorrelated; 0 is mono (default \(DaemonRules.shown(DaemonCommand.defaults.width))).", valueName: "W"))
    var width: String?
    @Option(name: .customLong("takes-dir"), parsing: .unconditional,
            help: ArgumentHelp("Folder of the takes archive: every take played is kept there as a MIDI file (default $XDG_DATA_HOME/ddsp-piano/takes; none: no archive).", valueName: "DIR|none"))
    var takesDir: String?

    @Option(name: .customLong("take-silence"), parsing: .unconditional,
            help: ArgumentHelp("Seconds of silence (no note held, no pedal down, nothing played) that end a take (\(DaemonSettings.takeSilenceRule), default 10).", valueName: "S"))
    var takeSilence: String?

    // Anything else: refused by `validate` in the daemon's own words (one line).
    @Argument(parsing: .allUnrecognized, help: .hidden)
    var unrecognized: [String] = []

    public init() {}

    /// The configuration file given with --config, a preset's name resolved (`--config 2009`:
    /// PresetStore); nil: the default one, if it exists.
    public var configPath: String? { config.map { (try? PresetStore().resolve($0)) ?? $0 } }

    public func validate() throws {
        if let first = unrecognized.first { throw ValidationError("unknown argument '\(first)' (see --help)") }
        if let config {
            do { _ = try PresetStore().resolve(config) } catch { throw ValidationError("--config \(error)") }
        }
        _ = try edits()
    }

    /// The flags given, as edits of the settings (in the order of the settings, each given at
    /// most once: the last value of a repeated flag), checked.
    func edits() throws -> [(inout DaemonSettings) -> Void] {
        func refuse(_ flag: String, _ rule: String, _ value: String) -> ValidationError {
            ValidationError("--\(flag) takes \(rule), not '\(value)'")
        }
        var edits: [(inout DaemonSettings) -> Void] = []
        if let v = weights { edits.append { $0.weights = v } }
        if let v = piano { edits.append { $0.piano = v } }
        if let v = gain {
            guard let db = DaemonRules.gain(v) else { throw refuse("gain", DaemonRules.gainRule, v) }
            edits.append { $0.gainDB = db }
        }
        if let v = velocityCurve {
            guard MIDIRouter.gamma(forCurve: v) != nil else { throw refuse("velocity-curve", DaemonRules.velocityCurveRule, v) }
            edits.append { $0.velocityCurve = v }
        }
        if let v = channels {
            if v == "all" {
                edits.append { $0.channels = nil }
            } else {
                let items = v.split(separator: ",")
                let list = items.compactMap { Int($0) }
                guard !list.isEmpty, list.count == items.count, list.allSatisfy(DaemonRules.isChannel) else {
                    throw refuse("channels", "'all' or \(DaemonRules.channelsRule) separated by commas", v)
                }
                edits.append { $0.channels = Set(list) }
            }
        }
        if let v = audio {
            guard DaemonRules.isAudioBackend(v) else { throw refuse("audio", DaemonRules.audioRule, v) }
            edits.append { $0.audio = v }
        }
        if let v = a4 {
            guard let hz = DaemonRules.a4(v) else { throw refuse("a4", DaemonRules.a4Rule, v) }
            edits.append { $0.a4Hz = hz }
        }
        if let v = transpose {
            guard let n = DaemonRules.transpose(v) else { throw refuse("transpose", DaemonRules.transposeRule, v) }
            edits.append { $0.transpose = n }
        }
        if let v = width {
            guard let w = DaemonRules.width(v) else { throw refuse("width", DaemonRules.widthRule, v) }
            edits.append { $0.width = w }
        }
        if let v = connectAudio { edits.append { $0.connectAudio = v } }
        if let v = connectMIDI { edits.append { $0.connectMIDI = v } }
        if let v = controlSocket { edits.append { $0.controlSocket = v } }
        if let v = name {
            guard DaemonRules.isName(v) else { throw refuse("name", DaemonRules.nameRule, v) }
            edits.append { $0.name = v }
        }
        if noWait { edits.append { $0.noWait = true } }
        if noNoise { edits.append { $0.noise = false } }
        for (flag, text, set) in [("sample-rate", sampleRate, { (s: inout DaemonSettings, n: Int) in s.sampleRate = n }),
                                  ("block-size", blockSize, { (s: inout DaemonSettings, n: Int) in s.blockSize = n })] {
            guard let text else { continue }
            guard let n = Int(text), DaemonRules.isNullAudioCount(n) else { throw refuse(flag, DaemonRules.countRule, text) }
            edits.append { set(&$0, n) }
        }
        if let v = alsaDevice {
            guard DaemonRules.isALSADevice(v) else { throw refuse("alsa-device", DaemonRules.alsaDeviceRule, v) }
            edits.append { $0.alsaDevice = v }
        }
        if let v = period {
            guard let n = Int(v), DaemonRules.isALSAPeriod(n) else { throw refuse("period", DaemonRules.periodRule, v) }
            edits.append { $0.period = n }
        }
        if let v = periods {
            guard let n = Int(v), DaemonRules.isALSAPeriodCount(n) else { throw refuse("periods", DaemonRules.periodsRule, v) }
            edits.append { $0.periods = n }
        }
        if let v = takesDir { edits.append { $0.takesDir = v } }
        if let v = takeSilence {
            guard let x = Double(v), DaemonSettings.isTakeSilence(x) else { throw refuse("take-silence", DaemonSettings.takeSilenceRule, v) }
            edits.append { $0.takeSilence = x }
        }
        return edits
    }

    /// `settings` (defaults and the config file's) with the command line's flags over them.
    public func applied(to settings: DaemonSettings) -> DaemonSettings {
        var s = settings
        for e in (try? edits()) ?? [] { e(&s) }
        return s
    }

    /// The daemon this command line asks for, logging to stderr.
    public func makeDaemon() -> Daemon {
        let command = self
        return Daemon(configPath: configPath, log: { line in
            FileHandle.standardError.write(Data("ddsp-pianod: \(line)\n".utf8))
        }, overrides: { command.applied(to: $0) })
    }

    public func run() throws {
        let status = makeDaemon().run()
        if status != 0 { throw ExitCode(status) }
    }

    /// What a command line comes to: a command to run, or an exit with text to show (help on
    /// stdout with status 0; a usage error as one line for stderr with status 2).
    public enum Parsed {
        case run(DaemonCommand)
        case exit(status: Int32, message: String)
    }

    public static func parsed(_ arguments: [String]) -> Parsed {
        do {
            return .run(try parse(arguments))
        } catch {
            if exitCode(for: error) == .success { return .exit(status: 0, message: fullMessage(for: error)) }
            let text = message(for: error).split(whereSeparator: \.isNewline).joined(separator: "; ")
            return .exit(status: 2, message: "ddsp-pianod: \(text)")
        }
    }

    /// The executable's whole life: parse, run, the exit status.
    public static func main(arguments: [String]) -> Int32 {
        switch parsed(arguments) {
        case .run(let command):
            return command.makeDaemon().run()
        case .exit(let status, let message):
            if status == 0 { print(message) } else { FileHandle.standardError.write(Data((message + "\n").utf8)) }
            return status
        }
    }
}
