import ArgumentParser
struct RenderCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "render", abstract: "Render a MIDI file to WAV.")
}
