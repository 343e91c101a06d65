import Atomics
import CJACK
import CLinux
import DDSPPiano
import Foundation

/// JACK client "ddsp-piano": audio outputs out_L/out_R (the mono model on both), MIDI input
/// midi_in. The process callback runs the AudioCore; everything else (opening, connecting,
/// reconnecting after the server went away) happens on the control thread.
// @unchecked Sendable: JACK calls the process callback on its thread; the control thread touches only atomics and the queues.
public final class JackDriver: @unchecked Sendable {
    public static let clientName = "ddsp-piano"

    /// The block an engine for JACK is prepared for: JACK2's largest period (BUFFER_SIZE_MAX,
    /// 8192 frames; PipeWire's clock.max-quantum is at most that too), or the server's period if
    /// ever larger. The engine renders any smaller cycle as it is and the AudioCore splits a
    /// larger one, so a change of the server's period (jack_bufsize, a PipeWire quantum change)
    /// keeps the engine, its held notes and its reverb tail. Its cost: the output FIFO of
    /// 8192 + a few hundred floats, once.
    public static let largestPeriod = 8192
    public static func engineBlockSize(forPeriod period: Int) -> Int { max(period, largestPeriod) }

    public struct Failure: CodedError {
        public var description: String
        public var code: ErrorCode { .system }
    }

    private let core: AudioCore
    public var connectAudio: String
    public var connectMIDI: String

    private var client: OpaquePointer?
    private var outL: OpaquePointer?
    private var outR: OpaquePointer?
    private var midiIn: OpaquePointer?
    /// Set by JACK's shutdown callback: the server is gone, the client is dead.
    public let serverGone = ManagedAtomic<Bool>(false)
    public let bufferSize = ManagedAtomic<Int>(0)
    public let sampleRate = ManagedAtomic<Int>(0)
    /// When the last xrun notification arrived (monotonic ns; 0: none yet), for the log.
    public let lastXrunTime = ManagedAtomic<UInt64>(0)
    /// When the client was activated (monotonic ns).
    public private(set) var activatedAt: UInt64 = 0
    /// Connections seen while running (our port short name → peers), restored on reconnect.
    private var remembered: [String: Set<String>] = [:]
    public private(set) var actualName = ""
    /// The daemon's ALSA sequencer input is running: with connect_midi = all it subscribes every
    /// ALSA MIDI port itself, so JACK ports that bridge ALSA sequencer ports (PipeWire's
    /// Midi-Bridge, a2jmidid, jackd's seq MIDI driver) are not connected too (doubled notes).
    public var alsaInputActive = false
    /// JACK ports left out of connect_midi = all as bridges of ALSA sequencer ports (last connect).
    public private(set) var skippedBridges: [String] = []
    /// Our own latency range as last published on our ports (JACK's latency callback; −1: not yet).
    public let publishedMinLatency = ManagedAtomic<Int>(-1)
    public let publishedMaxLatency = ManagedAtomic<Int>(-1)

    public var isOpen: Bool { client != nil }

    /// The client name asked for (`--name`; JACK may add a suffix: `actualName`).
    public let name: String

    public init(core: AudioCore, connectAudio: String, connectMIDI: String, name: String = JackDriver.clientName) {
        self.name = name
        self.core = core
        self.connectAudio = connectAudio
        self.connectMIDI = connectMIDI
    }

    /// Opens the client and registers ports (not yet active). Throws when no server runs.
    public func open() throws {
        // libjack prints to stderr on every failed attempt; the daemon says it once, its own way.
        jack_set_error_function { _ in }
        jack_set_info_function { _ in }
        var status = jack_status_t(rawValue: 0)
        guard let c = cjack_client_open(name, 1, &status) else {
            throw Failure(description: "no JACK server (jack_client_open status 0x\(String(status.rawValue, radix: 16)))")
        }
        client = c
        actualName = String(cString: jack_get_client_name(c))
        serverGone.store(false, ordering: .relaxed)
        let audio = cjack_default_audio_type(), midi = cjack_default_midi_type()
        outL = jack_port_register(c, "out_L", audio, UInt(JackPortIsOutput.rawValue), 0)
        outR = jack_port_register(c, "out_R", audio, UInt(JackPortIsOutput.rawValue), 0)
        midiIn = jack_port_register(c, "midi_in", midi, UInt(JackPortIsInput.rawValue), 0)
        guard outL != nil, outR != nil, midiIn != nil else {
            close()
            throw Failure(description: "cannot register JACK ports")
        }
        bufferSize.store(Int(jack_get_buffer_size(c)), ordering: .relaxed)
        sampleRate.store(Int(jack_get_sample_rate(c)), ordering: .relaxed)
        let me = Unmanaged.passUnretained(self).toOpaque()
        jack_set_process_callback(c, { n, arg in
            Unmanaged<JackDriver>.fromOpaque(arg!).takeUnretainedValue().process(n)
        }, me)
        // The server's xrun notification (JACK's own count: the server's, any client's, ours).
        jack_set_xrun_callback(c, { arg in
            let d = Unmanaged<JackDriver>.fromOpaque(arg!).takeUnretainedValue()
            // JACK2 sends one notification per cause (the driver's late wake-up, each client
            // still running): those within 50 ms make one incident.
            let now = monotonicNanoseconds(), last = d.lastXrunTime.load(ordering: .relaxed)
            if last == 0 || now &- last > 50_000_000 { d.core.stats.xrunIncidents.wrappingIncrement(ordering: .relaxed) }
            d.lastXrunTime.store(now, ordering: .relaxed)
            d.core.stats.xruns.wrappingIncrement(ordering: .relaxed)
            return 0
        }, me)
        jack_set_latency_callback(c, { mode, arg in
            Unmanaged<JackDriver>.fromOpaque(arg!).takeUnretainedValue().latencyCallback(mode)
        }, me)
        jack_set_buffer_size_callback(c, { n, arg in
            // Only noted (status, warm-up): the engine was prepared for the largest period.
            Unmanaged<JackDriver>.fromOpaque(arg!).takeUnretainedValue().bufferSize.store(Int(n), ordering: .relaxed)
            return 0
        }, me)
        jack_set_sample_rate_callback(c, { r, arg in
            Unmanaged<JackDriver>.fromOpaque(arg!).takeUnretainedValue().sampleRate.store(Int(r), ordering: .relaxed)
            return 0
        }, me)
        jack_set_freewheel_callback(c, { on, arg in
            Unmanaged<JackDriver>.fromOpaque(arg!).takeUnretainedValue().core.freewheeling.store(on != 0, ordering: .relaxed)
        }, me)
        // In JACK's process thread before its first cycle: map the stack pages the callback
        // will use (already resident when memory is locked; this covers the case where not).
        jack_set_thread_init_callback(c, { _ in clinux_prefault_stack(256 * 1024) }, me)
        jack_on_info_shutdown(c, { _, _, arg in
            Unmanaged<JackDriver>.fromOpaque(arg!).takeUnretainedValue().serverGone.store(true, ordering: .relaxed)
        }, me)
    }

    /// Before `activate`, on the control thread: the process callback itself, run on the
    /// installed engine through every path (AudioCore.warmUp), and each JACK function it calls
    /// once, so that nothing is done for the first time in the real-time thread.
    public func warmUp(engine: PianoEngine) {
        guard client != nil, let midiIn else { return }
        let n = jack_nframes_t(max(1, bufferSize.load(ordering: .relaxed)))
        var event = jack_midi_event_t()
        _ = jack_midi_event_get(&event, jack_port_get_buffer(midiIn, n), 0)
        core.warmUp(engine: engine, frames: Int(n)) { _ = process(n) }
        // The callback wrote into our output ports' buffers: leave them silent.
        for port in [outL, outR] {
            if let port { jack_port_get_buffer(port, n).assumingMemoryBound(to: Float.self).update(repeating: 0, count: Int(n)) }
        }
    }

    public func activate() throws {
        guard let c = client, jack_activate(c) == 0 else { throw Failure(description: "cannot activate the JACK client") }
        activatedAt = monotonicNanoseconds()
        connect()
    }

    /// After the server went away (or at shutdown).
    public func close() {
        guard let c = client else { return }
        if !serverGone.load(ordering: .relaxed) { jack_deactivate(c) }
        jack_client_close(c)
        client = nil
        outL = nil; outR = nil; midiIn = nil
    }

    // MARK: - Latency

    /// Our own latency range, midi_in to out_L/out_R, in frames: an event at offset t of a cycle
    /// first changes the output at t + [0, AudioCore.latencySamples] of the same cycle's output
    /// (JACK MIDI is placed at its own offset: no period of delay). The engine's bound is the
    /// maximum; the minimum is 0, as the engine's frame quantisation and the resampler's
    /// leading taps let an event at the end of a model frame show at once.
    private var ownLatency: (min: Int, max: Int) { (0, core.latencySamples) }

    /// JACK's latency callback (a non-real-time thread of the server's, whenever the graph or a
    /// latency changes). By JACK's rules: capture latency of each output = midi_in's capture
    /// latency + ours; playback latency of midi_in = the largest playback latency of our
    /// outputs + ours.
    private func latencyCallback(_ mode: jack_latency_callback_mode_t) {
        guard let outL, let outR, let midiIn else { return }
        let own = ownLatency
        publishedMinLatency.store(own.min, ordering: .relaxed)
        publishedMaxLatency.store(own.max, ordering: .relaxed)
        if mode == JackCaptureLatency {
            var r = jack_latency_range_t()
            jack_port_get_latency_range(midiIn, JackCaptureLatency, &r)
            var out = jack_latency_range_t(min: r.min &+ UInt32(own.min), max: r.max &+ UInt32(own.max))
            jack_port_set_latency_range(outL, JackCaptureLatency, &out)
            jack_port_set_latency_range(outR, JackCaptureLatency, &out)
        } else {
            var l = jack_latency_range_t(), r = jack_latency_range_t()
            jack_port_get_latency_range(outL, JackPlaybackLatency, &l)
            jack_port_get_latency_range(outR, JackPlaybackLatency, &r)
            var into = jack_latency_range_t(min: Swift.min(l.min, r.min) &+ UInt32(own.min), max: Swift.max(l.max, r.max) &+ UInt32(own.max))
            jack_port_set_latency_range(midiIn, JackPlaybackLatency, &into)
        }
    }

    /// Control thread: when the playing engine's latency differs from what JACK was told (a new
    /// engine at another rate, another model), asks the server to run the latency callbacks again.
    public func updateLatency() {
        guard let c = client, !serverGone.load(ordering: .relaxed) else { return }
        let own = ownLatency
        if own.min != publishedMinLatency.load(ordering: .relaxed) || own.max != publishedMaxLatency.load(ordering: .relaxed) {
            jack_recompute_total_latencies(c)
        }
    }

    // MARK: - Real-time

    private func process(_ nframes: jack_nframes_t) -> Int32 {
        let entered = monotonicNanoseconds()
        guard let c = client, let outL, let outR, let midiIn else { return 0 }
        let n = Int(nframes)
        let left = jack_port_get_buffer(outL, nframes).assumingMemoryBound(to: Float.self)
        let right = jack_port_get_buffer(outR, nframes).assumingMemoryBound(to: Float.self)
        let midi = jack_port_get_buffer(midiIn, nframes)
        let rate = max(1, sampleRate.load(ordering: .relaxed))
        let period = UInt64(n) * 1_000_000_000 / UInt64(rate)
        let frame = jack_last_frame_time(c)
        core.process(frames: n, cycleStart: entered, period: period,
                     position: Int(frame), left: left, right: right, callbackStart: entered) { core in
            let count = jack_midi_get_event_count(midi)
            var event = jack_midi_event_t()
            var i: UInt32 = 0
            while i < count {
                if jack_midi_event_get(&event, midi, i) == 0, event.size >= 1, let b = event.buffer {
                    let status = b[0]
                    if status >= 0x80 && status < 0xF0 {
                        core.addRaw(offset: Int(event.time), status: status,
                                    data1: event.size > 1 ? b[1] : 0, data2: event.size > 2 ? b[2] : 0)
                    }
                }
                i += 1
            }
        }
        return 0
    }

    // MARK: - Connections

    private func ports(pattern: String?, type: UnsafePointer<CChar>, flags: JackPortFlags) -> [String] {
        guard let c = client, let list = jack_get_ports(c, pattern, type, UInt(flags.rawValue)) else { return [] }
        defer { jack_free(UnsafeMutableRawPointer(mutating: list)) }
        var names: [String] = []
        var i = 0
        while let p = list[i] { names.append(String(cString: p)); i += 1 }
        return names
    }

    /// A port's aliases (up to two in JACK).
    private func aliases(of name: String) -> [String] {
        guard let c = client, let port = jack_port_by_name(c, name) else { return [] }
        let size = Int(jack_port_name_size())
        let a = UnsafeMutablePointer<CChar>.allocate(capacity: size), b = UnsafeMutablePointer<CChar>.allocate(capacity: size)
        defer { a.deallocate(); b.deallocate() }
        a[0] = 0; b[0] = 0
        var list: [UnsafeMutablePointer<CChar>?] = [a, b]
        let n = list.withUnsafeMutableBufferPointer { jack_port_get_aliases(port, $0.baseAddress) }
        return (0..<Int(max(0, min(2, n)))).map { String(cString: $0 == 0 ? a : b) }
    }

    private func link(_ source: String, _ destination: String) {
        guard let c = client else { return }
        _ = jack_connect(c, source, destination)   // EEXIST and vanished ports are fine
    }

    /// --connect-audio / --connect-midi, then whatever was connected before a reconnect.
    public func connect() {
        let me = actualName
        let audioIn = JackPortFlags(rawValue: JackPortIsInput.rawValue)
        var sinks: [String] = []
        switch connectAudio {
        case "none": break
        case "system": sinks = ports(pattern: nil, type: cjack_default_audio_type(),
                                     flags: JackPortFlags(rawValue: JackPortIsInput.rawValue | JackPortIsPhysical.rawValue))
        default: sinks = ports(pattern: connectAudio, type: cjack_default_audio_type(), flags: audioIn)
        }
        if let first = sinks.first {
            link("\(me):out_L", first)
            link("\(me):out_R", sinks.count > 1 ? sinks[1] : first)
        }
        var sources: [String] = []
        switch connectMIDI {
        case "none": break
        case "all":
            sources = ports(pattern: nil, type: cjack_default_midi_type(),
                            flags: JackPortFlags(rawValue: JackPortIsOutput.rawValue | JackPortIsPhysical.rawValue))
            if alsaInputActive {
                // The ALSA input subscribes these keyboards itself: one subscription per source.
                let bridges = sources.filter { MIDIBridge.isALSASequencerBridge(name: $0, aliases: aliases(of: $0)) }
                skippedBridges = bridges
                sources.removeAll { bridges.contains($0) }
            } else {
                skippedBridges = []
            }
        default: sources = ports(pattern: connectMIDI, type: cjack_default_midi_type(),
                                 flags: JackPortFlags(rawValue: JackPortIsOutput.rawValue))
        }
        for s in sources where !s.hasPrefix(me + ":") { link(s, "\(me):midi_in") }
        for (port, peers) in remembered {
            for peer in peers {
                if port == "midi_in" { link(peer, "\(me):midi_in") } else { link("\(me):\(port)", peer) }
            }
        }
    }

    /// Current connections of our ports (control thread; also remembered for a reconnect).
    @discardableResult
    public func refreshConnections() -> [String: [String]] {
        guard let c = client, !serverGone.load(ordering: .relaxed) else { return remembered.mapValues { $0.sorted() } }
        var now: [String: [String]] = [:]
        for (name, port) in [("out_L", outL), ("out_R", outR), ("midi_in", midiIn)] {
            guard let port, let list = jack_port_get_all_connections(c, port) else { now[name] = []; continue }
            var peers: [String] = []
            var i = 0
            while let p = list[i] { peers.append(String(cString: p)); i += 1 }
            jack_free(UnsafeMutableRawPointer(mutating: list))
            now[name] = peers
        }
        remembered = now.mapValues { Set($0) }
        updateLatency()
        return now
    }
}
