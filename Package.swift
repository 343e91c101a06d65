// swift-tools-version:6.1
import Foundation
import PackageDescription

// One binary for any x86-64: every target is built for the baseline (SSE2). The engine's hot
// block kernels (GRU gates, exp_sigmoid, additive oscillators, noise convolution; one source,
// Sources/PianoKernels, linked into each variant's folder) are compiled once per instruction set,
// and DDSPPiano picks one table at run time by cpuid (PianoKernels.swift; DDSP_PIANO_KERNELS=
// sse|avx2|avx512 forces one). docs/PERFORMANCE.md has the figures. The variants exist only
// where the manifest is compiled for x86-64 (elsewhere the one generic variant).
let engineFlags: [SwiftSetting] = [.unsafeFlags(["-Ounchecked"], .when(configuration: .release))]
struct KernelVariant { let target: String; let cpu: String?; let define: String }
let kernelVariants: [KernelVariant] = {
    #if arch(x86_64)
    return [KernelVariant(target: "PianoKernelsSSE", cpu: nil, define: "DDSP_KERNELS_SSE"),
            // AVX2, FMA, BMI2 (Intel since 2013, AMD since 2015); swiftc does not take x86-64-v3.
            KernelVariant(target: "PianoKernelsAVX2", cpu: "haswell", define: "DDSP_KERNELS_AVX2"),
            // AVX-512 F/CD/BW/DQ/VL (Intel since 2017, AMD Zen 4).
            KernelVariant(target: "PianoKernelsAVX512", cpu: "skylake-avx512", define: "DDSP_KERNELS_AVX512")]
    #else
    return [KernelVariant(target: "PianoKernelsSSE", cpu: nil, define: "DDSP_KERNELS_SSE")]
    #endif
}()
let kernelTargets: [Target] = kernelVariants.map { v in
    .target(name: v.target, dependencies: ["PianoKernelTypes"],
            swiftSettings: [.define(v.define),
                            .unsafeFlags(["-Ounchecked"], .when(configuration: .release))]
                + (v.cpu.map { [.define("DDSP_FMA"), .unsafeFlags(["-target-cpu", $0])] } ?? []))
}

// Dependencies point inward: executables -> PianoIO (files, audio, network) -> PianoFormats
// (file formats, hashes) -> DDSPPiano (pure engine); PianoStudy (measurements, offline
// resampling) sits beside PianoIO for the tools and tests; nothing in the engine uses either.
let package = Package(
    name: "ddsp-piano",
    products: [
        .executable(name: "ddsp-piano", targets: ["ddsp-piano"]),
        .executable(name: "ddsp-pianod", targets: ["ddsp-pianod"]),
        .executable(name: "ddsp-piano-train", targets: ["ddsp-piano-train"]),
        .library(name: "DDSPPiano", targets: ["DDSPPiano"]),
        // The LV2 instrument's shared object (`make lv2` puts it in the ddsp-piano.lv2 bundle).
        .library(name: "ddsp-piano-lv2", type: .dynamic, targets: ["DDSPPianoLV2"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-atomics", from: "1.3.0"),
    ],
    targets: [
        // C libraries enter only through these small system-library targets.
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS"),
        .systemLibrary(name: "CKissFFT", path: "Sources/CKissFFT"),
        .systemLibrary(name: "CSndFile", path: "Sources/CSndFile"),
        .systemLibrary(name: "CSoxr", path: "Sources/CSoxr"),
        .systemLibrary(name: "CFloatEnv", path: "Sources/CFloatEnv"),
        .systemLibrary(name: "CALSA", path: "Sources/CALSA"),
        .systemLibrary(name: "CJACK", path: "Sources/CJACK"),
        .systemLibrary(name: "CLiblo", path: "Sources/CLiblo"),
        .systemLibrary(name: "CLinux", path: "Sources/CLinux"),
        .systemLibrary(name: "CZlib", path: "Sources/CZlib"),
        .systemLibrary(name: "CLV2", path: "Sources/CLV2"),
        // Counts malloc calls in tests (the real-time path must not allocate).
        .target(name: "CMallocCounter", path: "Tests/CMallocCounter"),
        // What the test targets share (test-only, in no product): ../shared and the built
        // executables, the seeded generator, and a seeded v2 model every clone has (no ../shared).
        .target(name: "PianoTestKit", dependencies: ["DDSPPiano", "PianoStudy"], path: "Tests/PianoTestKit"),

        // The engine's kernels: what the variants share, and cpuid for choosing one.
        .target(name: "PianoKernelTypes", swiftSettings: engineFlags),
        .target(name: "CPianoCPU"),
        // Open MPI for the trainer's ranks, loaded at run time (no build or package dependency).
        .target(name: "CMPI", linkerSettings: [.linkedLibrary("dl")]),
        // The engine: model, synthesis, MIDI conditioning. No I/O, no threads, no file formats.
        .target(
            name: "DDSPPiano",
            dependencies: ["CBLAS", "CKissFFT", "CFloatEnv", "CPianoCPU", "PianoKernelTypes"]
                + kernelVariants.map { .target(name: $0.target) },
            swiftSettings: engineFlags
        ),
        // File formats and converters, pure (bytes in, values out): safetensors and our weight
        // files, TensorFlow checkpoints (protobuf, table, crc32c), SHA-256, SHA-1 / git blob ids.
        .target(
            name: "PianoFormats",
            dependencies: ["DDSPPiano"],
            swiftSettings: engineFlags
        ),
        // Study code for tools and tests: the normalisation calibration measurement and causal
        // renders, STFT and spectral metrics, whole-signal libsoxr resampling, a seeded generator.
        .target(
            name: "PianoStudy",
            dependencies: ["DDSPPiano", "CKissFFT", "CSoxr"],
            swiftSettings: engineFlags
        ),
        // Files, WAV (libsndfile), HTTP download: everything the engine must not do.
        .target(
            name: "PianoIO",
            dependencies: ["DDSPPiano", "PianoFormats", "CSndFile", "CLinux", "CBLAS", .product(name: "Atomics", package: "swift-atomics")]
        ),
        .executableTarget(
            name: "ddsp-piano",
            dependencies: [
                "DDSPPiano", "PianoFormats", "PianoStudy", "PianoIO",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // The real-time core every live driver runs (the daemon's JACK, ALSA and null drivers,
        // the LV2 plugin): one cycle of events → engine, SPSC queues, MIDI routing. No I/O.
        .target(
            name: "PianoLive",
            dependencies: ["DDSPPiano", "PianoIO", .product(name: "Atomics", package: "swift-atomics")]
        ),
        // The instrument daemon: JACK/ALSA I/O, control socket, configuration.
        .target(
            name: "PianoDaemon",
            dependencies: ["DDSPPiano", "PianoIO", "PianoLive", "CALSA", "CJACK", "CLiblo", "CLinux",
                           .product(name: "Atomics", package: "swift-atomics"),
                           .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .executableTarget(name: "ddsp-pianod", dependencies: ["PianoDaemon"]),
        // The LV2 instrument: the live core driven by a host's run(). Only lv2_descriptor is
        // exported (exports.map); the bundle's Turtle files sit beside the code.
        .target(
            name: "DDSPPianoLV2",
            dependencies: ["CLV2", "DDSPPiano", "PianoIO", "PianoLive"],
            exclude: ["ddsp-piano.lv2", "exports.map"],
            // The Swift runtime and Foundation linked in (-static-stdlib: hosts have no Swift);
            // Foundation's static archives need their own C parts named (CoreFoundation, ICU;
            // FoundationNetworking, which PianoIO's download code brings, needs libcurl).
            linkerSettings: ["_CFURLSessionInterface", "CoreFoundation", "_FoundationCollections", "_FoundationCShims",
                             "_FoundationICU", "swiftSynchronization", "curl"].map { .linkedLibrary($0) } + [
                             .unsafeFlags(["-static-stdlib", "-Xlinker", "--version-script=\(Context.packageDirectory)/Sources/DDSPPianoLV2/exports.map"])]
        ),
        // A small liblilv host for the LV2 plugin's tests (MIDI at exact frames, allocator counts).
        .executableTarget(name: "lv2-test-host", dependencies: ["CMallocCounter"], path: "Tests/LV2TestHost",
                         linkerSettings: [.linkedLibrary("lilv-0"),
                                          // the allocator counter must interpose the plugin's calls too
                                          .unsafeFlags(["-Xlinker", "--export-dynamic"])]),
        // A JACK test client (MIDI sender and recorder) for the daemon's end-to-end tests.
        .executableTarget(name: "jack-test-client", path: "Tests/JackTestClient",
                         linkerSettings: [.linkedLibrary("jack"), .linkedLibrary("m")]),
        .testTarget(
            name: "PianoDaemonTests",
            dependencies: ["PianoDaemon", "DDSPPiano", "PianoFormats", "PianoIO", "CMallocCounter", "PianoTestKit"],
            // Swift 5 mode: test classes keep shared static fixtures (work folders, cached models).
            swiftSettings: [.swiftLanguageMode(.v5)]
        ),
        // Training: backward passes, losses, optimiser, data (the `ddsp-piano-train` tool's library).
        .target(
            name: "PianoTraining",
            dependencies: ["DDSPPiano", "PianoFormats", "PianoStudy", "PianoIO", "CBLAS", "CKissFFT", "CZlib", "CMPI"],
            swiftSettings: [.unsafeFlags(["-Ounchecked"], .when(configuration: .release)),
                            // Swift 5 mode until the dataset builder's and training set's worker
                            // closures are made Sendable (Swift 6 refuses their captures).
                            .swiftLanguageMode(.v5)]
        ),
        .executableTarget(
            name: "ddsp-piano-train",
            dependencies: [
                "PianoTraining", "DDSPPiano", "PianoStudy", "PianoIO",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(
            name: "PianoTrainingTests",
            dependencies: ["PianoTraining", "DDSPPiano", "PianoFormats", "PianoStudy", "PianoIO", "PianoTestKit", "CZlib"],
            // Swift 5 mode: test classes keep shared static fixtures (work folders, cached models).
            swiftSettings: [.swiftLanguageMode(.v5)]
        ),
        .testTarget(
            name: "DDSPPianoTests",
            dependencies: ["DDSPPiano", "PianoFormats", "PianoStudy", "PianoIO", "CMallocCounter", "PianoTestKit"],
            // Swift 5 mode: test classes keep shared static fixtures (work folders, cached models).
            swiftSettings: [.swiftLanguageMode(.v5)]
        ),
    ] + kernelTargets,
    swiftLanguageModes: [.v6]
)
