// A small LV2 host for the plugin's tests, on liblilv as real hosts are (Ardour, Carla, jalv):
// loads a bundle, instantiates the plugin one or more times, sends MIDI at exact frames in
// blocks of a given size, and writes what each instance played. It also counts the allocator
// calls made inside run() (CMallocCounter interposes malloc/free for this process).
//
// usage: lv2-test-host BUNDLE_DIR RATE BLOCK FRAMES EVENTS OUT PIANO [OUT2 PIANO2]
//   EVENTS: text, one "FRAME STATUS DATA1 DATA2" (decimal) per line, frames ascending.
//   OUT: raw float32, interleaved left/right, FRAMES frames. Each instance gets the same events.
// Prints "run allocations N frees M blocks B latency L" per instance on stdout.
// Exit status: 0 played; 2 usage; 3 the bundle or plugin could not be loaded or instantiated.
#include "MallocCounter.h"
#include <lilv-0/lilv/lilv.h>
#include <lv2/atom/atom.h>
#include <lv2/atom/util.h>
#include <lv2/buf-size/buf-size.h>
#include <lv2/midi/midi.h>
#include <lv2/options/options.h>
#include <lv2/urid/urid.h>
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

typedef struct { int64_t frame; uint8_t bytes[3]; } Event;

typedef struct {
    LilvInstance *instance;
    float *left, *right, piano, gain, curve, latency;
    uint8_t *seq;   // the atom sequence buffer
    FILE *out;
    int64_t allocations, frees;
} Slot;

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

    LilvWorld *world = lilv_world_new();
    size_t blen = strlen(bundle);
    char *uri = malloc(blen + 16);
    sprintf(uri, "file://%s%s", bundle, bundle[blen - 1] == '/' ? "" : "/");
    LilvNode *bundle_node = lilv_new_uri(world, uri);
    lilv_world_load_bundle(world, bundle_node);
    LilvNode *plugin_uri = lilv_new_uri(world, PLUGIN_URI);
    const LilvPlugin *plugin = lilv_plugins_get_by_uri(lilv_world_get_all_plugins(world), plugin_uri);
    if (!plugin) { fprintf(stderr, "%s: no plugin %s in the bundle\n", bundle, PLUGIN_URI); return 3; }

    LV2_URID_Map map = { NULL, map_uri };
    LV2_Feature map_feature = { LV2_URID__map, &map };
    int32_t max_block = block;
    LV2_URID atom_int = map_uri(NULL, LV2_ATOM__Int);
    LV2_Options_Option options[] = {
        { LV2_OPTIONS_INSTANCE, 0, map_uri(NULL, LV2_BUF_SIZE__maxBlockLength), sizeof(int32_t), atom_int, &max_block },
        { LV2_OPTIONS_INSTANCE, 0, 0, 0, 0, NULL },
    };
    LV2_Feature options_feature = { LV2_OPTIONS__options, options };
    const LV2_Feature *features[] = { &map_feature, &options_feature, NULL };

    LV2_URID midi_event = map_uri(NULL, LV2_MIDI__MidiEvent);
    LV2_URID atom_sequence = map_uri(NULL, LV2_ATOM__Sequence);
    LV2_URID atom_chunk = map_uri(NULL, LV2_ATOM__Chunk);
    const size_t seq_capacity = 1 << 16;

    int ninstances = argc == 10 ? 2 : 1;
    Slot slots[2];
    memset(slots, 0, sizeof slots);
    const char *outs[2] = { argv[6], argc == 10 ? argv[8] : NULL };
    const char *pianos[2] = { argv[7], argc == 10 ? argv[9] : NULL };
    for (int k = 0; k < ninstances; k++) {
        Slot *sl = &slots[k];
        sl->instance = lilv_plugin_instantiate(plugin, rate, features);
        if (!sl->instance) { fprintf(stderr, "%s: the plugin could not be instantiated\n", bundle); return 3; }
        sl->left = calloc((size_t)block, sizeof(float));
        sl->right = calloc((size_t)block, sizeof(float));
        sl->seq = aligned_alloc(8, seq_capacity);
        sl->piano = (float)atof(pianos[k]);
        sl->gain = 0;
        sl->curve = 0;
        sl->latency = -1;
        lilv_instance_connect_port(sl->instance, 0, sl->seq);
        lilv_instance_connect_port(sl->instance, 1, sl->left);
        lilv_instance_connect_port(sl->instance, 2, sl->right);
        lilv_instance_connect_port(sl->instance, 3, &sl->piano);
        lilv_instance_connect_port(sl->instance, 4, &sl->gain);
        lilv_instance_connect_port(sl->instance, 5, &sl->curve);
        lilv_instance_connect_port(sl->instance, 6, &sl->latency);
        lilv_instance_activate(sl->instance);
        sl->out = fopen(outs[k], "wb");
        if (!sl->out) { fprintf(stderr, "%s: cannot write\n", outs[k]); return 2; }
    }

    float *interleaved = malloc(2 * (size_t)block * sizeof(float));
    size_t next = 0;
    long blocks = 0;
    for (long pos = 0; pos < frames; pos += block) {
        int n = (int)(frames - pos < block ? frames - pos : block);
        size_t first = next;
        while (next < nevents && events[next].frame < pos + n) next++;
        for (int k = 0; k < ninstances; k++) {
            Slot *sl = &slots[k];
            // The block's events as an atom sequence (what a host writes before each run).
            LV2_Atom_Sequence *seq = (LV2_Atom_Sequence *)sl->seq;
            seq->atom.type = atom_sequence;
            seq->body.unit = 0;
            seq->body.pad = 0;
            uint32_t size = sizeof(LV2_Atom_Sequence_Body);
            for (size_t e = first; e < next; e++) {
                LV2_Atom_Event *ev = (LV2_Atom_Event *)((uint8_t *)seq + sizeof(LV2_Atom) + size);
                ev->time.frames = events[e].frame - pos;
                int len = (events[e].bytes[0] & 0xF0) == 0xC0 || (events[e].bytes[0] & 0xF0) == 0xD0 ? 2 : 3;
                ev->body.size = (uint32_t)len;
                ev->body.type = midi_event;
                memcpy(ev + 1, events[e].bytes, (size_t)len);
                size += (uint32_t)lv2_atom_pad_size(sizeof(LV2_Atom_Event) + (uint32_t)len);
            }
            seq->atom.size = size;
            malloc_counter_start();
            lilv_instance_run(sl->instance, (uint32_t)n);
            malloc_counter_stop();
            sl->allocations += malloc_counter_allocations();
            sl->frees += malloc_counter_frees();
            // Hosts reset an input sequence's capacity for the next cycle; an output would be a chunk.
            seq->atom.type = atom_chunk;
            seq->atom.size = (uint32_t)(seq_capacity - sizeof(LV2_Atom));
            for (int i = 0; i < n; i++) { interleaved[2 * i] = sl->left[i]; interleaved[2 * i + 1] = sl->right[i]; }
            fwrite(interleaved, sizeof(float), 2 * (size_t)n, sl->out);
        }
        blocks++;
    }
    for (int k = 0; k < ninstances; k++) {
        Slot *sl = &slots[k];
        printf("run allocations %lld frees %lld blocks %ld latency %.0f\n",
               (long long)sl->allocations, (long long)sl->frees, blocks, sl->latency);
        fclose(sl->out);
        lilv_instance_deactivate(sl->instance);
        lilv_instance_free(sl->instance);
    }
    lilv_node_free(plugin_uri);
    lilv_node_free(bundle_node);
    lilv_world_free(world);
    free(interleaved);
    free(events);
    free(uri);
    return 0;
}
