/// Model-rate audio in, host-rate audio out through a FIFO: the resampler (if the rates
/// differ) and the buffer between the model's 64-sample frames and the host's blocks.
/// Allocates in `init` only.
final class HostStream {
    let resampler: StreamingResampler?
    private var fifo: [Float]
    private var read = 0
    private(set) var count = 0
    private var resampled: [Float]

    init(modelRate: Int, hostRate: Double, frameSize: Int, maxBlockSize: Int) throws {
        if hostRate != Double(modelRate) {
            let r = try StreamingResampler(inputRate: Double(modelRate), outputRate: hostRate, maxInputFrames: frameSize)
            resampler = r
            resampled = [Float](repeating: 0, count: r.maxOutputFrames)
        } else {
            resampler = nil
            resampled = []
        }
        fifo = [Float](repeating: 0, count: maxBlockSize + 2 * max(resampled.count, frameSize) + 2 * frameSize)
    }

    /// Output samples of delay the resampler adds.
    var delay: Double { resampler?.delay ?? 0 }

    func reset() {
        resampler?.reset()
        read = 0
        count = 0
    }

    func push(_ samples: UnsafePointer<Float>, count n: Int) {
        if let r = resampler {
            let produced = resampled.withUnsafeMutableBufferPointer { out in
                r.process(samples, count: n, into: out.baseAddress!, capacity: out.count)
            }
            resampled.withUnsafeBufferPointer { append($0.baseAddress!, produced) }
        } else {
            append(samples, n)
        }
    }

    private func append(_ p: UnsafePointer<Float>, _ m: Int) {
        let capacity = fifo.count
        precondition(count + m <= capacity, "host FIFO overflow")
        var write = read + count
        if write >= capacity { write -= capacity }
        fifo.withUnsafeMutableBufferPointer { f in
            for i in 0..<m {
                f[write] = p[i]
                write += 1
                if write == capacity { write = 0 }
            }
        }
        count += m
    }

    func pop(into out: UnsafeMutablePointer<Float>, count n: Int, gain: Float) {
        precondition(n <= count)
        let capacity = fifo.count
        fifo.withUnsafeBufferPointer { f in
            for i in 0..<n {
                out[i] = f[read] * gain
                read += 1
                if read == capacity { read = 0 }
            }
        }
        count -= n
    }

    func discard(_ n: Int) {
        read = (read + n) % fifo.count
        count -= n
    }
}
