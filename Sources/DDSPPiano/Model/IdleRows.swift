/// Which voices' monophonic network rows can be kept from the last frame, bit for bit (issue 15,
/// item 2). A row's step is a function of its input row and its recurrent state only (the
/// products are PianoKernels' packedProduct: rows are independent). So when a row's input is
/// the same as last frame's, bit for bit, and its last computed step left its state unchanged
/// (a bitwise fixed point), this frame's step would give the same outputs and the same state:
/// they are kept instead. Only exact equality counts; nothing is approximated.
///
/// How often it pays was measured (docs/PERFORMANCE.md, IdleVoiceTests): while a chord is held
/// the unused voices of the v2 reference checkpoint sit at fixed points; upstream dafx22's never
/// do. The checks cost a copy and a comparison of each row's input and state per frame.
public struct IdleRows: Sendable {
    public let voices: Int, inputWidth: Int, stateWidth: Int
    /// Off: every row is computed every frame (tests prove the two agree to the bit).
    public var enabled = true
    private var lastInput: [Float]   // [voices, inputWidth]
    private var savedState: [Float]  // [voices, stateWidth]: before this frame's step
    private var stable: [Bool]       // the row's last step left its state unchanged
    /// This frame: the row is kept (not computed).
    public private(set) var kept: [Bool]
    /// Rows kept and computed since the last reset (for `bench` and the tests).
    public private(set) var keptCount = 0, computedCount = 0

    public init(voices: Int, inputWidth: Int, stateWidth: Int) {
        self.voices = voices; self.inputWidth = inputWidth; self.stateWidth = stateWidth
        lastInput = [Float](repeating: 0, count: voices * inputWidth)
        savedState = [Float](repeating: 0, count: voices * stateWidth)
        stable = [Bool](repeating: false, count: voices)
        kept = [Bool](repeating: false, count: voices)
    }

    public mutating func reset() {
        for v in 0..<voices { stable[v] = false; kept[v] = false }
        keptCount = 0; computedCount = 0
    }

    /// Decides this frame's rows: `input` is [voices, inputWidth] (row v at v · inputWidth);
    /// `sharedSame`: whatever else every row reads (v2's context) is unchanged too. Remembers
    /// the inputs for the next frame.
    public mutating func plan(input: UnsafePointer<Float>, rows: Range<Int>, sharedSame: Bool) {
        let w = inputWidth
        lastInput.withUnsafeMutableBufferPointer { last in
            for v in rows {
                let row = input + v * w, old = last.baseAddress! + v * w
                var same = enabled && sharedSame && stable[v]
                if same {
                    for i in 0..<w where row[i].bitPattern != old[i].bitPattern { same = false; break }
                }
                kept[v] = same
                if same { keptCount += 1 } else { computedCount += 1; old.update(from: row, count: w) }
            }
        }
    }

    /// Calls `body` with each maximal run of rows in `rows` whose flag is false (a copy of
    /// `kept`, taken by the caller: the body may then mutate the network that holds this).
    public static func runs(_ skip: [Bool], in rows: Range<Int>, _ body: (Range<Int>) -> Void) {
        var v = rows.lowerBound
        while v < rows.upperBound {
            if skip[v] { v += 1; continue }
            let start = v
            while v < rows.upperBound && !skip[v] { v += 1 }
            body(start..<v)
        }
    }

    /// Before the step: the computed rows' states.
    public mutating func save(state: UnsafePointer<Float>, rows: Range<Int>) {
        let s = stateWidth
        savedState.withUnsafeMutableBufferPointer { saved in
            for v in rows where !kept[v] { (saved.baseAddress! + v * s).update(from: state + v * s, count: s) }
        }
    }

    /// After the step: which computed rows' states did not move.
    public mutating func settle(state: UnsafePointer<Float>, rows: Range<Int>) {
        let s = stateWidth
        savedState.withUnsafeBufferPointer { saved in
            for v in rows where !kept[v] {
                let a = state + v * s, b = saved.baseAddress! + v * s
                var same = true
                for i in 0..<s where a[i].bitPattern != b[i].bitPattern { same = false; break }
                stable[v] = same
            }
        }
    }
}
