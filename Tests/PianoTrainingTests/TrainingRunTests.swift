import DDSPPiano
import Foundation
import PianoTraining
import XCTest

/// `TrainingRun`: the decisions `ddsp-piano-train train` makes before its loop (phase plan,
/// fresh start, resume from the checkpoint's data).
final class TrainingRunTests: XCTestCase {
    func testPhasePlansFollowUpstreamUnlessGiven() throws {
        var o = TrainingRunOptions(runFolder: URL(fileURLWithPath: "/nonexistent"))
        let plans = try TrainingRun.phasePlans(o, segments: 100)
        XCTAssertEqual(plans.map(\.number), [1, 2, 3])
        XCTAssertEqual(plans.map(\.batchSize), [6, 3, 6])
        XCTAssertEqual(plans.map(\.learningRate), [1e-3, 1e-5, 1e-3])
        // Epochs of 100 / batch steps (integer division), as upstream counts them.
        XCTAssertEqual(plans.map(\.steps), [7 * 16, 3 * 33, 10 * 16])

        o.phases = "2"; o.batchSize = "4"; o.learningRate = "2e-4"; o.epochs = "1.5"
        XCTAssertEqual(try TrainingRun.phasePlans(o, segments: 10), [PhasePlan(number: 2, batchSize: 4, learningRate: 2e-4, steps: 3)])
        o.steps = "7"
        XCTAssertEqual(try TrainingRun.phasePlans(o, segments: 10).map(\.steps), [7])
        // Fewer segments than a batch: one step per epoch.
        o.steps = nil; o.epochs = "2"
        XCTAssertEqual(try TrainingRun.phasePlans(o, segments: 2).map(\.steps), [2])
    }

    func testBadPhaseOptionsAreOptionErrors() {
        var o = TrainingRunOptions(runFolder: URL(fileURLWithPath: "/nonexistent"))
        o.phases = "1,4"
        XCTAssertThrowsError(try TrainingRun.phasePlans(o, segments: 10)) {
            XCTAssertEqual($0 as? TrainingOptionError, TrainingOptionError("--phases takes numbers among 1, 2, 3"))
        }
        o.phases = "1,2"; o.steps = "5"
        XCTAssertThrowsError(try TrainingRun.phasePlans(o, segments: 10)) {
            XCTAssertEqual($0 as? TrainingOptionError, TrainingOptionError("--steps needs 2 comma-separated value(s), one per phase, not '5'"))
        }
        o.steps = nil; o.batchSize = "0,1"
        XCTAssertThrowsError(try TrainingRun.phasePlans(o, segments: 10)) {
            XCTAssertEqual($0 as? TrainingOptionError, TrainingOptionError("batch sizes and learning rates must be positive"))
        }
    }

    func testFreshRunThenResumeFromItsCheckpoint() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ddsp-training-run-\(getpid())-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let data = dir.appendingPathComponent("data")
        try TrainerTests.writePair(folder: data.appendingPathComponent("grand"), name: "a", seconds: 6, seed: 1)
        var o = TrainingRunOptions(runFolder: dir.appendingPathComponent("run"))
        o.data = data.path; o.phases = "1"; o.steps = "2"; o.batchSize = "1"; o.validationSegments = 1; o.seed = 3
        var skipped: [String] = []
        let run = try TrainingRun.prepare(o) { skipped.append($0) }
        XCTAssertFalse(run.resumed)
        XCTAssertEqual(skipped, [])
        XCTAssertEqual(run.elapsedBefore, 0)
        XCTAssertEqual(run.source, TrainingDataSource(data: data.path))
        XCTAssertEqual(run.trainer.config.phases, [PhasePlan(number: 1, batchSize: 1, learningRate: 1e-3, steps: 2)])
        XCTAssertEqual(run.trainer.config.seed, 3)
        XCTAssertEqual(run.trainer.train.instruments, ["grand"])
        XCTAssertTrue(FileManager.default.fileExists(atPath: run.folder.url.appendingPathComponent("initial.safetensors").path))

        let report = try run.step()
        XCTAssertEqual(report.globalStep, 1)
        XCTAssertEqual(run.stepsThisSession, 1)
        XCTAssertEqual(run.segmentsThisSession, 1)
        XCTAssertEqual(run.recentLosses, [report.losses.total])
        XCTAssertFalse(FileManager.default.fileExists(atPath: run.folder.checkpointURL.path), "checkpoints every 10 steps by default")
        XCTAssertEqual(run.folder.trainCurve.map(\.step), [1])
        let state = run.checkpointState(seconds: 12.5, lastLoss: 1.5, lastValidationLoss: nil)
        XCTAssertEqual(state["seconds"], "12.5")
        XCTAssertEqual(state["last_loss"], "1.5")
        XCTAssertNil(state["last_validation_loss"])
        try run.trainer.checkpoint(state: state).save(to: run.folder.checkpointURL)
        run.folder.close()

        // Resume: data, configuration, position and time come from the checkpoint.
        var r = TrainingRunOptions(runFolder: o.runFolder)
        r.resume = true
        let resumed = try TrainingRun.prepare(r)
        XCTAssertTrue(resumed.resumed)
        XCTAssertEqual(resumed.source, run.source)
        XCTAssertEqual(resumed.elapsedBefore, 12.5)
        XCTAssertEqual(resumed.trainer.completedSteps, 1)
        XCTAssertEqual(resumed.trainer.config, run.trainer.config)
        resumed.folder.close()

        // Nothing to resume from.
        var missing = TrainingRunOptions(runFolder: dir.appendingPathComponent("other"))
        missing.resume = true
        XCTAssertThrowsError(try TrainingRun.prepare(missing)) { XCTAssertTrue($0 is TrainingDataError, "\($0)") }
    }
}
