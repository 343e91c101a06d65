// The daemon's drivers run the driver-neutral real-time core (AudioCore, queues, MIDIRouter),
// which the LV2 plugin shares; its users see it through the daemon's module too.
@_exported import PianoLive
