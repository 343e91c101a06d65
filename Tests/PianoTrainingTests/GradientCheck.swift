import DDSPPiano
import Foundation
import PianoTestKit
import PianoTraining
import XCTest

/// Σ wᵢ·yᵢ in Double: a scalar loss whose gradient w.r.t. y is w.
func weightedSum(_ y: [Float], _ w: [Float]) -> Double {
    precondition(y.count == w.count)
    var s = 0.0
    for i in y.indices { s += Double(y[i]) * Double(w[i]) }
    return s
}

/// Compares an analytic gradient with central finite differences over (up to `samples` of)
/// the entries of one tensor of `model`. The error of an entry is
///   |a − n| / (max(|a|, |n|) + floor·max|a|)
/// (relative, with a floor scaled to the tensor's largest gradient so entries whose gradient is
/// zero up to float32 noise do not dominate). Returns the largest error.
func gradientCheck<M>(_ model: M, _ path: WritableKeyPath<M, [Float]>, analytic: [Float], eps: Float = 1e-2,
                      samples: Int = 24, floor: Double = 1e-3, loss: (M) -> Double) -> Double {
    let values = model[keyPath: path]
    precondition(values.count == analytic.count, "gradient has \(analytic.count) entries for \(values.count) values")
    let scale = analytic.map { Double(abs($0)) }.max() ?? 0
    var indices = Array(values.indices)
    if indices.count > samples {
        // Evenly spread, deterministic.
        indices = (0..<samples).map { $0 * values.count / samples }
    }
    var worst = 0.0
    for i in indices {
        var plus = model, minus = model
        plus[keyPath: path][i] += eps
        minus[keyPath: path][i] -= eps
        // The step actually taken in float32.
        let h = Double(plus[keyPath: path][i]) - Double(minus[keyPath: path][i])
        let numeric = (loss(plus) - loss(minus)) / h
        let a = Double(analytic[i])
        let err = abs(a - numeric) / (max(abs(a), abs(numeric)) + floor * scale + 1e-30)
        worst = max(worst, err)
    }
    return worst
}

/// A holder so the input of a layer can be perturbed like a parameter.
struct WithInput<L> {
    var layer: L
    var input: [Float]
}

/// The derivative along one random ±1 direction over the whole tensor, analytic (g·d) against
/// central differences: the perturbation moves the loss far above float32 noise, so this is the
/// sharper of the two checks. Returns |a − n| / ‖g‖₁ (‖g‖₁ is the largest |g·d| can be: g·d
/// itself can cancel to near 0 for an unlucky direction).
func directionalCheck<M>(_ model: M, _ path: WritableKeyPath<M, [Float]>, analytic: [Float], eps: Float = 1e-2,
                         seed: UInt64 = 99, loss: (M) -> Double) -> Double {
    var rng = SplitMix64(seed: seed)
    let n = model[keyPath: path].count
    let d: [Float] = (0..<n).map { _ in rng.uniform() < 0 ? -1 : 1 }
    var plus = model, minus = model
    for i in 0..<n { plus[keyPath: path][i] += eps * d[i]; minus[keyPath: path][i] -= eps * d[i] }
    let numeric = (loss(plus) - loss(minus)) / (2 * Double(eps))
    var a = 0.0
    for i in 0..<n { a += Double(analytic[i]) * Double(d[i]) }
    let l1 = analytic.reduce(0.0) { $0 + Double(abs($1)) }
    return abs(a - numeric) / max(l1, 1e-30)
}

/// A layer's check as LayerGradientTests makes it: per entry (float32 noise limits it to
/// ~1e-3..1e-2 on small gradients; tolerance 2e-2) and along a random direction over the whole
/// tensor (tolerance 1e-3); both printed.
func checkLayerGradient<M>(_ name: String, _ model: M, _ path: WritableKeyPath<M, [Float]>, _ analytic: [Float], samples: Int = 24,
                           eps: Float = 1e-2, loss: (M) -> Double, file: StaticString = #filePath, line: UInt = #line) {
    let entry = gradientCheck(model, path, analytic: analytic, eps: eps, samples: samples, loss: loss)
    let directional = directionalCheck(model, path, analytic: analytic, eps: eps, loss: loss)
    print(String(format: "gradient check %-42@ entries max rel err %.2e, directional %.2e", name as NSString, entry, directional))
    XCTAssertLessThan(entry, 2e-2, name, file: file, line: line)
    XCTAssertLessThan(directional, 1e-3, name, file: file, line: line)
}
