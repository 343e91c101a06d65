import CLV2
import DDSPPiano
import Foundation
import PianoIO
import PianoLive

/// One plugin instance: the daemon's real-time core (AudioCore: events → engine, the release
/// policy, piano switches without clicks) driven by the host's `run()` with the events of an
/// atom sequence at their exact frames. Everything that allocates or reads files happens in
/// `instantiate` (weights, engine, buffers) and `activate` (warm-up); `run()` only renders.
final class PianoPlugin {
    static let uri = "urn:ddsp-piano:piano"

    /// Port indices, as `ddsp-piano.ttl` numbers them.
    enum Port: UInt32 {
        case midiIn = 0, outL, outR, piano, gain, velocityCurve, latency
    }

    /// The velocity curves of the `velocity_curve` control, in its order: the daemon's names
    /// (`DaemonRules.velocityCurveNames`: linear, soft, hard).
    static let curves = DaemonRules.velocityCurveNames

    let core = AudioCore()
    let engine: PianoEngine
    let model: PianoModel
    let weightsURL: URL
    let sampleRate: Double
    /// The largest block the engine is prepared for; longer `run()`s render in pieces (AudioCore).
    let maxBlock: Int
    let midiEventURID: LV2_URID
    /// `curves.count` velocity tables of 128 entries (note-on velocity → played velocity).
    private let velocityTables: UnsafeMutablePointer<UInt8>
    private let scratch: UnsafeMutablePointer<Float>

    // Ports, as the host connected them (nil: not connected).
    var midiIn: UnsafePointer<LV2_Atom_Sequence>?
    var outL: UnsafeMutablePointer<Float>?
    var outR: UnsafeMutablePointer<Float>?
    var pianoPort: UnsafePointer<Float>?
    var gainPort: UnsafePointer<Float>?
    var curvePort: UnsafePointer<Float>?
    var latencyPort: UnsafeMutablePointer<Float>?

    private var appliedPiano: Int
    private var appliedGain: Float = 0
    private var position = 0

    /// Everything a block needs; fails with a one-line reason (the host shows or logs it).
    init(sampleRate: Double, bundlePath: String, features: Features) throws {
        guard let map = features.map else {
            throw PluginError("the host gives no urid:map (every LV2 host should)")
        }
        midiEventURID = map.map(map.handle, "http://lv2plug.in/ns/ext/midi#MidiEvent")
        self.sampleRate = sampleRate
        // The weights: $DDSP_PIANO_WEIGHTS, the installed ones, then those bundled with this
        // installation (PREFIX/share/ddsp-piano beside PREFIX/lib/lv2, a weights/ folder in the
        // bundle or above it: a checkout's build), as the programs look.
        let bundle = URL(fileURLWithPath: bundlePath, isDirectory: true).standardizedFileURL
        let prefixShare = bundle.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("share/ddsp-piano/weights", isDirectory: true)
        let store = WeightStore(executableURL: bundle.appendingPathComponent("ddsp-piano.so"),
                                systemDirectories: [prefixShare] + WeightStore.defaultSystemDirectories)
        let loaded = try store.loadModel()
        model = loaded.model
        weightsURL = loaded.url
        var options = PianoEngine.Options()
        options.instrument = min(UpstreamDefaults.piano, model.instruments.count - 1)
        options.noise = true
        appliedPiano = options.instrument
        engine = PianoEngine(model: model, options: options)
        // The host's largest block when it says (buf-size), else 4096; a longer run() goes in
        // pieces, so no host block size is ever refused.
        maxBlock = min(max(features.maxBlockLength ?? 4096, 16), 8192)
        try engine.prepare(sampleRate: sampleRate, maxBlockSize: maxBlock)
        core.install(engine: engine)
        core.install(router: MIDIRouter(instruments: model.instruments.count))
        velocityTables = .allocate(capacity: Self.curves.count * 128)
        for (c, name) in Self.curves.enumerated() {
            let table = MIDIRouter(velocityGamma: MIDIRouter.gamma(forCurve: name) ?? 1, instruments: 1).velocityTable
            for v in 0..<128 { velocityTables[c * 128 + v] = table[v] }
        }
        scratch = .allocate(capacity: 2 * maxBlock)
        scratch.initialize(repeating: 0, count: 2 * maxBlock)
    }

    deinit {
        velocityTables.deallocate()
        scratch.deallocate()
    }

    /// Before the first run (and after a deactivate): the piano the control asks for, without
    /// a glide, then the whole real-time path once (AudioCore.warmUp: every piano, all voices,
    /// pedal, panic), ending in silence at the engine's sample 0.
    func activate() {
        if let p = pianoPort {
            let i = clampedPiano(p.pointee)
            engine.selectInstrument(i)
            appliedPiano = i
        }
        engine.reset()
        core.warmUp(engine: engine, frames: maxBlock) {
            cycle(frames: maxBlock, left: scratch, right: scratch + maxBlock, midi: nil)
        }
        position = 0
    }

    private func clampedPiano(_ value: Float) -> Int {
        guard value.isFinite else { return appliedPiano }
        return min(max(Int(value.rounded()), 0), model.instruments.count - 1)
    }

    /// The host's block: controls, then the events at their frames, rendered into the outputs.
    @inline(__always)
    func run(_ frames: Int) {
        guard frames > 0, let outL else { return }
        if let p = pianoPort {
            let i = clampedPiano(p.pointee)
            // From the audio thread to itself: the queue's one producer and one consumer.
            if i != appliedPiano, core.commands.push(.instrument(i)) { appliedPiano = i }
        }
        if let g = gainPort, g.pointee.isFinite {
            let db = min(max(g.pointee, Float(DaemonRules.gainDB.lowerBound)), Float(DaemonRules.gainDB.upperBound))
            if db != appliedGain {
                appliedGain = db
                core.gainBits.store(powf(10, db / 20).bitPattern, ordering: .relaxed)
            }
        }
        cycle(frames: frames, left: outL, right: outR, midi: midiIn)
        latencyPort?.pointee = Float(core.latencySamples)
    }

    @inline(__always)
    private func cycle(frames: Int, left: UnsafeMutablePointer<Float>, right: UnsafeMutablePointer<Float>?,
                       midi: UnsafePointer<LV2_Atom_Sequence>?) {
        var curve = 0
        if let c = curvePort, c.pointee.isFinite { curve = min(max(Int(c.pointee.rounded()), 0), Self.curves.count - 1) }
        let table = velocityTables + 128 * curve
        let midiType = midiEventURID
        core.process(frames: frames, cycleStart: 0, period: 0, position: position, left: left, right: right) { core in
            guard let midi else { return }
            // The sequence: its header (atom + body: 16 bytes), then events of a 16-byte header
            // (frames: Int64, body atom size and type) and the body, each padded to 8 bytes.
            let base = UnsafeRawPointer(midi)
            let end = 8 + Int(midi.pointee.atom.size)
            var at = 16
            while at + 16 <= end {
                let time = base.loadUnaligned(fromByteOffset: at, as: Int64.self)
                let size = Int(base.loadUnaligned(fromByteOffset: at + 8, as: UInt32.self))
                let type = base.loadUnaligned(fromByteOffset: at + 12, as: UInt32.self)
                if type == midiType && size >= 2 && size <= 3 {
                    let bytes = base + at + 16
                    let status = bytes.load(as: UInt8.self)
                    let d1 = bytes.load(fromByteOffset: 1, as: UInt8.self)
                    var d2: UInt8 = size == 3 ? bytes.load(fromByteOffset: 2, as: UInt8.self) : 0
                    if status & 0xF0 == 0x90 && d2 > 0 && d2 < 0x80 { d2 = max(1, table[Int(d2)]) }
                    core.addRaw(offset: Int(clamping: time), status: status, data1: d1, data2: d2)
                }
                at += 16 + ((size + 7) & ~7)
            }
        }
        position &+= frames
    }
}

/// What the host offers at instantiate, read from its feature list.
struct Features {
    var map: LV2_URID_Map?
    var maxBlockLength: Int?

    init(_ list: UnsafePointer<UnsafePointer<LV2_Feature>?>?) {
        var options: UnsafePointer<LV2_Options_Option>?
        var i = 0
        while let list, let f = list[i] {
            let uri = String(cString: f.pointee.URI)
            if uri == "http://lv2plug.in/ns/ext/urid#map", let data = f.pointee.data {
                map = data.assumingMemoryBound(to: LV2_URID_Map.self).pointee
            } else if uri == "http://lv2plug.in/ns/ext/options#options", let data = f.pointee.data {
                options = UnsafePointer(data.assumingMemoryBound(to: LV2_Options_Option.self))
            }
            i += 1
        }
        guard let map, let options else { return }
        let maxKey = map.map(map.handle, "http://lv2plug.in/ns/ext/buf-size#maxBlockLength")
        let nominalKey = map.map(map.handle, "http://lv2plug.in/ns/ext/buf-size#nominalBlockLength")
        let intType = map.map(map.handle, "http://lv2plug.in/ns/ext/atom#Int")
        var o = options
        var nominal: Int?
        while o.pointee.key != 0 || o.pointee.value != nil {
            if o.pointee.type == intType, o.pointee.size == 4, let v = o.pointee.value {
                let value = Int(v.load(as: Int32.self))
                if o.pointee.key == maxKey && value > 0 { maxBlockLength = value }
                if o.pointee.key == nominalKey && value > 0 { nominal = value }
            }
            o += 1
        }
        if maxBlockLength == nil { maxBlockLength = nominal }
    }
}

struct PluginError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
