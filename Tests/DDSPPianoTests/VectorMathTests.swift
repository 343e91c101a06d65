import DDSPPiano
import Foundation
import XCTest

/// The vectorised functions against Double references, over dense grids of their ranges.
final class VectorMathTests: XCTestCase {
    typealias V = SIMD8<Float>

    /// Max relative error of `f` against `reference` on `count` points spread over [lo, hi].
    func maxError(_ lo: Double, _ hi: Double, count: Int = 200_000, absoluteBelow floor: Double = 0,
                  _ f: (V) -> V, _ reference: (Double) -> Double) -> Double {
        var worst = 0.0
        var i = 0
        while i < count {
            var v = V()
            for l in 0..<8 { v[l] = Float(lo + (hi - lo) * Double(min(i + l, count - 1)) / Double(count - 1)) }
            let r = f(v)
            for l in 0..<8 {
                let exact = reference(Double(v[l]))
                let e = abs(Double(r[l]) - exact) / max(abs(exact), floor)
                worst = max(worst, e)
            }
            i += 8
        }
        return worst
    }

    func testExp() {
        XCTAssertLessThan(maxError(-87, 88, VectorMath.vexp, Foundation.exp), 1e-7)
        XCTAssertLessThan(maxError(-1, 1, VectorMath.vexp, Foundation.exp), 1e-7)
    }

    func testLog() {
        XCTAssertLessThan(maxError(1e-30, 1e30, count: 100_000, VectorMath.vlog, Foundation.log), 1e-7)
        XCTAssertLessThan(maxError(1e-6, 10, absoluteBelow: 0.4, VectorMath.vlog, Foundation.log), 1e-7)
        XCTAssertLessThan(maxError(0.5, 2, absoluteBelow: 0.4, VectorMath.vlog, Foundation.log), 1e-7)
    }

    func testSigmoid() {
        XCTAssertLessThan(maxError(-80, 80, VectorMath.vsigmoid, { 1 / (1 + Foundation.exp(-$0)) }), 1.5e-7)
        XCTAssertLessThan(maxError(-4, 4, VectorMath.vsigmoid, { 1 / (1 + Foundation.exp(-$0)) }), 1.5e-7)
    }

    func testTanh() {
        XCTAssertLessThan(maxError(-20, 20, VectorMath.vtanh, Foundation.tanh), 1.5e-7)
        XCTAssertLessThan(maxError(-1, 1, VectorMath.vtanh, Foundation.tanh), 1.5e-7)
        XCTAssertLessThan(maxError(-1e-3, 1e-3, VectorMath.vtanh, Foundation.tanh), 1.5e-7)
    }

    func testExpSigmoid() {
        let ln10 = Foundation.log(10.0)
        let reference = { (x: Double) in 2 * Foundation.pow(1 / (1 + Foundation.exp(-x)), ln10) + 1e-7 }
        XCTAssertLessThan(maxError(-15, 15, VectorMath.vexpSigmoid, reference), 1.5e-6)
        XCTAssertLessThan(maxError(-1, 1, VectorMath.vexpSigmoid, reference), 1.5e-6)
        // Far tails: only the 1e-7 floor (below) or 2 (above) remain.
        XCTAssertLessThan(maxError(-80, 80, VectorMath.vexpSigmoid, reference), 1.5e-6)
    }

    /// Absolute error, as the oscillators see it: phases up to a few thousand radians.
    func testCos() {
        XCTAssertLessThan(maxError(-7, 7, absoluteBelow: 1, VectorMath.vcos, Foundation.cos), 1e-6)
        // Far out, the float32 rounding of x/2π dominates (relative 6e-8 of x).
        XCTAssertLessThan(maxError(0, 4000, count: 1_000_000, absoluteBelow: 1, VectorMath.vcos, Foundation.cos), 4e-4)
    }

    /// The GRU's gate functions must equal libm's bit for bit (the networks are chaotic on some
    /// inputs): every 1001st float bit pattern with |x| < 60, both signs.
    func testLibmPortsAreBitExact() {
        var badExp = 0, badTanh = 0, count = 0
        VectorMath.expTable.withUnsafeBufferPointer { table in
            for sign: UInt32 in [0, 0x8000_0000] {
                var b: UInt32 = 0
                while b < 0x4270_0000 {
                    var v = V()
                    for l in 0..<8 { v[l] = Float(bitPattern: (b &+ UInt32(l) &* 125) | sign) }
                    let e = VectorMath.expfLibm(v, table: table.baseAddress!), t = VectorMath.tanhfLibm(v)
                    for l in 0..<8 {
                        if expf(v[l]).bitPattern != e[l].bitPattern { badExp += 1 }
                        if tanhf(v[l]).bitPattern != t[l].bitPattern { badTanh += 1 }
                    }
                    count += 8
                    b &+= 1001
                }
            }
            // Special values.
            let s = V(0, -0.0, .infinity, -.infinity, .nan, 100, -120, 1e-30)
            let e = VectorMath.expfLibm(s, table: table.baseAddress!), t = VectorMath.tanhfLibm(s)
            for l in 0..<8 {
                XCTAssertTrue(e[l].bitPattern == expf(s[l]).bitPattern || (e[l].isNaN && s[l].isNaN), "expf(\(s[l]))")
                XCTAssertTrue(t[l].bitPattern == tanhf(s[l]).bitPattern || (t[l].isNaN && s[l].isNaN) || s[l].isInfinite, "tanhf(\(s[l]))")
            }
        }
        XCTAssertGreaterThan(count, 17_000_000)
        XCTAssertEqual(badExp, 0)
        XCTAssertEqual(badTanh, 0)
    }
}
