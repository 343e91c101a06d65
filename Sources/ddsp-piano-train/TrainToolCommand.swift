import ArgumentParser
import PianoIO

@main
struct TrainToolCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ddsp-piano-train",
        abstract: "Trains and fine-tunes DDSP-Piano models on (audio, MIDI) pairs; exports weights ddsp-piano plays.",
        discussion: """
        Typical run:
          ddsp-piano-train dataset --out data/            # render MIDI through Debian's piano SoundFonts
          ddsp-piano-train train --data data/ --run runs/first
          ddsp-piano-train export runs/first/checkpoint.safetensors -o my-piano.safetensors
          ddsp-piano render --weights my-piano.safetensors examples/arpeggios.mid out.wav
        """,
        version: PianoVersion.current,
        subcommands: [DatasetCommand.self, TrainCommand.self, ExportCommand.self, EvaluateCommand.self, SpectrogramCommand.self, BenchCommand.self]
    )
}
