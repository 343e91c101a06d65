import Foundation

/// float32 functions that give TensorFlow's CPU results bit for bit, where bits matter.
///
/// Why: v2's oscillator phases are float32 running sums (ddsp's `angular_cumsum`), and such a
/// sum is chaotic in its inputs' last bit — a frequency one ulp away from upstream's makes the
/// phase wander off by milliradians per 1000-sample chunk, which costs 20–30 dB of agreement
/// within seconds. The frequencies come from the tuning model (exp, tanh, 2^x), so those must
/// round exactly as TensorFlow 2.15 rounds them: its `tf.exp` is Eigen's minimax `pexp_float`
/// evaluated without FMA (checked against every inharmonicity value in the v2 reference:
/// 67 of 67 equal, glibc's correctly rounded expf gets 47), and its `tanh` and `pow` give the
/// correctly rounded result on every value there (computed here through Double).
public enum TFMath {
    /// Eigen's `pexp_float` (the 6th-order minimax version in TensorFlow 2.15), every multiply
    /// and add rounded separately as TensorFlow's x86 build (no FMA) does.
    @inline(__always)
    public static func exp(_ input: Float) -> Float {
        if input.isNaN { return input }
        if input < -104 { return 0 }
        let x = min(input, 88.723)
        // m = floor(x·log2(e) + 1/2), r = x − m·ln 2 in two steps.
        let m = (x * 1.44269504088896341 + 0.5).rounded(.down)
        var r = m * -0.693359375 + x
        r = m * 2.12194440e-4 + r
        let r2 = r * r
        var even = r2 * 1.37449637986719608306884765625e-3 + 4.166965186595916748046875e-2
        let odd = r2 * 8.36894474923610687255859375e-3 + 0.16666518151760101318359375
        even = r2 * even + 0.49999988079071044921875
        let low = r + 1
        var y = r * odd + even
        y = r2 * y + low
        // y · 2^m, exact as Eigen's pldexp (y is in [0.5, 2), m within ±128 here).
        return max(Float(Double(y) * Foundation.pow(2.0, Double(m))), input)
    }

    /// tanh correctly rounded to float32.
    @inline(__always)
    public static func tanh(_ x: Float) -> Float { Float(Foundation.tanh(Double(x))) }

    /// 2^x correctly rounded to float32 (ddsp's midi_to_hz uses `2.0 ** x`).
    @inline(__always)
    public static func exp2(_ x: Float) -> Float { Float(Foundation.exp2(Double(x))) }
}
