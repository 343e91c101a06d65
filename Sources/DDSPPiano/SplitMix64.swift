/// SplitMix64: a tiny seeded generator whose output never changes between Swift releases (the
/// standard library's `random(in:using:)` mapping is not documented as stable, but it only
/// consumes `next()`, so draws through it repeat too). The project's one seeded generator: it
/// seeds the engine's noise (`NoiseGenerator`), and drives the training data builder, training
/// initialisation (`TrainingRNG`) and the tests (through PianoTestKit).
public struct SplitMix64: RandomNumberGenerator, Sendable {
    public var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in `range` (the modulo bias is negligible for these small ranges).
    public mutating func int(_ range: ClosedRange<Int>) -> Int {
        range.lowerBound + Int(next() % UInt64(range.upperBound - range.lowerBound + 1))
    }

    /// Uniform in [0, 1), 53 bits.
    public mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }
    public mutating func chance(_ p: Double) -> Bool { unit() < p }
    public mutating func pick<T>(_ items: [T]) -> T { items[int(0...(items.count - 1))] }
}
