#!/usr/bin/env python3
"""Writes examples/arpeggios.mid, the bundled example (standard library only).

A I-vi-IV-V-I progression in C major, each chord rolled up and held with the
sustain pedal, with a few velocity changes: about 10 s of music that exercises
notes, velocities and pedal. Written from scratch for this project (Apache-2.0).

    python3 examples/make_examples.py
"""
import os
import struct

TPQ = 480          # ticks per quarter note
TEMPO = 500_000    # microseconds per quarter: 120 bpm, so one tick = 1/960 s


def vlq(n):
    """MIDI variable-length quantity."""
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    return bytes(reversed(out))


def track(events):
    """events: (absolute tick, bytes, order); at equal ticks lower order goes first (offs before ons)."""
    data = b""
    last = 0
    ordered = sorted(events, key=lambda e: (e[0], e[2]))
    for tick, msg, _ in ordered:
        data += vlq(tick - last) + msg
        last = tick
    data += vlq(0) + b"\xff\x2f\x00"  # end of track
    return b"MTrk" + struct.pack(">I", len(data)) + data


def main():
    # (chord tones low to high, velocity): one chord per bar of 4 beats.
    chords = [
        ([48, 55, 60, 64, 67, 72], 70),   # C
        ([45, 52, 57, 60, 64, 69], 58),   # Am
        ([41, 48, 53, 57, 60, 65], 64),   # F
        ([43, 50, 55, 59, 62, 67], 80),   # G
        ([36, 48, 55, 60, 64, 72], 90),   # C, low C added
    ]
    events = [
        (0, b"\xff\x51\x03" + TEMPO.to_bytes(3, "big"), 0),   # tempo
        (0, b"\xc0\x00", 0),                                  # program 0: acoustic grand
    ]
    bar = 4 * TPQ
    step = TPQ // 4  # rolled chord: a sixteenth note between tones
    for i, (tones, vel) in enumerate(chords):
        start = i * bar
        last_bar = i == len(chords) - 1
        # Pedal: lift just after the new chord's first note, press again right after.
        if i > 0:
            events.append((start + 10, bytes([0xB0, 64, 0]), 1))
        events.append((start + 60, bytes([0xB0, 64, 127]), 2))
        for k, pitch in enumerate(tones):
            on = start + k * step
            off = start + bar - 40 if not last_bar else start + 2 * bar
            v = max(1, min(127, vel + (k % 3) * 6 - 6))
            events.append((on, bytes([0x90, pitch, v]), 2))
            events.append((off, bytes([0x80, pitch, 0]), 0))
    end = len(chords) * bar + bar
    events.append((end, bytes([0xB0, 64, 0]), 1))
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, TPQ)   # format 0, one track
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "arpeggios.mid")
    with open(out, "wb") as f:
        f.write(header + track(events))
    print("wrote", out)


if __name__ == "__main__":
    main()
