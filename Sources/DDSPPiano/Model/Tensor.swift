import Foundation

/// A named float32 tensor, row-major ("C order"), as stored in our weight files.
public struct Tensor: Equatable, Sendable {
    public var shape: [Int]
    public var values: [Float]

    public init(shape: [Int], values: [Float]) {
        precondition(shape.reduce(1, *) == values.count, "shape \(shape) does not hold \(values.count) values")
        self.shape = shape
        self.values = values
    }

    public init(shape: [Int], repeating value: Float = 0) {
        self.shape = shape
        self.values = [Float](repeating: value, count: shape.reduce(1, *))
    }

    public var count: Int { values.count }
}
