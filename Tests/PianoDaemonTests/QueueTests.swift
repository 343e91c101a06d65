import Foundation
import PianoDaemon
import PianoTestKit
import XCTest

final class QueueTests: XCTestCase {
    func testFIFOAcrossThreadsLosesNothing() {
        let q = SPSCQueue<Int>(capacity: 64)
        let n = 50_000
        let producer = Thread {
            var i = 0
            while i < n { if q.push(i) { i += 1 } else { sched_yield() } }
        }
        producer.start()
        var expected = 0
        let deadline = Date().addingTimeInterval(30)
        while expected < n && Date() < deadline {
            if let v = q.pop() {
                XCTAssertEqual(v, expected)
                if v != expected { break }
                expected += 1
            } else { sched_yield() }
        }
        XCTAssertEqual(expected, n)
        XCTAssertNil(q.pop())
    }

    func testFullQueueRefusesAndCapacityIsPowerOfTwo() {
        let q = SPSCQueue<UInt8>(capacity: 5)
        XCTAssertEqual(q.capacity, 8)
        for i in 0..<8 { XCTAssertTrue(q.push(UInt8(i))) }
        XCTAssertFalse(q.push(99))
        XCTAssertEqual(q.pop(), 0)
        XCTAssertTrue(q.push(8))
        XCTAssertEqual((0..<8).compactMap { _ in q.pop() }, [1, 2, 3, 4, 5, 6, 7, 8])
    }

    /// A flood with no consumer: the oldest non-release events go, every release stays, order kept.
    func testOverflowDropsOldestNonReleasesNeverNoteOffs() {
        let q = MIDIEventQueue(capacity: 16, backlog: 0)   // the minimum backlog
        var t: UInt64 = 0
        func ev(_ s: UInt8, _ a: UInt8, _ b: UInt8) -> TimedMIDI { t += 1; return TimedMIDI(time: t, status: s, data1: a, data2: b) }
        var sent: [TimedMIDI] = []
        // 3000 note-ons and 1000 note-offs of distinct keys: more than ring and backlog hold.
        for k in 0..<4000 {
            let e = k % 4 == 3 ? ev(0x80 | UInt8(k / 4 / 88), UInt8(k / 4 % 88 + 21), 0) : ev(0x90 | UInt8(k % 16), UInt8(k % 88 + 21), 90)
            q.push(e)
            sent.append(e)
        }
        let pedalUp = ev(0xB0, 64, 0)
        q.push(pedalUp)
        sent.append(pedalUp)
        var received: [TimedMIDI] = []
        while received.count < 100_000 {
            if let e = q.pop() { received.append(e); continue }
            if q.pending == 0 { break }
            q.flush()
        }
        let releases = sent.filter(\.isRelease)
        XCTAssertEqual(received.filter(\.isRelease), releases, "every release arrives, in order")
        XCTAssertEqual(q.dropped, sent.count - received.count)
        XCTAssertGreaterThan(q.dropped, 0)
        XCTAssertEqual(received.map(\.time), received.map(\.time).sorted(), "order kept")
        XCTAssertTrue(TimedMIDI(time: 0, status: 0x93, data1: 60, data2: 0).isRelease, "velocity-0 note-on is a note-off")
        XCTAssertFalse(TimedMIDI(time: 0, status: 0xB0, data1: 64, data2: 127).isRelease)
    }

    /// A far larger flood (more releases than fit): redundant duplicate releases may go, but
    /// every key and pedal still ends released.
    func testHugeFloodLeavesNothingStuck() {
        let q = MIDIEventQueue(capacity: 16, backlog: 0)
        var t: UInt64 = 0
        var sent = 0
        for k in 0..<20_000 {
            let pitch = UInt8(k % 88 + 21), ch = UInt8(k % 16)
            t += 1; q.push(TimedMIDI(time: t, status: 0x90 | ch, data1: pitch, data2: 80))
            t += 1; q.push(TimedMIDI(time: t, status: 0xB0 | ch, data1: 64, data2: (k / 16) % 2 == 0 ? 127 : 0))
            t += 1; q.push(TimedMIDI(time: t, status: 0x80 | ch, data1: pitch, data2: 0))
            sent += 3
        }
        var last: [UInt32: TimedMIDI] = [:]
        var received = 0
        while true {
            if let e = q.pop() {
                received += 1
                last[UInt32(e.status & 0x0F) << 8 | ((e.status & 0xF0) == 0xB0 ? 0x80 | UInt32(e.data1 & 0x7F) : UInt32(e.data1))] = e
                continue
            }
            if q.pending == 0 { break }
            q.flush()
        }
        XCTAssertEqual(q.dropped, sent - received)
        XCTAssertTrue(last.values.allSatisfy(\.isRelease), "a key or pedal left down: \(last.values.filter { !$0.isRelease }.prefix(3))")
        XCTAssertFalse(TimedMIDI(time: 0, status: 0xB0, data1: 64, data2: 127).isRelease)
    }

    func testRouterChannelsVelocityAndPrograms() {
        let r = MIDIRouter(channels: [1], velocityGamma: 2, programMap: [3, -1, 1], instruments: 4)
        guard case .play(.noteOn(0, 60, let v)) = r.route(status: 0x90, data1: 60, data2: 64) else { return XCTFail() }
        XCTAssertEqual(v, 32)   // 127·(64/127)² ≈ 32
        guard case .ignore = r.route(status: 0x91, data1: 60, data2: 64) else { return XCTFail("channel 2 is filtered") }
        guard case .play(.noteOff(0, 60, 0)) = r.route(status: 0x90, data1: 60, data2: 0) else { return XCTFail() }
        guard case .play(.programChange(0, 3)) = r.route(status: 0xC0, data1: 0, data2: 0) else { return XCTFail() }
        guard case .programOutOfRange = r.route(status: 0xC0, data1: 1, data2: 0) else { return XCTFail() }
        guard case .programOutOfRange = r.route(status: 0xC0, data1: 100, data2: 0) else { return XCTFail() }
        guard case .play(.controlChange(0, 7, 100)) = r.route(status: 0xB0, data1: 7, data2: 100) else { return XCTFail("volume (Controllers)") }
        guard case .ignore = r.route(status: 0xB0, data1: 1, data2: 100) else { return XCTFail("the modulation wheel is not for a piano") }
        guard case .ignore = r.route(status: 0xE0, data1: 0, data2: 80) else { return XCTFail("nor pitch bend") }
        guard case .ignore = r.route(status: 0x90, data1: 200, data2: 1) else { return XCTFail("malformed") }
        guard case .play(.controlChange(0, 64, 127)) = r.route(status: 0xB0, data1: 64, data2: 127) else { return XCTFail() }
    }
}
