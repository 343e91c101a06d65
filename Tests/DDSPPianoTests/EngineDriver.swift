import DDSPPiano

/// Drives a fresh engine over timed messages in blocks, as a host would, for the tests.
func renderEngine(_ weights: PianoWeights, options: PianoEngine.Options = PianoEngine.Options(), events: [TimedMessage],
                  seconds: Double, rate: Double, block: Int) throws -> [Float] {
    try renderEngine(PianoModel(weights: weights), options: options, events: events, seconds: seconds, rate: rate, block: block)
}

func renderEngine(_ model: PianoModel, options: PianoEngine.Options = PianoEngine.Options(), events: [TimedMessage],
                  seconds: Double, rate: Double, block: Int) throws -> [Float] {
    let engine = PianoEngine(model: model, options: options)
    try engine.prepare(sampleRate: rate, maxBlockSize: block)
    let total = Int(seconds * rate)
    var out = [Float](repeating: 0, count: total)
    var feed = BlockEventFeed(events: events, sampleRate: rate)
    var blockEvents: [EngineEvent] = []
    var pos = 0
    while pos < total {
        let n = min(block, total - pos)
        feed.take(position: pos, count: n, into: &blockEvents)
        blockEvents.withUnsafeBufferPointer { ev in
            out.withUnsafeMutableBufferPointer { o in
                engine.render(events: ev, into: UnsafeMutableBufferPointer(rebasing: o[pos..<(pos + n)]))
            }
        }
        pos += n
    }
    return out
}
