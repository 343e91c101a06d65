// ALSA sequencer (Debian: libasound2-dev, LGPL-2.1+, dynamically linked).
#include <alsa/asoundlib.h>
#include <stdint.h>

// The sequencer API is mostly macros and unions; these flat accessors are what Swift calls.
static inline int calsa_open(snd_seq_t **seq) {
    return snd_seq_open(seq, "default", SND_SEQ_OPEN_DUPLEX, SND_SEQ_NONBLOCK);
}
static inline int calsa_create_input_port(snd_seq_t *seq, const char *name) {
    return snd_seq_create_simple_port(seq, name,
        SND_SEQ_PORT_CAP_WRITE | SND_SEQ_PORT_CAP_SUBS_WRITE,
        SND_SEQ_PORT_TYPE_MIDI_GENERIC | SND_SEQ_PORT_TYPE_SYNTHESIZER | SND_SEQ_PORT_TYPE_APPLICATION);
}
static inline int calsa_connect_announce(snd_seq_t *seq, int port) {
    return snd_seq_connect_from(seq, port, SND_SEQ_CLIENT_SYSTEM, SND_SEQ_PORT_SYSTEM_ANNOUNCE);
}
static inline int calsa_event_type(const snd_seq_event_t *e) { return e->type; }
static inline int calsa_source_client(const snd_seq_event_t *e) { return e->source.client; }
static inline int calsa_source_port(const snd_seq_event_t *e) { return e->source.port; }
static inline int calsa_note_channel(const snd_seq_event_t *e) { return e->data.note.channel; }
static inline int calsa_note_note(const snd_seq_event_t *e) { return e->data.note.note; }
static inline int calsa_note_velocity(const snd_seq_event_t *e) { return e->data.note.velocity; }
static inline int calsa_control_channel(const snd_seq_event_t *e) { return e->data.control.channel; }
static inline unsigned calsa_control_param(const snd_seq_event_t *e) { return e->data.control.param; }
static inline int calsa_control_value(const snd_seq_event_t *e) { return e->data.control.value; }
static inline int calsa_addr_client(const snd_seq_event_t *e) { return e->data.addr.client; }
static inline int calsa_addr_port(const snd_seq_event_t *e) { return e->data.addr.port; }
static inline int calsa_connect_sender_client(const snd_seq_event_t *e) { return e->data.connect.sender.client; }
static inline int calsa_connect_sender_port(const snd_seq_event_t *e) { return e->data.connect.sender.port; }
static inline int calsa_connect_dest_client(const snd_seq_event_t *e) { return e->data.connect.dest.client; }

enum {
    CALSA_NOTEON = SND_SEQ_EVENT_NOTEON, CALSA_NOTEOFF = SND_SEQ_EVENT_NOTEOFF,
    CALSA_CONTROLLER = SND_SEQ_EVENT_CONTROLLER, CALSA_PGMCHANGE = SND_SEQ_EVENT_PGMCHANGE,
    CALSA_CLIENT_START = SND_SEQ_EVENT_CLIENT_START, CALSA_CLIENT_EXIT = SND_SEQ_EVENT_CLIENT_EXIT,
    CALSA_PORT_START = SND_SEQ_EVENT_PORT_START, CALSA_PORT_EXIT = SND_SEQ_EVENT_PORT_EXIT,
    CALSA_PORT_SUBSCRIBED = SND_SEQ_EVENT_PORT_SUBSCRIBED, CALSA_PORT_UNSUBSCRIBED = SND_SEQ_EVENT_PORT_UNSUBSCRIBED,
    CALSA_CAP_READ = SND_SEQ_PORT_CAP_READ, CALSA_CAP_SUBS_READ = SND_SEQ_PORT_CAP_SUBS_READ,
    CALSA_CAP_NO_EXPORT = SND_SEQ_PORT_CAP_NO_EXPORT,
    CALSA_TYPE_MIDI_GENERIC = SND_SEQ_PORT_TYPE_MIDI_GENERIC, CALSA_TYPE_HARDWARE = SND_SEQ_PORT_TYPE_HARDWARE,
    CALSA_TYPE_PORT = SND_SEQ_PORT_TYPE_PORT,
};

// alsa-lib prints its own message when /dev/snd/seq is missing; the daemon says it once itself.
static void calsa_quiet_handler(const char *file, int line, const char *function, int err, const char *fmt, ...) {
    (void)file; (void)line; (void)function; (void)err; (void)fmt;
}
static inline void calsa_silence_errors(void) { snd_lib_error_set_handler(calsa_quiet_handler); }
