// A small LV2 host for the plugin's tests, on liblilv as real hosts are (Ardour, Carla, jalv):
// loads a bundle, instantiates the plugin one or more times, sends MIDI at exact frames in
// blocks of a given size, and writes what each instance played. It also counts the allocator
// calls made inside run() (CMallocCounter interposes malloc/free for this process).
//
// usage: lv2-test-host BUNDLE_DIR RATE BLOCK FRAMES EVENTS OUT PIANO [OUT2 PIANO2]
//   EVENTS: text, one "FRAME STATUS DATA1 DATA2" (decimal) per line, frames ascending.
//   OUT: raw float32, interleaved left/right, FRAMES frames. Each instance gets the same events.
// Prints "run allocations N frees M blocks B latency L" per instance on stdout.
// The host offers urid:map, buf-size options and a worker (run between blocks, as a host
// rendering offline does). Environment:
//   LV2_TEST_HOST_SET_WEIGHTS=FRAME:PATH  a patch:Set of the plugin's weights parameter in the
//                                         block holding FRAME (the worker loads it)
//   LV2_TEST_HOST_STATE=1                 two instances: the second is restored from the state
//                                         of the first after it played (lilv_state_new_from_instance,
//                                         lilv_state_restore), then plays the same events
//                                         (without the patch:Set) into OUT2
//   LV2_TEST_HOST_GAIN=DB, LV2_TEST_HOST_CURVE=N  the gain and velocity_curve controls (default 0)
//   LV2_TEST_HOST_WIDTH=W, LV2_TEST_HOST_A4=HZ, LV2_TEST_HOST_TRANSPOSE=N  the width (default 0:
//   mono, unlike the plugin's own default), a4 (440) and transpose (0) controls
//   LV2_TEST_HOST_ROUNDS=N                the whole run N times in one process (world made and
//                                         freed each time: the library opened and closed)
// Exit status: 0 played; 2 usage; 3 the bundle or plugin could not be loaded or instantiated.
#include "MallocCounter.h"
#include <lilv-0/lilv/lilv.h>
#include <lv2/atom/atom.h>
#include <lv2/atom/util.h>
#include <lv2/buf-size/buf-size.h>
#include <lv2/midi/midi.h>
#include <lv2/options/options.h>
#include <lv2/patch/patch.h>
#include <lv2/state/state.h>
#include <lv2/urid/urid.h>
#include <lv2/worker/worker.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PLUGIN_URI "urn:ddsp-piano:piano"
#define MAX_URIS 256

static char *uris[MAX_URIS];
static int nuris = 0;

static LV2_URID map_uri(LV2_URID_Map_Handle h, const char *uri) {
    (void)h;
    for (int i = 0; i < nuris; i++) if (strcmp(uris[i], uri) == 0) return (LV2_URID)(i + 1);
    if (nuris == MAX_URIS) return 0;
    uris[nuris] = strdup(uri);
    return (LV2_URID)(++nuris);
}

static const char *unmap_uri(LV2_URID_Unmap_Handle h, LV2_URID urid) {
    (void)h;
    return urid >= 1 && (int)urid <= nuris ? uris[urid - 1] : NULL;
}

typedef struct { int64_t frame; uint8_t bytes[3]; } Event;

// The worker: messages queued by schedule_work during run(), worked after it.
#define MAX_WORK 64
static uint8_t work_data[MAX_WORK][4096];
static uint32_t work_size[MAX_WORK];
static int work_count = 0;
static int responses = 0;

static LV2_Worker_Status schedule_work(LV2_Worker_Schedule_Handle h, uint32_t size, const void *data) {
    (void)h;
    if (work_count == MAX_WORK || size > sizeof work_data[0]) return LV2_WORKER_ERR_NO_SPACE;
    memcpy(work_data[work_count], data, size);
    work_size[work_count++] = size;
    return LV2_WORKER_SUCCESS;
}

static LV2_Worker_Status respond(LV2_Worker_Respond_Handle h, uint32_t size, const void *data) {
    (void)h; (void)size; (void)data;
    responses++;
    return LV2_WORKER_SUCCESS;
}

static void run_worker(LilvInstance *instance) {
    const LV2_Worker_Interface *w = lilv_instance_get_extension_data(instance, LV2_WORKER__interface);
    for (int i = 0; i < work_count; i++) {
        responses = 0;
        if (w) w->work(lilv_instance_get_handle(instance), respond, NULL, work_size[i], work_data[i]);
        for (int r = 0; r < responses; r++) if (w && w->work_response) w->work_response(lilv_instance_get_handle(instance), 0, NULL);
    }
    work_count = 0;
}

// Port values for state: the controls by symbol.
typedef struct Slot Slot;
static const void *get_port_value(const char *symbol, void *user, uint32_t *size, uint32_t *type);
static void set_port_value(const char *symbol, void *user, const void *value, uint32_t size, uint32_t type);

struct Slot {
    LilvInstance *instance;
    float *left, *right, piano, gain, curve, latency, width, a4, transpose;
    uint8_t *seq;   // the atom sequence buffer
    FILE *out;
    int64_t allocations, frees;
};

static LV2_URID urid_float;
static const void *get_port_value(const char *symbol, void *user, uint32_t *size, uint32_t *type) {
    Slot *sl = user;
    *size = sizeof(float);
    *type = urid_float;
    if (!strcmp(symbol, "piano")) return &sl->piano;
    if (!strcmp(symbol, "gain")) return &sl->gain;
    if (!strcmp(symbol, "velocity_curve")) return &sl->curve;
    *size = 0; *type = 0;
    return NULL;
}
static void set_port_value(const char *symbol, void *user, const void *value, uint32_t size, uint32_t type) {
    Slot *sl = user;
    if (size != sizeof(float) || type != urid_float) return;
    if (!strcmp(symbol, "piano")) memcpy(&sl->piano, value, 4);
    if (!strcmp(symbol, "gain")) memcpy(&sl->gain, value, 4);
    if (!strcmp(symbol, "velocity_curve")) memcpy(&sl->curve, value, 4);
}

// The events of [pos, pos + n) (and a patch:Set when asked) as an atom sequence.
static void write_sequence(uint8_t *buffer, const Event *events, size_t first, size_t last, long pos,
                           LV2_URID sequence, LV2_URID midi_event, const char *weights_path) {
    LV2_Atom_Sequence *seq = (LV2_Atom_Sequence *)buffer;
    seq->atom.type = sequence;
    seq->body.unit = 0;
    seq->body.pad = 0;
    uint32_t size = sizeof(LV2_Atom_Sequence_Body);
    if (weights_path) {
        // patch:Set { patch:property <…#weights>; patch:value "PATH"^^atom:Path } at frame 0.
        LV2_Atom_Event *ev = (LV2_Atom_Event *)((uint8_t *)seq + sizeof(LV2_Atom) + size);
        ev->time.frames = 0;
        LV2_Atom_Object *obj = (LV2_Atom_Object *)&ev->body;
        obj->atom.type = map_uri(NULL, LV2_ATOM__Object);
        obj->body.id = 0;
        obj->body.otype = map_uri(NULL, LV2_PATCH__Set);
        uint8_t *p = (uint8_t *)(obj + 1);
        LV2_Atom_Property_Body *prop = (LV2_Atom_Property_Body *)p;
        prop->key = map_uri(NULL, LV2_PATCH__property);
        prop->context = 0;
        prop->value.size = sizeof(LV2_URID);
        prop->value.type = map_uri(NULL, LV2_ATOM__URID);
        *(LV2_URID *)(prop + 1) = map_uri(NULL, "urn:ddsp-piano:piano#weights");
        p += sizeof(LV2_Atom_Property_Body) + lv2_atom_pad_size(sizeof(LV2_URID));
        prop = (LV2_Atom_Property_Body *)p;
        prop->key = map_uri(NULL, LV2_PATCH__value);
        prop->context = 0;
        uint32_t len = (uint32_t)strlen(weights_path) + 1;
        prop->value.size = len;
        prop->value.type = map_uri(NULL, LV2_ATOM__Path);
        memcpy(prop + 1, weights_path, len);
        p += sizeof(LV2_Atom_Property_Body) + lv2_atom_pad_size(len);
        obj->atom.size = (uint32_t)(p - (uint8_t *)&obj->body);
        size += (uint32_t)lv2_atom_pad_size(sizeof(LV2_Atom_Event) + obj->atom.size);
    }
    for (size_t e = first; e < last; e++) {
        LV2_Atom_Event *ev = (LV2_Atom_Event *)((uint8_t *)seq + sizeof(LV2_Atom) + size);
        ev->time.frames = events[e].frame - pos;
        int len = (events[e].bytes[0] & 0xF0) == 0xC0 || (events[e].bytes[0] & 0xF0) == 0xD0 ? 2 : 3;
        ev->body.size = (uint32_t)len;
        ev->body.type = midi_event;
        memcpy(ev + 1, events[e].bytes, (size_t)len);
        size += (uint32_t)lv2_atom_pad_size(sizeof(LV2_Atom_Event) + (uint32_t)len);
    }
    seq->atom.size = size;
}

static int setup(Slot *sl, const LilvPlugin *plugin, double rate, const LV2_Feature *const *features,
                 int block, const char *out, float piano) {
    sl->instance = lilv_plugin_instantiate(plugin, rate, features);
    if (!sl->instance) return 3;
    sl->left = calloc((size_t)block, sizeof(float));
    sl->right = calloc((size_t)block, sizeof(float));
    sl->seq = aligned_alloc(8, 1 << 16);
    sl->piano = piano;
    sl->gain = getenv("LV2_TEST_HOST_GAIN") ? (float)atof(getenv("LV2_TEST_HOST_GAIN")) : 0;
    sl->curve = getenv("LV2_TEST_HOST_CURVE") ? (float)atof(getenv("LV2_TEST_HOST_CURVE")) : 0;
    sl->width = getenv("LV2_TEST_HOST_WIDTH") ? (float)atof(getenv("LV2_TEST_HOST_WIDTH")) : 0;
    sl->a4 = getenv("LV2_TEST_HOST_A4") ? (float)atof(getenv("LV2_TEST_HOST_A4")) : 440;
    sl->transpose = getenv("LV2_TEST_HOST_TRANSPOSE") ? (float)atof(getenv("LV2_TEST_HOST_TRANSPOSE")) : 0;
    sl->latency = -1;
    sl->allocations = sl->frees = 0;
    lilv_instance_connect_port(sl->instance, 0, sl->seq);
    lilv_instance_connect_port(sl->instance, 1, sl->left);
    lilv_instance_connect_port(sl->instance, 2, sl->right);
    lilv_instance_connect_port(sl->instance, 3, &sl->piano);
    lilv_instance_connect_port(sl->instance, 4, &sl->gain);
    lilv_instance_connect_port(sl->instance, 5, &sl->curve);
    lilv_instance_connect_port(sl->instance, 6, &sl->latency);
    lilv_instance_connect_port(sl->instance, 7, &sl->width);
    lilv_instance_connect_port(sl->instance, 8, &sl->a4);
    lilv_instance_connect_port(sl->instance, 9, &sl->transpose);
    sl->out = fopen(out, "wb");
    return sl->out ? 0 : 2;
}

// Plays `count` instances block by block (interleaved: all live at once in one process).
static void play(Slot *slots, int count, const Event *events, size_t nevents, long frames, int block,
                 long set_frame, const char *set_path, LV2_URID sequence, LV2_URID midi_event) {
    float *interleaved = malloc(2 * (size_t)block * sizeof(float));
    size_t next = 0;
    for (long pos = 0; pos < frames; pos += block) {
        int n = (int)(frames - pos < block ? frames - pos : block);
        size_t first = next;
        while (next < nevents && events[next].frame < pos + n) next++;
        const char *path = set_path && set_frame >= pos && set_frame < pos + n ? set_path : NULL;
        for (int k = 0; k < count; k++) {
            Slot *sl = &slots[k];
            write_sequence(sl->seq, events, first, next, pos, sequence, midi_event, path);
            malloc_counter_start();
            lilv_instance_run(sl->instance, (uint32_t)n);
            malloc_counter_stop();
            sl->allocations += malloc_counter_allocations();
            sl->frees += malloc_counter_frees();
            run_worker(sl->instance);   // between blocks, as a host's worker thread would
            for (int i = 0; i < n; i++) { interleaved[2 * i] = sl->left[i]; interleaved[2 * i + 1] = sl->right[i]; }
            fwrite(interleaved, sizeof(float), 2 * (size_t)n, sl->out);
        }
    }
    free(interleaved);
    for (int k = 0; k < count; k++) {
        printf("run allocations %lld frees %lld blocks %ld latency %.0f\n", (long long)slots[k].allocations,
               (long long)slots[k].frees, (frames + block - 1) / block, slots[k].latency);
        fclose(slots[k].out);
    }
    fflush(stdout);
}

static void release(Slot *sl) {
    lilv_instance_deactivate(sl->instance);
    lilv_instance_free(sl->instance);
    free(sl->left);
    free(sl->right);
    free(sl->seq);
}

int main(int argc, char **argv) {
    if (argc != 8 && argc != 10) {
        fprintf(stderr, "usage: %s BUNDLE_DIR RATE BLOCK FRAMES EVENTS OUT PIANO [OUT2 PIANO2]\n", argv[0]);
        return 2;
    }
    const char *bundle = argv[1];
    double rate = atof(argv[2]);
    int block = atoi(argv[3]);
    long frames = atol(argv[4]);
    if (rate <= 0 || block <= 0 || frames <= 0) { fprintf(stderr, "bad RATE, BLOCK or FRAMES\n"); return 2; }
    int state_mode = getenv("LV2_TEST_HOST_STATE") && argc == 10;
    int rounds = getenv("LV2_TEST_HOST_ROUNDS") ? atoi(getenv("LV2_TEST_HOST_ROUNDS")) : 1;
    long set_frame = -1;
    const char *set_path = NULL;
    if (getenv("LV2_TEST_HOST_SET_WEIGHTS")) {
        const char *spec = getenv("LV2_TEST_HOST_SET_WEIGHTS");
        set_frame = atol(spec);
        set_path = strchr(spec, ':') ? strchr(spec, ':') + 1 : NULL;
    }

    // Events.
    FILE *ef = fopen(argv[5], "r");
    if (!ef) { fprintf(stderr, "%s: cannot open\n", argv[5]); return 2; }
    Event *events = NULL;
    size_t nevents = 0, cap = 0;
    long long f; int s, a, b;
    while (fscanf(ef, "%lld %d %d %d", &f, &s, &a, &b) == 4) {
        if (nevents == cap) { cap = cap ? 2 * cap : 256; events = realloc(events, cap * sizeof *events); }
        events[nevents++] = (Event){ f, { (uint8_t)s, (uint8_t)a, (uint8_t)b } };
    }
    fclose(ef);

    LV2_URID_Map map = { NULL, map_uri };
    LV2_Feature map_feature = { LV2_URID__map, &map };
    int32_t max_block = block;
    LV2_URID atom_int = map_uri(NULL, LV2_ATOM__Int);
    urid_float = map_uri(NULL, LV2_ATOM__Float);
    LV2_Options_Option options[] = {
        { LV2_OPTIONS_INSTANCE, 0, map_uri(NULL, LV2_BUF_SIZE__maxBlockLength), sizeof(int32_t), atom_int, &max_block },
        { LV2_OPTIONS_INSTANCE, 0, 0, 0, 0, NULL },
    };
    LV2_Feature options_feature = { LV2_OPTIONS__options, options };
    LV2_Worker_Schedule schedule = { NULL, schedule_work };
    LV2_Feature schedule_feature = { LV2_WORKER__schedule, &schedule };
    const LV2_Feature *features[] = { &map_feature, &options_feature, &schedule_feature, NULL };
    LV2_URID midi_event = map_uri(NULL, LV2_MIDI__MidiEvent);
    LV2_URID atom_sequence = map_uri(NULL, LV2_ATOM__Sequence);

    for (int round = 0; round < rounds; round++) {
        LilvWorld *world = lilv_world_new();
        size_t blen = strlen(bundle);
        char *uri = malloc(blen + 16);
        sprintf(uri, "file://%s%s", bundle, bundle[blen - 1] == '/' ? "" : "/");
        LilvNode *bundle_node = lilv_new_uri(world, uri);
        lilv_world_load_bundle(world, bundle_node);
        LilvNode *plugin_uri = lilv_new_uri(world, PLUGIN_URI);
        const LilvPlugin *plugin = lilv_plugins_get_by_uri(lilv_world_get_all_plugins(world), plugin_uri);
        if (!plugin) { fprintf(stderr, "%s: no plugin %s in the bundle\n", bundle, PLUGIN_URI); return 3; }

        Slot slots[2];
        memset(slots, 0, sizeof slots);
        if (state_mode) {
            // The first plays (with the patch:Set), its state is saved; the second is restored
            // from it before activation and plays the same events.
            int rc = setup(&slots[0], plugin, rate, features, block, argv[6], (float)atof(argv[7]));
            if (rc) { fprintf(stderr, "%s: the plugin could not be instantiated\n", bundle); return rc; }
            lilv_instance_activate(slots[0].instance);
            play(&slots[0], 1, events, nevents, frames, block, set_frame, set_path, atom_sequence, midi_event);
            LilvState *state = lilv_state_new_from_instance(plugin, slots[0].instance, &map, NULL, NULL, NULL, NULL,
                                                            get_port_value, &slots[0], LV2_STATE_IS_POD | LV2_STATE_IS_PORTABLE, features);
            LV2_URID_Unmap unmap = { NULL, unmap_uri };
            char *text = lilv_state_to_string(world, &map, &unmap, state, "urn:ddsp-piano:test-state", NULL);
            fprintf(stderr, "%s\n", text ? text : "(no state)");
            free(text);
            release(&slots[0]);
            rc = setup(&slots[1], plugin, rate, features, block, argv[8], (float)atof(argv[9]));
            if (rc) { fprintf(stderr, "%s: the plugin could not be instantiated\n", bundle); return rc; }
            lilv_state_restore(state, slots[1].instance, set_port_value, &slots[1], 0, features);
            lilv_state_free(state);
            lilv_instance_activate(slots[1].instance);
            play(&slots[1], 1, events, nevents, frames, block, -1, NULL, atom_sequence, midi_event);
            release(&slots[1]);
        } else {
            int ninstances = argc == 10 ? 2 : 1;
            const char *outs[2] = { argv[6], argc == 10 ? argv[8] : NULL };
            const char *pianos[2] = { argv[7], argc == 10 ? argv[9] : NULL };
            for (int k = 0; k < ninstances; k++) {
                int rc = setup(&slots[k], plugin, rate, features, block, outs[k], (float)atof(pianos[k]));
                if (rc) { fprintf(stderr, "%s: the plugin could not be instantiated\n", bundle); return rc; }
                lilv_instance_activate(slots[k].instance);
            }
            // Both instances live at once in one process (the patch:Set, when asked, to each).
            play(slots, ninstances, events, nevents, frames, block, set_frame, set_path, atom_sequence, midi_event);
            for (int k = 0; k < ninstances; k++) release(&slots[k]);
        }
        lilv_node_free(plugin_uri);
        lilv_node_free(bundle_node);
        lilv_world_free(world);   // closes the library
        free(uri);
    }
    free(events);
    return 0;
}
