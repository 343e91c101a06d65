import DDSPPiano
import PianoIO
#if canImport(Glibc)
import Glibc
#endif

/// CLOCK_MONOTONIC in nanoseconds: the one time base of MIDI stamps and audio cycles.
@inline(__always)
public func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// What the configuration says about incoming MIDI, as tables the audio thread reads without
/// allocating: channel filter, velocity curve, program → instrument map. Immutable once made;
/// a new configuration hands a new router to the audio thread.
// @unchecked Sendable: immutable once made (lets only); its tables are plain arrays read by the audio thread.
public final class MIDIRouter: @unchecked Sendable {
    /// Bit c set: channel c (0-based) is played.
    public let channelMask: UInt16
    public let velocityTable: [UInt8]      // [128]
    public let programTable: [Int]         // [128], −1: ignored

    public init(channels: Set<Int>? = nil, velocityGamma: Double = 1, programMap: [Int]? = nil, instruments: Int) {
        var mask: UInt16 = 0
        for c in channels ?? Set(1...16) where (1...16).contains(c) { mask |= 1 << UInt16(c - 1) }
        channelMask = mask
        velocityTable = (0..<128).map { v in
            v == 0 ? 0 : UInt8(max(1, min(127, (127 * pow(Double(v) / 127, velocityGamma)).rounded())))
        }
        programTable = (0..<128).map { p in
            if let map = programMap { return p < map.count && map[p] >= 0 && map[p] < instruments ? map[p] : -1 }
            return p < instruments ? p : -1
        }
    }

    public enum Outcome { case play(MIDIMessage), ignore, programOutOfRange }

    /// Raw channel message → what the engine gets. Real-time safe.
    @inline(__always)
    public func route(status: UInt8, data1: UInt8, data2: UInt8) -> Outcome {
        guard status >= 0x80 && status < 0xF0 && data1 < 0x80 && data2 < 0x80 else { return .ignore }
        let channel = status & 0x0F
        guard channelMask & (1 << UInt16(channel)) != 0 else { return .ignore }
        switch status & 0xF0 {
        case 0x80: return .play(.noteOff(channel: channel, pitch: data1, velocity: data2))
        case 0x90:
            if ReleasePolicy.endsNote(status: status, velocity: data2) { return .play(.noteOff(channel: channel, pitch: data1, velocity: 0)) }
            return .play(.noteOn(channel: channel, pitch: data1, velocity: velocityTable[Int(data2)]))
        case 0xB0:
            switch data1 {
            // Pedals, volume, expression, high-resolution velocity, RPN/NRPN selection and data
            // entry, sound/notes off, reset (`Controllers`, `LiveConditioning`).
            case 6, 7, 11, 38, 64, 65, 66, 67, 88, 98, 99, 100, 101, 120, 121, 123:
                return .play(.controlChange(channel: channel, controller: data1, value: data2))
            default: return .ignore   // what a piano does not use
            }
        case 0xC0:
            let instrument = programTable[Int(data1)]
            guard instrument >= 0 else { return .programOutOfRange }
            return .play(.programChange(channel: channel, program: UInt8(instrument)))
        default: return .ignore
        }
    }

    /// Velocity curve from a setting: "linear", "soft", "hard" (`DaemonRules.velocityCurveNames`)
    /// or a gamma in `DaemonRules.velocityGamma` (0.2…5); nil for anything else.
    public static func gamma(forCurve curve: String) -> Double? {
        switch curve {
        case "linear": return 1
        case "soft": return 0.7     // louder at low velocities (light keyboards)
        case "hard": return 1.4     // needs a firmer touch
        default:
            guard let g = Double(curve), DaemonRules.velocityGamma.contains(g) else { return nil }
            return g
        }
    }
}
