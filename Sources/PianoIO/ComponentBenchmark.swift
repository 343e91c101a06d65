import CBLAS
import DDSPPiano
import Foundation

/// `ddsp-piano bench`'s breakdown (issue 15, item 4): where one second of audio goes on one
/// thread, the kernels chosen, and the bound the matrix products set. CPU time of the calling
/// thread throughout, so a busy machine slows the figures less than it slows the wall clock.
public enum ComponentBenchmark {
    public struct Result: Sendable {
        public var kernels: String
        /// OpenBLAS's own kernel choice (what the engine used to depend on).
        public var openBLASCore: String
        public var frameRate: Int
        /// Per frame: the networks' products, and the noise filters' design product.
        public var shapes: [ProductShape]
        public var noiseShape: ProductShape
        /// CPU milliseconds per second of audio: the networks' products (packed; through OpenBLAS),
        /// the whole network step.
        public var products: Double
        public var productsThroughOpenBLAS: Double
        public var network: Double
        /// The kernel's best sustained rate on the model's largest product (hot loop), GFLOP/s.
        public var bestGFLOPS: Double
        public var bestShape: ProductShape

        /// The networks' products.
        public var flopsPerSecondOfAudio: Double { Double(shapes.reduce(0) { $0 + $1.flops } * frameRate) }
        public var productGFLOPS: Double { flopsPerSecondOfAudio / (products * 1e6) }
        /// Every product of the engine (with the noise filters') at the best rate: ms per second
        /// of audio, and the real-time factor that would leave nothing for the rest.
        public var productBound: Double { (flopsPerSecondOfAudio + Double(noiseShape.flops * frameRate)) / (bestGFLOPS * 1e6) }
        public var boundFactor: Double { 1000 / productBound }
    }

    public static func threadCPUSeconds() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
    }

    /// Times the model's per-frame products (packed, and through OpenBLAS's sgemm for
    /// comparison) and its network step alone, over `seconds` of audio each.
    public static func run(model: PianoModel, instrument: Int, seconds: Double) -> Result {
        let h = model.hyper
        let frames = max(50, Int(seconds * Double(h.frameRate)))
        var networkShapes: [ProductShape]
        var step: () -> Void
        var conditioning = [Float](repeating: 0, count: 2 * h.voices)
        for v in 0..<h.voices { conditioning[2 * v] = Float(28 + 4 * v); conditioning[2 * v + 1] = 0.3 + 0.04 * Float(v) }
        let pedal: [Float] = [1, 0, 0, 0]
        switch model.file {
        case .dafx22(let w):
            var net = PianoNetwork(weights: w, instrument: instrument)
            // The input here is constant: kept rows (IdleRows) would hide the cost being measured.
            net.mono.idle.enabled = false
            let stats = w.normalizationPrior(instrument: instrument)
            networkShapes = net.productShapes
            step = {
                conditioning.withUnsafeBufferPointer { c in pedal.withUnsafeBufferPointer { p in
                    net.step(conditioning: c.baseAddress!, pedal: p.baseAddress!, statistics: stats)
                }}
            }
        case .v2(let w):
            var net = V2Network(weights: w, instrument: instrument)
            net.mono.idle.enabled = false
            networkShapes = net.productShapes
            step = {
                conditioning.withUnsafeBufferPointer { c in pedal.withUnsafeBufferPointer { p in
                    net.step(conditioning: c.baseAddress!, pedal: p.baseAddress!)
                }}
            }
        }
        let shapes = networkShapes
        let noiseShape = ProductShape(rows: h.voices, inputs: h.noiseBands, columns: 2 * (h.noiseBands - 1))
        let perSecond = 1000 * Double(h.frameRate) / Double(frames)   // ms per second of audio, per CPU second

        // The network step alone (products, gates, norms, activations, copies).
        for _ in 0..<20 { step() }
        var t0 = threadCPUSeconds()
        for _ in 0..<frames { step() }
        let network = (threadCPUSeconds() - t0) * perSecond

        // The products alone, on random data, both ways.
        var g = SplitMix64(seed: 15)
        let maxInputs = shapes.map(\.inputs).max()!, maxColumns = shapes.map(\.columns).max()!
        let x = (0..<(h.voices * maxInputs)).map { _ in Float(g.unit() - 0.5) }
        var y = [Float](repeating: 0, count: h.voices * maxColumns)
        let weights = shapes.map { s in (0..<(s.inputs * s.columns)).map { _ in Float(g.unit() - 0.5) * 0.1 } }
        let packed = zip(shapes, weights).map { PackedMatrix($1, inputs: $0.inputs, columns: $0.columns) }
        let kernels = PianoKernels.active
        func packedFrame(_ only: Int? = nil) {
            x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { yp in
                for (i, s) in shapes.enumerated() where only == nil || only == i {
                    packed[i].values.withUnsafeBufferPointer { p in
                        kernels.packedProduct(s.rows, xp.baseAddress!, s.inputs, p.baseAddress!, s.inputs, s.columns, yp.baseAddress!, s.columns)
                    }
                }
            }}
        }
        func blasFrame() {
            x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { yp in
                for (i, s) in shapes.enumerated() {
                    weights[i].withUnsafeBufferPointer { w in
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(s.rows), Int32(s.columns), Int32(s.inputs),
                                    1, xp.baseAddress, Int32(s.inputs), w.baseAddress, Int32(s.columns), 1, yp.baseAddress, Int32(s.columns))
                    }
                }
            }}
        }
        openblas_set_num_threads(1)
        for _ in 0..<20 { packedFrame(); blasFrame() }
        t0 = threadCPUSeconds()
        for _ in 0..<frames { packedFrame() }
        let products = (threadCPUSeconds() - t0) * perSecond
        t0 = threadCPUSeconds()
        for _ in 0..<frames { blasFrame() }
        let blas = (threadCPUSeconds() - t0) * perSecond
        // The kernel's best: the largest product, alone, in a hot loop.
        let best = shapes.indices.max { shapes[$0].flops < shapes[$1].flops }!
        let reps = max(200, frames)
        t0 = threadCPUSeconds()
        for _ in 0..<reps { packedFrame(best) }
        let bestGFLOPS = Double(shapes[best].flops * reps) / (threadCPUSeconds() - t0) / 1e9
        let core = openblas_get_corename().map { String(cString: $0) } ?? "unknown"
        return Result(kernels: PianoKernels.selected.rawValue, openBLASCore: core, frameRate: h.frameRate, shapes: shapes,
                      noiseShape: noiseShape,
                      products: products, productsThroughOpenBLAS: blas, network: network, bestGFLOPS: bestGFLOPS,
                      bestShape: shapes[best])
    }
}
