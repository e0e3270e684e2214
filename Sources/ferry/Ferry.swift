import ArgumentParser
import FerryLocal

/// The `ferry` command line. `@main` lives here, not in `main.swift` (an async root
/// command in `main.swift` crashes at run time).
@main
struct Ferry: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ferry",
        abstract: "Move files between storage systems, keeping every byte and every bit of metadata.",
        discussion: """
            Exit status of `ferry sync`:
              0   success
              1   the execution failed (a location unreachable, the destination full, ...)
              2   completed, but some files were skipped or failed (named in the summary)
              3   verification failed for some files (named in the summary)
              64  bad usage
            """,
        version: FerryVersion.string,
        subcommands: [SyncCommand.self, BlockCommand.self, ServerCommand.self, AgentCommand.self])

    /// Grows the descriptor table before worker threads exist (``DescriptorTable``: each
    /// growth later would stall every thread for an RCU grace period), then runs the command.
    static func main() async {
        DescriptorTable.reserve(1024)
        await main(nil)
    }
}

enum FerryVersion {
    static let string = "0.1.0"
}

/// Exit codes of `ferry sync` (see `ferry --help`).
enum ExitStatus {
    static let success: Int32 = 0
    static let failed: Int32 = 1
    static let partial: Int32 = 2
    static let verificationFailed: Int32 = 3
}
