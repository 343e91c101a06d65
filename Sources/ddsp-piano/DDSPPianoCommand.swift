import DDSPPiano
import ArgumentParser

@main
struct DDSPPianoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ddsp-piano",
        abstract: "A neural piano for Linux: plays MIDI files with the DDSP-Piano model (Renault et al., 2022).",
        discussion: """
        DDSP-Piano is a differentiable piano synthesizer: small neural networks drive an \
        inharmonic additive synthesizer, filtered noise and a per-piano reverb. Trained on \
        MAESTRO recordings of ten concert grands.

        Get weights once, then render:
          ddsp-piano weights fetch dafx22
          ddsp-piano render examples/arpeggios.mid arpeggios.wav
        """,
        subcommands: [RenderCommand.self, WeightsCommand.self, BenchCommand.self, CtlCommand.self]
    )
}
