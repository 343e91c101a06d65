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
    case .width: p.widthPort = data.map { UnsafePointer($0.assumingMemoryBound(to: Float.self)) }
    case .a4: p.a4Port = data.map { UnsafePointer($0.assumingMemoryBound(to: Float.self)) }
    case .transpose: p.transposePort = data.map { UnsafePointer($0.assumingMemoryBound(to: Float.self)) }
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

// The worker: another weight file loaded, and released engines freed, off the audio thread.
private let work: @convention(c) (LV2_Handle?, LV2_Worker_Respond_Function?, LV2_Worker_Respond_Handle?,
                                  UInt32, UnsafeRawPointer?) -> LV2_Worker_Status = { handle, respond, respondHandle, size, data in
    guard let data else { return LV2_WORKER_ERR_UNKNOWN }
    instance(handle).work(Int(size), data) {
        var none: UInt32 = 0
        _ = respond?(respondHandle, 4, &none)
    }
    return LV2_WORKER_SUCCESS
}
private let workResponse: @convention(c) (LV2_Handle?, UInt32, UnsafeRawPointer?) -> LV2_Worker_Status = { handle, _, _ in
    instance(handle).workResponse()
    return LV2_WORKER_SUCCESS
}

// State: the weight file and the piano playing (the controls are saved by the host).
private let save: @convention(c) (LV2_Handle?, LV2_State_Store_Function?, LV2_State_Handle?, UInt32,
                                  UnsafePointer<UnsafePointer<LV2_Feature>?>?) -> LV2_State_Status = { handle, store, stateHandle, _, _ in
    guard let store else { return LV2_STATE_ERR_UNKNOWN }
    return instance(handle).save(store, stateHandle)
}
private let restore: @convention(c) (LV2_Handle?, LV2_State_Retrieve_Function?, LV2_State_Handle?, UInt32,
                                     UnsafePointer<UnsafePointer<LV2_Feature>?>?) -> LV2_State_Status = { handle, retrieve, stateHandle, _, _ in
    guard let retrieve else { return LV2_STATE_ERR_UNKNOWN }
    return instance(handle).restore(retrieve, stateHandle)
}

// nonisolated(unsafe): written once by their lazy initialisers (thread-safe), then only read.
nonisolated(unsafe) private let workerInterface: UnsafeMutablePointer<LV2_Worker_Interface> = {
    let p = UnsafeMutablePointer<LV2_Worker_Interface>.allocate(capacity: 1)
    p.initialize(to: LV2_Worker_Interface(work: work, work_response: workResponse, end_run: nil))
    return p
}()
nonisolated(unsafe) private let stateInterface: UnsafeMutablePointer<LV2_State_Interface> = {
    let p = UnsafeMutablePointer<LV2_State_Interface>.allocate(capacity: 1)
    p.initialize(to: LV2_State_Interface(save: save, restore: restore))
    return p
}()

private let extensionData: @convention(c) (UnsafePointer<CChar>?) -> UnsafeRawPointer? = { uri in
    guard let uri else { return nil }
    switch String(cString: uri) {
    case "http://lv2plug.in/ns/ext/worker#interface": return UnsafeRawPointer(workerInterface)
    case "http://lv2plug.in/ns/ext/state#interface": return UnsafeRawPointer(stateInterface)
    default: return nil
    }
}

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
