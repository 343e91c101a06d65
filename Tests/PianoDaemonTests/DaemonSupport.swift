import DDSPPiano
import Foundation
import PianoFormats
import PianoIO
import PianoTestKit
import XCTest

/// Processes and fixtures for the daemon's tests: jackd on a private server name, the daemon as
/// a child process, weights (the built executables and ../shared are PianoTestKit's `TestKit`).
enum DaemonSupport {
    static func tool(_ name: String) -> URL? {
        for dir in ["/usr/bin", "/usr/local/bin", "/bin"] where FileManager.default.isExecutableFile(atPath: "\(dir)/\(name)") {
            return URL(fileURLWithPath: "\(dir)/\(name)")
        }
        return nil
    }

    static func temporaryDirectory() throws -> URL {
        // Short paths: Unix socket paths are limited to 107 bytes.
        let dir = URL(fileURLWithPath: "/tmp/dpd-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    /// Synthetic weights (zeros, two pianos "alpha" and "beta"): fast, silent, always there.
    static func syntheticWeights(in dir: URL) throws -> URL {
        var w = PianoWeights(instruments: ["alpha", "beta"])
        w.releaseDuration = Tensor(shape: [1], values: [1])
        let url = dir.appendingPathComponent("synthetic.safetensors")
        try Data(w.safetensors().serialized()).write(to: url)
        return url
    }

    /// The model bundled in every clone (weights/soundfont-grands.safetensors).
    /// Runs a tool to its end: its exit status and its standard output and error together.
    static func run(_ tool: URL, _ arguments: [String], environment: [String: String]? = nil) throws -> (status: Int32, output: String) {
        let p = Process()
        p.executableURL = tool
        p.arguments = arguments
        if let environment { p.environment = environment }
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    static func bundledWeights() throws -> (URL, PianoWeights) {
        let url = TestKit.packageRoot.appendingPathComponent("weights/soundfont-grands.safetensors")
        return (url, try PianoWeights(safetensors: try Safetensors(bytes: [UInt8](try Data(contentsOf: url)))))
    }

    /// The upstream dafx22 weights from the reference fixtures, or a printed skip.
    static func realWeights(in dir: URL) throws -> (URL, PianoWeights) {
        let raw = TestKit.shared.appendingPathComponent("reference/dafx22/checkpoint_raw.safetensors")
        guard FileManager.default.fileExists(atPath: raw.path) else {
            print("skipped: no reference fixtures (\(raw.path))")
            throw XCTSkip("no reference fixtures")
        }
        let tensors = try Safetensors(bytes: [UInt8](try Data(contentsOf: raw))).tensors
        let w = try PianoWeights(upstreamCheckpoint: tensors)
        let url = dir.appendingPathComponent("dafx22.safetensors")
        try Data(w.safetensors().serialized()).write(to: url)
        return (url, w)
    }

    static func waitUntil(_ seconds: Double, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition() { return true }
            usleep(20_000)
        }
        return condition()
    }
}

/// jackd -d dummy on a private server name (JACK_DEFAULT_SERVER), stopped by `stop`.
final class JackServer {
    let name: String
    /// Settable between `stop` and `start`: the same server name comes back at another rate.
    var rate: Int
    let period: Int
    private var process: Process?
    let log: URL

    init(dir: URL, rate: Int = 48000, period: Int = 256) throws {
        guard DaemonSupport.tool("jackd") != nil else {
            print("skipped: jackd is not installed")
            throw XCTSkip("jackd is not installed")
        }
        name = "ddsp-test-\(getpid())-\(UUID().uuidString.prefix(6))"
        self.rate = rate
        self.period = period
        log = dir.appendingPathComponent("jackd-\(name).log")
    }

    var environment: [String: String] {
        var e = ProcessInfo.processInfo.environment
        e["JACK_DEFAULT_SERVER"] = name
        e["JACK_NO_AUDIO_RESERVATION"] = "1"
        return e
    }

    func start() throws {
        let p = Process()
        p.executableURL = DaemonSupport.tool("jackd")!
        // -t: a generous client timeout, so a busy CI machine does not get the client kicked out.
        p.arguments = ["-t", "5000", "-d", "dummy", "-r", String(rate), "-p", String(period)]
        p.environment = environment
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let h = try FileHandle(forWritingTo: log)
        h.seekToEndOfFile()
        p.standardOutput = h
        p.standardError = h
        try p.run()
        process = p
        let ready = DaemonSupport.waitUntil(10) { self.ports().contains("system:playback_1") || !(p.isRunning) }
        guard ready, p.isRunning else {
            throw XCTSkip("jackd did not start: \((try? String(contentsOf: log, encoding: .utf8)) ?? "")")
        }
    }

    /// jackd's process id while it runs.
    var pid: pid_t? { process.flatMap { $0.isRunning ? $0.processIdentifier : nil } }

    func ports() -> [String] {
        guard let lsp = DaemonSupport.tool("jack_lsp") else { return [] }
        let p = Process()
        p.executableURL = lsp
        p.environment = environment
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return [] }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return String(decoding: data, as: UTF8.self).split(separator: "\n").map(String.init)
    }

    func stop() {
        guard let p = process, p.isRunning else { return }
        p.terminate()
        if !DaemonSupport.waitUntil(5, { !p.isRunning }) { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() }
        process = nil
    }

    deinit { stop() }
}

/// ddsp-pianod as a child process, its stderr in a file, talked to through its socket.
final class DaemonProcess {
    let process = Process()
    let socket: String
    let log: URL

    /// `launcher`: a program that runs the daemon (e.g. pw-jack: the daemon on PipeWire's libjack).
    init(arguments: [String], dir: URL, environment: [String: String]? = nil, launcher: URL? = nil) throws {
        socket = dir.appendingPathComponent("ctl.sock").path
        log = dir.appendingPathComponent("daemon-\(UUID().uuidString.prefix(6)).log")
        let daemon = try TestKit.executable("ddsp-pianod")
        process.executableURL = launcher ?? daemon
        process.arguments = (launcher == nil ? [] : [daemon.path]) + arguments + ["--control-socket", socket]
        // The takes archive goes into the test's folder, never the user's.
        var env = environment ?? ProcessInfo.processInfo.environment
        if env["XDG_DATA_HOME"] == nil || environment == nil { env["XDG_DATA_HOME"] = dir.path }
        process.environment = env
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let h = try FileHandle(forWritingTo: log)
        process.standardOutput = h
        process.standardError = h
        try process.run()
    }

    var output: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }

    /// Waits for the socket to answer.
    func waitReady(_ seconds: Double = 30) -> Bool {
        DaemonSupport.waitUntil(seconds) { (try? self.ctl("status")) != nil || !self.process.isRunning } && process.isRunning
    }

    func ctl(_ command: String) throws -> [String] {
        try ControlClient.send(command, socket: socket, timeout: 10)
    }

    /// "key: value" of `status`.
    func status() throws -> [String: String] {
        var d: [String: String] = [:]
        for line in try ctl("status") {
            if let r = line.range(of: ": ") { d[String(line[..<r.lowerBound])] = String(line[r.upperBound...]) }
        }
        return d
    }

    func stop() -> Int32 {
        if process.isRunning {
            process.terminate()
            if !DaemonSupport.waitUntil(10, { !self.process.isRunning }) { kill(process.processIdentifier, SIGKILL) }
        }
        process.waitUntilExit()
        return process.terminationStatus
    }

    deinit { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
}

/// A take of the daemon's archive as the audio thread stamped it: its events at engine samples
/// (the take's `engine_sample` meta event plus each event's time; an event sits at tick 1 of its
/// sample, half a sample in: the floor of time × rate is its sample).
struct ReceivedTake {
    struct Invalid: Error, CustomStringConvertible { var description: String }
    var events: [(sample: Int, message: MIDIMessage)] = []

    init(_ url: URL) throws {
        let bytes = [UInt8](try Data(contentsOf: url))
        let midi = try MIDIFile(bytes: bytes)
        let text = String(decoding: bytes.map { $0 >= 0x20 && $0 < 0x7F ? $0 : 0x0A }, as: UTF8.self)
        func meta(_ key: String) -> Int? {
            guard let r = text.range(of: key + #" (\d+)"#, options: .regularExpression) else { return nil }
            return Int(text[r].split(separator: " ")[1])
        }
        guard let origin = meta("engine_sample"), let rate = meta("sample_rate") else {
            throw Invalid(description: "\(url.path): no engine_sample or sample_rate meta event")
        }
        for e in midi.events {
            switch e.message {
            case .noteOn, .noteOff: events.append((origin + Int((e.time * Double(rate)).rounded(.down)), e.message))
            default: continue
            }
        }
    }

    /// The takes in `dir` once `count` are written (the daemon writes a take after its silence).
    static func wait(in dir: URL, count: Int, seconds: Double) -> [URL] {
        var found: [URL] = []
        _ = DaemonSupport.waitUntil(seconds) {
            found = ((try? FileManager.default.contentsOfDirectory(at: dir, includingPropertiesForKeys: nil)) ?? [])
                .filter { $0.pathExtension == "mid" }.sorted { $0.lastPathComponent < $1.lastPathComponent }
            return found.count >= count
        }
        return found
    }
}

/// What the machine did during a JACK take, so that a test can tell the machine's fault from
/// the daemon's: the test client's own report (cycles the server skipped for it, events it sent
/// late or never, xruns, whether it was thrown out), the daemon's counters over the take
/// (server xruns, frames the server skipped for it, its own late callbacks), and how busy the
/// CPUs were with other processes.
struct MachineReport {
    var client: [String: Int] = [:]
    var xruns = 0, skippedFrames = 0, lateCallbacks = 0, droppedEvents = 0
    var otherCores = 0.0, stealCores = 0.0

    /// Events the sender could not deliver on time, or the server skipped cycles, or threw a
    /// client out: whatever then goes wrong is not the daemon's doing.
    var machineTrouble: [String] {
        var t: [String] = []
        for key in ["undelivered", "late_events", "unwritten_events", "sender_skipped_cycles", "recorder_skipped_cycles", "zombified"]
        where (client[key] ?? 0) > 0 { t.append("\(key) \(client[key]!)") }
        if xruns > 0 { t.append("server xruns \(xruns)") }
        if skippedFrames > 0 { t.append("frames the server skipped for the daemon \(skippedFrames)") }
        return t
    }

    /// Other processes kept the CPUs busy (more than half a core on average), or the
    /// hypervisor took time away (steal).
    var busy: Bool { otherCores > 0.5 || stealCores > 0.1 }

    var summary: String {
        String(format: "machine: other processes %.2f cores, steal %.2f cores; ", otherCores, stealCores)
            + "server xruns \(xruns), skipped frames \(skippedFrames), daemon late callbacks \(lateCallbacks), dropped events \(droppedEvents); client: "
            + client.keys.sorted().map { "\($0) \(client[$0]!)" }.joined(separator: ", ")
    }

    /// "NAME N" lines of jack-test-client's output.
    static func parseClient(_ text: String) -> [String: Int] {
        var d: [String: Int] = [:]
        for line in text.split(separator: "\n") {
            let w = line.split(separator: " ")
            if w.count == 2, let n = Int(w[1]) { d[String(w[0])] = n }
        }
        return d
    }
}

/// CPU time of the whole machine and of given processes, to tell how much other processes used.
struct CPUSampler {
    let pids: [pid_t]
    private var start: (busy: Double, steal: Double, ours: Double, at: Date)

    init(pids: [pid_t]) {
        self.pids = pids
        start = (0, 0, 0, Date())
        start = Self.read(pids)
    }

    private static let tick = Double(sysconf(Int32(_SC_CLK_TCK)))

    private static func read(_ pids: [pid_t]) -> (busy: Double, steal: Double, ours: Double, at: Date) {
        let stat = (try? String(contentsOfFile: "/proc/stat", encoding: .utf8)) ?? ""
        let cpu = stat.split(separator: "\n").first?.split(separator: " ").dropFirst().compactMap { Double($0) } ?? []
        // user nice system idle iowait irq softirq steal
        let busy = cpu.count >= 8 ? (cpu[0] + cpu[1] + cpu[2] + cpu[5] + cpu[6]) / tick : 0
        let steal = cpu.count >= 8 ? cpu[7] / tick : 0
        var ours = 0.0
        for pid in pids + [getpid()] {
            guard let s = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                  let close = s.lastIndex(of: ")") else { continue }
            let f = s[s.index(after: close)...].split(separator: " ")
            // after the name: state(0) ... utime(11) stime(12)
            if f.count > 12, let u = Double(f[11]), let k = Double(f[12]) { ours += (u + k) / tick }
        }
        return (busy, steal, ours, Date())
    }

    /// Cores used by other processes, and stolen, since the sampler was made.
    func measure(into report: inout MachineReport) {
        let now = Self.read(pids)
        let seconds = max(0.1, now.at.timeIntervalSince(start.at))
        report.otherCores = max(0, (now.busy - start.busy) - (now.ours - start.ours)) / seconds
        report.stealCores = max(0, now.steal - start.steal) / seconds
    }
}

/// A headless PipeWire (`pipewire` with a generated configuration: a dummy driver node at
/// 48 kHz / 256 frames, no D-Bus, no session manager, no devices) in a private runtime folder,
/// for JACK clients run through `pw-jack` (PipeWire's libjack). Links are made by the clients
/// themselves (jack_connect), as nothing else would make them without a session manager.
final class PipeWireServer {
    let dir: URL
    let log: URL
    private var process: Process?

    static var pipewire: URL? { DaemonSupport.tool("pipewire") }
    static var pwJack: URL? { DaemonSupport.tool("pw-jack") }
    /// PipeWire's libjack (package pipewire-jack), where pw-jack points the loader.
    static let libjackDirectory = "/usr/lib/x86_64-linux-gnu/pipewire-0.3/jack"

    init(dir: URL) throws {
        guard Self.pipewire != nil, Self.pwJack != nil,
              FileManager.default.fileExists(atPath: Self.libjackDirectory + "/libjack.so.0") else {
            print("skipped: PipeWire's JACK is not installed (packages pipewire, pipewire-bin, pipewire-jack: .ci/install-deps)")
            throw XCTSkip("pipewire / pw-jack not installed")
        }
        self.dir = dir
        log = dir.appendingPathComponent("pipewire.log")
    }

    /// The server's configuration: the core, the native protocol, client nodes, links, and one
    /// dummy driver that clocks the graph (what minimal.conf has, less the ALSA devices);
    /// module-rt makes its data thread SCHED_FIFO where allowed (without it, a busy machine
    /// makes the driver skip cycles).
    static let configuration = """
    context.properties = {
        core.daemon = true
        core.name = pipewire-0
        support.dbus = false
        mem.allow-mlock = false
        default.clock.rate = 48000
        default.clock.allowed-rates = [ 48000 ]
        default.clock.quantum = 256
        default.clock.min-quantum = 16
        default.clock.max-quantum = 8192
        link.max-buffers = 16
    }
    context.spa-libs = {
        audio.convert.* = audioconvert/libspa-audioconvert
        support.*       = support/libspa-support
    }
    context.modules = [
        { name = libpipewire-module-rt args = { nice.level = -11 rt.prio = 88 } flags = [ ifexists nofail ] }
        { name = libpipewire-module-protocol-native }
        { name = libpipewire-module-metadata }
        { name = libpipewire-module-spa-node-factory }
        { name = libpipewire-module-client-node }
        { name = libpipewire-module-access args = { } }
        { name = libpipewire-module-adapter }
        { name = libpipewire-module-link-factory }
    ]
    context.objects = [
        { factory = metadata args = { metadata.name = default } }
        { factory = spa-node-factory
            args = {
                factory.name    = support.node.driver
                node.name       = Dummy-Driver
                node.group      = pipewire.dummy
                priority.driver = 20000
            }
        }
    ]
    """

    /// For the server and its clients: the private runtime folder (the socket), no session bus.
    var environment: [String: String] {
        var e = ProcessInfo.processInfo.environment
        let run = dir.appendingPathComponent("run").path
        e["PIPEWIRE_RUNTIME_DIR"] = run
        e["XDG_RUNTIME_DIR"] = run
        e["PIPEWIRE_REMOTE"] = "pipewire-0"
        e.removeValue(forKey: "PIPEWIRE_CONFIG_DIR")
        e.removeValue(forKey: "DBUS_SESSION_BUS_ADDRESS")
        e.removeValue(forKey: "JACK_DEFAULT_SERVER")
        return e
    }

    func start() throws {
        let run = dir.appendingPathComponent("run")
        try FileManager.default.createDirectory(at: run, withIntermediateDirectories: true)
        chmod(run.path, 0o700)
        let conf = dir.appendingPathComponent("pipewire.conf")
        try Self.configuration.write(to: conf, atomically: true, encoding: .utf8)
        let p = Process()
        p.executableURL = Self.pipewire!
        p.arguments = ["-c", conf.path]
        p.environment = environment
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let h = try FileHandle(forWritingTo: log)
        p.standardOutput = h
        p.standardError = h
        try p.run()
        process = p
        let ready = DaemonSupport.waitUntil(10) { self.jack("jack_samplerate").output.contains("48000") || !p.isRunning }
        guard ready, p.isRunning else {
            let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
            print("skipped: pipewire did not start: \(text)")
            throw XCTSkip("pipewire did not start: \(text)")
        }
    }

    /// A JACK tool through pw-jack: its exit status and standard output.
    @discardableResult
    func jack(_ tool: String, _ arguments: [String] = []) -> (status: Int32, output: String) {
        guard let path = DaemonSupport.tool(tool) else { return (-1, "") }
        let p = Process()
        p.executableURL = Self.pwJack!
        p.arguments = [path.path] + arguments
        p.environment = environment
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return (-1, "") }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    /// The graph's period (PipeWire's quantum), as `pw-metadata -n settings 0 clock.force-quantum N`
    /// sets it (0: back to the default). (jack_bufsize through pw-jack does not reach it here.)
    func setQuantum(_ frames: Int) throws {
        guard let tool = DaemonSupport.tool("pw-metadata") else { throw XCTSkip("pw-metadata is not installed (package pipewire-bin)") }
        let p = Process()
        p.executableURL = tool
        p.arguments = ["-n", "settings", "0", "clock.force-quantum", String(frames)]
        p.environment = environment
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
    }

    var output: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }

    func stop() {
        guard let p = process, p.isRunning else { return }
        p.terminate()
        if !DaemonSupport.waitUntil(5, { !p.isRunning }) { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() }
        process = nil
    }

    deinit { stop() }
}
