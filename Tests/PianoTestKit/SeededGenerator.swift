// The tests' one seeded generator is the project's SplitMix64 (DDSPPiano; the engine's noise,
// the training data builder and `TrainingRNG` use it too): importing PianoTestKit brings it,
// with the draws tests make below.
@_exported import struct DDSPPiano.SplitMix64

extension SplitMix64 {
    /// Uniform in [0, n) (0 when n ≤ 1).
    public mutating func below(_ n: Int) -> Int { Int(next() % UInt64(max(1, n))) }

    /// True with probability p, in steps of one millionth: the daemon tests' draw (its fuzz
    /// cases depend on it; `chance` compares `unit()` instead).
    public mutating func chancePerMillion(_ p: Double) -> Bool { Double(next() % 1_000_000) / 1_000_000 < p }

    /// Uniform in [-scale, scale), 24 bits: the trainer tests' test data.
    public mutating func uniform(_ scale: Float = 1) -> Float { (Float(next() >> 40) / Float(1 << 24) * 2 - 1) * scale }

    /// `n` values of `uniform(scale)`.
    public mutating func array(_ n: Int, _ scale: Float = 1) -> [Float] { (0..<n).map { _ in uniform(scale) } }
}
