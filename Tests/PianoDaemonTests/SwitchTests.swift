import DDSPPiano
import Foundation
import PianoDaemon
import XCTest

/// Switching pianos while notes sound (program change, as the daemon routes it): no sample
/// step larger than normal playing produces.
final class SwitchTests: XCTestCase {
    func testProgramChangeWhileNotesSoundHasNoClick() throws {
        let dir = try DaemonSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (_, weights) = try DaemonSupport.realWeights(in: dir)
        let router = MIDIRouter(instruments: weights.instruments.count)
        func message(_ s: UInt8, _ a: UInt8, _ b: UInt8) -> MIDIMessage {
            guard case .play(let m) = router.route(status: s, data1: a, data2: b) else { fatalError("not routed") }
            return m
        }
        let rate = 48000, total = 3 * rate
        var events: [(Int, MIDIMessage)] = [(0, message(0xB0, 64, 127))]
        for (i, p) in [48, 60, 64, 67, 72].enumerated() { events.append((rate / 10 + i * 2400, message(0x90, UInt8(p), 90))) }
        events.append((Int(2.5 * Double(rate)), message(0xB0, 64, 0)))
        let switchAt = rate   // 1 s: every note sounding
        let plain = try JackEndToEndTests.render(weights, events: events, count: total)
        var withSwitch = events
        withSwitch.append((switchAt, message(0xC0, 3, 0)))
        withSwitch.sort { $0.0 < $1.0 }
        let switched = try JackEndToEndTests.render(weights, events: withSwitch, count: total)

        func maxStep(_ x: [Float], _ r: Range<Int>) -> Float {
            var m: Float = 0
            for i in r.dropFirst() { m = max(m, abs(x[i] - x[i - 1])) }
            return m
        }
        let normal = maxStep(plain, 1..<total)
        let during = maxStep(switched, switchAt..<(switchAt + rate / 2))
        let differs = zip(plain[switchAt...], switched[switchAt...]).contains { $0 != $1 }
        print("piano switch while 5 notes sound: largest sample step \(during) during the switch, \(normal) in normal playing")
        XCTAssertTrue(differs, "the switch changed the sound")
        XCTAssertLessThanOrEqual(during, normal, "a click: the switch steps further than playing does")
    }
}
