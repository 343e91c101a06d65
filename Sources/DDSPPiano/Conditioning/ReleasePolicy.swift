/// The one rule for every bounded buffer between a MIDI source and the engine (the daemon's
/// queues and backlogs, its per-cycle event list, the engine's pending-event ring): events
/// whose loss would leave sound stuck are *releases*, and a full buffer never drops or
/// overwrites one. It makes room by dropping a non-release instead (a note-on or pedal-down
/// lost is a wrong note, not a stuck one); a buffer holding nothing but releases holds a
/// redundant one, because it is larger than `distinctTargets`.
public enum ReleasePolicy {
    /// Distinct things a release can act on: 16 channels × (128 keys + 7 controllers:
    /// CC64–67 pedal-ups, CC120, CC121, CC123). A buffer larger than this that is full of
    /// releases always holds two for the same target, the older of which is redundant.
    public static let distinctTargets = 16 * (128 + 7)

    /// Note-offs (velocity-0 note-ons included), pedal releases (CC64–67 below 64) and the
    /// all-sound-off / reset-controllers / all-notes-off controllers (CC120, 121, 123).
    @inline(__always)
    public static func isRelease(status: UInt8, data1: UInt8, data2: UInt8) -> Bool {
        switch status & 0xF0 {
        case 0x80, 0x90: return endsNote(status: status, velocity: data2)
        case 0xB0:
            switch data1 {
            case 64, 65, 66, 67: return data2 < 64
            case 120, 121, 123: return true
            default: return false
            }
        default: return false
        }
    }

    /// The MIDI rule that a note-on of velocity 0 is a note-off, written once: the file
    /// reader's note pairing, the engine and the daemon's routing all ask this.
    @inline(__always)
    public static func endsNote(status: UInt8, velocity: UInt8) -> Bool {
        switch status & 0xF0 {
        case 0x80: return true
        case 0x90: return velocity == 0
        default: return false
        }
    }

    /// What a release acts on (channel and key, or channel and controller), for finding a
    /// redundant duplicate.
    @inline(__always)
    public static func target(status: UInt8, data1: UInt8) -> UInt32 {
        let kind: UInt32 = (status & 0xF0) == 0xB0 ? 1 : 0
        return kind << 16 | UInt32(status & 0x0F) << 8 | UInt32(data1)
    }
}

extension MIDIMessage {
    /// The message as MIDI bytes (status, data1, data2; data2 is 0 for a program change).
    @inline(__always)
    public var bytes: (status: UInt8, data1: UInt8, data2: UInt8) {
        switch self {
        case let .noteOn(c, p, v): return (0x90 | (c & 0x0F), p, v)
        case let .noteOff(c, p, v): return (0x80 | (c & 0x0F), p, v)
        case let .controlChange(c, n, v): return (0xB0 | (c & 0x0F), n, v)
        case let .programChange(c, p): return (0xC0 | (c & 0x0F), p, 0)
        }
    }

    /// A note-off, or a note-on of velocity 0 (`ReleasePolicy.endsNote`).
    @inline(__always)
    public var endsNote: Bool {
        let b = bytes
        return ReleasePolicy.endsNote(status: b.status, velocity: b.data2)
    }

    /// See `ReleasePolicy`.
    @inline(__always)
    public var isRelease: Bool {
        let b = bytes
        return ReleasePolicy.isRelease(status: b.status, data1: b.data1, data2: b.data2)
    }

    @inline(__always)
    public var releaseTarget: UInt32 {
        let b = bytes
        return ReleasePolicy.target(status: b.status, data1: b.data1)
    }
}
