import Foundation
import PianoDaemon

// Thin executable: the command line (ArgumentParser) and the daemon live in PianoDaemon.
exit(DaemonCommand.main(arguments: Array(CommandLine.arguments.dropFirst())))
