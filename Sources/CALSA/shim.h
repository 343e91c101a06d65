// ALSA sequencer and PCM playback (Debian: libasound2-dev, LGPL-2.1+, dynamically linked).
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

// MARK: PCM playback (ALSAOutput)

// Sample formats, in the order ALSAOutput prefers them.
enum { CALSA_FORMAT_FLOAT = 0, CALSA_FORMAT_S32 = 1, CALSA_FORMAT_S16 = 2 };
static inline snd_pcm_format_t calsa_pcm_format(int f) {
    return f == CALSA_FORMAT_FLOAT ? SND_PCM_FORMAT_FLOAT_LE : f == CALSA_FORMAT_S32 ? SND_PCM_FORMAT_S32_LE : SND_PCM_FORMAT_S16_LE;
}

// Opens `device` for playback, non-blocking (the loop waits with snd_pcm_wait, so that it can
// notice a stop). 0 or a negative errno (snd_strerror).
static inline int calsa_pcm_open(snd_pcm_t **pcm, const char *device) {
    return snd_pcm_open(pcm, device, SND_PCM_STREAM_PLAYBACK, SND_PCM_NONBLOCK);
}

// Negotiates the hardware and software parameters: read/write interleaved access, the first
// of `formats` (n of them, CALSA_FORMAT_*) the device takes, two channels (else one, else the
// nearest count), the rate nearest *rate, a period nearest *period frames and a period count
// nearest *periods; then starts the stream only once the buffer is full, wakes the writer per
// period, silences what was played and stamps its pointer with CLOCK_MONOTONIC. The values actually set come back
// through the pointers (*buffer: the buffer in frames). 0, or a negative errno with *stage
// naming the step that failed.
static inline int calsa_pcm_configure(snd_pcm_t *pcm, const int *formats, int n, int *format,
                                      unsigned *channels, unsigned *rate, unsigned long *period,
                                      unsigned *periods, unsigned long *buffer, const char **stage) {
    snd_pcm_hw_params_t *hw = NULL;
    snd_pcm_sw_params_t *sw = NULL;
    int err, dir = 0, i;
    snd_pcm_uframes_t frames = *period, size = 0, boundary = 0;
#define CALSA_TRY(what, call) do { if ((err = (call)) < 0) { *stage = what; goto done; } } while (0)
    CALSA_TRY("allocating parameters", snd_pcm_hw_params_malloc(&hw));
    CALSA_TRY("allocating parameters", snd_pcm_sw_params_malloc(&sw));
    CALSA_TRY("reading its capabilities", snd_pcm_hw_params_any(pcm, hw));
    CALSA_TRY("setting interleaved read/write access", snd_pcm_hw_params_set_access(pcm, hw, SND_PCM_ACCESS_RW_INTERLEAVED));
    err = -EINVAL;
    for (i = 0; i < n; i++) {
        if (snd_pcm_hw_params_test_format(pcm, hw, calsa_pcm_format(formats[i])) == 0) {
            *format = formats[i];
            err = snd_pcm_hw_params_set_format(pcm, hw, calsa_pcm_format(formats[i]));
            break;
        }
    }
    CALSA_TRY("choosing a sample format (FLOAT_LE, S32_LE or S16_LE)", err);
    if (snd_pcm_hw_params_test_channels(pcm, hw, 2) == 0) *channels = 2;
    else if (snd_pcm_hw_params_test_channels(pcm, hw, 1) == 0) *channels = 1;
    CALSA_TRY("setting the channels", snd_pcm_hw_params_set_channels_near(pcm, hw, channels));
    CALSA_TRY("setting the rate", snd_pcm_hw_params_set_rate_near(pcm, hw, rate, &dir));
    dir = 0;
    CALSA_TRY("setting the period size", snd_pcm_hw_params_set_period_size_near(pcm, hw, &frames, &dir));
    dir = 0;
    CALSA_TRY("setting the period count", snd_pcm_hw_params_set_periods_near(pcm, hw, periods, &dir));
    CALSA_TRY("applying the hardware parameters", snd_pcm_hw_params(pcm, hw));
    dir = 0;
    CALSA_TRY("reading the period size", snd_pcm_hw_params_get_period_size(hw, &frames, &dir));
    dir = 0;
    CALSA_TRY("reading the period count", snd_pcm_hw_params_get_periods(hw, periods, &dir));
    CALSA_TRY("reading the buffer size", snd_pcm_hw_params_get_buffer_size(hw, &size));
    *period = frames;
    *buffer = size;
    CALSA_TRY("reading the software parameters", snd_pcm_sw_params_current(pcm, sw));
    CALSA_TRY("setting the start threshold", snd_pcm_sw_params_set_start_threshold(pcm, sw, size));
    CALSA_TRY("setting the wake-up threshold", snd_pcm_sw_params_set_avail_min(pcm, sw, frames));
    // What has been played is silenced behind the pointer: after an underrun the device plays
    // silence, not the stale periods still in its ring (which would repeat old audio).
    CALSA_TRY("reading the boundary", snd_pcm_sw_params_get_boundary(sw, &boundary));
    CALSA_TRY("setting the silence threshold", snd_pcm_sw_params_set_silence_threshold(pcm, sw, 0));
    CALSA_TRY("setting the silence size", snd_pcm_sw_params_set_silence_size(pcm, sw, boundary));
    CALSA_TRY("enabling timestamps", snd_pcm_sw_params_set_tstamp_mode(pcm, sw, SND_PCM_TSTAMP_ENABLE));
    // Not every plugin knows the timestamp type: without it the stamps are what they are, and
    // ALSAOutput falls back to the time it woke up.
    (void)snd_pcm_sw_params_set_tstamp_type(pcm, sw, SND_PCM_TSTAMP_TYPE_MONOTONIC);
    CALSA_TRY("applying the software parameters", snd_pcm_sw_params(pcm, sw));
    CALSA_TRY("preparing the stream", snd_pcm_prepare(pcm));
    err = 0;
#undef CALSA_TRY
done:
    if (hw) snd_pcm_hw_params_free(hw);
    if (sw) snd_pcm_sw_params_free(sw);
    return err;
}

// The frames free in the buffer and the CLOCK_MONOTONIC time of that figure, in nanoseconds
// (0: no stamp, e.g. not running yet). 0 or a negative errno.
static inline int calsa_pcm_stamp(snd_pcm_t *pcm, long *avail, unsigned long long *nanoseconds) {
    snd_pcm_uframes_t a = 0;
    snd_htimestamp_t t = {0, 0};
    int err = snd_pcm_htimestamp(pcm, &a, &t);
    *avail = (long)a;
    *nanoseconds = (unsigned long long)t.tv_sec * 1000000000ull + (unsigned long long)t.tv_nsec;
    return err;
}

// Running (1), or not yet started / stopped (0).
static inline int calsa_pcm_running(snd_pcm_t *pcm) { return snd_pcm_state(pcm) == SND_PCM_STATE_RUNNING; }
