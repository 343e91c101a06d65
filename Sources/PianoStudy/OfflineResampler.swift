import CSoxr
import DDSPPiano
import Foundation

/// Whole-signal resampling with libsoxr, for offline renders and as a reference: very high
/// quality (28-bit, linear phase, steep: passband to 0.982 of the input Nyquist = 7.86 kHz at
/// 16 kHz, stopband from the Nyquist), output aligned with the input (no delay), length
/// round(count · outputRate / inputRate). Allocates; not for the real-time path.
public enum OfflineResampler {
    public static func resample(_ input: [Double], from inputRate: Double, to outputRate: Double) throws -> [Double] {
        try oneshot(input, inputRate, outputRate, SOXR_FLOAT64_I)
    }

    public static func resample(_ input: [Float], from inputRate: Double, to outputRate: Double) throws -> [Float] {
        try oneshot(input, inputRate, outputRate, SOXR_FLOAT32_I)
    }

    private static func oneshot<T: BinaryFloatingPoint>(_ input: [T], _ inputRate: Double, _ outputRate: Double,
                                                        _ type: soxr_datatype_t) throws -> [T] {
        guard inputRate > 0, outputRate > 0, inputRate.isFinite, outputRate.isFinite else {
            throw ResamplerError("invalid rates \(inputRate) → \(outputRate)")
        }
        if inputRate == outputRate { return input }
        let olen = Int((Double(input.count) * outputRate / inputRate).rounded())
        var output = [T](repeating: 0, count: olen)
        var io = soxr_io_spec(type, type)
        var quality = soxr_quality_spec(UInt(SOXR_VHQ) | UInt(SOXR_LINEAR_PHASE) | UInt(SOXR_STEEP_FILTER), 0)
        var runtime = soxr_runtime_spec(1)   // the engine runs no threads of its own
        var idone = 0, odone = 0
        let error = input.withUnsafeBufferPointer { i in
            output.withUnsafeMutableBufferPointer { o in
                soxr_oneshot(inputRate, outputRate, 1, i.baseAddress, i.count, &idone,
                             o.baseAddress, o.count, &odone, &io, &quality, &runtime)
            }
        }
        if let error { throw ResamplerError("libsoxr: \(String(cString: error))") }
        output.removeSubrange(min(odone, olen)...)
        return output
    }
}
