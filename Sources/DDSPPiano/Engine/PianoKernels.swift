#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CPianoCPU
@_exported import PianoKernelTypes
import PianoKernelsSSE
#if arch(x86_64)
import PianoKernelsAVX2
import PianoKernelsAVX512
#endif

/// The vector functions of the baseline (SSE2) kernel module: what the engine's scalar and
/// training code inline. The block kernels of the render path go through `PianoKernels.active`.
public typealias VectorMath = PianoKernelsSSE.VectorMath

/// The engine's hot block kernels (GRU gates, exp_sigmoid, additive oscillators, noise
/// convolution), chosen once per process for the CPU it runs on, so one binary runs on any
/// x86-64 and uses AVX2 + FMA or AVX-512 where present. The kernels are one source
/// (Sources/PianoKernels) compiled per instruction set; this picks a table by cpuid (`CPianoCPU`)
/// on first use and never changes it: an immutable global, read without locks on the render path.
///
/// `DDSP_PIANO_KERNELS=sse|avx2|avx512` forces a variant (tests compare them natively); one the
/// CPU lacks is refused, with a one-line error from `PianoModel.init` (`check()`), rather than
/// dying on an illegal instruction. The variants agree within the parity tolerances
/// (KernelDispatchTests): FMA changes the last bits of the oscillators' polynomial, and
/// glibc's expf ported without FMA differs from its FMA variant in a rare last bit.
public enum PianoKernels {
    public enum Variant: String, CaseIterable, Sendable, Comparable {
        case sse, avx2, avx512
        public static func < (a: Variant, b: Variant) -> Bool {
            allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
        }
        /// What a person reading a log recognises.
        public var instructionSets: String {
            switch self {
            case .sse: "SSE2"
            case .avx2: "AVX2 + FMA"
            case .avx512: "AVX-512"
            }
        }
    }

    public static let environmentVariable = "DDSP_PIANO_KERNELS"

    /// The variants this CPU (and OS) can run, baseline first; only `.sse` off x86-64.
    public static let supported: [Variant] = {
        let features = ddsp_cpu_features()
        var v: [Variant] = [.sse]
        #if arch(x86_64)
        if features & DDSP_CPU_AVX2 != 0 { v.append(.avx2) }
        if features & DDSP_CPU_AVX512 != 0 { v.append(.avx512) }
        #endif
        return v
    }()

    /// The table of a variant, nil when this CPU cannot run it.
    public static func kernels(_ variant: Variant) -> PianoKernelSet? {
        guard supported.contains(variant) else { return nil }
        switch variant {
        case .sse: return PianoKernelsSSE.kernelSet
        #if arch(x86_64)
        case .avx2: return PianoKernelsAVX2.kernelSet
        case .avx512: return PianoKernelsAVX512.kernelSet
        #else
        default: return nil
        #endif
        }
    }

    /// The variant for a value of DDSP_PIANO_KERNELS (nil or empty: the best this CPU runs).
    public static func choose(_ requested: String?) -> Result<Variant, KernelChoiceError> {
        guard let requested, !requested.isEmpty else { return .success(supported.last!) }
        guard let v = Variant(rawValue: requested.lowercased()) else {
            return .failure(KernelChoiceError("\(environmentVariable)=\(requested): unknown kernels; valid: \(Variant.allCases.map(\.rawValue).joined(separator: ", "))"))
        }
        guard supported.contains(v) else {
            return .failure(KernelChoiceError("\(environmentVariable)=\(requested): this CPU lacks \(v.instructionSets); it runs \(supported.map(\.rawValue).joined(separator: ", "))"))
        }
        return .success(v)
    }

    /// The process's choice, made once from the environment.
    static let selection: Result<Variant, KernelChoiceError> = {
        let value = getenv(environmentVariable).map { String(cString: $0) }
        return choose(value)
    }()

    /// The variant in use (a refused request falls back to the best supported, but
    /// `PianoModel.init` throws the refusal first, so no engine runs on it).
    public static var selected: Variant { (try? selection.get()) ?? supported.last! }

    /// The kernels the engine runs.
    public static let active: PianoKernelSet = kernels(selected)!

    /// Throws the refusal of DDSP_PIANO_KERNELS, if it names kernels this CPU lacks; else makes
    /// the choice now (off the audio thread: `PianoModel.init` calls this).
    public static func check() throws {
        _ = try selection.get()
        _ = active
    }

    /// "avx2 kernels", for summaries and logs.
    public static var description: String { "\(selected.rawValue) kernels" }
}

/// DDSP_PIANO_KERNELS names kernels that are unknown or that this CPU cannot run.
public struct KernelChoiceError: CodedError, CustomStringConvertible, Sendable {
    public var description: String
    public var code: ErrorCode { .usage }
    public init(_ description: String) { self.description = description }
}
