import Foundation

/// ddsp-pianod's command line. Every setting of the config file is also a flag; a flag wins.
public enum DaemonCommandLine {
    public static let help = """
    USAGE: ddsp-pianod [options]

    The DDSP-Piano instrument daemon: MIDI in (ALSA sequencer "DDSP Piano", JACK midi_in),
    audio out (JACK client "ddsp-piano", ports out_L/out_R), controlled with 'ddsp-piano ctl'.

    OPTIONS:
      --config FILE            TOML configuration (default: $XDG_CONFIG_HOME/ddsp-piano/ddsp-pianod.toml
                               when it exists); SIGHUP or 'ddsp-piano ctl reload' re-reads it
      --weights FILE           weight file (default: the lookup of 'ddsp-piano render')
      --piano N|YEAR           instrument: index or name (default 9, i.e. 2018)
      --gain DB                output gain in dB (-60…24, default 0)
      --velocity-curve C       linear, soft, hard or a gamma 0.2…5 (default linear)
      --channels LIST          MIDI channels played, e.g. 1,2 or all (default all)
      --audio jack|null        JACK, or a timer-clocked engine with no output (default jack)
      --connect-audio SPEC     system | none | REGEX of JACK input ports (default system)
      --connect-midi SPEC      all | none | REGEX of MIDI sources, ALSA and JACK (default all)
      --control-socket PATH    control socket (default $XDG_RUNTIME_DIR/ddsp-piano/control.sock)
      --no-wait                exit with status 3 when there is no JACK server (or it goes away)
                               instead of waiting and reconnecting
      --no-noise               leave out the filtered-noise part of the sound
      --sample-rate HZ         null audio's rate (default 48000; JACK sets its own)
      --block-size N           null audio's block (default 256)
      -h, --help               show this help

    Exit status: 0 after SIGINT/SIGTERM, 1 bad weights or socket, 2 bad configuration or
    arguments, 3 no JACK server with --no-wait.
    """

    static func fail(_ message: String) -> Int32 {
        FileHandle.standardError.write(Data("ddsp-pianod: \(message)\n".utf8))
        return 2
    }

    public static func main(arguments: [String]) -> Int32 {
        var config: String?
        var edits: [(inout DaemonSettings) -> Void] = []
        var i = 0
        func value(_ flag: String) -> String? {
            i += 1
            return i < arguments.count ? arguments[i] : nil
        }
        while i < arguments.count {
            let a = arguments[i]
            var flag = a, inline: String? = nil
            if a.hasPrefix("--"), let eq = a.firstIndex(of: "=") {
                flag = String(a[..<eq]); inline = String(a[a.index(after: eq)...])
            }
            func arg() -> String? { inline ?? value(flag) }
            switch flag {
            case "-h", "--help":
                print(help)
                return 0
            case "--no-wait": edits.append { $0.noWait = true }
            case "--no-noise": edits.append { $0.noise = false }
            case "--config", "--weights", "--piano", "--gain", "--velocity-curve", "--channels", "--audio",
                 "--connect-audio", "--connect-midi", "--control-socket", "--sample-rate", "--block-size":
                guard let v = arg() else { return fail("\(flag) needs a value") }
                switch flag {
                case "--config": config = v
                case "--weights": edits.append { $0.weights = v }
                case "--piano": edits.append { $0.piano = v }
                case "--gain":
                    guard let db = Double(v), (-60...24).contains(db) else { return fail("--gain takes decibels between -60 and 24, not '\(v)'") }
                    edits.append { $0.gainDB = db }
                case "--velocity-curve":
                    guard MIDIRouter.gamma(forCurve: v) != nil else { return fail("--velocity-curve takes linear, soft, hard or a gamma 0.2…5, not '\(v)'") }
                    edits.append { $0.velocityCurve = v }
                case "--channels":
                    if v == "all" { edits.append { $0.channels = nil } } else {
                        let list = v.split(separator: ",").compactMap { Int($0) }
                        guard !list.isEmpty, list.count == v.split(separator: ",").count, list.allSatisfy({ (1...16).contains($0) }) else {
                            return fail("--channels takes 'all' or channels 1…16 separated by commas, not '\(v)'")
                        }
                        edits.append { $0.channels = Set(list) }
                    }
                case "--audio":
                    guard v == "jack" || v == "null" else { return fail("--audio takes jack or null, not '\(v)'") }
                    edits.append { $0.audio = v }
                case "--connect-audio": edits.append { $0.connectAudio = v }
                case "--connect-midi": edits.append { $0.connectMIDI = v }
                case "--control-socket": edits.append { $0.controlSocket = v }
                default:
                    guard let n = Int(v), n > 0, n <= 384_000 else { return fail("\(flag) takes a positive integer, not '\(v)'") }
                    if flag == "--sample-rate" { edits.append { $0.sampleRate = n } } else { edits.append { $0.blockSize = n } }
                }
            default:
                return fail("unknown argument '\(a)' (see --help)")
            }
            i += 1
        }
        let daemon = Daemon(configPath: config, log: { line in
            FileHandle.standardError.write(Data("ddsp-pianod: \(line)\n".utf8))
        }, overrides: { s in
            var s = s
            for e in edits { e(&s) }
            return s
        })
        return daemon.run()
    }
}
