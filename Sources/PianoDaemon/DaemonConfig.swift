import DDSPPiano
import Foundation
import PianoIO

/// A value of the TOML subset the configuration uses.
public enum TOMLValue: Equatable, Sendable {
    case string(String), integer(Int), float(Double), bool(Bool), array([TOMLValue])
}

public struct ConfigError: CodedError, Equatable {
    public var code: ErrorCode { .badConfig }
    public var file: String
    public var line: Int
    public var problem: String
    /// Always one line: control characters in quoted values are shown escaped.
    public var description: String {
        let p = problem.unicodeScalars.map { c -> String in
            switch c {
            case "\n": return "\\n"
            case "\r": return "\\r"
            case "\t": return "\\t"
            default:
                return c.properties.generalCategory == .control || c.properties.generalCategory == .lineSeparator
                    || c.properties.generalCategory == .paragraphSeparator
                    ? "\\u{\(String(c.value, radix: 16))}" : String(c)
            }
        }.joined()
        return line > 0 ? "\(file):\(line): \(p)" : "\(file): \(p)"
    }
}

/// Reads the TOML the configuration needs: comments, `key = value` with strings (basic and
/// literal), integers, floats, booleans and one-line arrays, and `[table]` headers (whose keys
/// become "table.key"). Anything else is refused with its line number.
public enum MiniTOML {
    public static func parse(_ text: String, file: String) throws -> [String: TOMLValue] {
        var result: [String: TOMLValue] = [:]
        var table = ""
        // Any line ending: LF, CRLF (a file from Windows: "\r\n" is one Character), CR.
        for (index, raw) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let lineNumber = index + 1
            func fail(_ p: String) -> ConfigError { ConfigError(file: file, line: lineNumber, problem: p) }
            var line = Substring(stripComment(String(raw))).trimmingCharacters(in: .whitespaces)[...]
            if line.isEmpty { continue }
            if line.hasPrefix("[") {
                guard line.hasSuffix("]"), !line.hasPrefix("[[") else { throw fail("bad table header '\(line)'") }
                table = line.dropFirst().dropLast().trimmingCharacters(in: .whitespaces)
                guard !table.isEmpty, table.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" || $0 == "." }) else {
                    throw fail("bad table name '\(table)'")
                }
                continue
            }
            guard let eq = line.firstIndex(of: "=") else { throw fail("expected 'key = value'") }
            var key = line[..<eq].trimmingCharacters(in: .whitespaces)
            if key.count >= 2, key.hasPrefix("\""), key.hasSuffix("\"") { key = String(key.dropFirst().dropLast()) }
            guard !key.isEmpty, key.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" }) else {
                throw fail("bad key '\(key)'")
            }
            line = line[line.index(after: eq)...]
            let valueText = line.trimmingCharacters(in: .whitespaces)
            var cursor = valueText[...]
            let value = try parseValue(&cursor, fail)
            guard cursor.trimmingCharacters(in: .whitespaces).isEmpty else { throw fail("unexpected text after the value of '\(key)'") }
            let full = table.isEmpty ? key : "\(table).\(key)"
            guard result[full] == nil else { throw fail("'\(full)' is set twice") }
            result[full] = value
        }
        return result
    }

    /// Drops a # comment that is not inside a string.
    static func stripComment(_ s: String) -> String {
        var quote: Character? = nil
        var out = ""
        var escaped = false
        for c in s {
            if let q = quote {
                if escaped { escaped = false } else if c == "\\" && q == "\"" { escaped = true } else if c == q { quote = nil }
            } else if c == "\"" || c == "'" { quote = c } else if c == "#" { break }
            out.append(c)
        }
        return out
    }

    static func parseValue(_ s: inout Substring, _ fail: (String) -> ConfigError) throws -> TOMLValue {
        s = s.drop(while: { $0 == " " || $0 == "\t" })
        guard let first = s.first else { throw fail("missing value") }
        if first == "\"" || first == "'" {
            s = s.dropFirst()
            var out = ""
            while let c = s.first {
                s = s.dropFirst()
                if c == first { return .string(out) }
                if c == "\\" && first == "\"" {
                    guard let e = s.first else { break }
                    s = s.dropFirst()
                    switch e {
                    case "n": out.append("\n")
                    case "t": out.append("\t")
                    case "\\": out.append("\\")
                    case "\"": out.append("\"")
                    default: throw fail("unsupported escape '\\\(e)'")
                    }
                } else { out.append(c) }
            }
            throw fail("unterminated string")
        }
        if first == "[" {
            s = s.dropFirst()
            var items: [TOMLValue] = []
            while true {
                s = s.drop(while: { $0 == " " || $0 == "\t" })
                if s.first == "]" { s = s.dropFirst(); return .array(items) }
                items.append(try parseValue(&s, fail))
                s = s.drop(while: { $0 == " " || $0 == "\t" })
                if s.first == "," { s = s.dropFirst(); continue }
                if s.first == "]" { s = s.dropFirst(); return .array(items) }
                throw fail("expected ',' or ']' in array (arrays must be on one line)")
            }
        }
        let token = String(s.prefix(while: { !($0 == "," || $0 == "]" || $0 == " " || $0 == "\t") }))
        s = s.dropFirst(token.count)
        if token == "true" { return .bool(true) }
        if token == "false" { return .bool(false) }
        let digits = token.replacingOccurrences(of: "_", with: "")
        if let i = Int(digits) { return .integer(i) }
        if let d = Double(digits), d.isFinite { return .float(d) }
        throw fail("cannot read value '\(token)'")
    }
}

/// Everything the daemon can be told, from the command line, the config file or both
/// (a flag wins over the file; the file over the defaults). The checks both apply, and their
/// wording, are `DaemonRules`'.
public struct DaemonSettings: Equatable, Sendable {
    public var weights: String? = nil
    public var piano: String? = nil
    public var gainDB: Double = 0
    public var velocityCurve: String = "linear"
    public var channels: Set<Int>? = nil          // nil: all
    public var programMap: [Int]? = nil           // nil: program p → instrument p
    public var audio: String = "jack"
    public var connectAudio: String = "system"
    public var connectMIDI: String = "all"
    public var controlSocket: String? = nil
    public var noWait: Bool = false
    public var noise: Bool = true
    public var sampleRate: Int = 48000            // null and ALSA audio (JACK's rate otherwise)
    public var blockSize: Int = 256               // null audio only
    public var alsaDevice: String = "default"     // ALSA audio: the PCM played into
    public var period: Int = 256                  // ALSA audio: frames per period
    public var periods: Int = 3                   // ALSA audio: periods in the buffer
    public var a4Hz: Double = Double(Tuning.defaultA4)
    public var transpose: Int = 0
    public var width: Double = DaemonRules.defaultWidth   // stereo image (0: mono)
    public var name: String? = nil                // JACK/ALSA client and socket name (nil: DaemonRules.defaultName)
    /// The takes archive's folder (nil: $XDG_DATA_HOME/ddsp-piano/takes; "none": no archive).
    public var takesDir: String? = nil
    /// Seconds of silence (no note held, no pedal down, nothing played) that end a take.
    public var takeSilence: Double = 10
    public init() {}

    public static let keys: Set<String> = ["weights", "piano", "gain_db", "velocity_curve", "channels", "program_map",
                                           "audio", "connect_audio", "connect_midi", "control_socket", "no_wait",
                                           "noise", "sample_rate", "block_size", "alsa_device", "period", "periods",
                                           "a4_hz", "transpose", "width", "name", "takes_dir", "take_silence"]

    /// Applies a parsed file over `self`. Unknown keys and wrong types are errors.
    public func applying(_ table: [String: TOMLValue], file: String) throws -> DaemonSettings {
        var s = self
        func fail(_ p: String) -> ConfigError { ConfigError(file: file, line: 0, problem: p) }
        func string(_ k: String, _ v: TOMLValue) throws -> String {
            if case .string(let x) = v { return x }
            throw fail("'\(k)' must be a string")
        }
        for (key, value) in table.sorted(by: { $0.key < $1.key }) {
            switch key {
            case "weights": s.weights = try string(key, value)
            case "piano":
                switch value {
                case .string(let x): s.piano = x
                case .integer(let i): s.piano = String(i)
                default: throw fail("'piano' must be an index or a name")
                }
            case "gain_db":
                switch value {
                case .integer(let i): s.gainDB = Double(i)
                case .float(let d): s.gainDB = d
                default: throw fail("'gain_db' must be a number")
                }
                guard DaemonRules.isGain(s.gainDB) else { throw fail("'gain_db' must be \(DaemonRules.gainRule)") }
            case "velocity_curve":
                let curve: String
                switch value {
                case .string(let x): curve = x
                case .float(let d): curve = String(d)
                case .integer(let i): curve = String(i)
                default: throw fail("'velocity_curve' must be \(DaemonRules.velocityCurveRule)")
                }
                guard MIDIRouter.gamma(forCurve: curve) != nil else { throw fail("'velocity_curve' must be \(DaemonRules.velocityCurveRule), not '\(curve)'") }
                s.velocityCurve = curve
            case "channels":
                switch value {
                case .string("all"): s.channels = nil
                case .array(let items):
                    var set = Set<Int>()
                    for item in items {
                        guard case .integer(let c) = item, DaemonRules.isChannel(c) else { throw fail("'channels' holds MIDI \(DaemonRules.channelsRule)") }
                        set.insert(c)
                    }
                    s.channels = set
                default: throw fail("'channels' must be \"all\" or a list of \(DaemonRules.channelsRule)")
                }
            case "program_map":
                guard case .array(let items) = value, items.count <= 128 else { throw fail("'program_map' must be a list of instrument indices") }
                s.programMap = try items.map {
                    guard case .integer(let i) = $0, i >= -1 else { throw fail("'program_map' entries are instrument indices (-1: ignore)") }
                    return i
                }
            case "audio":
                let a = try string(key, value)
                guard DaemonRules.isAudioBackend(a) else { throw fail("'audio' must be \(DaemonRules.audioRule)") }
                s.audio = a
            case "connect_audio": s.connectAudio = try string(key, value)
            case "connect_midi": s.connectMIDI = try string(key, value)
            case "control_socket": s.controlSocket = try string(key, value)
            case "no_wait", "noise":
                guard case .bool(let b) = value else { throw fail("'\(key)' must be true or false") }
                if key == "noise" { s.noise = b } else { s.noWait = b }
            case "sample_rate", "block_size":
                guard case .integer(let i) = value, DaemonRules.isNullAudioCount(i) else { throw fail("'\(key)' must be \(DaemonRules.countRule)") }
                if key == "sample_rate" { s.sampleRate = i } else { s.blockSize = i }
            case "alsa_device":
                let d = try string(key, value)
                guard DaemonRules.isALSADevice(d) else { throw fail("'alsa_device' must be \(DaemonRules.alsaDeviceRule)") }
                s.alsaDevice = d
            case "period":
                guard case .integer(let i) = value, DaemonRules.isALSAPeriod(i) else { throw fail("'period' must be \(DaemonRules.periodRule)") }
                s.period = i
            case "periods":
                guard case .integer(let i) = value, DaemonRules.isALSAPeriodCount(i) else { throw fail("'periods' must be \(DaemonRules.periodsRule)") }
                s.periods = i
            case "a4_hz", "width":
                let x: Double
                switch value {
                case .integer(let i): x = Double(i)
                case .float(let d): x = d
                default: throw fail("'\(key)' must be a number")
                }
                if key == "a4_hz" {
                    guard DaemonRules.isA4(x) else { throw fail("'a4_hz' must be \(DaemonRules.a4Rule)") }
                    s.a4Hz = x
                } else {
                    guard DaemonRules.isWidth(x) else { throw fail("'width' must be \(DaemonRules.widthRule)") }
                    s.width = x
                }
            case "transpose":
                guard case .integer(let i) = value, DaemonRules.isTranspose(i) else { throw fail("'transpose' must be \(DaemonRules.transposeRule)") }
                s.transpose = i
            case "name":
                let n = try string(key, value)
                guard DaemonRules.isName(n) else { throw fail("'name' must be \(DaemonRules.nameRule), not '\(n)'") }
                s.name = n
            case "takes_dir": s.takesDir = try string(key, value)
            case "take_silence":
                switch value {
                case .integer(let i): s.takeSilence = Double(i)
                case .float(let d): s.takeSilence = d
                default: throw fail("'take_silence' must be \(DaemonSettings.takeSilenceRule)")
                }
                guard DaemonSettings.isTakeSilence(s.takeSilence) else { throw fail("'take_silence' must be \(DaemonSettings.takeSilenceRule)") }
            default:
                throw fail("unknown setting '\(key)' (known: \(DaemonSettings.keys.sorted().joined(separator: ", ")))")
            }
        }
        try s.validatePatterns(file: file)
        return s
    }

    public static let takeSilenceRule = "seconds, 0.1 to 3600"
    public static func isTakeSilence(_ s: Double) -> Bool { s.isFinite && s >= 0.1 && s <= 3600 }

    /// Regular expressions must compile (before the daemon relies on them).
    public func validatePatterns(file: String) throws {
        for (name, p) in [("connect_audio", connectAudio), ("connect_midi", connectMIDI)] where !["all", "none", "system"].contains(p) {
            guard (try? NSRegularExpression(pattern: p)) != nil else {
                throw ConfigError(file: file, line: 0, problem: "'\(name)' is not a valid regular expression: \(p)")
            }
        }
    }

    /// Reads and applies a config file.
    public func applying(file path: String) throws -> DaemonSettings {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError(file: path, line: 0, problem: FileManager.default.fileExists(atPath: path) ? "cannot read" : "no such file")
        }
        guard let text = String(data: data, encoding: .utf8) else { throw ConfigError(file: path, line: 0, problem: "not UTF-8 text") }
        return try applying(try MiniTOML.parse(text, file: path), file: path)
    }

    /// `${XDG_CONFIG_HOME:-~/.config}/ddsp-piano/ddsp-pianod.toml`.
    public static func defaultConfigPath(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        let base = environment["XDG_CONFIG_HOME"].flatMap { $0.hasPrefix("/") ? $0 : nil }
            ?? ((environment["HOME"] ?? NSHomeDirectory()) + "/.config")
        return base + "/ddsp-piano/ddsp-pianod.toml"
    }

    /// Without `--control-socket`: `$XDG_RUNTIME_DIR/ddsp-piano/control.sock`, else
    /// `/tmp/ddsp-piano-UID/control.sock` (the client's default too), in a directory the daemon
    /// makes (0700) and uses only if it is ours alone (`ControlClient.checkPrivateDirectory`).
    public static func defaultSocketPath(name: String? = nil, environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        ControlClient.defaultSocketPath(name: name, environment: environment)
    }
}
