import DDSPPiano
import Foundation
import PianoIO

/// A run's folder: `checkpoint.safetensors` (resumable, written then renamed), `log.jsonl`
/// (one JSON object per step and per validation), `loss.png` and `spectrogram.png`.
// @unchecked Sendable: used by the training command's thread only.
public final class TrainingRunFolder: @unchecked Sendable {
    public let url: URL
    public var checkpointURL: URL { url.appendingPathComponent("checkpoint.safetensors") }
    public var logURL: URL { url.appendingPathComponent("log.jsonl") }
    public var lossPlotURL: URL { url.appendingPathComponent("loss.png") }
    public var spectrogramURL: URL { url.appendingPathComponent("spectrogram.png") }

    public private(set) var trainCurve: [(step: Int, loss: Double)] = []
    public private(set) var validationCurve: [(step: Int, loss: Double)] = []
    private var log: FileHandle?

    /// The folder as other ranks than 0 know it: they never write it.
    public init(unwritten url: URL) { self.url = url }

    public init(_ url: URL) throws {
        self.url = url
        do { try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true) }
        catch { throw TrainingDataError("\(url.path): cannot create the run folder (\(error.localizedDescription))") }
    }

    /// Opens the log for appending. On resume the log is first cut back to `upToStep` (steps
    /// logged after the checkpoint was written are done again) and the curves are read back.
    public func openLog(resumingAt upToStep: Int?) throws {
        var kept: [String] = []
        if let limit = upToStep, let text = try? String(contentsOf: logURL, encoding: .utf8) {
            for line in text.split(separator: "\n") {
                guard let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                      let step = obj["step"] as? Int, step <= limit else { continue }
                kept.append(String(line))
                if let l = obj["loss"] as? Double { trainCurve.append((step, l)) }
                if let v = obj["validation_loss"] as? Double { validationCurve.append((step, v)) }
            }
        }
        let body = kept.isEmpty ? "" : kept.joined(separator: "\n") + "\n"
        do { try WeightStore.writeAtomically(Array(body.utf8), to: logURL) }
        catch { throw TrainingDataError("\(logURL.path): cannot write the log (\(error))") }
        log = try FileHandle(forWritingTo: logURL)
        log?.seekToEndOfFile()
    }

    public func append(_ record: [String: Any]) {
        if let step = record["step"] as? Int {
            if let l = record["loss"] as? Double { trainCurve.append((step, l)) }
            if let v = record["validation_loss"] as? Double { validationCurve.append((step, v)) }
        }
        guard let data = try? JSONSerialization.data(withJSONObject: record, options: [.sortedKeys]) else { return }
        log?.write(data + Data("\n".utf8))
    }

    public func writeLossPlot() throws {
        try WeightStore.writeAtomically(TrainingPlots.lossCurve(train: trainCurve, validation: validationCurve).png(), to: lossPlotURL)
    }

    public func writeSpectrogram(target: [Float], model: [Float], label: String) throws {
        try WeightStore.writeAtomically(TrainingPlots.spectrograms(target: target, model: model, label: label).png(), to: spectrogramURL)
    }

    public func close() { try? log?.close(); log = nil }
}
