/// Offline renders on two cores (issue 15, item 3): the same engine twice, each running part of
/// every frame's networks. The `.controls` engine applies every event, runs the context network
/// and the monophonic network of the voices `0..<split`, and leaves the frame's context vector
/// and those voices' outputs in a ring; it makes no sound. The `.synthesis` engine, fed the same
/// events and blocks, takes them from the ring, runs the other voices' monophonic network with
/// that context, and makes the sound. Every voice's network row depends on that row only
/// (PianoKernels' packedProduct), so the output is the one engine's, to the bit; a driver runs the
/// two on two threads (`OfflineRenderer` with a `RenderPipelineRunner` from the I/O layer: the
/// engine starts no thread and never waits).
public struct ControlPipeline: Sendable {
    public enum Role: Sendable { case controls, synthesis }
    public let ring: ControlFrameRing
    public let role: Role
    public init(ring: ControlFrameRing, role: Role) { self.ring = ring; self.role = role }
    /// The voices whose networks the controls engine runs (the synthesis engine runs the rest).
    public var split: Int { ring.split }
    /// The controls engine also runs the context network; the synthesis engine the controls,
    /// synthesis, reverb and resampling. Measured on 60 s of MAESTRO performances at 48 kHz,
    /// 2 cores (docs/PERFORMANCE.md): both models balance best at 12 of 16 voices (dafx22 1.39 s,
    /// 8: 1.7 s; v2 1.76–1.96 s, 16: 1.92–2.05 s, 13 and 14 no better; before the synthesis
    /// kernels got faster, v2 was best at 16). Multiples of 4 on both sides: the products' row
    /// tiles are 4 rows (11 or 13 voices cost 15 % more).
    public static func defaultSplit(_ architecture: PianoModel.Architecture, voices: Int) -> Int {
        max(0, voices * 3 / 4 / 4 * 4)
    }
}

/// Preallocated frames between the two engines of a `ControlPipeline`: per frame the context
/// vector [contextWidth] and the first `split` voices' network outputs [split, rawWidth]. Each
/// engine counts the frames it has put or taken; slot = count mod capacity. The driver keeps the
/// producer at most `capacity` frames ahead and publishes its progress with release/acquire
/// atomics, which is what makes a slot's contents visible to the other thread. Raw storage: no
/// Swift exclusivity access or copy-on-write across threads, no allocation after `init`.
// @unchecked Sendable: one producer engine and one consumer engine, synchronised by the driver.
public final class ControlFrameRing: @unchecked Sendable {
    public let capacity: Int
    public let split: Int
    let contextWidth: Int, rawWidth: Int
    private let storage: UnsafeMutablePointer<Float>
    private var stride: Int { contextWidth + split * rawWidth }

    public init(contextWidth: Int, rawWidth: Int, split: Int, capacity: Int) {
        precondition(capacity > 0 && split >= 0)
        self.capacity = capacity
        self.split = split
        self.contextWidth = contextWidth
        self.rawWidth = rawWidth
        storage = .allocate(capacity: capacity * (contextWidth + split * rawWidth))
        storage.initialize(repeating: 0, count: capacity * (contextWidth + split * rawWidth))
    }

    /// A ring for `model`'s networks (context width, outputs per voice).
    public convenience init(model: PianoModel, split: Int, capacity: Int) {
        precondition(split >= 0 && split <= model.hyper.voices)
        self.init(contextWidth: model.hyper.contextUnits, rawWidth: model.hyper.monoOutputs, split: split, capacity: capacity)
    }

    deinit { storage.deallocate() }

    func context(frame: Int) -> UnsafeMutablePointer<Float> { storage + (frame % capacity) * stride }
    func raw(frame: Int) -> UnsafeMutablePointer<Float> { context(frame: frame) + contextWidth }
}

/// Runs a two-engine render's halves on two threads (the I/O layer implements it: the engine
/// library starts no threads). `produce(b)` runs for b = 0, 1, … on another thread, in order;
/// `consume(b)` here, in order. consume(b) may start only once produce(b) has returned, and
/// produce(b) only once consume(b − lag) has returned; everything produce wrote before it
/// returned must be visible to consume (release/acquire). An error from `consume` stops both.
public protocol RenderPipelineRunner: Sendable {
    func run(blocks: Int, lag: Int, produce: @escaping @Sendable (Int) -> Void, consume: (Int) throws -> Void) throws
}
