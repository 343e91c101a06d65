/// Which voices' monophonic network rows can be kept from the last frame, bit for bit (issue 15,
/// item 2). A row's step is a function of its input row and its recurrent state only (the
/// products are PianoKernels' packedProduct: rows are independent). So when a row's input is
/// the same as last frame's, bit for bit, and its last computed step left its state unchanged
/// (a bitwise fixed point), this frame's step would give the same outputs and the same state:
/// they are kept instead. Only exact equality counts; nothing is approximated.
///
/// Dormant rows (opt-in, `dormantAfter`) are the one approximation: a voice whose own inputs
/// (the first three of its row: extended pitch, pitch, velocity) have been 0 for `dormantAfter`
/// frames replays the outputs and states of its last two computed frames, alternately, until its
/// next note. A silent voice's GRU settles towards a cycle of two frames (docs/PERFORMANCE.md);
/// what the replay ignores is how far that cycle still moves, and the context, which a silent
/// voice's row also reads. Its next note starts from the replayed state.
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
    /// This frame: the row is kept (not computed): exactly, or replayed (`dormant`).
    public private(set) var kept: [Bool]
    /// Rows kept and computed since the last reset (for `bench` and the tests); `dormantCount`
    /// of the kept ones were replayed.
    public private(set) var keptCount = 0, computedCount = 0, dormantCount = 0
    /// Frames of silence after which a row is replayed instead of computed; nil: never (exact).
    public var dormantAfter: Int? = nil
    /// This frame: the row is replayed from its last two computed frames.
    public private(set) var dormant: [Bool]
    private var silentFrames: [Int]  // [voices]: frames with the row's own inputs all 0
    private var replayState: [Float] // [2, voices, stateWidth]: by frame parity
    private var replayOutput: [Float] // [2, voices, outputWidth]
    public let outputWidth: Int

    /// `outputWidth`: the row of the network's output a dormant row replays (with its state).
    public init(voices: Int, inputWidth: Int, stateWidth: Int, outputWidth: Int) {
        self.voices = voices; self.inputWidth = inputWidth; self.stateWidth = stateWidth; self.outputWidth = outputWidth
        lastInput = [Float](repeating: 0, count: voices * inputWidth)
        savedState = [Float](repeating: 0, count: voices * stateWidth)
        stable = [Bool](repeating: false, count: voices)
        kept = [Bool](repeating: false, count: voices)
        dormant = kept
        silentFrames = [Int](repeating: 0, count: voices)
        replayState = [Float](repeating: 0, count: 2 * voices * stateWidth)
        replayOutput = [Float](repeating: 0, count: 2 * voices * outputWidth)
    }

    public mutating func reset() {
        for v in 0..<voices { stable[v] = false; kept[v] = false; dormant[v] = false; silentFrames[v] = 0 }
        keptCount = 0; computedCount = 0; dormantCount = 0
    }

    /// Decides this frame's rows: `input` is [voices, inputWidth] (row v at v · inputWidth);
    /// `sharedSame`: whatever else every row reads (v2's context) is unchanged too. Remembers
    /// the inputs for the next frame.
    public mutating func plan(input: UnsafePointer<Float>, rows: Range<Int>, sharedSame: Bool) {
        let w = inputWidth
        lastInput.withUnsafeMutableBufferPointer { last in
            for v in rows {
                let row = input + v * w, old = last.baseAddress! + v * w
                silentFrames[v] = row[0] == 0 && row[1] == 0 && row[2] == 0 ? silentFrames[v] + 1 : 0
                // Replayed once the last two computed frames (silent frames after and after + 1) are stored.
                dormant[v] = dormantAfter.map { silentFrames[v] >= $0 + 2 } ?? false
                if dormant[v] { kept[v] = true; keptCount += 1; dormantCount += 1; continue }
                var same = enabled && sharedSame && stable[v]
                if same {
                    for i in 0..<w where row[i].bitPattern != old[i].bitPattern { same = false; break }
                }
                kept[v] = same
                if same { keptCount += 1 } else { computedCount += 1; old.update(from: row, count: w) }
            }
        }
    }

    /// Dormant rows of `rows`: this frame's state and output from the frame two before (the
    /// replay), into `state` [voices, stateWidth] and `output` (row v at v · outputStride).
    public func replay(state: UnsafeMutablePointer<Float>, output: UnsafeMutablePointer<Float>, outputStride: Int, rows: Range<Int>) {
        let s = stateWidth, o = outputWidth
        replayState.withUnsafeBufferPointer { rs in
        replayOutput.withUnsafeBufferPointer { ro in
            for v in rows where dormant[v] {
                let slot = silentFrames[v] & 1
                (state + v * s).update(from: rs.baseAddress! + (slot * voices + v) * s, count: s)
                (output + v * outputStride).update(from: ro.baseAddress! + (slot * voices + v) * o, count: o)
            }
        }}
    }

    /// After the step: rows in their last two frames before dormancy store their state and
    /// output for the replay.
    public mutating func record(state: UnsafePointer<Float>, output: UnsafePointer<Float>, outputStride: Int, rows: Range<Int>) {
        guard let after = dormantAfter else { return }
        let s = stateWidth, o = outputWidth
        replayState.withUnsafeMutableBufferPointer { rs in
        replayOutput.withUnsafeMutableBufferPointer { ro in
            for v in rows where !dormant[v] && (silentFrames[v] == after || silentFrames[v] == after + 1) {
                let slot = silentFrames[v] & 1
                (rs.baseAddress! + (slot * voices + v) * s).update(from: state + v * s, count: s)
                (ro.baseAddress! + (slot * voices + v) * o).update(from: output + v * outputStride, count: o)
            }
        }}
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
