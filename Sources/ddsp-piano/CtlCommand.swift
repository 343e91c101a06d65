import ArgumentParser
import Foundation
import PianoIO

/// `ddsp-piano ctl`: one command to a running ddsp-pianod through its control socket.
struct CtlCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ctl",
        abstract: "Control a running ddsp-pianod.",
        discussion: "Commands:\n" + ControlCommand.table   // one list, the daemon's (ControlCommand)
    )

    @Option(name: .long, help: "Control socket (default: $XDG_RUNTIME_DIR/ddsp-piano/control.sock, else /tmp/ddsp-piano-UID/control.sock; a default socket's directory must be ours with mode 0700).")
    var socket: String?

    @Option(name: .long, help: ArgumentHelp("The daemon started with --name NAME (its socket NAME.sock beside the default one; ignored with --socket).", valueName: "NAME"))
    var name: String?

    // "gain -6": a negative number is not an option (while --help and --socket still are).
    @Argument(parsing: .allUnrecognized, help: ArgumentHelp(ControlCommand.usage))
    var command: [String]

    func run() throws {
        do {
            // The default socket only in a directory nobody else can write (no planted socket).
            if let name, !DaemonRules.isName(name) {
                throw ValidationError("--name takes \(DaemonRules.nameRule), not '\(name)'")
            }
            let path = try socket ?? ControlClient.checkedDefaultSocketPath(name: name)
            // The daemon runs elsewhere: a file to record to is named from here.
            var words = command
            if words.count >= 3 && words[0] == "record" && words[1] == "start" && !words[2].hasPrefix("/") {
                words[2] = URL(fileURLWithPath: words[2]).standardizedFileURL.path
            }
            for line in try ControlClient.send(words.joined(separator: " "), socket: path) { print(line) }
        } catch {
            FileHandle.standardError.write(Data("ddsp-piano: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}
