import CALSA
import Foundation

/// ALSA sequencer input: client "DDSP Piano" with a writable, subscribable port. Decodes
/// channel messages into the ALSA queue of the AudioCore (stamped on arrival), follows the
/// System Announce port to subscribe to keyboards plugged in later, and releases the notes
/// and pedals of a source that goes away.
// @unchecked Sendable: the C sequencer handle is used by its own reader thread only; counters are atomics.
public final class ALSAInput: @unchecked Sendable {
    public static let clientName = "DDSP Piano"
    private let queue: MIDIEventQueue
    private var seq: OpaquePointer?
    private var port: Int32 = -1
    private var myClient: Int32 = -1
    private var thread: Thread?
    private var running = false
    private let lock = NSLock()
    private var pattern: String
    private var regex: NSRegularExpression?
    // ALSA-thread state: held keys and pedals per source (client << 8 | port).
    private var held: [Int32: Set<UInt16>] = [:]
    private var pedals: [Int32: Set<UInt16>] = [:]
    // Shared with the control thread under `lock` (neither is real-time).
    private var sources: [Int32: String] = [:]
    private var subscribeRequested = false
    public private(set) var unavailableReason: String?

    /// This client's name ("DDSP Piano", or the daemon's `--name`); its port is "NAME MIDI In".
    public let name: String

    public init(queue: MIDIEventQueue, connect pattern: String, name: String = ALSAInput.clientName) {
        self.name = name
        self.queue = queue
        self.pattern = pattern
        regex = try? NSRegularExpression(pattern: pattern)
    }

    /// Opens the client. Returns false (with `unavailableReason`) when there is no sequencer.
    public func start() -> Bool {
        calsa_silence_errors()
        var s: OpaquePointer?
        let rc = calsa_open(&s)
        guard rc >= 0, let s else {
            unavailableReason = "ALSA sequencer not available (\(String(cString: snd_strerror(rc)))); no ALSA MIDI input"
            return false
        }
        seq = s
        snd_seq_set_client_name(s, name)
        myClient = snd_seq_client_id(s)
        port = calsa_create_input_port(s, "\(name) MIDI In")
        _ = calsa_connect_announce(s, port)
        connectExisting()
        running = true
        let t = Thread { [self] in loop() }
        t.name = "ddsp-piano alsa"
        thread = t
        t.start()
        return true
    }

    public func stop() {
        lock.lock(); running = false; lock.unlock()
        // The thread polls with a short timeout and closes the client itself.
        while thread != nil && !(thread?.isFinished ?? true) { usleep(5000) }
        thread = nil
    }

    public var address: String { seq == nil ? "" : "\(myClient):\(port)" }

    public func setPattern(_ p: String) {
        lock.lock(); pattern = p; regex = try? NSRegularExpression(pattern: p); subscribeRequested = true; lock.unlock()
    }

    /// "client:port name" of the subscribed sources.
    public var connectedSources: [String] {
        lock.lock(); defer { lock.unlock() }
        return sources.keys.sorted().map { "\($0 >> 8):\($0 & 0xFF) \(sources[$0] ?? "")" }
    }

    private func wants(name: String, client: Int32, capability: UInt32, type: UInt32) -> Bool {
        lock.lock(); let p = pattern, r = regex; lock.unlock()
        guard client != myClient, client != 0, capability & UInt32(CALSA_CAP_READ | CALSA_CAP_SUBS_READ) == UInt32(CALSA_CAP_READ | CALSA_CAP_SUBS_READ),
              capability & UInt32(CALSA_CAP_NO_EXPORT) == 0 else { return false }
        switch p {
        case "none": return false
        case "all":
            // Keyboards and other MIDI ports, not the kernel's Midi Through loop.
            return type & UInt32(CALSA_TYPE_MIDI_GENERIC) != 0 && !name.hasPrefix("Midi Through")
        default:
            guard let r else { return false }
            return r.firstMatch(in: name, range: NSRange(name.startIndex..., in: name)) != nil
        }
    }

    /// Walks the clients and ports and subscribes to those the pattern wants.
    private func connectExisting() {
        guard let s = seq else { return }
        var ci: OpaquePointer?, pi: OpaquePointer?
        snd_seq_client_info_malloc(&ci); snd_seq_port_info_malloc(&pi)
        defer { snd_seq_client_info_free(ci); snd_seq_port_info_free(pi) }
        snd_seq_client_info_set_client(ci, -1)
        while snd_seq_query_next_client(s, ci) >= 0 {
            let client = snd_seq_client_info_get_client(ci)
            snd_seq_port_info_set_client(pi, client)
            snd_seq_port_info_set_port(pi, -1)
            while snd_seq_query_next_port(s, pi) >= 0 {
                consider(client: client, port: snd_seq_port_info_get_port(pi), info: pi)
            }
        }
    }

    private func consider(client: Int32, port p: Int32, info: OpaquePointer?) {
        guard let s = seq else { return }
        let clientName = clientNameOf(client)
        let portName = String(cString: snd_seq_port_info_get_name(info))
        let name = "\(clientName):\(portName)"
        if wants(name: name, client: client, capability: snd_seq_port_info_get_capability(info), type: snd_seq_port_info_get_type(info)) {
            if snd_seq_connect_from(s, port, client, p) >= 0 {
                lock.lock(); sources[client << 8 | p] = name; lock.unlock()
            }
        }
    }

    private func clientNameOf(_ client: Int32) -> String {
        guard let s = seq else { return "" }
        var ci: OpaquePointer?
        snd_seq_client_info_malloc(&ci); defer { snd_seq_client_info_free(ci) }
        guard snd_seq_get_any_client_info(s, client, ci) >= 0 else { return "\(client)" }
        return String(cString: snd_seq_client_info_get_name(ci))
    }

    private func loop() {
        guard let s = seq else { return }
        let count = snd_seq_poll_descriptors_count(s, Int16(POLLIN))
        var fds = [pollfd](repeating: pollfd(), count: Int(max(count, 1)))
        snd_seq_poll_descriptors(s, &fds, UInt32(count), Int16(POLLIN))
        while true {
            lock.lock(); let go = running; let resubscribe = subscribeRequested; subscribeRequested = false; lock.unlock()
            if !go { break }
            if resubscribe { connectExisting() }
            // Short timeout while events wait for room in the ring.
            _ = poll(&fds, nfds_t(count), queue.pending > 0 ? 1 : 50)
            queue.flush()
            while true {
                var ev: UnsafeMutablePointer<snd_seq_event_t>?
                let r = snd_seq_event_input(s, &ev)
                if r == -EAGAIN || r == -ENOENT { break }
                if r == -ENOSPC { continue }   // input overrun: the kernel dropped events
                if r < 0 { break }
                if let ev { handle(ev) }
            }
        }
        snd_seq_close(s)
        seq = nil
    }

    private func push(_ status: UInt8, _ d1: UInt8, _ d2: UInt8) {
        queue.push(TimedMIDI(time: monotonicNanoseconds(), status: status, data1: d1, data2: d2))
    }

    private func handle(_ e: UnsafeMutablePointer<snd_seq_event_t>) {
        let type = calsa_event_type(e)
        let source = Int32(calsa_source_client(e)) << 8 | Int32(calsa_source_port(e))
        switch type {
        case Int32(CALSA_NOTEON), Int32(CALSA_NOTEOFF):
            let ch = UInt8(calsa_note_channel(e) & 0x0F), note = UInt8(calsa_note_note(e) & 0x7F), vel = UInt8(calsa_note_velocity(e) & 0x7F)
            let key = UInt16(ch) << 7 | UInt16(note)
            if type == Int32(CALSA_NOTEON) && vel > 0 {
                held[source, default: []].insert(key)
                push(0x90 | ch, note, vel)
            } else {
                held[source]?.remove(key)
                push(0x80 | ch, note, 0)
            }
        case Int32(CALSA_CONTROLLER):
            let ch = UInt8(calsa_control_channel(e) & 0x0F)
            let param = calsa_control_param(e), value = calsa_control_value(e)
            guard param < 128 else { return }
            let v = UInt8(max(0, min(127, value)))
            if [64, 66, 67].contains(param) {
                let key = UInt16(ch) << 7 | UInt16(param)
                if v >= 64 { pedals[source, default: []].insert(key) } else { pedals[source]?.remove(key) }
            }
            push(0xB0 | ch, UInt8(param), v)
        case Int32(CALSA_PGMCHANGE):
            let ch = UInt8(calsa_control_channel(e) & 0x0F)
            push(0xC0 | ch, UInt8(max(0, min(127, calsa_control_value(e)))), 0)
        case Int32(CALSA_PORT_START), Int32(CALSA_CLIENT_START):
            // A keyboard plugged in: subscribe if the pattern wants it.
            guard let s = seq else { return }
            let client = Int32(calsa_addr_client(e))
            if type == Int32(CALSA_CLIENT_START) { return }   // its ports announce themselves
            var pi: OpaquePointer?
            snd_seq_port_info_malloc(&pi); defer { snd_seq_port_info_free(pi) }
            if snd_seq_get_any_port_info(s, client, Int32(calsa_addr_port(e)), pi) >= 0 {
                consider(client: client, port: Int32(calsa_addr_port(e)), info: pi)
            }
        case Int32(CALSA_PORT_EXIT), Int32(CALSA_CLIENT_EXIT):
            let client = Int32(calsa_addr_client(e))
            let gone = type == Int32(CALSA_CLIENT_EXIT)
                ? Set(held.keys).union(pedals.keys).union(sourcesSnapshot()).filter { $0 >> 8 == client }
                : [client << 8 | Int32(calsa_addr_port(e))]
            for g in gone { release(g) }
        case Int32(CALSA_PORT_UNSUBSCRIBED):
            if Int32(calsa_connect_dest_client(e)) == myClient {
                release(Int32(calsa_connect_sender_client(e)) << 8 | Int32(calsa_connect_sender_port(e)))
            }
        default:
            break   // clock, sysex, pitch bend, aftertouch...: nothing a piano uses
        }
    }

    private func sourcesSnapshot() -> [Int32] {
        lock.lock(); defer { lock.unlock() }
        return Array(sources.keys)
    }

    /// No stuck notes: a source that disconnects lets go of its keys and pedals.
    private func release(_ source: Int32) {
        for key in held[source] ?? [] { push(0x80 | UInt8(key >> 7), UInt8(key & 0x7F), 0) }
        for key in pedals[source] ?? [] { push(0xB0 | UInt8(key >> 7), UInt8(key & 0x7F), 0) }
        held[source] = nil
        pedals[source] = nil
        lock.lock(); sources[source] = nil; lock.unlock()
    }
}
