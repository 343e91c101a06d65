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

    /// A command's name, its argument (nil: none) and what it does, for help texts.
    public struct Description: Sendable {
        public var name: String
        public var argument: String?
        public var summary: String
    }

    /// Every command, in the order help texts list them.
    public static let commands: [Description] = [
        Description(name: "status", argument: nil, summary: "instrument, connections, notes, voices, xruns, CPU load"),
        Description(name: "piano", argument: "N|YEAR", summary: "switch piano while playing (index or name, e.g. 3 or 2009)"),
        Description(name: "gain", argument: "DB", summary: "output gain in decibels (\(DaemonRules.shown(DaemonRules.gainDB)))"),
        Description(name: "panic", argument: nil, summary: "all notes and pedals off"),
        Description(name: "reload", argument: nil, summary: "re-read the configuration file (as SIGHUP)"),
        Description(name: "list", argument: nil, summary: "the pianos of the loaded weights (* marks the one playing)"),
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
        guard words.count == (spec.argument == nil ? 1 : 2) else {
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
        default: return .success(.reload)
        }
    }
}

/// Why a control line is not a command (one line; the daemon replies "error: " + it).
public struct ControlCommandError: CodedError, Equatable, Sendable {
    public var description: String
    public var code: ErrorCode { .usage }
    public init(_ description: String) { self.description = description }
}
