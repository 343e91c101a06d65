import Atomics
import CLV2
import DDSPPiano
import Foundation
import PianoIO
import PianoLive

/// One plugin instance: the daemon's real-time core (AudioCore: events → engine, the release
/// policy, piano switches without clicks) driven by the host's `run()` with the events of an
/// atom sequence at their exact frames. Everything that allocates or reads files happens in
/// `instantiate` (weights, engine, buffers), `activate` (warm-up), the worker (another weight
/// file, garbage) and state restore; `run()` only renders, and schedules work.
///
/// Threads: the host's audio thread runs `run()`; its worker thread (`work`) and the
/// instantiation-class calls (`activate`, `restore`) are the control side, which builds
/// engines and hands them to the audio side through AudioCore's queues.
final class PianoPlugin {
    static let uri = "urn:ddsp-piano:piano"
    /// The weight-file parameter (patch:writable, state key): an atom:Path.
    static let weightsKey = "urn:ddsp-piano:piano#weights"
    /// The state key of the piano playing (a program change may have moved it off the control).
    static let pianoKey = "urn:ddsp-piano:piano#piano"

    /// Port indices, as `ddsp-piano.ttl` numbers them.
    enum Port: UInt32 {
        case midiIn = 0, outL, outR, piano, gain, velocityCurve, latency, width, a4, transpose
    }

    /// The velocity curves of the `velocity_curve` control, in its order: the daemon's names
    /// (`DaemonRules.velocityCurveNames`: linear, soft, hard).
    static let curves = DaemonRules.velocityCurveNames

    let core = AudioCore()
    let sampleRate: Double
    let uris: URIs
    let schedule: LV2_Worker_Schedule?
    // Control side: the engine made last and its weight file.
    private(set) var engine: PianoEngine
    private(set) var model: PianoModel
    private(set) var weightsPath: String
    /// The pianos of the engine handed over last (the audio side clamps the control with it).
    private let instrumentCount = ManagedAtomic<Int>(1)
    /// A piano from restored state, for the next activate (nil: the control's).
    private var restoredPiano: Int?
    /// Worker messages are built here on the audio thread (preallocated; the host copies them).
    private let message: UnsafeMutableRawPointer
    static let messageCapacity = 4096
    private var garbageScheduled = false
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
    var widthPort: UnsafePointer<Float>?
    var a4Port: UnsafePointer<Float>?
    var transposePort: UnsafePointer<Float>?

    private var appliedPiano: Int
    private var appliedGain: Float = 0
    private var position = 0

    /// Everything a block needs; fails with a one-line reason (the host shows or logs it).
    init(sampleRate: Double, bundlePath: String, features: Features) throws {
        guard let map = features.map else {
            throw PluginError("the host gives no urid:map (every LV2 host should)")
        }
        midiEventURID = map.map(map.handle, "http://lv2plug.in/ns/ext/midi#MidiEvent")
        uris = URIs(map)
        schedule = features.schedule
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
        weightsPath = loaded.url.path
        // The host's largest block when it says (buf-size), else 4096; a longer run() goes in
        // pieces, so no host block size is ever refused.
        maxBlock = min(max(features.maxBlockLength ?? 4096, 16), 8192)
        appliedPiano = min(UpstreamDefaults.piano, model.instruments.count - 1)
        engine = try Self.makeEngine(model, piano: appliedPiano, sampleRate: sampleRate, maxBlock: maxBlock)
        instrumentCount.store(model.instruments.count, ordering: .relaxed)
        core.install(engine: engine)
        core.install(router: MIDIRouter(instruments: model.instruments.count))
        message = .allocate(byteCount: Self.messageCapacity, alignment: 8)
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
        message.deallocate()
    }

    static func makeEngine(_ model: PianoModel, piano: Int, sampleRate: Double, maxBlock: Int) throws -> PianoEngine {
        var options = PianoEngine.Options()
        options.instrument = min(max(piano, 0), model.instruments.count - 1)
        options.noise = true
        options.stereo = true
        let engine = PianoEngine(model: model, options: options)
        try engine.prepare(sampleRate: sampleRate, maxBlockSize: maxBlock)
        return engine
    }

    /// Control side (worker, restore): another weight file, playing `piano` (nil: the piano
    /// playing now, or the last of the file's), handed to the audio thread, which takes it at
    /// its next block. Reading and building happen here; a bad file changes nothing.
    func load(weights path: String, piano: Int? = nil) throws {
        let store = WeightStore(environment: [:], executableURL: nil, systemDirectories: [])
        let model = try store.loadModel(explicit: path).model
        let playing = piano ?? core.stats.instrument.load(ordering: .relaxed)
        let engine = try Self.makeEngine(model, piano: playing, sampleRate: sampleRate, maxBlock: maxBlock)
        engine.a4 = Float(bitPattern: core.a4Bits.load(ordering: .relaxed))   // its silent frames at the tuning it plays
        engine.reset()
        self.model = model
        self.engine = engine
        weightsPath = path
        instrumentCount.store(model.instruments.count, ordering: .relaxed)
        core.install(router: MIDIRouter(instruments: model.instruments.count))
        core.install(engine: engine)
    }

    /// Before the first run (and after a deactivate): the piano the control asks for, without
    /// a glide, then the whole real-time path once (AudioCore.warmUp: every piano, all voices,
    /// pedal, panic), ending in silence at the engine's sample 0.
    func activate() {
        core.collectGarbage()
        let engine = self.engine
        if let p = pianoPort { lastPianoControl = p.pointee }
        if let i = restoredPiano ?? pianoPort.map({ clampedPiano($0.pointee) }) {
            engine.selectInstrument(min(max(i, 0), model.instruments.count - 1))
            appliedPiano = i
        }
        restoredPiano = nil
        readLiveControls()
        engine.a4 = Float(bitPattern: core.a4Bits.load(ordering: .relaxed))
        engine.reset()
        core.warmUp(engine: engine, frames: maxBlock) {
            cycle(frames: maxBlock, left: scratch, right: scratch + maxBlock, midi: nil)
        }
        position = 0
    }

    private func clampedPiano(_ value: Float) -> Int {
        guard value.isFinite else { return appliedPiano }
        return min(max(Int(value.rounded()), 0), instrumentCount.load(ordering: .relaxed) - 1)
    }

    /// The control's value last seen: a change of the control switches the piano, so a program
    /// change or restored state is not undone by a control that did not move.
    private var lastPianoControl: Float = .nan

    /// The host's block: controls, then the events at their frames, rendered into the outputs.
    @inline(__always)
    func run(_ frames: Int) {
        guard frames > 0, let outL else { return }
        if let p = pianoPort, p.pointee != lastPianoControl {
            let i = clampedPiano(p.pointee)
            // From the audio thread to itself: the queue's one producer and one consumer.
            if core.commands.push(.instrument(i)) { appliedPiano = i; lastPianoControl = p.pointee }
        }
        if let g = gainPort, g.pointee.isFinite {
            let db = min(max(g.pointee, Float(DaemonRules.gainDB.lowerBound)), Float(DaemonRules.gainDB.upperBound))
            if db != appliedGain {
                appliedGain = db
                core.gainBits.store(powf(10, db / 20).bitPattern, ordering: .relaxed)
            }
        }
        readLiveControls()
        cycle(frames: frames, left: outL, right: outR, midi: midiIn)
        latencyPort?.pointee = Float(core.latencySamples)
        // An engine the audio thread let go of is freed by the worker, never here.
        if core.hasGarbage && !garbageScheduled, let schedule {
            message.storeBytes(of: WorkKind.collect.rawValue, as: UInt32.self)
            garbageScheduled = schedule.schedule_work(schedule.handle, 4, message) == LV2_WORKER_SUCCESS
        }
    }

    /// Width, tuning, transposition into the core, which hands them to the engine at every cycle
    /// (width and the controller gain glide; a transposition applies to notes as they start).
    /// Also before the warm-up, which ends in a reset that runs the engine's silent frames at
    /// the tuning it will play (so the plugin equals `render --live --a4`).
    @inline(__always)
    private func readLiveControls() {
        if let w = widthPort, w.pointee.isFinite {
            core.widthBits.store(min(max(w.pointee, StereoImage.widthRange.lowerBound), StereoImage.widthRange.upperBound).bitPattern,
                                 ordering: .relaxed)
        }
        if let a = a4Port, a.pointee.isFinite {
            core.a4Bits.store(min(max(a.pointee, Tuning.a4Range.lowerBound), Tuning.a4Range.upperBound).bitPattern, ordering: .relaxed)
        }
        if let t = transposePort, t.pointee.isFinite {
            core.transpose.store(min(max(Int(t.pointee.rounded()), Tuning.transposeRange.lowerBound), Tuning.transposeRange.upperBound),
                                 ordering: .relaxed)
        }
    }

    /// What a worker message asks (its first 4 bytes).
    enum WorkKind: UInt32 { case collect = 1, load = 2 }

    /// Worker thread.
    func work(_ size: Int, _ data: UnsafeRawPointer, respond: () -> Void) {
        guard size >= 4, let kind = WorkKind(rawValue: data.loadUnaligned(as: UInt32.self)) else { return }
        switch kind {
        case .collect:
            core.collectGarbage()
            respond()
        case .load:
            let path = String(decoding: UnsafeRawBufferPointer(start: data + 4, count: size - 4), as: UTF8.self)
            do { try load(weights: path) } catch {
                FileHandle.standardError.write(Data("ddsp-piano.lv2: \(error) (keeping \(weightsPath))\n".utf8))
            }
            core.collectGarbage()
        }
    }

    /// Audio thread, after `work` responded.
    func workResponse() { garbageScheduled = false }

    /// Audio thread: a patch:Set of the weights parameter (a path) → the worker loads it.
    @inline(__always)
    private func patchSet(_ body: UnsafeRawPointer, size: Int) {
        guard let schedule, size >= 8, body.loadUnaligned(fromByteOffset: 4, as: UInt32.self) == uris.patchSet else { return }
        var property: UInt32 = 0
        var path: UnsafeRawPointer?
        var pathSize = 0
        var at = 8
        while at + 16 <= size {
            let key = body.loadUnaligned(fromByteOffset: at, as: UInt32.self)
            let valueSize = Int(body.loadUnaligned(fromByteOffset: at + 8, as: UInt32.self))
            let valueType = body.loadUnaligned(fromByteOffset: at + 12, as: UInt32.self)
            guard at + 16 + valueSize <= size else { return }
            if key == uris.patchProperty && valueType == uris.atomURID && valueSize >= 4 {
                property = body.loadUnaligned(fromByteOffset: at + 16, as: UInt32.self)
            } else if key == uris.patchValue && valueType == uris.atomPath {
                path = body + at + 16
                pathSize = valueSize
            }
            at += 16 + ((valueSize + 7) & ~7)
        }
        guard property == uris.weights, let path else { return }
        var n = pathSize
        while n > 0 && path.load(fromByteOffset: n - 1, as: UInt8.self) == 0 { n -= 1 }   // the terminating NUL
        guard n > 0 && n + 4 <= Self.messageCapacity else { return }
        message.storeBytes(of: WorkKind.load.rawValue, as: UInt32.self)
        (message + 4).copyMemory(from: path, byteCount: n)
        _ = schedule.schedule_work(schedule.handle, UInt32(n + 4), message)
    }

    /// State: the weight file and the piano playing.
    func save(_ store: LV2_State_Store_Function, _ handle: LV2_State_Handle?) -> LV2_State_Status {
        let flags = LV2_STATE_IS_POD.rawValue | LV2_STATE_IS_PORTABLE.rawValue
        _ = weightsPath.withCString { p in
            store(handle, uris.weights, p, strlen(p) + 1, uris.atomPath, flags)
        }
        var piano = Int32(core.stats.instrument.load(ordering: .relaxed))
        _ = store(handle, uris.piano, &piano, 4, uris.atomInt, flags)
        return LV2_STATE_SUCCESS
    }

    /// Restore (not concurrent with run()): the weight file (when another) and the piano.
    func restore(_ retrieve: LV2_State_Retrieve_Function, _ handle: LV2_State_Handle?) -> LV2_State_Status {
        var size = 0, type: UInt32 = 0, flags: UInt32 = 0
        var piano: Int?
        if let p = retrieve(handle, uris.piano, &size, &type, &flags), type == uris.atomInt, size == 4 {
            piano = Int(p.loadUnaligned(as: Int32.self))
        }
        if let p = retrieve(handle, uris.weights, &size, &type, &flags), type == uris.atomPath, size > 0 {
            let path = String(cString: p.assumingMemoryBound(to: CChar.self))
            if !path.isEmpty && path != weightsPath {
                do { try load(weights: path, piano: piano) } catch {
                    FileHandle.standardError.write(Data("ddsp-piano.lv2: \(error) (keeping \(weightsPath))\n".utf8))
                    return LV2_STATE_ERR_UNKNOWN
                }
            }
        }
        if let piano {
            let i = min(max(piano, 0), instrumentCount.load(ordering: .relaxed) - 1)
            restoredPiano = i
            _ = core.commands.push(.instrument(i))   // not concurrent with run(): the queue has one producer at a time
            appliedPiano = i
        }
        return LV2_STATE_SUCCESS
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
                if type == uris.atomObject || type == uris.atomBlank {
                    patchSet(base + at + 16, size: size)
                } else if type == midiType && size >= 2 && size <= 3 {
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
    var schedule: LV2_Worker_Schedule?
    var maxBlockLength: Int?

    init(_ list: UnsafePointer<UnsafePointer<LV2_Feature>?>?) {
        var options: UnsafePointer<LV2_Options_Option>?
        var i = 0
        while let list, let f = list[i] {
            let uri = String(cString: f.pointee.URI)
            if uri == "http://lv2plug.in/ns/ext/urid#map", let data = f.pointee.data {
                map = data.assumingMemoryBound(to: LV2_URID_Map.self).pointee
            } else if uri == "http://lv2plug.in/ns/ext/worker#schedule", let data = f.pointee.data {
                schedule = data.assumingMemoryBound(to: LV2_Worker_Schedule.self).pointee
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

/// The URIDs the plugin reads and writes, mapped once at instantiate.
struct URIs {
    let atomObject, atomBlank, atomURID, atomPath, atomInt, patchSet, patchProperty, patchValue, weights, piano: LV2_URID
    init(_ map: LV2_URID_Map) {
        func m(_ uri: String) -> LV2_URID { map.map(map.handle, uri) }
        atomObject = m("http://lv2plug.in/ns/ext/atom#Object")
        atomBlank = m("http://lv2plug.in/ns/ext/atom#Blank")
        atomURID = m("http://lv2plug.in/ns/ext/atom#URID")
        atomPath = m("http://lv2plug.in/ns/ext/atom#Path")
        atomInt = m("http://lv2plug.in/ns/ext/atom#Int")
        patchSet = m("http://lv2plug.in/ns/ext/patch#Set")
        patchProperty = m("http://lv2plug.in/ns/ext/patch#property")
        patchValue = m("http://lv2plug.in/ns/ext/patch#value")
        weights = m(PianoPlugin.weightsKey)
        piano = m(PianoPlugin.pianoKey)
    }
}

/// What the host does not offer that the plugin needs (weight-file problems are WeightStoreErrors).
struct PluginError: CodedError {
    var description: String
    var code: ErrorCode { .system }
    init(_ description: String) { self.description = description }
}
