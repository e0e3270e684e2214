import ArgumentParser
import CFerry
import FerryServer
import Foundation
import Logging

/// `ferry agent`: the agent next to the storage (see README, "Agents").
struct AgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agent",
        abstract: "Run an agent next to the storage: activated like DataSync's, it runs the executions of the locations that name it.",
        subcommands: [AgentRun.self, AgentActivationKey.self],
        defaultSubcommand: AgentRun.self)
}

struct AgentDataDirectory: ParsableArguments {
    @Option(help: ArgumentHelp("Where the agent keeps its key, certificate and activation key (each 0600).", valueName: "dir"))
    var dataDir: String = "./ferry-agent"
}

struct AgentRun: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "run", abstract: "Start the agent (the default).")

    @OptionGroup var data: AgentDataDirectory

    @Option(help: ArgumentHelp("The control plane's HTTPS URL (ferry server --tls).", valueName: "url"))
    var controlPlane: String

    @Option(help: ArgumentHelp("The CA that signed the control plane's certificate (the server prints its path).", valueName: "file"))
    var caFile: String

    @Option(help: "Address of the activation port (until activated).")
    var activationHost: String = "0.0.0.0"

    @Option(help: "The activation port (DataSync's is 80; closed once activated).")
    var activationPort: Int = 80

    @Option(help: ArgumentHelp("Seconds between heartbeats.", valueName: "seconds"))
    var heartbeatSeconds: Double = 30

    @Option(help: "Address of the data port, where other agents reach the locations this agent serves them.")
    var dataHost: String = "0.0.0.0"

    @Option(help: "The data port (mutual TLS with the agents' certificates).")
    var dataPort: Int = 8951

    @Option(help: ArgumentHelp("The address other agents reach the data port by (default: this host's name); HOST:PORT through a proxy or NAT.", valueName: "host"))
    var dataAddress: String?

    @Option(help: ArgumentHelp(
        "A directory of this host that NFS locations with ServerHostname localhost may name, read and written without NFS (repeatable).",
        valueName: "dir"))
    var localRoot: [String] = []

    func validate() throws {
        for root in localRoot where !root.hasPrefix("/") { throw ValidationError("--local-root \(root) must be an absolute path") }
        guard controlPlane.hasPrefix("https://") else { throw ValidationError("--control-plane must be an https:// URL (agents use mutual TLS)") }
        guard (0...65535).contains(dataPort) else { throw ValidationError("--data-port must be between 0 and 65535") }
        guard (0...65535).contains(activationPort) else { throw ValidationError("--activation-port must be between 0 and 65535") }
        guard heartbeatSeconds > 0 else { throw ValidationError("--heartbeat-seconds must be positive") }
    }

    func run() async throws {
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        _ = cferry_raise_nofile()
        var configuration = FerryAgent.Configuration(controlPlane: controlPlane, caFile: caFile, dataDirectory: data.dataDir,
                                                     activationHost: activationHost, activationPort: activationPort,
                                                     heartbeat: heartbeatSeconds, version: "ferry-" + FerryVersion.string)
        configuration.dataHost = dataHost
        configuration.dataPort = dataPort
        configuration.dataAddress = dataAddress
        configuration.localRoots = localRoot
        let agent = FerryAgent(configuration)
        do {
            try await agent.run { line in FileHandle.standardOutput.write(Data((line + "\n").utf8)) }
        } catch let e as ServerError {
            FileHandle.standardError.write(Data("ferry agent: \(e.message)\n".utf8))
            throw ExitCode(1)
        }
    }
}

struct AgentActivationKey: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "activation-key", abstract: "Print the activation key the agent in --data-dir waits with (DataSync's local console).")

    @OptionGroup var data: AgentDataDirectory

    func run() throws {
        do {
            print(try FerryAgent.activationKey(dataDirectory: data.dataDir))
        } catch let e as ServerError {
            FileHandle.standardError.write(Data("ferry agent activation-key: \(e.message)\n".utf8))
            throw ExitCode(1)
        }
    }
}
