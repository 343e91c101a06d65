/// Which JACK MIDI ports are bridges of ALSA sequencer ports, by the names the bridges give them,
/// so that with connect_midi = all a keyboard the daemon's ALSA input already subscribes is not
/// connected a second time through JACK (every note doubled). The bridges and their naming:
/// - PipeWire's ALSA sequencer bridge (spa alsa-seq, the "Midi-Bridge" node): ports
///   "Midi-Bridge:CLIENT:(capture_N) PORT" (0.3.6x+), earlier "Midi-Bridge:PORT (capture)";
/// - a2jmidid: client "a2j", ports "a2j:CLIENT [ID] (capture): PORT";
/// - jackd's own sequencer MIDI driver (jackd -X seq): "system:midi_capture_N" with the alias
///   "alsa_pcm:CLIENT/midi_capture_N" (and "CLIENT:midi/capture_N").
/// Not bridges of the sequencer: jackd's raw MIDI drivers (-X raw, alsarawmidi: aliases
/// "in-hw-…" or "alsa_midi:hw:…"), which open the device exclusively, so the sequencer cannot
/// deliver it twice; they stay connected.
public enum MIDIBridge {
    public static func isALSASequencerBridge(name: String, aliases: [String]) -> Bool {
        if name.hasPrefix("Midi-Bridge:") || name.hasPrefix("a2j:") { return true }
        return aliases.contains { alias in
            alias.hasPrefix("alsa_pcm:") && (alias.contains("/midi_capture_") || alias.contains("/midi_playback_"))
        }
    }
}
