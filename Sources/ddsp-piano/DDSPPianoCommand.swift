import DDSPPiano
import PianoIO
import ArgumentParser

@main
struct DDSPPianoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ddsp-piano",
        abstract: "A neural piano for Linux: plays MIDI with the DDSP-Piano models (Renault, Mignot, Roebel; DAFx 2022, JAES 2023).",
        discussion: """
        DDSP-Piano is a differentiable piano synthesizer: small neural networks drive an \
        inharmonic additive synthesizer, filtered noise and a per-piano reverb, trained on \
        MAESTRO recordings of ten concert grands (2004–2018). Two models: v2 (upstream's \
        default, 24 kHz) and dafx22 (the 2022 paper's, 16 kHz).

        Render with whatever weights are found (see 'ddsp-piano weights --help'):
          ddsp-piano render examples/arpeggios.mid arpeggios.wav
        Get upstream's weights once (network), then render with them:
          ddsp-piano weights fetch v2
          ddsp-piano render --piano 2018 song.mid song.wav
        Play live: ddsp-pianod (the daemon; 'ddsp-pianod --help'), controlled with
        'ddsp-piano ctl'. Train: ddsp-piano-train.
        """,
        version: PianoVersion.current,
        subcommands: [RenderCommand.self, RenderBatchCommand.self, WeightsCommand.self, BenchCommand.self, CtlCommand.self]
    )
}
