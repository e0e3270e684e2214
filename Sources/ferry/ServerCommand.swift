import ArgumentParser
import CFerry
import FerryS3
import FerryServer
import FerryStore
import Foundation
import Logging

/// `ferry server`: the DataSync-compatible control plane (see README).
struct ServerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "server",
        abstract: "Run the control plane that the aws datasync CLI, boto3 and Terraform drive.",
        subcommands: [ServerRun.self, ServerCredentials.self, ServerLogs.self],
        defaultSubcommand: ServerRun.self)
}

struct DataDirectory: ParsableArguments {
    @Option(help: ArgumentHelp("Where the server keeps its state (SQLite), credentials and certificates.", valueName: "dir"))
    var dataDir: String = "./ferry-data"
}

struct ServerRun: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "run", abstract: "Start the server (the default).")

    @OptionGroup var data: DataDirectory

    @Option(help: "Address to listen on (loopback unless told otherwise).")
    var host: String = "127.0.0.1"

    @Option(help: "Port to listen on.")
    var port: Int = 8950

    @Option(help: "Region the server names in its ARNs.")
    var region: String = "us-east-1"

    @Option(help: ArgumentHelp("S3 endpoint that serves create-location-s3 buckets (default: the AWS environment).", valueName: "url"))
    var s3EndpointUrl: String?

    @Option(help: ArgumentHelp("Shortest schedule interval accepted, in minutes (DataSync allows one hour at least).", valueName: "minutes"))
    var minScheduleMinutes: Int = 60

    @Flag(help: "Serve HTTPS: with --tls-cert/--tls-key, or a certificate signed by a CA the server makes in DATA_DIR/tls (its path is printed).")
    var tls = false

    @Option(help: ArgumentHelp("Certificate chain to serve (PEM), with --tls-key.", valueName: "file"))
    var tlsCert: String?

    @Option(help: ArgumentHelp("Private key of --tls-cert (PEM).", valueName: "file"))
    var tlsKey: String?

    @Option(help: ArgumentHelp("Seconds of silence after which an agent is OFFLINE (DataSync: 300).", valueName: "seconds"))
    var agentOfflineSeconds: Double = 300

    @Option(help: ArgumentHelp("Seconds an agent's activation key stays valid (DataSync: 1800).", valueName: "seconds"))
    var activationKeySeconds: Double = 1800

    @Option(help: ArgumentHelp("Another name or address the server is reached by, for the certificate it makes (repeatable).", valueName: "name"))
    var tlsName: [String] = []

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be between 0 and 65535") }
        guard activationKeySeconds > 0 else { throw ValidationError("--activation-key-seconds must be positive") }
        guard agentOfflineSeconds > 0 else { throw ValidationError("--agent-offline-seconds must be positive") }
        guard minScheduleMinutes >= 1 else { throw ValidationError("--min-schedule-minutes must be at least 1") }
        if (tlsCert == nil) != (tlsKey == nil) { throw ValidationError("give both --tls-cert and --tls-key, or neither") }
        if !tls && (tlsCert != nil || !tlsName.isEmpty) { throw ValidationError("--tls-cert, --tls-key and --tls-name go with --tls") }
    }

    func run() async throws {
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        _ = cferry_raise_nofile()  // executions keep files and directories open, several at once
        let certificate = tls ? try ServerTLS.prepare(dataDirectory: data.dataDir, certificate: tlsCert, key: tlsKey,
                                                      names: ServerTLS.names(host: host, extra: tlsName)) : nil
        var configuration = DataSyncServer.Configuration(
            dataDirectory: data.dataDir, host: host, port: port, region: region, s3Endpoint: S3Configuration.Overrides(endpointURL: s3EndpointUrl),
            minimumScheduleInterval: TimeInterval(minScheduleMinutes * 60), tls: certificate, agentOfflineAfter: agentOfflineSeconds)
        configuration.activationKeyLifetime = activationKeySeconds
        let server = DataSyncServer(configuration)
        let dir = data.dataDir
        try await server.run { endpoint in
            // Unbuffered: whoever started the server waits for this line.
            var lines = "Ferry server listening on \(endpoint)\nCredentials: ferry server credentials --data-dir \(dir)\n"
            if let ca = certificate?.caPath {
                lines += "CA: \(ca) (aws --ca-bundle \(ca); its certificate names \(certificate!.names.joined(separator: ", ")))\n"
            }
            FileHandle.standardOutput.write(Data(lines.utf8))
        }
    }
}

struct ServerCredentials: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "credentials", abstract: "Print the admin access key as AWS_ACCESS_KEY_ID=… / AWS_SECRET_ACCESS_KEY=… lines.")

    @OptionGroup var data: DataDirectory

    func run() throws {
        let c = try AdminCredentials.loadOrCreate(dataDirectory: data.dataDir)
        print("AWS_ACCESS_KEY_ID=\(c.accessKeyID)")
        print("AWS_SECRET_ACCESS_KEY=\(c.secretAccessKey)")
    }
}

struct ServerLogs: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "logs", abstract: "Print an execution's log.")

    @OptionGroup var data: DataDirectory

    @Argument(help: "The task execution ARN.")
    var executionArn: String

    func run() throws {
        let store = try Store(directory: data.dataDir)
        for line in try store.logs(executionArn) { print(line) }
    }
}
