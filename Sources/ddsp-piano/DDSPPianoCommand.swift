import ArgumentParser

@main
struct DDSPPianoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ddsp-piano",
        abstract: "A neural piano (DDSP-Piano, Renault et al. 2022) for Linux.",
        subcommands: [RenderCommand.self, WeightsCommand.self]
    )
}
