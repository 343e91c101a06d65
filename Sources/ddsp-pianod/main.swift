import Foundation
import PianoDaemon

// Thin executable: argument parsing lives in PianoDaemon (DaemonCommandLine).
let status = DaemonCommandLine.main(arguments: Array(CommandLine.arguments.dropFirst()))
exit(status)
