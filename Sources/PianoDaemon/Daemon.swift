import CLinux
import DDSPPiano
import Foundation
import PianoIO
#if canImport(Glibc)
import Glibc
#endif

/// ddsp-pianod: owns everything that is not real-time. The control loop runs on the calling
/// thread: signals (`Signals`' self-pipe), the control socket, engine preparation, JACK
/// supervision and reconnection. The audio thread (JACK's or the null driver's) and the ALSA
/// thread meet it only through the AudioCore's SPSC queues and counters.
public final class Daemon {
    public struct Failure: CodedError {
        public var description: String
        /// The exit status `ddsp-pianod` ends with (see its --help).
        public var status: Int32
        public var code: ErrorCode = .system
    }

    /// Settings from the command line: applied over the config file's (a flag wins).
    public let overrides: (DaemonSettings) -> DaemonSettings
    /// The config file (an NSM session's, once the session manager opened one: `Daemon+NSM`).
    public internal(set) var configPath: String?
    var settings = DaemonSettings()
    private var weightsURL: URL?
    /// The immutable model playing (built here, off the audio thread; engines share it).
    var weights: PianoModel?
    /// Identity of the weight file as loaded (device, inode, size, modification time).
    private var weightsStamp: String?
    let core = AudioCore(recorderCapacity: AudioCore.daemonRecorderCapacity, takeCapacity: AudioCore.daemonTakeCapacity)
    private var jack: JackDriver?
    private var null: NullDriver?
    private var alsaOut: ALSAOutput?
    private var alsa: ALSAInput?
    private var control: ControlSocket?
    private let notify = SystemdNotify()
    var log: (String) -> Void
    private var stopping = false
    private var exitStatus: Int32 = 0
    // JACK reconnection back-off.
    private var nextAttempt: UInt64 = 0
    private var backoff: Double = 0.5
    private var announcedWaiting = false
    private var lastConnectionsRefresh: UInt64 = 0
    private var lastWatchdogCycles = -1
    private var lastWatchdog: UInt64 = 0
    private var connections: [String: [String]] = [:]
    /// What the engine last handed to the audio thread was prepared for (the audio thread
    /// publishes it only at its next cycle, which may not have run yet).
    private var preparedBlock = 0
    private var preparedRate = 0.0
    private var loggedXruns = 0
    private var memoryLocked = false
    /// The session manager, when NSM_URL named one that answered (`Daemon+NSM`), and the client
    /// id it gave: the daemon's name (over --name).
    var nsm: NSMClient?
    var nsmName: String?
    /// The NSM session's directory once opened (its config file is there; what else the daemon
    /// keeps per session, e.g. takes, belongs under it too).
    public internal(set) var sessionPath: String?
    /// The name the JACK and ALSA clients and the default control socket take (nil: the defaults).
    var instanceName: String? { nsmName ?? settings.name }
    /// The takes archive (nil: off) and `ctl record`'s writer.
    private var takes: TakeArchive?
    private lazy var wavRecorder = WAVRecorder(ring: core.recorder)

    public init(configPath: String?, log: @escaping (String) -> Void, overrides: @escaping (DaemonSettings) -> DaemonSettings) {
        self.configPath = configPath
        self.overrides = overrides
        self.log = log
    }

    /// The engine options the daemon plays with (tests render offline with the same).
    /// The live engine: stereo prepared (its width, tuning and transposition come from
    /// `AudioCore` at every cycle).
    public static func engineOptions(instrument: Int, noise: Bool) -> PianoEngine.Options {
        var o = PianoEngine.Options()
        o.instrument = instrument
        o.noise = noise
        o.stereo = true
        return o
    }

    /// The settings the audio thread reads at every cycle.
    private func publishLiveSettings(_ s: DaemonSettings) {
        core.gainBits.store(Float(pow(10, s.gainDB / 20)).bitPattern, ordering: .relaxed)
        core.widthBits.store(Float(s.width).bitPattern, ordering: .relaxed)
        core.a4Bits.store(Float(s.a4Hz).bitPattern, ordering: .relaxed)
        core.transpose.store(s.transpose, ordering: .relaxed)
    }

    /// The configuration in force: defaults, then the config file (given, or the default one if
    /// it exists), then the command line.
    func loadSettings() throws -> DaemonSettings {
        var s = DaemonSettings()
        let path = configPath ?? DaemonSettings.defaultConfigPath()
        if configPath != nil || FileManager.default.fileExists(atPath: path) {
            s = try s.applying(file: path)
        }
        s = overrides(s)
        try s.validatePatterns(file: "command line")
        return s
    }

    func resolvePiano(_ text: String?, in w: PianoModel) throws -> Int {
        guard let text else { return UpstreamDefaults.piano(count: w.instruments.count) }
        guard let i = w.instrumentIndex(text) else {
            throw Failure(description: "unknown piano '\(text)' (known: \(w.instruments.enumerated().map { "\($0.offset) \($0.element)" }.joined(separator: ", ")))", status: 2, code: .notFound)
        }
        return i
    }

    func router(for s: DaemonSettings, instruments: Int) -> MIDIRouter {
        MIDIRouter(channels: s.channels, velocityGamma: MIDIRouter.gamma(forCurve: s.velocityCurve) ?? 1,
                   programMap: s.programMap, instruments: instruments)
    }

    func makeEngine(rate: Double, block: Int, instrument: Int) throws -> PianoEngine {
        guard let weights else { throw Failure(description: "no weights", status: 1, code: .notFound) }
        let engine = PianoEngine(model: weights, options: Self.engineOptions(instrument: instrument, noise: settings.noise))
        // Its warm-up (silent frames, run by `prepare`) at the tuning it will play.
        engine.a4 = Float(bitPattern: core.a4Bits.load(ordering: .relaxed))
        try engine.prepare(sampleRate: rate, maxBlockSize: block)
        return engine
    }

    /// Hands a prepared engine to the audio thread and notes what it was prepared for.
    private func install(_ engine: PianoEngine) {
        _ = core.install(engine: engine)
        preparedBlock = engine.maxBlockSize
        preparedRate = engine.hostRate
    }

    var currentInstrument: Int {
        let i = core.stats.instrument.load(ordering: .relaxed)
        return i >= 0 ? i : ((try? resolvePiano(settings.piano, in: weights!)) ?? 0)
    }

    // MARK: - Run

    public func run() -> Int32 {
        // Signals reach the loop through a self-pipe, whichever thread they land on (`Signals`).
        Signals.receive([SIGINT, SIGTERM, SIGHUP])
        Signals.ignore(SIGPIPE)
        let sfd = Signals.descriptor
        // NSM_URL: the session manager's open comes before any JACK or ALSA client (Daemon+NSM).
        if let url = ProcessInfo.processInfo.environment["NSM_URL"], !url.isEmpty, !joinSession(url: url) {
            shutdown()
            return exitStatus
        }
        do {
            try start()
        } catch let e as Failure {
            log(e.description)
            nsm?.error(to: "/nsm/client/open", code: NSMClient.errLaunchFailed, e.description)
            shutdown()
            return e.status
        } catch {
            log("\(error)")
            nsm?.error(to: "/nsm/client/open", code: NSMClient.errLaunchFailed, "\(error)")
            shutdown()
            return 1
        }
        nsm?.reply(to: "/nsm/client/open")
        notify.send("READY=1\nSTATUS=\(statusLine())")
        lastWatchdog = monotonicNanoseconds()

        while !stopping {
            // The control socket's listening fd and its open connections (none of them blocks).
            var fds = [pollfd(fd: sfd, events: Int16(POLLIN), revents: 0)] + (control?.pollDescriptors ?? [])
            if let nsm { fds.append(pollfd(fd: nsm.descriptor, events: Int16(POLLIN), revents: 0)) }
            _ = poll(&fds, nfds_t(fds.count), 20)
            if fds[0].revents != 0 {
                while let signo = Signals.next() {
                    if signo == SIGHUP {
                        let r = reload()
                        if !r.ok { log(r.message) }
                    } else {
                        log("signal \(signo == SIGINT ? "SIGINT" : "SIGTERM"): shutting down")
                        stopping = true
                    }
                }
            }
            control?.service(fds.dropFirst(), handle)
            if nsm != nil && (fds.last?.revents ?? 0) != 0 { serviceSession() }
            tick()
        }
        notify.send("STOPPING=1")
        shutdown()
        return exitStatus
    }

    private func start() throws {
        do { settings = try loadSettings() } catch let e as ConfigError {
            throw Failure(description: e.description, status: 2, code: .badConfig)
        }
        lockMemory()
        let store = WeightStore()
        do {
            let loaded = try store.loadModel(explicit: settings.weights)
            weightsURL = loaded.url
            weights = loaded.model
            weightsStamp = Self.fileStamp(loaded.url)
        } catch {
            throw Failure(description: "\(error)", status: 1, code: error.errorCode)
        }
        let instrument = try resolvePiano(settings.piano, in: weights!)
        _ = core.install(router: router(for: settings, instruments: weights!.instruments.count))
        publishLiveSettings(settings)
        core.stats.instrument.store(instrument, ordering: .relaxed)

        let socketPath = settings.controlSocket ?? DaemonSettings.defaultSocketPath(name: instanceName)
        do { control = try ControlSocket(path: socketPath, privateDirectory: settings.controlSocket == nil, log: log) } catch { throw Failure(description: "\(error)", status: 1, code: error.errorCode) }

        configureTakes()
        let a = ALSAInput(queue: core.alsaQueue, connect: settings.connectMIDI, name: instanceName ?? ALSAInput.clientName)
        if a.start() { alsa = a } else { log(a.unavailableReason ?? "ALSA sequencer not available") }

        switch settings.audio {
        case "null":
            let engine = try makeEngine(rate: Double(settings.sampleRate), block: settings.blockSize, instrument: instrument)
            install(engine)
            let n = NullDriver(core: core, sampleRate: settings.sampleRate, blockSize: settings.blockSize)
            n.warmUp(engine: engine)
            n.start()
            null = n
            log("playing \(describe(instrument)) of \(weights?.summary ?? "-") on null audio (\(settings.sampleRate) Hz, \(settings.blockSize) frames); control: \(socketPath)")
        case "alsa":
            // Plain ALSA PCM: opened once; failing to open it is a startup failure (status 3).
            let o = ALSAOutput(core: core, device: settings.alsaDevice, sampleRate: settings.sampleRate,
                               period: settings.period, periods: settings.periods)
            do { try o.open() } catch { throw Failure(description: "\(error)", status: 3) }
            alsaOut = o
            // Prepared for what the device actually set (its nearest rate and period).
            let engine = try makeEngine(rate: Double(o.sampleRate), block: o.period, instrument: instrument)
            install(engine)
            o.warmUp(engine: engine)
            o.start()
            log("playing \(describe(instrument)) of \(weights?.summary ?? "-") on ALSA \(o.summary), latency \(o.latencyFrames) + \(engine.latencySamples) samples (buffer + engine); control: \(socketPath)")
        default:
            jack = JackDriver(core: core, connectAudio: settings.connectAudio, connectMIDI: settings.connectMIDI, name: instanceName ?? JackDriver.clientName)
            jack?.alsaInputActive = alsa != nil
            if !tryOpenJack() {
                if settings.noWait { throw Failure(description: "no JACK server running (--no-wait)", status: 3) }
                log("waiting for a JACK server...")
                announcedWaiting = true
            }
        }
    }

    /// mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT): no page the process uses (code, heap,
    /// engine, stacks) is ever paged out, so after the warm-up has touched what the callback
    /// uses, a cycle never waits for a page. ONFAULT keeps mappings nobody touches out of memory
    /// (see clinux_lock_all_memory; DDSP_PIANOD_MLOCK_POPULATE=1 faults everything in instead).
    /// Needs RLIMIT_MEMLOCK (the systemd unit's LimitMEMLOCK) or CAP_IPC_LOCK; said once if refused.
    private func lockMemory() {
        let populate = ProcessInfo.processInfo.environment["DDSP_PIANOD_MLOCK_POPULATE"] == "1"
        let err = clinux_lock_all_memory(populate ? 1 : 0)
        memoryLocked = err == 0
        guard err != 0 else { return }
        let limit = clinux_memlock_limit()
        let shown = limit < 0 ? "unlimited" : "\(limit / 1024) KiB"
        log("memory not locked (mlockall: \(String(cString: strerror(err))); RLIMIT_MEMLOCK \(shown)): page faults may cause xruns; raise it (LimitMEMLOCK=infinity in the systemd unit, or memlock in /etc/security/limits.conf)")
    }

    private func describe(_ instrument: Int) -> String {
        guard let w = weights, instrument >= 0, instrument < w.instruments.count else { return "piano \(instrument)" }
        return "piano \(instrument) (\(w.instruments[instrument]))"
    }

    /// One attempt to open, prepare and activate the JACK client.
    private func tryOpenJack() -> Bool {
        guard let jack else { return false }
        do {
            try jack.open()
            let engine = try makeEngine(rate: Double(jack.sampleRate.load(ordering: .relaxed)),
                                        block: JackDriver.engineBlockSize(forPeriod: jack.bufferSize.load(ordering: .relaxed)), instrument: currentInstrument)
            install(engine)
            jack.warmUp(engine: engine)
            try jack.activate()
            backoff = 0.5
            announcedWaiting = false
            log("playing \(describe(currentInstrument)) of \(weights?.summary ?? "-") through JACK as \(jack.actualName) (\(jack.sampleRate.load(ordering: .relaxed)) Hz, \(jack.bufferSize.load(ordering: .relaxed)) frames, latency \(engine.latencySamples) samples); control: \(control?.path ?? "-")")
            notify.send("STATUS=\(statusLine())")
            return true
        } catch {
            jack.close()
            return false
        }
    }

    /// Periodic work of the control loop.
    private func tick() {
        core.collectGarbage()
        takes?.service(core: core, context: takeContext)
        let now = monotonicNanoseconds()
        if let o = alsaOut, !o.isRunning, !stopping {
            // The device failed beyond snd_pcm_recover (unplugged, gone): said once, exit 3.
            log("ALSA device '\(o.device)' failed: \(ALSAOutput.message(Int32(clamping: o.failure.load(ordering: .relaxed))))")
            exitStatus = 3
            stopping = true
            return
        }
        if let jack {
            if jack.isOpen && jack.serverGone.load(ordering: .relaxed) {
                log("JACK server went away")
                jack.close()
                if settings.noWait { exitStatus = 3; stopping = true; return }
                nextAttempt = now
                backoff = 0.5
                notify.send("STATUS=waiting for the JACK server")
            }
            if !jack.isOpen && !stopping && now >= nextAttempt {
                if !tryOpenJack() {
                    if !announcedWaiting { log("waiting for a JACK server..."); announcedWaiting = true }
                    nextAttempt = now + UInt64(backoff * 1e9)
                    backoff = min(backoff * 2, 5)
                }
            }
            if jack.isOpen {
                // Buffer size or rate changed: prepare an engine here, hand it over atomically.
                let block = jack.bufferSize.load(ordering: .relaxed), rate = Double(jack.sampleRate.load(ordering: .relaxed))
                if block > 0 && (block > preparedBlock || rate != preparedRate) {
                    if let e = try? makeEngine(rate: rate, block: JackDriver.engineBlockSize(forPeriod: block), instrument: currentInstrument) {
                        install(e)
                        log("JACK now \(Int(rate)) Hz, \(block) frames: engine prepared again")
                        // Wait for the handover so that the check above sees the new engine.
                        let deadline = monotonicNanoseconds() + 500_000_000
                        while core.engineBlockSize < block && monotonicNanoseconds() < deadline { usleep(1000) }
                    }
                }
                logXruns(jack, now: now)
                if now - lastConnectionsRefresh > 1_000_000_000 {
                    connections = jack.refreshConnections()
                    lastConnectionsRefresh = now
                }
            }
        }
        // Watchdog: only while the audio thread is really cycling.
        if let usec = notify.watchdogMicroseconds, now - lastWatchdog > usec * 500 {
            let cycles = core.stats.cycles.load(ordering: .relaxed)
            if cycles != lastWatchdogCycles || (jack != nil && !(jack!.isOpen)) {
                notify.send("WATCHDOG=1")
                lastWatchdogCycles = cycles
            }
            lastWatchdog = now
        }
    }

    /// One line per xrun JACK reports (the first 20, then every 100th): when, and whether our
    /// callback had anything to do with it.
    private func logXruns(_ jack: JackDriver, now: UInt64) {
        let st = core.stats
        let count = st.xruns.load(ordering: .relaxed)
        guard count != loggedXruns else { return }
        loggedXruns = count
        guard count <= 20 || count % 100 == 0 else { return }
        let at = jack.lastXrunTime.load(ordering: .relaxed)
        let since = at > jack.activatedAt ? Double(at - jack.activatedAt) / 1e9 : 0
        log(String(format: "JACK xrun (%d notifications so far, %d incidents) %.2f s after activation; our callback: %d late, peak load %.1f%%",
                   count, st.xrunIncidents.load(ordering: .relaxed), since, st.lateCycles.load(ordering: .relaxed),
                   Double(st.peakPermille.load(ordering: .relaxed)) / 10))
    }

    private func shutdown() {
        // A recording is closed while the audio thread still runs (it acknowledges the stop).
        if wavRecorder.isRecording { log(wavRecorder.stop().message) }
        jack?.close()
        null?.stop()
        alsaOut?.stop()
        alsaOut?.close()
        alsa?.stop()
        control?.closeAndRemove()
        control = nil
        core.collectGarbage()
        // The take in progress, with everything the audio thread played before it stopped.
        takes?.service(core: core, context: takeContext, force: true)
    }

    // MARK: - Takes

    /// The takes archive as the settings say (a changed folder or silence ends the take in progress).
    private func configureTakes() {
        // In an NSM session the takes belong to the session (its directory), unless set.
        let dir = settings.takesDir ?? sessionPath.map { $0 + "/takes" } ?? TakeArchive.defaultDirectory()
        if dir == "none" || dir.isEmpty {
            core.takesOn.store(false, ordering: .relaxed)
            takes?.service(core: core, context: takeContext, force: true)
            takes = nil
            return
        }
        let url = URL(fileURLWithPath: dir)
        if let t = takes, t.directory == url, t.silence == settings.takeSilence { return }
        takes?.service(core: core, context: takeContext, force: true)
        takes = TakeArchive(directory: url, silence: settings.takeSilence, log: log)
        core.takesOn.store(true, ordering: .relaxed)
    }

    private func takeContext(_ instrument: Int) -> TakeContext {
        let names = weights?.instruments ?? []
        return TakeContext(pianoIndex: instrument, pianoName: instrument >= 0 && instrument < names.count ? names[instrument] : "\(instrument)",
                           model: weights?.summary ?? "-",
                           gainDB: 20 * log10(Double(Float(bitPattern: core.gainBits.load(ordering: .relaxed)))),
                           velocityCurve: settings.velocityCurve, sampleRate: Int(preparedRate.rounded()),
                           a4: Double(Float(bitPattern: core.a4Bits.load(ordering: .relaxed))),
                           transpose: core.transpose.load(ordering: .relaxed),
                           width: Double(Float(bitPattern: core.widthBits.load(ordering: .relaxed))))
    }

    // MARK: - Reload

    /// SIGHUP and `ctl reload`: a broken config changes nothing (one line says why).
    func reload() -> (ok: Bool, message: String) {
        let s: DaemonSettings
        do { s = try loadSettings() } catch {
            return (false, "\(error) (keeping the previous configuration)")
        }
        // The weight file is read again even when its path is the same: it may have been
        // replaced (a new model) or damaged (refused: the old model keeps playing).
        let newWeights: PianoModel, newURL: URL, newStamp: String?
        do {
            // Built here on the control thread (v2: every piano's FDN reverb IR); the audio
            // thread only receives the prepared engine.
            let loaded = try WeightStore().loadModel(explicit: s.weights)
            newWeights = loaded.model
            newURL = loaded.url
            newStamp = Self.fileStamp(loaded.url)
        } catch {
            return (false, "\(error) (keeping the previous configuration)")
        }
        let instrument: Int
        do { instrument = try resolvePiano(s.piano, in: newWeights) } catch {
            return (false, "\(error) (keeping the previous configuration)")
        }
        let weightsChanged = newURL != weightsURL || newStamp != weightsStamp || s.noise != settings.noise
        let pianoChanged = s.piano != settings.piano
        settings = s
        if weightsChanged {
            weights = newWeights
            weightsURL = newURL
            weightsStamp = newStamp
            let rate = jack.map { Double($0.sampleRate.load(ordering: .relaxed)) } ?? alsaOut.map { Double($0.sampleRate) } ?? Double(s.sampleRate)
            let block = jack.map { JackDriver.engineBlockSize(forPeriod: $0.bufferSize.load(ordering: .relaxed)) } ?? alsaOut.map(\.period) ?? s.blockSize
            if rate > 0 && block > 0, let e = try? makeEngine(rate: rate, block: block, instrument: instrument) {
                install(e)
            }
        } else if pianoChanged {
            _ = core.commands.push(.instrument(instrument))
        }
        _ = core.install(router: router(for: s, instruments: newWeights.instruments.count))
        publishLiveSettings(s)
        if let jack {
            jack.connectAudio = s.connectAudio
            jack.connectMIDI = s.connectMIDI
            if jack.isOpen { jack.connect() }
        }
        alsa?.setPattern(s.connectMIDI)
        configureTakes()
        log("configuration reloaded")
        return (true, "configuration reloaded")
    }

    static func fileStamp(_ url: URL) -> String? {
        var st = stat()
        guard stat(url.path, &st) == 0 else { return nil }
        return "\(st.st_dev):\(st.st_ino):\(st.st_size):\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)"
    }

    // MARK: - Control commands

    func statusLine() -> String {
        let st = core.stats
        let audio = jack.map { $0.isOpen ? "JACK" : "waiting for the JACK server" } ?? (alsaOut != nil ? "ALSA" : "null audio")
        return "\(describe(st.instrument.load(ordering: .relaxed))), \(audio), notes \(st.notesReceived.load(ordering: .relaxed)), xruns \(st.xruns.load(ordering: .relaxed))"
    }

    func handle(_ line: String) -> (ok: Bool, lines: [String], error: String) {
        let command: ControlCommand
        switch ControlCommand.parse(line) {
        case .success(let c): command = c
        case .failure(let e): return (false, [], e.description)
        }
        let st = core.stats
        switch command {
        case .status:
            var lines = ["instrument: \(describe(st.instrument.load(ordering: .relaxed)))",
                         "model: \(weights?.summary ?? "-") from \(weightsURL?.path ?? "-")"]
            if let jack {
                if jack.isOpen {
                    lines.append("audio: jack \(jack.actualName) \(jack.sampleRate.load(ordering: .relaxed)) Hz \(jack.bufferSize.load(ordering: .relaxed)) frames")
                } else {
                    lines.append("audio: jack (waiting for the server)")
                }
                lines.append("freewheel: \(core.freewheeling.load(ordering: .relaxed) ? "yes" : "no")")
                for port in ["out_L", "out_R", "midi_in"] {
                    lines.append("connections \(port): \((connections[port] ?? []).joined(separator: ", "))")
                }
            } else if let o = alsaOut {
                lines.append("audio: alsa \(o.summary)")
                lines.append("output latency samples: \(o.latencyFrames)")
                lines.append("real-time thread: \(o.realTime.load(ordering: .relaxed) == 1 ? "yes" : "no")")
            } else {
                lines.append("audio: null \(settings.sampleRate) Hz \(settings.blockSize) frames")
            }
            if let alsa {
                lines.append("alsa: \(alsa.name) \(alsa.address); sources: \(alsa.connectedSources.joined(separator: ", "))")
            } else {
                lines.append("alsa: unavailable")
            }
            lines += [
                "notes received: \(st.notesReceived.load(ordering: .relaxed))",
                "notes released: \(st.notesReleased.load(ordering: .relaxed))",
                "active voices: \(st.voices.load(ordering: .relaxed))",
                "xruns: \(st.xruns.load(ordering: .relaxed))",
                "xrun incidents: \(st.xrunIncidents.load(ordering: .relaxed))",
                "dropped events: \(core.alsaQueue.dropped + core.controlMIDIQueue.dropped + st.eventsDropped.load(ordering: .relaxed))",
                "ignored program changes: \(st.programsIgnored.load(ordering: .relaxed))",
                String(format: "callback cpu load: %.1f%%", Double(st.cpuPermille.load(ordering: .relaxed)) / 10),
                String(format: "callback peak load: %.1f%%", Double(st.peakPermille.load(ordering: .relaxed)) / 10),
                "late callbacks: \(st.lateCycles.load(ordering: .relaxed))",
                "skipped frames: \(st.skippedFrames.load(ordering: .relaxed))",
                "latency samples: \(core.latencySamples)",
                "engine origin: \(st.engineOrigin.load(ordering: .relaxed))",
                "gain db: \(String(format: "%.1f", 20 * log10(Double(Float(bitPattern: core.gainBits.load(ordering: .relaxed))))))",
                "a4 hz: \(DaemonRules.shown(Double(Float(bitPattern: core.a4Bits.load(ordering: .relaxed)))))",
                "transpose: \(core.transpose.load(ordering: .relaxed))",
                "width: \(DaemonRules.shown(Double(Float(bitPattern: core.widthBits.load(ordering: .relaxed)))))",
                "cycles: \(st.cycles.load(ordering: .relaxed))",
                "memory locked: \(memoryLocked ? "yes" : "no")",
                "takes: " + (takes.map { t in "\(t.directory.path), ending after \(String(format: "%g", t.silence)) s of silence"
                    + (t.inProgress.map { String(format: "; in progress: %d notes, %.1f s", $0.notes, $0.seconds) } ?? "") } ?? "off"),
                "take events lost: \(st.takeEventsLost.load(ordering: .relaxed))",
                "recording: " + (wavRecorder.url.map { String(format: "%@, %.1f s", $0.path, wavRecorder.seconds) } ?? "no"),
                "recording overruns: \(core.recorder.overrunFrames.load(ordering: .relaxed))",
            ]
            return (true, lines, "")
        case .list:
            let current = st.instrument.load(ordering: .relaxed)
            return (true, (weights?.instruments ?? []).enumerated().map { "\($0.offset == current ? "*" : " ") \($0.offset) \($0.element)" }, "")
        case .piano(let name):
            guard let w = weights, let i = w.instrumentIndex(name) else {
                return (false, [], "unknown piano '\(name)' (see 'list')")
            }
            guard core.commands.push(.instrument(i)) else { return (false, [], "audio thread busy, try again") }
            return (true, ["piano \(i) (\(w.instruments[i]))"], "")
        case .gain(let db):
            core.gainBits.store(Float(pow(10, db / 20)).bitPattern, ordering: .relaxed)
            return (true, [String(format: "gain %.1f dB", db)], "")
        case .tune(let hz):
            core.a4Bits.store(Float(hz).bitPattern, ordering: .relaxed)
            return (true, ["a4 \(DaemonRules.shown(hz)) Hz"], "")
        case .transpose(let n):
            core.transpose.store(n, ordering: .relaxed)
            return (true, ["transpose \(n)"], "")
        case .width(let w):
            core.widthBits.store(Float(w).bitPattern, ordering: .relaxed)
            return (true, ["width \(DaemonRules.shown(w))"], "")
        case .panic:
            guard core.commands.push(.panic) else { return (false, [], "audio thread busy, try again") }
            return (true, ["all notes off"], "")
        case .midi(let status, let d1, let d2):
            // The control thread is controlMIDIQueue's one producer (after the warm-up); the
            // audio thread places the message by its time, as a keyboard's.
            core.controlMIDIQueue.push(TimedMIDI(time: monotonicNanoseconds(), status: status, data1: d1, data2: d2))
            return (true, [String(format: "midi %02X %02X %02X", status, d1, d2)], "")
        case .takes:
            guard let t = takes else { return (false, [], "the takes archive is off (takes_dir = \"none\")") }
            var lines = TakeArchive.list(t.directory)
            if let p = t.inProgress { lines.append(String(format: "(in progress: %d notes, %.1f s)", p.notes, p.seconds)) }
            return (true, lines, "")
        case .recordStart(let path):
            let channels = core.recorder.driverChannels.load(ordering: .relaxed)
            do {
                let line = try wavRecorder.start(path: path, rate: Int(preparedRate.rounded()),
                                                 channels: channels > 0 ? channels : (null != nil ? 1 : 2))
                return (true, [line], "")
            } catch { return (false, [], "\(error)") }
        case .recordStop:
            let r = wavRecorder.stop()
            return r.ok ? (true, [r.message], "") : (false, [], r.message)
        case .reload:
            let r = reload()
            if !r.ok { log(r.message) }
            return r.ok ? (true, [r.message], "") : (false, [], r.message)
        }
    }
}
