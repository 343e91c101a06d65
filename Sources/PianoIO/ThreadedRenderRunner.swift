import Atomics
import DDSPPiano
import Foundation

/// Runs a two-thread render (`RenderPipelineRunner`): the controls engine's blocks on a thread of
/// its own, the synthesis engine's on the caller's. Offline only: each side waits for the other
/// by yielding the core (never on a real-time thread).
public struct ThreadedRenderRunner: RenderPipelineRunner {
    public init() {}

    public func run(blocks: Int, lag: Int, produce: @escaping @Sendable (Int) -> Void, consume: (Int) throws -> Void) throws {
        guard blocks > 0 else { return }
        // Blocks finished by each side; release on store, acquire on load: what the producer
        // wrote into the ring before finishing block b is visible once the consumer sees b + 1.
        let produced = ManagedAtomic<Int>(0)
        let consumed = ManagedAtomic<Int>(0)
        let stop = ManagedAtomic<Bool>(false)
        let finished = DispatchSemaphore(value: 0)
        let thread = Thread {
            for b in 0..<blocks {
                if stop.load(ordering: .relaxed) { break }   // the consumer failed: stop now
                while b - consumed.load(ordering: .acquiring) >= lag {
                    if stop.load(ordering: .relaxed) { finished.signal(); return }
                    sched_yield()
                }
                produce(b)
                produced.store(b + 1, ordering: .releasing)
            }
            finished.signal()
        }
        thread.name = "ddsp-piano networks"
        thread.stackSize = 8 << 20
        thread.start()
        defer {
            stop.store(true, ordering: .relaxed)
            finished.wait()
        }
        for b in 0..<blocks {
            while produced.load(ordering: .acquiring) <= b { sched_yield() }
            try consume(b)
            consumed.store(b + 1, ordering: .releasing)
        }
    }
}
