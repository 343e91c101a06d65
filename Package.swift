// swift-tools-version:6.1
import Foundation
import PackageDescription

// The engine's oscillators and gate math use AVX2 + FMA when the building machine has them
// (15.7x -> 22.6x real time, same samples; docs/PERFORMANCE.md). Like -march=native, the binary
// then needs such a CPU: build with DDSP_PIANO_PORTABLE=1 for one that runs on any x86-64.
let engineUsesAVX2: Bool = {
    #if arch(x86_64)
    guard ProcessInfo.processInfo.environment["DDSP_PIANO_PORTABLE"] == nil,
          let cpu = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return false }
    let flags = Set(cpu.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" }).map(String.init))
    return flags.contains("avx2") && flags.contains("fma")
    #else
    return false
    #endif
}()
let engineFlags: [SwiftSetting] = engineUsesAVX2
    ? [.unsafeFlags(["-Ounchecked", "-target-cpu", "haswell"], .when(configuration: .release)),
       .define("DDSP_AVX2", .when(configuration: .release))]
    : [.unsafeFlags(["-Ounchecked"], .when(configuration: .release))]

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
        .systemLibrary(name: "CLinux", path: "Sources/CLinux"),
        .systemLibrary(name: "CZlib", path: "Sources/CZlib"),
        // Counts malloc calls in tests (the real-time path must not allocate).
        .target(name: "CMallocCounter", path: "Tests/CMallocCounter"),
        // What the test targets share (test-only, in no product): ../shared and the built
        // executables, the seeded generator, and a seeded v2 model every clone has (no ../shared).
        .target(name: "PianoTestKit", dependencies: ["DDSPPiano", "PianoStudy"], path: "Tests/PianoTestKit"),

        // The engine: model, synthesis, MIDI conditioning. No I/O, no threads, no file formats.
        .target(
            name: "DDSPPiano",
            dependencies: ["CBLAS", "CKissFFT", "CFloatEnv"],
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
            dependencies: ["DDSPPiano", "PianoFormats", "CSndFile", "CLinux"]
        ),
        .executableTarget(
            name: "ddsp-piano",
            dependencies: [
                "DDSPPiano", "PianoFormats", "PianoStudy", "PianoIO",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // The instrument daemon: JACK/ALSA I/O, event queues, control socket, configuration.
        .target(
            name: "PianoDaemon",
            dependencies: ["DDSPPiano", "PianoIO", "CALSA", "CJACK", "CLinux",
                           .product(name: "Atomics", package: "swift-atomics"),
                           .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .executableTarget(name: "ddsp-pianod", dependencies: ["PianoDaemon"]),
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
            dependencies: ["DDSPPiano", "PianoFormats", "PianoStudy", "PianoIO", "CBLAS", "CKissFFT", "CZlib"],
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
    ],
    swiftLanguageModes: [.v6]
)
