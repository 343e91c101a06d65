import DDSPPiano
import Foundation

/// The rules of ddsp-pianod's settings that more than one place checks or shows, each written
/// once: the daemon's command line and config file (`DaemonSettings`), its control commands
/// (`ctl gain`), and the help of `ddsp-pianod` and `ddsp-piano ctl`. Here in PianoIO because
/// `ddsp-piano ctl` (which does not link the daemon) shows them too. Messages say
/// "`--gain` takes \(gainRule), not 'x'" (command line, control) or "'gain_db' must be
/// \(gainRule)" (config file).
public enum DaemonRules {
    /// Output gain in decibels.
    public static let gainDB: ClosedRange<Double> = -60...24
    /// A velocity curve's gamma, besides the named curves (`MIDIRouter.gamma(forCurve:)`).
    public static let velocityGamma: ClosedRange<Double> = 0.2...5
    /// The named velocity curves.
    public static let velocityCurveNames = ["linear", "soft", "hard"]
    /// MIDI channels, numbered as musicians do.
    public static let midiChannels: ClosedRange<Int> = 1...16
    /// Null audio's sample rate and block size (the sample rate is ALSA output's too).
    public static let nullAudioCounts: ClosedRange<Int> = 1...384_000
    /// The audio back ends: JACK, a timer-clocked engine with no output, plain ALSA PCM.
    public static let audioBackends = ["jack", "null", "alsa"]
    /// ALSA output's period (frames) and number of periods in its buffer.
    public static let alsaPeriodFrames: ClosedRange<Int> = 16...8192
    public static let alsaPeriodCount: ClosedRange<Int> = 2...16

    /// A4 in Hz, transposition in semitones, stereo width (the engine's `Tuning`, `StereoImage`).
    public static let a4Hz: ClosedRange<Double> = Double(Tuning.a4Range.lowerBound)...Double(Tuning.a4Range.upperBound)
    public static let transposeSemitones: ClosedRange<Int> = Tuning.transposeRange
    public static let stereoWidth: ClosedRange<Double> = Double(StereoImage.widthRange.lowerBound)...Double(StereoImage.widthRange.upperBound)
    public static let defaultWidth = Double(StereoImage.defaultWidth)

    /// "-60…24", "0.2…5": a range as help texts show it.
    public static func shown(_ range: ClosedRange<Double>) -> String { "\(shown(range.lowerBound))…\(shown(range.upperBound))" }
    public static func shown(_ range: ClosedRange<Int>) -> String { "\(range.lowerBound)…\(range.upperBound)" }
    /// "-60", "0.2": a number as help texts show it (no ".0").
    public static func shown(_ x: Double) -> String { x == x.rounded() && abs(x) < 1e15 ? String(Int(x)) : String(x) }

    /// What a gain must be: "decibels between -60 and 24".
    public static let gainRule = "decibels between \(shown(gainDB.lowerBound)) and \(shown(gainDB.upperBound))"
    /// "hertz between 415 and 466", "semitones between -24 and 24", "a number between 0 and 1".
    public static let a4Rule = "hertz between \(shown(a4Hz.lowerBound)) and \(shown(a4Hz.upperBound))"
    public static let transposeRule = "semitones between \(transposeSemitones.lowerBound) and \(transposeSemitones.upperBound)"
    public static let widthRule = "a number between \(shown(stereoWidth.lowerBound)) and \(shown(stereoWidth.upperBound)) (0: mono)"
    /// "linear, soft, hard or a gamma 0.2…5".
    public static let velocityCurveRule = velocityCurveNames.joined(separator: ", ") + " or a gamma \(shown(velocityGamma))"
    /// "channels 1…16".
    public static let channelsRule = "channels \(shown(midiChannels))"
    /// "jack, null or alsa".
    public static let audioRule = audioBackends.dropLast().joined(separator: ", ") + " or " + audioBackends.last!
    /// "frames 16…8192", "a count 2…16".
    public static let periodRule = "frames \(shown(alsaPeriodFrames))"
    public static let periodsRule = "a count \(shown(alsaPeriodCount))"
    /// What an ALSA device name must be.
    public static let alsaDeviceRule = "an ALSA PCM name such as default or hw:0,0 (one line, at most 255 bytes)"
    /// "a positive integer (at most 384000)".
    public static let countRule = "a positive integer (at most \(nullAudioCounts.upperBound))"

    /// A gain in decibels from text (command line, `ctl gain`), nil when not a number in range.
    public static func gain(_ text: String) -> Double? {
        guard let db = Double(text), isGain(db) else { return nil }
        return db
    }

    public static func isGain(_ db: Double) -> Bool { db.isFinite && gainDB.contains(db) }
    public static func a4(_ text: String) -> Double? { Double(text).flatMap { isA4($0) ? $0 : nil } }
    public static func transpose(_ text: String) -> Int? { Int(text.hasPrefix("+") ? String(text.dropFirst()) : text).flatMap { isTranspose($0) ? $0 : nil } }
    public static func width(_ text: String) -> Double? { Double(text).flatMap { isWidth($0) ? $0 : nil } }
    public static func isA4(_ hz: Double) -> Bool { hz.isFinite && a4Hz.contains(hz) }
    public static func isTranspose(_ n: Int) -> Bool { transposeSemitones.contains(n) }
    public static func isWidth(_ w: Double) -> Bool { w.isFinite && stereoWidth.contains(w) }
    public static func isChannel(_ c: Int) -> Bool { midiChannels.contains(c) }
    public static func isAudioBackend(_ name: String) -> Bool { audioBackends.contains(name) }
    public static func isNullAudioCount(_ n: Int) -> Bool { nullAudioCounts.contains(n) }
    public static func isALSAPeriod(_ n: Int) -> Bool { alsaPeriodFrames.contains(n) }
    public static func isALSAPeriodCount(_ n: Int) -> Bool { alsaPeriodCount.contains(n) }
    /// What `--name` (config key `name`, `ctl --name`, an NSM client id) must be: the daemon's
    /// JACK client and ALSA sequencer client name and its control socket's file name
    /// (`ControlClient.defaultSocketPath(name:)`), so nothing a JACK client name (63 bytes, no
    /// ':') or a file name ('/', a leading '.') cannot hold.
    public static let defaultName = "ddsp-piano"
    public static let nameLength: ClosedRange<Int> = 1...63
    public static let nameRule = "1 to 63 letters, digits, '-', '_' or '.' (not starting with '.')"
    public static func isName(_ name: String) -> Bool {
        nameLength.contains(name.utf8.count) && !name.hasPrefix(".")
            && name.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || "-_.".unicodeScalars.contains($0) }
    }

    public static func isALSADevice(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 255 && !name.unicodeScalars.contains { $0.properties.generalCategory == .control }
    }
}
