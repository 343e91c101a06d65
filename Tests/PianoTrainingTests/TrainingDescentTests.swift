import DDSPPiano
import Foundation
import PianoTraining
import XCTest

/// The pieces together: Adam on the full model's gradients lowers the loss. A tiny model learns
/// to imitate audio made by another random model of the same shape (teacher and student differ
/// in every network weight; the test is that the loss goes down, not that it reaches 0).
final class TrainingDescentTests: XCTestCase {
    func testPhasesFollowUpstream() {
        XCTAssertEqual(TrainingPhase.upstream.map(\.batchSize), [6, 3, 6])
        XCTAssertEqual(TrainingPhase.upstream.map(\.learningRate), [1e-3, 1e-5, 1e-3])
        XCTAssertEqual(TrainingPhase.upstream.map(\.epochs), [7, 3, 10])
        let p1 = TrainingPhase.upstream[0], p2 = TrainingPhase.upstream[1], p3 = TrainingPhase.upstream[2]
        XCTAssertTrue(p1.trains(.other) && !p1.trains(.frequency))
        XCTAssertTrue(p2.trains(.frequency) && !p2.trains(.other))
        XCTAssertTrue(p3.trains(.other) && !p3.trains(.frequency))
        var h = PianoWeights.Hyper()
        h.voices = 2; h.harmonics = 8; h.reverbLength = 8
        var net = PianoNetworkTraining(weights: randomWeights(h, instruments: 1, seed: 1))
        p2.configure(&net); XCTAssertTrue(net.detuner.useDetune)
        p3.configure(&net); XCTAssertFalse(net.detuner.useDetune)
    }

    func testAdamLowersTheLoss() {
        var h = PianoWeights.Hyper()
        h.voices = 2; h.zDim = 3; h.contextUnits = 4; h.contextGRUUnits = 8; h.monoDenseUnits = 8
        h.monoGRUUnits = 8; h.monoHiddenUnits = 8; h.harmonics = 8; h.noiseBands = 5; h.reverbLength = 64
        let T = 25, B = 2
        let batch = testBatch(h, batch: B, frames: T, instruments: [0, 1], seed: 92)
        let teacher = PianoModelTraining(weights: randomWeights(h, instruments: 2, seed: 90), lossSizes: [256, 128, 64])
        let phase = TrainingPhase(number: 1, batchSize: B, epochs: 1, learningRate: 3e-3)
        phase.configure(&teacher.network)
        let target = teacher.step(batch, target: [Float](repeating: 0, count: B * T * h.samplesPerFrame), noiseSeed: 1, gradients: false).audio
        let student = PianoModelTraining(weights: randomWeights(h, instruments: 2, seed: 91), lossSizes: [256, 128, 64])
        phase.configure(&student.network)
        var adam = Adam(learningRate: phase.learningRate)
        var curve: [Double] = []
        for step in 0..<40 {
            student.network.zeroGrad()
            let (losses, _) = student.step(batch, target: target, noiseSeed: UInt64(step))
            XCTAssertTrue(losses.total.isFinite)
            curve.append(losses.total)
            adam.update(&student.network) { _, group in phase.trains(group) }
        }
        let first = curve.prefix(5).reduce(0, +) / 5, last = curve.suffix(5).reduce(0, +) / 5
        print(String(format: "descent: mean loss of steps 1-5 %.3f, of steps 36-40 %.3f", first, last))
        XCTAssertLessThan(last, 0.8 * first)
    }
}
