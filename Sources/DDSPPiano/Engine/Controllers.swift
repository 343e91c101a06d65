import Foundation

/// What the engine does with MIDI controllers besides the pedals (the table in the README,
/// "Controllers", is this file). Every live driver (daemon, plugin, `render --live`) goes through
/// it; a file render plays upstream's conditioning, which has only notes and pedals.
///
/// - CC7 volume and CC11 expression: a gain of (value/127)² each (GM2's 40·log10(value/127) dB),
///   applied after the reverb and smoothed (`smoothingSeconds`) so 7-bit steps do not zipper.
///   The last value on any played channel counts: the engine is one piano.
/// - CC88 high-resolution velocity: its value/128 is added to the next note-on's velocity on that
///   channel (after the velocity curve), then forgotten (MIDI CA-031).
/// - RPN (CC101/100 select, CC6/38 data entry): 0 pitch-bend range is accepted and ignored (a
///   piano has no pitch bend); 1 fine tuning, ±100 cents (8192 = 0) on top of A4; 2 coarse tuning,
///   ±64 semitones (64 = 0), which transposes notes as they start. NRPN (CC99/98) deselects.
/// - CC121 reset all controllers: volume and expression back to 127, no pending CC88, no RPN
///   selected (and, in `LiveConditioning`, the sustain pedal up). Tunings set by RPN stay.
/// No allocation: fixed-size state.
public struct Controllers: Sendable {
    public static let smoothingSeconds = 0.010

    public private(set) var volume: UInt8 = 127
    public private(set) var expression: UInt8 = 127
    /// RPN 1 in cents (−100 … +100 less a step), RPN 2 in semitones.
    public private(set) var fineTuningCents: Float = 0
    public private(set) var coarseTuning: Int = 0

    // Per channel: the pending CC88 (−1 none) and the selected RPN (MSB, LSB; 127/127 = none).
    private var velocityLSB: (Int8, Int8, Int8, Int8, Int8, Int8, Int8, Int8, Int8, Int8, Int8, Int8, Int8, Int8, Int8, Int8)
        = (-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1)
    private var rpn = [UInt16](repeating: Controllers.noRPN, count: 16)
    private var fineMSB = 64, fineLSB = 0
    static let noRPN: UInt16 = 0x3FFF

    public init() {}

    /// The gain of CC7 and CC11 together.
    public var gain: Float {
        let v = Float(volume) / 127, e = Float(expression) / 127
        return (v * v) * (e * e)
    }

    /// Handles a controller; true if it is consumed here (false: the pedals and mode messages
    /// go on to `LiveConditioning`; CC121 is handled here and there).
    public mutating func take(channel: Int, controller: Int, value: Int) -> Bool {
        let c = channel & 0x0F, v = min(max(value, 0), 127)
        switch controller {
        case 7: volume = UInt8(v)
        case 11: expression = UInt8(v)
        case 88: setLSB(c, Int8(v))
        case 101: rpn[c] = UInt16(v) << 7 | (rpn[c] & 0x7F)
        case 100: rpn[c] = (rpn[c] & 0x3F80) | UInt16(v)
        case 98, 99: rpn[c] = Controllers.noRPN
        case 6: dataEntry(c, msb: v, lsb: nil)
        case 38: dataEntry(c, msb: nil, lsb: v)
        case 121:
            volume = 127
            expression = 127
            for i in 0..<16 { setLSB(i, -1); rpn[i] = Controllers.noRPN }
            return false
        default: return false
        }
        return true
    }

    private mutating func dataEntry(_ c: Int, msb: Int?, lsb: Int?) {
        switch rpn[c] {
        case 1:   // fine tuning: 14 bits, 8192 = 0, ±100 cents
            if let msb { fineMSB = msb; fineLSB = 0 }
            if let lsb { fineLSB = lsb }
            fineTuningCents = Float((fineMSB << 7 | fineLSB) - 8192) * 100 / 8192
        case 2:   // coarse tuning: the MSB in semitones, 64 = 0
            if let msb { coarseTuning = msb - 64 }
        default:  // 0 (pitch-bend range: no pitch bend on a piano) and the rest: ignored
            break
        }
    }

    /// The velocity fraction (CC88 value/128) for a note-on on `channel`, once.
    public mutating func takeVelocityFraction(channel: Int) -> Float {
        let lsb = getLSB(channel & 0x0F)
        guard lsb >= 0 else { return 0 }
        setLSB(channel & 0x0F, -1)
        return Float(lsb) / 128
    }

    private func getLSB(_ c: Int) -> Int8 {
        withUnsafeBytes(of: velocityLSB) { Int8(bitPattern: $0[c]) }
    }

    private mutating func setLSB(_ c: Int, _ v: Int8) {
        withUnsafeMutableBytes(of: &velocityLSB) { $0[c] = UInt8(bitPattern: v) }
    }
}

/// Tuning and transposition: the one place for their ranges and defaults (the daemon's rules,
/// `render`'s flags and the plugin's ports use these).
public enum Tuning {
    public static let defaultA4: Float = 440
    public static let a4Range: ClosedRange<Float> = 415...466
    public static let transposeRange: ClosedRange<Int> = -24...24

    /// The factor on every f0: A4 relative to 440 Hz (the model plays at its own tuning, which
    /// the model learned from 440-Hz-ish pianos), times the RPN fine tuning. Exactly 1 at 440, 0 cents.
    @inline(__always)
    public static func ratio(a4: Float, fineCents: Float) -> Float {
        let r = a4 / defaultA4
        return fineCents == 0 ? r : r * exp2f(fineCents / 1200)
    }
}
