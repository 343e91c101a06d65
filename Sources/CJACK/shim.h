// JACK Audio Connection Kit (Debian: libjack-jackd2-dev, LGPL-2.1+, dynamically linked).
#include <jack/jack.h>
#include <jack/midiport.h>
#include <stdint.h>

// jack_client_open is variadic, which Swift cannot call.
static inline jack_client_t *cjack_client_open(const char *name, int no_start_server, jack_status_t *status) {
    return jack_client_open(name, no_start_server ? JackNoStartServer : JackNullOption, status);
}
// Macros Swift does not import.
static inline const char *cjack_default_audio_type(void) { return JACK_DEFAULT_AUDIO_TYPE; }
static inline const char *cjack_default_midi_type(void) { return JACK_DEFAULT_MIDI_TYPE; }
