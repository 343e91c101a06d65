import Foundation
import PianoIO

extension DaemonSettings {
    /// The settings as a config file the daemon reads back to the same settings (`applying`):
    /// what an NSM session saves. Every key of `keys` whose value is set is written
    /// (`ConfigWriterTests` fails on a key added to `keys` and not here).
    public func tomlText(header: String? = nil) -> String {
        func quoted(_ s: String) -> String {
            var out = "\""
            for c in s.unicodeScalars {
                switch c {
                case "\\": out += "\\\\"
                case "\"": out += "\\\""
                case "\n": out += "\\n"
                case "\t": out += "\\t"
                default: out.unicodeScalars.append(c)
                }
            }
            return out + "\""
        }
        var lines: [String] = header.map { $0.split(separator: "\n", omittingEmptySubsequences: false).map { "# \($0)" } } ?? []
        if let weights { lines.append("weights = \(quoted(weights))") }
        if let piano { lines.append("piano = \(quoted(piano))") }
        lines.append("gain_db = \(gainDB)")
        lines.append("velocity_curve = \(quoted(velocityCurve))")
        if let channels {
            lines.append("channels = [\(channels.sorted().map(String.init).joined(separator: ", "))]")
        } else {
            lines.append("channels = \"all\"")
        }
        if let programMap { lines.append("program_map = [\(programMap.map(String.init).joined(separator: ", "))]") }
        lines.append("audio = \(quoted(audio))")
        lines.append("connect_audio = \(quoted(connectAudio))")
        lines.append("connect_midi = \(quoted(connectMIDI))")
        if let controlSocket { lines.append("control_socket = \(quoted(controlSocket))") }
        lines.append("no_wait = \(noWait)")
        lines.append("noise = \(noise)")
        lines.append("sample_rate = \(sampleRate)")
        lines.append("block_size = \(blockSize)")
        lines.append("alsa_device = \(quoted(alsaDevice))")
        lines.append("period = \(period)")
        lines.append("periods = \(periods)")
        lines.append("a4_hz = \(a4Hz)")
        lines.append("transpose = \(transpose)")
        lines.append("width = \(width)")
        if let takesDir { lines.append("takes_dir = \(quoted(takesDir))") }
        lines.append("take_silence = \(takeSilence)")
        if let name { lines.append("name = \(quoted(name))") }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Writes `tomlText` to `path` atomically (a temporary file renamed over it).
    public func write(to path: String, header: String? = nil) throws {
        do {
            try Data(tomlText(header: header).utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw ConfigError(file: path, line: 0, problem: "cannot write (\((error as NSError).localizedDescription))")
        }
    }
}
