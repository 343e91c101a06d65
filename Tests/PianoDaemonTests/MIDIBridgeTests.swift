import Foundation
import PianoDaemon
import PianoTestKit
import XCTest

/// With connect_midi = all the daemon subscribes every ALSA sequencer MIDI port itself, so the
/// JACK ports that bridge those same ports must not be connected as well (doubled notes). The
/// names below are the bridges' own (PipeWire's spa alsa-seq, a2jmidid, jackd's seq and raw
/// MIDI drivers, as their sources and users' `jack_lsp -A` listings show them).
final class MIDIBridgeTests: XCTestCase {
    func testBridgesOfALSASequencerPortsAreRecognised() {
        let bridges: [(String, [String])] = [
            // PipeWire (0.3.6x and later): "Midi-Bridge:CLIENT:(capture_N) PORT".
            ("Midi-Bridge:Keystation 49 MK3:(capture_0) Keystation 49 MK3 MIDI 1", []),
            ("Midi-Bridge:Midi Through:(capture_0) Midi Through Port-0", []),
            // Earlier PipeWire: "Midi-Bridge:PORT (capture)".
            ("Midi-Bridge:Midi Through Port-0 (capture)", []),
            // a2jmidid: "a2j:CLIENT [ID] (capture): PORT".
            ("a2j:Keystation 49 MK3 [20] (capture): Keystation 49 MK3 MIDI 1", []),
            ("a2j:Midi Through [14] (capture): Midi Through Port-0", []),
            // jackd -X seq: system:midi_capture_N, aliased to the sequencer client.
            ("system:midi_capture_3", ["alsa_pcm:Arturia-KeyStep-32/midi_playback_1", "Arturia-KeyStep-32:midi/playback_1"]),
            ("system:midi_capture_1", ["alsa_pcm:Midi-Through/midi_playback_1", "Midi-Through:midi/playback_1"]),
        ]
        for (name, aliases) in bridges {
            XCTAssertTrue(MIDIBridge.isALSASequencerBridge(name: name, aliases: aliases), name)
        }
        let notBridges: [(String, [String])] = [
            // jackd -X raw / alsarawmidi: the device opened exclusively, never also through the sequencer.
            ("system:midi_capture_1", ["in-hw-1-0-0-Keystation-49-MK3-MIDI-1"]),
            ("system:midi_capture_1", ["alsa_midi:hw:U192k:0_0_UMC404HD_192k_MIDI_1_in"]),
            // JACK-native MIDI sources and audio ports' aliases.
            ("jtc-send:out", []),
            ("system:capture_1", ["alsa_pcm:hw:Intel,0:out1"]),
            ("Hydrogen:out", []),
            ("a2jmidid-clone:out", []),
        ]
        for (name, aliases) in notBridges {
            XCTAssertFalse(MIDIBridge.isALSASequencerBridge(name: name, aliases: aliases), "\(name) \(aliases)")
        }
    }

    /// Under `jackd -d dummy`: physical MIDI ports named as the bridges name them (a2jmidid's,
    /// PipeWire's Midi-Bridge, jackd's seq driver with its alias), a raw-MIDI-style port and a
    /// plain one (jack-test-client --ports); the daemon with connect_midi = all. With its ALSA
    /// sequencer input running it connects only the last two (the ALSA input has the others);
    /// without one (no /dev/snd/seq, as here) it connects all five, nothing being doubled.
    func testConnectAllSkipsBridgesOnlyWhileTheALSAInputRuns() throws {
        let dir = try DaemonSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let weights = try DaemonSupport.syntheticWeights(in: dir)
        let jack = try JackServer(dir: dir)
        try jack.start()
        defer { jack.stop() }
        let bridges = ["a2j:Keystation [20] (capture): Keystation MIDI 1", "Midi-Bridge:Keystation:(capture_0) Keystation MIDI 1",
                       "fakeseq:midi_capture_1"]
        let others = ["fakeraw:midi_capture_2", "kbd:out"]
        let ports = Process()
        ports.executableURL = try TestKit.executable("jack-test-client")
        ports.arguments = ["--ports", "60", "a2j|Keystation [20] (capture): Keystation MIDI 1", "Midi-Bridge|Keystation:(capture_0) Keystation MIDI 1",
                           "fakeseq|midi_capture_1|alsa_pcm:Keystation/midi_capture_1", "fakeraw|midi_capture_2|in-hw-1-0-0-Keystation", "kbd|out"]
        ports.environment = jack.environment
        let pipe = Pipe()
        ports.standardOutput = pipe
        try ports.run()
        defer { if ports.isRunning { ports.terminate() }; ports.waitUntilExit() }
        let first = String(decoding: pipe.fileHandleForReading.availableData, as: UTF8.self)
        XCTAssertTrue(first.hasPrefix("ready"), first)

        let daemon = try DaemonProcess(arguments: ["--weights", weights.path, "--connect-audio", "none", "--connect-midi", "all"],
                                       dir: dir, environment: jack.environment)
        defer { _ = daemon.stop() }
        XCTAssertTrue(daemon.waitReady(60), daemon.output)
        let alsa = (try? daemon.status()["alsa"]) ?? "unavailable"
        let expected = alsa == "unavailable" ? Set(bridges + others) : Set(others)
        var connected: Set<String> = []
        XCTAssertTrue(DaemonSupport.waitUntil(10) {
            connected = Set(((try? daemon.status()["connections midi_in"]) ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty })
            return connected == expected
        }, "midi_in connected to \(connected), expected \(expected) (alsa: \(alsa))\n\(daemon.output)")
        print("connect_midi = all with the ALSA input \(alsa == "unavailable" ? "unavailable" : "running (\(alsa))"): midi_in connected to \(connected.sorted())")
    }
}
