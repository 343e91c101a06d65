import XCTest
import DDSPPiano
import PianoFormats

final class WeightsTests: XCTestCase {
    func testUpstreamRawCheckpointConvertsToReadableWeights() throws {
        let w = try Fixtures.dafx22Weights()
        XCTAssertEqual(w.instruments, PianoWeights.dafx22Instruments)
        XCTAssertEqual(w.releaseDuration.values, [1.0])
        XCTAssertEqual(w.reverbImpulseResponses.shape, [10, 24000])
        print("dafx22 parameters: \(w.parameterCount)")
        // Round trip through our own file format is exact.
        let bytes = w.safetensors().serialized()
        let back = try PianoWeights(safetensors: try Safetensors(bytes: bytes))
        for name in PianoWeights.tensorNames {
            XCTAssertEqual(back.safetensors().tensors[name], w.safetensors().tensors[name], name)
        }
    }
}
