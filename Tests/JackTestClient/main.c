// Test JACK client for ddsp-pianod's end-to-end tests: two clients in one process, so the
// graph is sender -> ddsp-piano -> recorder with no feedback loop (every port is read in
// the cycle it was written).
//   jack-test-client TARGET OUT.f32 SECONDS NOTE:START_MS:DUR_MS ...
//   jack-test-client TARGET OUT.f32|- SECONDS --events FILE
//   jack-test-client --ports SECONDS CLIENT|PORT[|ALIAS] ...   (see fake_ports)
// (FILE: lines "SAMPLE STATUS DATA1 DATA2", sample offsets from the start, sorted; OUT "-":
// play without recording, for soak runs) connects jtc-send:out -> TARGET:midi_in and TARGET:out_L -> jtc-rec:in, waits for both,
// picks a start frame T0 a little ahead, plays the notes relative to T0 (velocity 100),
// records SECONDS of out_L from T0 as raw float32, and prints "start_frame T0", "rate R"
// and one "note PITCH ON_FRAME OFF_FRAME" line per note (absolute JACK frames), and what the
// machine did to it: undelivered, late_events, unwritten_events, sender_skipped_cycles,
// recorder_skipped_cycles, xruns, zombified, recorded_frames (one "NAME N" line each).
// JTC_AUDIO_PORT=NAME records TARGET:NAME instead of TARGET:out_L.
// JTC_STREAM_CLOCK=1 in the environment: positions after T0 count the samples of the cycles as
// they come (the stream), not JACK's frame clock. The two differ across a buffer-size change:
// jackd2 advances its frame time by the new period at the first cycle after one, so the clock
// jumps by the difference while the audio stream runs on sample for sample. The recording is
// then the stream from T0, and events go out at their stream positions; "period_change POS N"
// lines say where the recorder's period changed (stream position, new period).
#include <jack/jack.h>
#include <jack/midiport.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct { unsigned char note; jack_nframes_t on, off; } Note;
static Note notes[256];
static int nnotes;
typedef struct { jack_nframes_t frame; unsigned char bytes[3]; } Event;
static Event *events;
static long nevents, next_event;
static jack_client_t *snd, *rec;
static jack_port_t *midi_out, *audio_in;
static volatile jack_nframes_t t0;      // 0 until connections are made
static volatile int t0_set, recorded_done;
static float *buffer;
static jack_nframes_t total;
// What the machine did to this client (reported, so that a test can tell the machine's
// fault from the daemon's): cycles the server skipped for each client, xrun notifications,
// events sent after their frame (their cycle was skipped), events never written (the MIDI
// buffer was full), and whether the server threw a client out.
static volatile long send_skipped, rec_skipped, xruns, late_events, unwritten_events, zombified;
static jack_nframes_t send_expected, rec_expected;
static volatile long recorded_frames;
// JTC_STREAM_CLOCK: each client's stream position (samples after T0) at the start of its cycle.
static int stream_clock, send_started, rec_started;
static long send_pos, rec_pos;
// The recorder's period changes while recording (stream position, new period), reported.
static long change_pos[16];
static jack_nframes_t change_n[16], rec_last_n;
static int nchanges;

static void note_skips(jack_nframes_t ft, jack_nframes_t n, jack_nframes_t *expected, volatile long *skipped) {
    if (*expected != 0 && ft != *expected) *skipped += (long)(int32_t)(ft - *expected) / (long)n;
    *expected = ft + n;
}

static int send_process(jack_nframes_t n, void *arg) {
    (void)arg;
    void *buf = jack_port_get_buffer(midi_out, n);
    jack_midi_clear_buffer(buf);
    jack_nframes_t ft = jack_last_frame_time(snd);
    note_skips(ft, n, &send_expected, &send_skipped);
    if (!t0_set) return 0;
    if (stream_clock) {
        if (!send_started) { send_pos = (long)(int32_t)(ft - t0); send_started = 1; }
        while (next_event < nevents && (long)(int32_t)(events[next_event].frame - t0) - send_pos < (long)n) {
            long off = (long)(int32_t)(events[next_event].frame - t0) - send_pos;
            if (off < 0) late_events++;
            int size = (events[next_event].bytes[0] & 0xF0) == 0xC0 ? 2 : 3;
            if (jack_midi_event_write(buf, off < 0 ? 0 : (jack_nframes_t)off, events[next_event].bytes, size) != 0) unwritten_events++;
            next_event++;
        }
        send_pos += n;
        return 0;
    }
    // (signed frame differences: an event whose cycle the server skipped is in the past, and is
    // sent now rather than never, which would also block every event after it)
    while (next_event < nevents && (long)(int32_t)(events[next_event].frame - ft) < (long)n) {
        long off = (long)(int32_t)(events[next_event].frame - ft);
        if (off < 0) late_events++;
        int size = (events[next_event].bytes[0] & 0xF0) == 0xC0 ? 2 : 3;
        if (jack_midi_event_write(buf, off < 0 ? 0 : (jack_nframes_t)off, events[next_event].bytes, size) != 0) unwritten_events++;
        next_event++;
    }
    return 0;
}

static int on_xrun(void *arg) { (void)arg; xruns++; return 0; }
static void on_shutdown(void *arg) { (void)arg; zombified = 1; }
static int by_frame(const void *a, const void *b) {
    const Event *x = a, *y = b;
    if (x->frame != y->frame) return (int32_t)(x->frame - y->frame) < 0 ? -1 : 1;
    // Same frame: note-offs before note-ons (a re-strike ends the old note first).
    int xo = (x->bytes[0] & 0xF0) == 0x80, yo = (y->bytes[0] & 0xF0) == 0x80;
    return yo - xo;
}

static int rec_process(jack_nframes_t n, void *arg) {
    (void)arg;
    float *in = jack_port_get_buffer(audio_in, n);
    jack_nframes_t ft = jack_last_frame_time(rec);
    note_skips(ft, n, &rec_expected, &rec_skipped);
    if (!t0_set) return 0;
    if (stream_clock) {
        if (!rec_started) { rec_pos = (long)(int32_t)(ft - t0); rec_started = 1; rec_last_n = n; }
        if (n != rec_last_n && nchanges < 16) { change_pos[nchanges] = rec_pos; change_n[nchanges] = n; nchanges++; }
        rec_last_n = n;
        for (jack_nframes_t i = 0; i < n; i++) {
            long k = rec_pos + (long)i;
            if (k >= 0 && k < (long)total) { recorded_frames++; if (buffer) buffer[k] = in[i]; }
        }
        rec_pos += n;
        if (rec_pos >= (long)total) recorded_done = 1;
        return 0;
    }
    for (jack_nframes_t i = 0; i < n; i++) {
        long k = (long)(int32_t)(ft + i - t0);
        if (k >= 0 && k < (long)total) { recorded_frames++; if (buffer) buffer[k] = in[i]; }
    }
    if ((long)(int32_t)(ft + n - t0) >= (long)total) recorded_done = 1;
    return 0;
}

// jack-test-client --ports SECONDS CLIENT|PORT[|ALIAS] ...: physical MIDI output ports as
// the MIDI bridges make them (a2jmidid's, PipeWire's Midi-Bridge, jackd's seq driver with its
// alias), each under its own client name, held for SECONDS; prints "ready" once all exist.
static int fake_ports(int argc, char **argv) {
    double seconds = atof(argv[2]);
    jack_client_t *clients[16];
    char names[16][512];
    int nclients = 0;
    for (int i = 3; i < argc; i++) {
        char spec[512];
        snprintf(spec, sizeof spec, "%s", argv[i]);
        char *port = strchr(spec, '|');
        if (!port) { fprintf(stderr, "bad port '%s'\n", argv[i]); return 2; }
        *port++ = 0;
        char *alias = strchr(port, '|');
        if (alias) *alias++ = 0;
        jack_client_t *c = NULL;
        for (int k = 0; k < nclients; k++) if (strcmp(names[k], spec) == 0) c = clients[k];
        if (!c) {
            if (nclients == 16) return 2;
            jack_status_t st;
            c = jack_client_open(spec, JackNoStartServer | JackUseExactName, &st);
            if (!c) { fprintf(stderr, "jack-test-client: cannot open client %s (0x%x)\n", spec, st); return 1; }
            snprintf(names[nclients], sizeof names[nclients], "%s", spec);
            clients[nclients++] = c;
        }
        jack_port_t *p = jack_port_register(c, port, JACK_DEFAULT_MIDI_TYPE, JackPortIsOutput | JackPortIsPhysical | JackPortIsTerminal, 0);
        if (!p) { fprintf(stderr, "jack-test-client: cannot register %s:%s\n", spec, port); return 1; }
        if (alias && jack_port_set_alias(p, alias) != 0) { fprintf(stderr, "jack-test-client: cannot alias %s\n", alias); return 1; }
    }
    for (int k = 0; k < nclients; k++) if (jack_activate(clients[k])) { fprintf(stderr, "jack-test-client: cannot activate\n"); return 1; }
    printf("ready\n");
    fflush(stdout);
    usleep((useconds_t)(seconds * 1e6));
    for (int k = 0; k < nclients; k++) jack_client_close(clients[k]);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 3 && strcmp(argv[1], "--ports") == 0) return fake_ports(argc, argv);
    if (argc < 4) { fprintf(stderr, "usage: %s TARGET OUT.f32 SECONDS NOTE:START_MS:DUR_MS...\n", argv[0]); return 2; }
    const char *target = argv[1], *out = argv[2];
    double seconds = atof(argv[3]);
    const char *sc = getenv("JTC_STREAM_CLOCK");
    stream_clock = sc && strcmp(sc, "1") == 0;
    jack_status_t st;
    snd = jack_client_open("jtc-send", JackNoStartServer, &st);
    rec = jack_client_open("jtc-rec", JackNoStartServer, &st);
    if (!snd || !rec) { fprintf(stderr, "jack-test-client: no JACK server (0x%x)\n", st); return 1; }
    jack_nframes_t rate = jack_get_sample_rate(snd);
    total = (jack_nframes_t)(seconds * rate);
    int record = strcmp(out, "-") != 0;
    if (record) buffer = calloc(total, sizeof(float));
    midi_out = jack_port_register(snd, "out", JACK_DEFAULT_MIDI_TYPE, JackPortIsOutput, 0);
    audio_in = jack_port_register(rec, "in", JACK_DEFAULT_AUDIO_TYPE, JackPortIsInput, 0);
    jack_set_process_callback(snd, send_process, 0);
    jack_set_process_callback(rec, rec_process, 0);
    jack_set_xrun_callback(snd, on_xrun, 0);
    jack_on_shutdown(snd, on_shutdown, 0);
    jack_on_shutdown(rec, on_shutdown, 0);
    if (jack_activate(snd) || jack_activate(rec)) { fprintf(stderr, "jack-test-client: cannot activate\n"); return 1; }
    char src[256], dst[256];
    snprintf(dst, sizeof dst, "%s:midi_in", target);
    // JTC_AUDIO_PORT: the target's output port name (default out_L, the daemon's; jalv names
    // a plugin's ports by their LV2 symbols: out_l).
    const char *audio_port = getenv("JTC_AUDIO_PORT") ? getenv("JTC_AUDIO_PORT") : "out_L";
    snprintf(src, sizeof src, "%s:%s", target, audio_port);
    int ok = 0;
    for (int i = 0; i < 500 && !ok; i++) {
        jack_connect(snd, "jtc-send:out", dst);
        jack_connect(rec, src, "jtc-rec:in");
        ok = jack_port_connected(midi_out) > 0 && jack_port_connected(audio_in) > 0;
        if (!ok) usleep(10000);
    }
    if (!ok) { fprintf(stderr, "jack-test-client: cannot connect to %s\n", target); return 1; }
    usleep(100000);   // the graph order settles
    jack_nframes_t start = jack_frame_time(snd) + rate / 5;
    if (argc == 6 && strcmp(argv[4], "--events") == 0) {
        FILE *ef = fopen(argv[5], "r");
        if (!ef) { fprintf(stderr, "cannot read %s\n", argv[5]); return 2; }
        long cap = 1024; events = malloc(cap * sizeof(Event));
        unsigned long frame; unsigned st, d1, d2;
        while (fscanf(ef, "%lu %u %u %u", &frame, &st, &d1, &d2) == 4) {
            if (nevents == cap) { cap *= 2; events = realloc(events, cap * sizeof(Event)); }
            events[nevents].frame = start + (jack_nframes_t)frame;
            events[nevents].bytes[0] = st; events[nevents].bytes[1] = d1; events[nevents].bytes[2] = d2;
            nevents++;
        }
        fclose(ef);
        argc = 4;
    }
    // Notes become events too, so that a note whose cycle the server skipped is still sent
    // (late, at the start of the next cycle, and counted) instead of being lost.
    for (int i = 4; i < argc && nnotes < 256; i++) {
        int note, s, d;
        if (sscanf(argv[i], "%d:%d:%d", &note, &s, &d) != 3) { fprintf(stderr, "bad note '%s'\n", argv[i]); return 2; }
        notes[nnotes].note = (unsigned char)note;
        notes[nnotes].on = start + (jack_nframes_t)((double)s * rate / 1000);
        notes[nnotes].off = start + (jack_nframes_t)((double)(s + d) * rate / 1000);
        events = realloc(events, (size_t)(nevents + 2) * sizeof(Event));
        events[nevents++] = (Event){ notes[nnotes].on, {0x90, (unsigned char)note, 100} };
        events[nevents++] = (Event){ notes[nnotes].off, {0x80, (unsigned char)note, 0} };
        nnotes++;
    }
    if (nnotes > 0) qsort(events, (size_t)nevents, sizeof(Event), by_frame);   // (an --events file is already in order)
    t0 = start;
    __sync_synchronize();
    t0_set = 1;
    double waited = 0;
    while (!recorded_done && waited < seconds + 30) { usleep(10000); waited += 0.01; }
    jack_client_close(snd);
    jack_client_close(rec);
    printf("undelivered %ld\nlate_events %ld\nunwritten_events %ld\nsender_skipped_cycles %ld\nrecorder_skipped_cycles %ld\nxruns %ld\nzombified %ld\nrecorded_frames %ld\n",
           nevents - next_event, late_events, unwritten_events, send_skipped, rec_skipped, xruns, zombified, recorded_frames);
    if (!recorded_done) { fprintf(stderr, "jack-test-client: recording did not complete\n"); return 1; }
    printf("start_frame %u\nrate %u\nevents %ld\n", start, rate, next_event);
    for (int k = 0; k < nnotes; k++) printf("note %d %u %u\n", notes[k].note, notes[k].on, notes[k].off);
    for (int k = 0; k < nchanges; k++) printf("period_change %ld %u\n", change_pos[k], change_n[k]);
    if (!record) return 0;
    FILE *f = fopen(out, "wb");
    if (!f || fwrite(buffer, sizeof(float), total, f) != total) { fprintf(stderr, "cannot write %s\n", out); return 1; }
    fclose(f);
    return 0;
}
