import ArgumentParser
struct WeightsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "weights", abstract: "Import, inspect and fetch model weights.")
}
