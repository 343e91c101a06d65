import Foundation
import XCTest
import DDSPPiano

/// The engine's own small matrix products (issue 15, item 1): PianoKernels' `packedProduct` with
/// weights packed once (`PackedMatrix`). Its contract is exact, so it is tested exactly: every
/// output is an accumulator from 0 with one fused multiply-add per input in input order (a
/// multiply and an add in the sse variant), then added to y. So the FMA variants agree to the
/// bit whatever the CPU, a row does not depend on the other rows or on how many are computed,
/// and the results do not depend on which kernel OpenBLAS would have picked.
final class PackedProductTests: XCTestCase {
    /// The shapes of the two models' per-frame products (rows, inputs, columns), plus odd ones
    /// for the tile edges: rows 1…16 cover the 4-row tiles' remainders, columns 1, 15, 17, 33
    /// the panels' padding and the avx512 two-panel tiles.
    static let shapes: [(Int, Int, Int)] = [
        (16, 35, 128), (16, 128, 576), (16, 192, 576), (16, 192, 192), (16, 192, 161), (16, 64, 126),
        (1, 47, 32), (1, 32, 192), (1, 64, 192), (1, 64, 32),                       // dafx22 context
        (16, 1, 64), (16, 2, 64), (16, 64, 64), (1, 32, 64), (16, 384, 64), (16, 64, 225),
        (1, 64, 576), (1, 48, 64), (1, 64, 128),                                     // v2
        (5, 7, 1), (7, 3, 15), (3, 9, 17), (13, 40, 33), (2, 5, 47), (9, 1, 31), (4, 16, 16), (6, 300, 97),
        (1, 20, 61), (3, 9, 100), (1, 64, 225),                                      // one-row tiles of four panels
    ]

    struct Case {
        var rows: Int, inputs: Int, columns: Int, lda: Int
        var x: [Float], b: [Float], bias: [Float]
    }

    static func makeCase(_ shape: (Int, Int, Int), seed: UInt64) -> Case {
        var g = SplitMix64(seed: seed)
        let (m, k, n) = shape
        let lda = k + Int(seed % 3)   // strided rows, as FcStack's inputs
        func value() -> Float { Float(g.unit() * 2 - 1) * (g.chance(0.1) ? 8 : 1) }
        return Case(rows: m, inputs: k, columns: n, lda: lda,
                    x: (0..<(m * lda)).map { _ in value() }, b: (0..<(k * n)).map { _ in value() / Float(k).squareRoot() },
                    bias: (0..<n).map { _ in value() })
    }

    /// y = bias + Σ, summed as the contract says, in scalar code.
    static func reference(_ c: Case, fused: Bool) -> [Float] {
        var y = [Float](repeating: 0, count: c.rows * c.columns)
        for r in 0..<c.rows {
            for j in 0..<c.columns {
                var acc: Float = 0
                for i in 0..<c.inputs {
                    let a = c.x[r * c.lda + i], w = c.b[i * c.columns + j]
                    acc = fused ? acc.addingProduct(a, w) : acc + a * w
                }
                y[r * c.columns + j] = c.bias[j] + acc
            }
        }
        return y
    }

    static func run(_ kernels: PianoKernelSet, _ c: Case, rows: Range<Int>? = nil) -> [Float] {
        let packed = PackedMatrix(c.b, inputs: c.inputs, columns: c.columns)
        let rr = rows ?? 0..<c.rows
        var y = [Float](repeating: 0, count: c.rows * c.columns)
        for r in rr { for j in 0..<c.columns { y[r * c.columns + j] = c.bias[j] } }
        c.x.withUnsafeBufferPointer { x in
            packed.values.withUnsafeBufferPointer { p in
                y.withUnsafeMutableBufferPointer { yp in
                    kernels.packedProduct(rr.count, x.baseAddress! + rr.lowerBound * c.lda, c.lda, p.baseAddress!, c.inputs,
                                          c.columns, yp.baseAddress! + rr.lowerBound * c.columns, c.columns)
                }
            }
        }
        return y
    }

    func testEveryVariantSumsAsItsContractSays() throws {
        var checked = 0
        for v in PianoKernels.supported {
            let k = PianoKernels.kernels(v)!
            let fused = v != .sse
            var worst = 0.0
            for (n, shape) in Self.shapes.enumerated() {
                let c = Self.makeCase(shape, seed: UInt64(n + 1))
                let ours = Self.run(k, c)
                let ref = Self.reference(c, fused: fused)
                let mismatches = zip(ours, ref).filter { $0.0.bitPattern != $0.1.bitPattern }.count
                XCTAssertEqual(mismatches, 0, "\(v) \(shape): \(mismatches) of \(ours.count) outputs differ from the contract")
                // And against float64, to show the contract is an accurate sum: within the bound of
                // sequential float32 summation, (inputs + 1)·2⁻²⁴·(Σ|x·w| + |bias|).
                for r in 0..<c.rows {
                    for j in 0..<c.columns {
                        var exact = Double(c.bias[j]), magnitude = abs(Double(c.bias[j]))
                        for i in 0..<c.inputs {
                            let p = Double(c.x[r * c.lda + i]) * Double(c.b[i * c.columns + j])
                            exact += p; magnitude += abs(p)
                        }
                        let bound = Double(c.inputs + 1) * 0x1p-24 * magnitude
                        let e = abs(Double(ours[r * c.columns + j]) - exact) / bound
                        worst = max(worst, e)
                    }
                }
                checked += ours.count
            }
            print(String(format: "packedProduct %@: %d shapes bit-identical to the scalar %@ sum; worst error vs float64 %.3f of the summation bound",
                         v.rawValue, Self.shapes.count, fused ? "FMA" : "multiply-add", worst))
            XCTAssertLessThanOrEqual(worst, 1, "\(v): error beyond the float32 summation bound")
        }
        XCTAssertGreaterThan(checked, 0)
    }

    /// A voice's row comes out the same computed alone, in any group, or with all 16 (what lets
    /// the engine skip or split voices without changing a bit).
    func testARowDoesNotDependOnTheOtherRows() throws {
        let k = PianoKernels.active
        for (n, shape) in Self.shapes.enumerated() where shape.0 > 1 {
            let c = Self.makeCase(shape, seed: UInt64(100 + n))
            let all = Self.run(k, c)
            for rows in [0..<1, 1..<c.rows, (c.rows / 2)..<c.rows, (c.rows - 1)..<c.rows] where !rows.isEmpty {
                let part = Self.run(k, c, rows: rows)
                for r in rows {
                    let a = all[(r * c.columns)..<((r + 1) * c.columns)], p = part[(r * c.columns)..<((r + 1) * c.columns)]
                    XCTAssertTrue(zip(a, p).allSatisfy { $0.bitPattern == $1.bitPattern }, "\(shape) row \(r) in rows \(rows)")
                }
            }
        }
        print("packedProduct \(PianoKernels.selected.rawValue): every row bit-identical alone, in part and in the full batch (\(Self.shapes.filter { $0.0 > 1 }.count) shapes of several rows)")
    }

    /// The FMA variants agree to the bit (AVX2 and AVX-512 machines render the same numbers).
    func testFMAVariantsAgreeToTheBit() throws {
        let fma = PianoKernels.supported.filter { $0 != .sse }
        guard fma.count > 1 else {
            print("skipped: this CPU runs \(PianoKernels.supported.map(\.rawValue)); both contracts are checked above")
            throw XCTSkip("fewer than two FMA variants here")
        }
        var outputs = 0
        for (n, shape) in Self.shapes.enumerated() {
            let c = Self.makeCase(shape, seed: UInt64(200 + n))
            let results = fma.map { Self.run(PianoKernels.kernels($0)!, c) }
            for r in results.dropFirst() {
                XCTAssertTrue(zip(results[0], r).allSatisfy { $0.bitPattern == $1.bitPattern }, "\(shape)")
            }
            outputs += results[0].count
        }
        print("packedProduct \(fma.map(\.rawValue).joined(separator: " = ")): \(outputs) outputs bit-identical")
    }

    /// The reverb's accumulation (`spectralAccumulate`), the same kind of contract: per bin, over
    /// the partitions in order from the slot after `head`, re = (−xi·hi) + ((xr·hr) + re) and
    /// im = (xi·hr) + ((xr·hi) + im), each step one FMA (a multiply and an add without FMA);
    /// checked bit for bit against that in scalar code for the models' shapes (65 and 97 bins).
    func testSpectralAccumulateFollowsItsContract() throws {
        for v in PianoKernels.supported {
            let k = PianoKernels.kernels(v)!
            let fused = v != .sse
            for (n, (P, K)) in [(375, 65), (500, 97), (7, 33), (3, 16), (5, 5)].enumerated() {
                var g = SplitMix64(seed: UInt64(300 + n))
                func values(_ c: Int) -> [Float] { (0..<c).map { _ in Float(g.unit() * 2 - 1) } }
                let xr = values(P * K), xi = values(P * K), hr = values(P * K), hi = values(P * K)
                let head = P / 3
                var re = [Float](repeating: 0, count: K), im = re
                k.spectralAccumulate(P, K, head, xr, xi, hr, hi, &re, &im)
                var mismatches = 0
                for b in 0..<K {
                    var r: Float = 0, i: Float = 0
                    for p in 0..<P {
                        let s = (head + p) % P, xo = s * K + b, ho = p * K + b
                        if fused {
                            r = r.addingProduct(xr[xo], hr[ho]).addingProduct(-xi[xo], hi[ho])
                            i = i.addingProduct(xr[xo], hi[ho]).addingProduct(xi[xo], hr[ho])
                        } else {
                            r = -xi[xo] * hi[ho] + (xr[xo] * hr[ho] + r)
                            i = xi[xo] * hr[ho] + (xr[xo] * hi[ho] + i)
                        }
                    }
                    if r.bitPattern != re[b].bitPattern || i.bitPattern != im[b].bitPattern { mismatches += 1 }
                }
                XCTAssertEqual(mismatches, 0, "\(v) P \(P) K \(K)")
            }
            print("spectralAccumulate \(v.rawValue): 5 shapes bit-identical to the scalar \(fused ? "FMA" : "multiply-add") sums")
        }
    }
}
