import Foundation
import XCTest
import DDSPPiano
import PianoStudy

/// Issue 15, item 2: what replaying silent voices (`PianoEngine.Options.dormantVoicesAfter`,
/// `IdleRows.dormantAfter`) costs against the parity metrics. Every dafx22 reference case is
/// rendered by the streaming engine (noise off) with every voice computed and with voices
/// replayed after `after` seconds of silence: the SNR between the two, and each one's
/// multi-scale spectral distance to `--exact` (upstream's computation), the metric the streaming
/// engine is held to (EndToEndParityTests).
final class DormantVoiceTests: XCTestCase {
    static func snr(_ x: [Float], _ r: [Float]) -> Double {
        var s = 0.0, n = 0.0
        for (a, b) in zip(x, r) { s += Double(b) * Double(b); n += Double(a - b) * Double(a - b) }
        return 10 * log10(max(s, 1e-30) / max(n, 1e-30))
    }

    func testDormantVoicesAgainstTheParityMetrics() throws {
        let weights = try Fixtures.dafx22Weights()
        print("| case | after (s) | SNR to every voice computed | distance to --exact | every voice computed |")
        print("|---|---|---|---|---|")
        for dir in try Fixtures.cases(withTensors: false) {
            let meta = try Fixtures.meta(dir)
            let midi = try MIDIFile(bytes: [UInt8](try Data(contentsOf: dir.appendingPathComponent("input.mid"))))
            var settings = RenderSettings()
            settings.instrument = (meta["piano_type"] as? Int) ?? 9
            settings.noise = false
            var exactSettings = settings
            exactSettings.exact = true
            let exact = try OfflineRenderer.render(midi: midi, weights: weights, settings: exactSettings).wet
            let every = try OfflineRenderer.render(midi: midi, weights: weights, settings: settings).wet
            let base = SpectralMetrics.multiScaleDistance(every, exact)
            for after in [0.5, 1.0, 2.0] {
                var s = settings
                s.engine.dormantVoicesAfter = after
                let dormant = try OfflineRenderer.render(midi: midi, weights: weights, settings: s).wet
                let d = SpectralMetrics.multiScaleDistance(dormant, exact)
                print(String(format: "| %@ | %.1f | %.1f dB | %.4f | %.4f |", dir.lastPathComponent, after, Self.snr(dormant, every), d, base))
            }
        }
    }
}
