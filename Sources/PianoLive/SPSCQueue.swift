import Atomics
import DDSPPiano

/// A bounded lock-free single-producer/single-consumer ring of trivial values.
/// Storage is allocated once; `push` and `pop` never allocate, lock or block, so either side
/// may be the real-time thread. One producer thread and one consumer thread, no more.
// @unchecked Sendable: one producer and one consumer, synchronised by the head/tail atomics (acquire/release).
public final class SPSCQueue<Element>: @unchecked Sendable {
    private let storage: UnsafeMutablePointer<Element>
    private let mask: Int
    // Monotonic counters (never wrapped back): head = next to read, tail = next to write.
    private let head = ManagedAtomic<Int>(0)
    private let tail = ManagedAtomic<Int>(0)

    public let capacity: Int

    /// `capacity` is rounded up to a power of two.
    public init(capacity: Int) {
        precondition(_isPOD(Element.self), "SPSCQueue holds trivial values only")
        var c = 2
        while c < capacity { c <<= 1 }
        self.capacity = c
        mask = c - 1
        storage = .allocate(capacity: c)
    }

    deinit { storage.deallocate() }

    /// Producer side. False when full (the value is not stored).
    @discardableResult
    public func push(_ value: Element) -> Bool {
        let t = tail.load(ordering: .relaxed)
        if t - head.load(ordering: .acquiring) >= capacity { return false }
        (storage + (t & mask)).initialize(to: value)
        tail.store(t + 1, ordering: .releasing)
        return true
    }

    /// Consumer side. Nil when empty.
    public func pop() -> Element? {
        let h = head.load(ordering: .relaxed)
        if h == tail.load(ordering: .acquiring) { return nil }
        let value = (storage + (h & mask)).pointee
        head.store(h + 1, ordering: .releasing)
        return value
    }

    /// Consumer side: the next value without removing it.
    public func peek() -> Element? {
        let h = head.load(ordering: .relaxed)
        if h == tail.load(ordering: .acquiring) { return nil }
        return (storage + (h & mask)).pointee
    }

    /// Either side; exact only when the other side is idle.
    public var count: Int { tail.load(ordering: .acquiring) - head.load(ordering: .acquiring) }
    /// Producer side: free slots.
    public var freeSlots: Int { capacity - count }
}

/// A raw MIDI channel message stamped with the monotonic clock when it was received.
public struct TimedMIDI: Equatable, Sendable {
    public var time: UInt64        // CLOCK_MONOTONIC nanoseconds
    public var status: UInt8
    public var data1: UInt8
    public var data2: UInt8
    public init(time: UInt64, status: UInt8, data1: UInt8, data2: UInt8) {
        self.time = time
        self.status = status
        self.data1 = data1
        self.data2 = data2
    }

    /// Events whose loss would leave sound stuck (`ReleasePolicy`).
    public var isRelease: Bool { ReleasePolicy.isRelease(status: status, data1: data1, data2: data2) }
}

/// MIDI into the audio thread: an SPSC ring plus a backlog owned by the producer for when the
/// ring is full. On overflow `ReleasePolicy` applies: the oldest events that are not releases
/// are dropped (and counted); releases are never dropped, so a flood cannot leave a note or
/// pedal stuck.
// @unchecked Sendable: one producer and one consumer, synchronised by the queue's atomics.
public final class MIDIEventQueue: @unchecked Sendable {
    public let ring: SPSCQueue<TimedMIDI>
    // Producer-owned backlog, preallocated: events waiting for room in the ring, in order.
    private var backlog: [TimedMIDI]
    private var backlogCount = 0
    private let droppedCounter = ManagedAtomic<Int>(0)

    /// A backlog larger than `ReleasePolicy.distinctTargets`, full of releases, always holds
    /// a redundant duplicate.
    public static let minimumBacklog = ReleasePolicy.distinctTargets + 1

    public init(capacity: Int = 1024, backlog: Int = 4096) {
        ring = SPSCQueue(capacity: capacity)
        self.backlog = [TimedMIDI](repeating: TimedMIDI(time: 0, status: 0, data1: 0, data2: 0),
                                   count: max(backlog, Self.minimumBacklog))
    }

    /// Events dropped so far (any thread).
    public var dropped: Int { droppedCounter.load(ordering: .relaxed) }
    /// Producer side: events waiting for room in the ring.
    public var pending: Int { backlogCount }

    /// Producer side. Never blocks; keeps order; see the type's drop rule.
    public func push(_ event: TimedMIDI) {
        flush()
        if backlogCount == 0 && ring.push(event) { return }
        if backlogCount == backlog.count {
            // Make room: the oldest event that is not a release goes.
            if let victim = (0..<backlogCount).first(where: { !backlog[$0].isRelease }) {
                remove(at: victim)
                droppedCounter.wrappingIncrement(ordering: .relaxed)
            } else if !event.isRelease {
                droppedCounter.wrappingIncrement(ordering: .relaxed)
                return
            } else {
                // Only releases are waiting: a release already waiting for the same key or
                // controller makes the oldest such duplicate redundant.
                // (The backlog is larger than the number of distinct targets, so one exists.)
                var dup = 0
                var seen = Set<UInt32>()
                for i in stride(from: backlogCount - 1, through: 0, by: -1) {
                    if !seen.insert(Self.target(backlog[i])).inserted { dup = i; break }
                }
                remove(at: dup)
                droppedCounter.wrappingIncrement(ordering: .relaxed)
            }
        }
        backlog[backlogCount] = event
        backlogCount += 1
    }

    /// Producer side: moves waiting events into the ring as room allows. Call it when idle.
    public func flush() {
        guard backlogCount > 0 else { return }
        var moved = 0
        while moved < backlogCount && ring.push(backlog[moved]) { moved += 1 }
        if moved > 0 {
            for i in 0..<(backlogCount - moved) { backlog[i] = backlog[i + moved] }
            backlogCount -= moved
        }
    }

    /// Consumer side.
    public func pop() -> TimedMIDI? { ring.pop() }
    public func peek() -> TimedMIDI? { ring.peek() }

    private func remove(at index: Int) {
        for i in index..<(backlogCount - 1) { backlog[i] = backlog[i + 1] }
        backlogCount -= 1
    }

    /// Channel and key (or controller) a release acts on.
    private static func target(_ e: TimedMIDI) -> UInt32 { ReleasePolicy.target(status: e.status, data1: e.data1) }
}
