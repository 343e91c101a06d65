import Atomics
import Foundation
import PianoIO
import PianoLive
#if canImport(Glibc)
import Glibc
#endif

/// The daemon under a Non Session Manager (API 1.2), when NSM_URL is set: announce, wait for the
/// server's open (no JACK or ALSA client before it, as the API asks), then play with the client
/// id as the daemon's name (JACK client, ALSA client, control socket NAME.sock) and the session
/// directory's ddsp-pianod.toml as the config file; save writes the settings in force there.
/// Everything runs on the control loop's thread (the UDP socket is polled with the others).
extension Daemon {
    /// How long the daemon waits for the announce's answer before going on without a session.
    public static let nsmAnnounceTimeout: Double = 5
    /// The config file inside the session directory.
    public static let sessionConfigName = "ddsp-pianod.toml"

    /// Announces to `url` and waits for the session to open. False: a signal asked the daemon to
    /// stop while it waited. A server that does not answer within `nsmAnnounceTimeout`, refuses,
    /// or an unusable URL: one line, and the daemon runs as without NSM_URL.
    func joinSession(url: String) -> Bool {
        let client: NSMClient
        do { client = try NSMClient(url: url) } catch {
            log("\(error); running without a session manager")
            return true
        }
        guard client.announce() else {
            log("NSM_URL \(url): cannot send the announce; running without a session manager")
            return true
        }
        var announced = false
        let deadline = monotonicNanoseconds() + UInt64(Self.nsmAnnounceTimeout * 1e9)
        while true {
            let now = monotonicNanoseconds()
            if !announced && now >= deadline {
                log("NSM_URL \(url): no answer from a session manager within \(Int(Self.nsmAnnounceTimeout)) s; running without one")
                return true
            }
            var fds = [pollfd(fd: Signals.descriptor, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: client.descriptor, events: Int16(POLLIN), revents: 0)]
            _ = poll(&fds, 2, 100)
            if fds[0].revents != 0 {
                while let signo = Signals.next() {
                    if signo == SIGHUP { continue }
                    log("signal \(signo == SIGINT ? "SIGINT" : "SIGTERM") while waiting for the session manager: shutting down")
                    return false
                }
            }
            let messages = client.receive()
            if let f = client.firstForeign { log("NSM: ignoring messages from other ports than the session manager's (first: \(f))"); client.firstForeign = nil }
            for message in messages {
                switch NSMEvent(message) {
                case .announced(let text, let server, _):
                    announced = true
                    log("session manager \(server.isEmpty ? url : server) answered (\(text)); waiting for it to open a session")
                case .refused(let code, let text):
                    log("NSM_URL \(url): the session manager refused the announce (\(code): \(text)); running without one")
                    return true
                case .open(let path, let displayName, let clientID):
                    if let failure = openSession(path: path, clientID: clientID) {
                        log("NSM open of \(path) refused: \(failure.message)")
                        client.error(to: "/nsm/client/open", code: failure.code, failure.message)
                        continue
                    }
                    nsm = client
                    log("NSM session '\(displayName)' as \(clientID): settings in \(configPath ?? "-")")
                    return true
                case .save:
                    client.error(to: "/nsm/client/save", code: -6, "no session open yet")
                case .ignored:
                    break
                }
            }
        }
    }

    /// The session directory made, its config file read (or written from the settings in force
    /// when there is none yet), the client id taken as the daemon's name. Nil when it worked,
    /// else the API's error code and one line.
    func openSession(path: String, clientID: String) -> (code: Int32, message: String)? {
        guard DaemonRules.isName(clientID) else {
            return (NSMClient.errGeneral, "client id '\(clientID)' cannot name the daemon (\(DaemonRules.nameRule))")
        }
        guard path.hasPrefix("/") else { return (NSMClient.errBadProject, "'\(path)' is not an absolute path") }
        do { try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) } catch {
            return (NSMClient.errCreateFailed, "\(path): cannot create the session directory (\((error as NSError).localizedDescription))")
        }
        let file = (path as NSString).appendingPathComponent(Self.sessionConfigName)
        if FileManager.default.fileExists(atPath: file) {
            let previous = configPath
            configPath = file
            do { _ = try loadSettings() } catch {
                configPath = previous
                return (NSMClient.errBadProject, "\(error)")
            }
        } else {
            var s: DaemonSettings
            do { s = try loadSettings() } catch { return (NSMClient.errGeneral, "\(error)") }
            s.name = nil
            s.controlSocket = nil
            do { try s.write(to: file, header: Self.sessionHeader) } catch { return (NSMClient.errCreateFailed, "\(error)") }
            configPath = file
        }
        nsmName = clientID
        sessionPath = path
        return nil
    }

    static let sessionHeader = "ddsp-pianod's settings in an NSM session (written on save; the session's client id names the\ndaemon and its control socket, so there is no name or control_socket here)."

    /// The settings in force as a session saves them: the piano playing, the gain, tuning,
    /// transposition and width now (`ctl` changes since the last load included).
    func sessionSettings() -> DaemonSettings {
        var s = settings
        if let w = weights {
            let i = currentInstrument
            if i >= 0 && i < w.instruments.count { s.piano = w.instruments[i] }
        }
        let db = 20 * log10(Double(Float(bitPattern: core.gainBits.load(ordering: .relaxed))))
        if db.isFinite { s.gainDB = min(max((db * 1000).rounded() / 1000, DaemonRules.gainDB.lowerBound), DaemonRules.gainDB.upperBound) }
        // `ctl tune`, `ctl transpose`, `ctl width` as they are now.
        s.a4Hz = Double(Float(bitPattern: core.a4Bits.load(ordering: .relaxed)))
        s.transpose = core.transpose.load(ordering: .relaxed)
        s.width = Double(Float(bitPattern: core.widthBits.load(ordering: .relaxed)))
        s.name = nil
        s.controlSocket = nil
        return s
    }

    /// The session manager's messages after the open: save, and an open the daemon cannot do.
    func serviceSession() {
        guard let nsm else { return }
        let messages = nsm.receive()
        if let f = nsm.firstForeign { log("NSM: ignoring messages from other ports than the session manager's (first: \(f))"); nsm.firstForeign = nil }
        for message in messages {
            switch NSMEvent(message) {
            case .save:
                guard let path = configPath else { continue }
                do {
                    try sessionSettings().write(to: path, header: Self.sessionHeader)
                    nsm.reply(to: "/nsm/client/save")
                    log("NSM save: \(path)")
                } catch {
                    log("NSM save failed: \(error)")
                    nsm.error(to: "/nsm/client/save", code: NSMClient.errGeneral, "\(error)")
                }
            case .open:
                nsm.error(to: "/nsm/client/open", code: -8, "ddsp-pianod cannot switch sessions while it runs (restart it)")
            default:
                break
            }
        }
    }
}
