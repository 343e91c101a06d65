import DDSPPiano

/// The control socket's commands in one place: the daemon parses each line with `parse`, and
/// `ddsp-piano ctl` prints its help from `commands` — a new command is added here once.
/// Values are checked by the rules both sides share (`DaemonRules`); what needs the running
/// daemon (which pianos the weights hold) is checked there.
public enum ControlCommand: Equatable, Sendable {
    case status
    case list
    /// An index or a name of the loaded weights' pianos.
    case piano(String)
    /// Decibels, within `DaemonRules.gainDB`.
    case gain(Double)
    case panic
    case reload
    /// A channel message played as if from a keyboard: status (0x80–0xEF) and its data bytes
    /// (two, or one for program change and channel pressure; a missing second byte is 0).
    case midi(status: UInt8, data1: UInt8, data2: UInt8)
    /// A4 in hertz (`DaemonRules.a4Hz`).
    case tune(Double)
    /// Semitones (`DaemonRules.transposeSemitones`); held notes keep their pitch.
    case transpose(Int)
    /// Stereo width (`DaemonRules.stereoWidth`, 0 = mono).
    case width(Double)
    /// The takes archive, oldest first.
    case takes
    /// Record the output to a new WAV file (an absolute path: `ctl` makes it so), or stop.
    case recordStart(String)
    case recordStop

    /// A command's name, its argument (nil: none) and what it does, for help texts.
    public struct Description: Sendable {
        public var name: String
        public var argument: String?
        public var summary: String
        /// How many words may follow the name (one when `argument` names one, else none).
        public var counts: ClosedRange<Int>
        init(name: String, argument: String?, summary: String, counts: ClosedRange<Int>? = nil) {
            self.name = name
            self.argument = argument
            self.summary = summary
            self.counts = counts ?? (argument == nil ? 0...0 : 1...1)
        }
    }

    /// Every command, in the order help texts list them.
    public static let commands: [Description] = [
        Description(name: "status", argument: nil, summary: "instrument, connections, notes, voices, xruns, CPU load"),
        Description(name: "piano", argument: "N|YEAR", summary: "switch piano while playing (index or name, e.g. 3 or 2009)"),
        Description(name: "gain", argument: "DB", summary: "output gain in decibels (\(DaemonRules.shown(DaemonRules.gainDB)))"),
        Description(name: "tune", argument: "HZ", summary: "A4 in hertz (\(DaemonRules.shown(DaemonRules.a4Hz)), 440: the model's own tuning)"),
        Description(name: "transpose", argument: "N", summary: "transpose by N semitones (\(DaemonRules.shown(DaemonRules.transposeSemitones))); held notes keep their pitch"),
        Description(name: "width", argument: "W", summary: "stereo width (\(DaemonRules.shown(DaemonRules.stereoWidth)), 0: mono)"),
        Description(name: "panic", argument: nil, summary: "all notes and pedals off"),
        Description(name: "reload", argument: nil, summary: "re-read the configuration file (as SIGHUP)"),
        Description(name: "list", argument: nil, summary: "the pianos of the loaded weights (* marks the one playing)"),
        // Like FluidSynth's shell noteon/cc: play without a keyboard (a script, a test, a
        // machine whose MIDI is elsewhere); the message takes the keyboard's path and rules.
        Description(name: "midi", argument: "HEX HEX [HEX]",
                    summary: "play a MIDI channel message, hex bytes (90 3C 64: note 60 on; 80 3C 00: off; B0 40 7F: pedal)",
                    counts: 2...3),
        Description(name: "takes", argument: nil, summary: "the takes archive: every take played, newest last, with its length and notes"),
        Description(name: "record", argument: "start FILE.wav|stop",
                    summary: "record the output to a new WAV file (an existing one is refused), or stop and close it",
                    counts: 1...64),
    ]

    /// "status | list | piano N|YEAR | gain DB | panic | reload"
    public static var usage: String {
        commands.map { c in c.argument.map { "\(c.name) \($0)" } ?? c.name }.joined(separator: " | ")
    }

    /// One line per command, aligned, for --help.
    public static var table: String {
        commands.map { c -> String in
            let head = c.argument.map { "\(c.name) \($0)" } ?? c.name
            return "  " + head.padding(toLength: 16, withPad: " ", startingAt: 0) + c.summary
        }.joined(separator: "\n")
    }

    /// A control line → a command, or the one-line reason it is not one.
    public static func parse(_ line: String) -> Result<ControlCommand, ControlCommandError> {
        let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        let known = "known: " + commands.map(\.name).joined(separator: ", ")
        guard let name = words.first else { return .failure(.init("empty command (\(known))")) }
        guard let spec = commands.first(where: { $0.name == name }) else {
            let shown = name.count > 40 ? String(name.prefix(40)) + "…" : name
            return .failure(.init("unknown command '\(shown)' (\(known))"))
        }
        guard spec.counts.contains(words.count - 1) else {
            return .failure(.init("wrong arguments for '\(name)' (usage: \(usage))"))
        }
        switch name {
        case "status": return .success(.status)
        case "list": return .success(.list)
        case "piano": return .success(.piano(words[1]))
        case "gain":
            guard let db = DaemonRules.gain(words[1]) else {
                return .failure(.init("gain takes \(DaemonRules.gainRule), not '\(words[1])'"))
            }
            return .success(.gain(db))
        case "panic": return .success(.panic)
        case "midi": return midi(Array(words.dropFirst()))
        case "tune":
            guard let hz = DaemonRules.a4(words[1]) else { return .failure(.init("tune takes \(DaemonRules.a4Rule), not '\(words[1].prefix(40))'")) }
            return .success(.tune(hz))
        case "transpose":
            guard let n = DaemonRules.transpose(words[1]) else { return .failure(.init("transpose takes \(DaemonRules.transposeRule), not '\(words[1].prefix(40))'")) }
            return .success(.transpose(n))
        case "width":
            guard let w = DaemonRules.width(words[1]) else { return .failure(.init("width takes \(DaemonRules.widthRule), not '\(words[1].prefix(40))'")) }
            return .success(.width(w))
        case "takes": return .success(.takes)
        case "record":
            if words[1] == "stop" && words.count == 2 { return .success(.recordStop) }
            if words[1] == "start" && words.count >= 3 { return .success(.recordStart(words.dropFirst(2).joined(separator: " "))) }
            return .failure(.init("record takes 'start FILE.wav' or 'stop'"))
        default: return .success(.reload)
        }
    }
}

extension ControlCommand {
    /// "90 3C 64" → a channel message; its length must be the status's (program change and
    /// channel pressure take one data byte, the others two).
    static func midi(_ words: [String]) -> Result<ControlCommand, ControlCommandError> {
        var bytes: [UInt8] = []
        for w in words {
            let digits = w.hasPrefix("0x") || w.hasPrefix("0X") ? String(w.dropFirst(2)) : w
            guard (1...2).contains(digits.count), let b = UInt8(digits, radix: 16) else {
                return .failure(.init("midi takes hex bytes (e.g. 90 3C 64), not '\(w.prefix(40))'"))
            }
            bytes.append(b)
        }
        let status = bytes[0]
        guard (0x80...0xEF).contains(status) else {
            return .failure(.init("midi takes a channel message: status 80–EF, not \(words[0])"))
        }
        guard bytes.dropFirst().allSatisfy({ $0 < 0x80 }) else {
            return .failure(.init("midi data bytes are 00–7F"))
        }
        let expected = (0xC0...0xDF).contains(status) ? 1 : 2
        guard bytes.count - 1 == expected else {
            return .failure(.init("midi status \(words[0]) takes \(expected) data byte\(expected == 1 ? "" : "s")"))
        }
        return .success(.midi(status: status, data1: bytes[1], data2: bytes.count > 2 ? bytes[2] : 0))
    }
}

/// Why a control line is not a command (one line; the daemon replies "error: " + it).
public struct ControlCommandError: CodedError, Equatable, Sendable {
    public var description: String
    public var code: ErrorCode { .usage }
    public init(_ description: String) { self.description = description }
}
