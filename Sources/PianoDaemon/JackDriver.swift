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

    public var isOpen: Bool { client != nil }

    public init(core: AudioCore, connectAudio: String, connectMIDI: String) {
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
        guard let c = cjack_client_open(Self.clientName, 1, &status) else {
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
        jack_set_buffer_size_callback(c, { n, arg in
            // Only noted here; the control thread prepares an engine for the new size.
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
        case "all": sources = ports(pattern: nil, type: cjack_default_midi_type(),
                                    flags: JackPortFlags(rawValue: JackPortIsOutput.rawValue | JackPortIsPhysical.rawValue))
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
        return now
    }
}
