import CLV2
import Foundation

// The LV2 entry points: C function pointers into PianoPlugin. The one exported symbol is
// `lv2_descriptor` (exports.map); the host calls the rest through the descriptor.

private func instance(_ handle: LV2_Handle?) -> PianoPlugin {
    Unmanaged<PianoPlugin>.fromOpaque(handle!).takeUnretainedValue()
}

private let instantiate: @convention(c) (UnsafePointer<LV2_Descriptor>?, Double, UnsafePointer<CChar>?,
                                         UnsafePointer<UnsafePointer<LV2_Feature>?>?) -> LV2_Handle? = { _, rate, bundle, features in
    do {
        let plugin = try PianoPlugin(sampleRate: rate, bundlePath: bundle.map { String(cString: $0) } ?? ".",
                                     features: Features(features))
        return Unmanaged.passRetained(plugin).toOpaque()
    } catch {
        // The host reports a failed instantiation; this line says why (instantiate is not real-time).
        FileHandle.standardError.write(Data("ddsp-piano.lv2: \(error)\n".utf8))
        return nil
    }
}

private let connectPort: @convention(c) (LV2_Handle?, UInt32, UnsafeMutableRawPointer?) -> Void = { handle, port, data in
    let p = instance(handle)
    switch PianoPlugin.Port(rawValue: port) {
    case .midiIn: p.midiIn = data.map { UnsafePointer($0.assumingMemoryBound(to: LV2_Atom_Sequence.self)) }
    case .outL: p.outL = data?.assumingMemoryBound(to: Float.self)
    case .outR: p.outR = data?.assumingMemoryBound(to: Float.self)
    case .piano: p.pianoPort = data.map { UnsafePointer($0.assumingMemoryBound(to: Float.self)) }
    case .gain: p.gainPort = data.map { UnsafePointer($0.assumingMemoryBound(to: Float.self)) }
    case .velocityCurve: p.curvePort = data.map { UnsafePointer($0.assumingMemoryBound(to: Float.self)) }
    case .latency: p.latencyPort = data?.assumingMemoryBound(to: Float.self)
    case nil: break
    }
}

private let activate: @convention(c) (LV2_Handle?) -> Void = { handle in instance(handle).activate() }

private let run: @convention(c) (LV2_Handle?, UInt32) -> Void = { handle, frames in instance(handle).run(Int(frames)) }

private let deactivate: @convention(c) (LV2_Handle?) -> Void = { _ in }

private let cleanup: @convention(c) (LV2_Handle?) -> Void = { handle in
    guard let handle else { return }
    Unmanaged<PianoPlugin>.fromOpaque(handle).release()
}

private let extensionData: @convention(c) (UnsafePointer<CChar>?) -> UnsafeRawPointer? = { _ in nil }

/// Made once, never freed: hosts keep the pointer for as long as the library is loaded.
// nonisolated(unsafe): written once by its lazy initialiser (thread-safe), then only read.
nonisolated(unsafe) private let descriptor: UnsafeMutablePointer<LV2_Descriptor> = {
    let d = UnsafeMutablePointer<LV2_Descriptor>.allocate(capacity: 1)
    d.initialize(to: LV2_Descriptor(URI: UnsafePointer(strdup(PianoPlugin.uri)), instantiate: instantiate,
                                    connect_port: connectPort, activate: activate, run: run,
                                    deactivate: deactivate, cleanup: cleanup, extension_data: extensionData))
    return d
}()

@_cdecl("lv2_descriptor")
public func lv2Descriptor(_ index: UInt32) -> UnsafePointer<LV2_Descriptor>? {
    index == 0 ? UnsafePointer(descriptor) : nil
}
