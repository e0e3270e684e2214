import FerryRemote
import FerryS3
import FerryStore
import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOSSL
import Synchronization

/// `ferry agent`: the Ferry process next to the storage. It only ever calls out to the
/// control plane. Until it is activated it asks the control plane for an activation key
/// and serves it on its activation port as DataSync's agent does (`GET
/// /?gatewayType=SYNC&activationRegion=R` → `302`, `Location: …activationKey=KEY`); once
/// `CreateAgent` used the key it fetches its client certificate, closes the port, and
/// from then on heartbeats and long-polls for executions over mutual TLS, running each
/// with the same engine and locations as `ferry sync` (``AgentExecution``).
public struct FerryAgent: Sendable {
    public struct Configuration: Sendable {
        /// The control plane's HTTPS URL (`ferry server --tls`).
        public var controlPlane: String
        /// The CA that signed the control plane's certificate (the server prints its path).
        public var caFile: String
        public var dataDirectory: String
        public var activationHost: String
        /// The activation port (DataSync's: 80).
        public var activationPort: Int
        public var heartbeat: TimeInterval
        public var version: String
        /// Where the data port listens: other agents reach the locations this one serves
        /// there (agent to agent), over mutual TLS with the agents' certificates.
        public var dataHost = "0.0.0.0"
        public var dataPort = 8951
        /// The address other agents reach the data port by (default: this host's name), or
        /// `host:port` when they reach it through a proxy or NAT on another port.
        public var dataAddress: String?
        /// Directories of this host that NFS locations with ServerHostname `localhost` may
        /// name, read and written as a local file system (a Ferry extension; none: such a
        /// location is an NFS server on this host, as in DataSync).
        public var localRoots: [String] = []

        public init(controlPlane: String, caFile: String, dataDirectory: String, activationHost: String = "0.0.0.0",
                    activationPort: Int = 80, heartbeat: TimeInterval = 30, version: String) {
            self.controlPlane = controlPlane
            self.caFile = caFile
            self.dataDirectory = dataDirectory
            self.activationHost = activationHost
            self.activationPort = activationPort
            self.heartbeat = heartbeat
            self.version = version
        }
    }

    let configuration: Configuration
    let logger: Logger

    public init(_ configuration: Configuration, logger: Logger = Logger(label: "ferry.agent")) {
        self.configuration = configuration
        self.logger = logger
    }

    /// The activation key a running, not yet activated agent in `dataDirectory` waits with.
    public static func activationKey(dataDirectory: String) throws -> String {
        try AgentIdentity(directory: dataDirectory).currentActivationKey()
    }

    /// Runs until cancelled, or until the control plane says the agent was deleted.
    /// `say` gets the lines a person starting the agent wants to see.
    public func run(say: @escaping @Sendable (String) -> Void) async throws {
        let identity = try AgentIdentity(directory: configuration.dataDirectory)
        let keyPEM = try identity.keyPEM()
        var state = identity.activated()
        if state == nil {
            state = try await activate(identity, say: say)
        }
        guard let (certificate, agent) = state else { return }
        say("Agent \(agent) connected to \(configuration.controlPlane)")
        let client = try ControlPlaneClient(base: configuration.controlPlane, caFile: configuration.caFile,
                                            certificatePEM: certificate, keyPEM: keyPEM)
        defer { Task { await client.shutdown() } }
        let running = Shared<Set<String>>([])
        let peers = try peerTLS(identity, certificate: certificate, keyPEM: keyPEM)
        let service = LocationService()
        let served = Shared<[String: ResolvedLocation]>([:])
        let dataPort = Shared<Int?>(nil)
        try await withThrowingTaskGroup(of: Void.self) { group in
            if let peers {
                group.addTask {
                    try await service.runFramed(host: configuration.dataHost, port: configuration.dataPort, tls: peers.server) { port in
                        dataPort.withLock { $0 = port }
                        say("Data port: \(configuration.dataHost):\(port) (other agents reach \(self.dataEndpoint(port)))")
                    }
                }
            }
            group.addTask { try await self.heartbeats(client, agent: agent, running: running, dataPort: dataPort) }
            group.addTask {
                try await self.leases(client, agent: agent, running: running, peerTLS: peers?.client) { command in
                    await self.obey(command, service: service, served: served)
                }
            }
            try await group.next()
            group.cancelAll()
        }
        for (_, location) in served.value { await location.close() }
    }

    /// `host:port` other agents reach the data port by (`--data-address HOST:PORT` names
    /// a port too: a proxy or a NAT in front of the data port).
    func dataEndpoint(_ port: Int) -> String {
        let host = configuration.dataAddress ?? ServerTLS.hostName()
        let parts = host.split(separator: ":")
        if parts.count == 2, Int(parts[1]) != nil { return host }
        return (host.contains(":") ? "[\(host)]" : host) + ":\(port)"
    }

    /// TLS between agents: this agent's certificate, and only certificates the control
    /// plane's CA signed for agents trusted (nil for an agent activated before agents
    /// could serve each other: it has no copy of that CA).
    private func peerTLS(_ identity: AgentIdentity, certificate: String, keyPEM: String) throws -> (server: TLSConfiguration, client: TLSConfiguration)? {
        guard FileManager.default.fileExists(atPath: identity.authorityPath) else {
            logger.warning("no agents' CA in the data directory (activated by an older control plane): this agent serves no locations to other agents")
            return nil
        }
        let chain = try NIOSSLCertificate.fromPEMBytes(Array(certificate.utf8)).map { NIOSSLCertificateSource.certificate($0) }
        let key = NIOSSLPrivateKeySource.privateKey(try NIOSSLPrivateKey(bytes: Array(keyPEM.utf8), format: .pem))
        let roots = NIOSSLTrustRoots.certificates(try NIOSSLCertificate.fromPEMFile(identity.authorityPath))
        var server = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: key)
        server.minimumTLSVersion = .tlsv12
        server.trustRoots = roots
        server.certificateVerification = .noHostnameVerification  // a client certificate is required
        var client = TLSConfiguration.makeClientConfiguration()
        client.minimumTLSVersion = .tlsv12
        client.trustRoots = roots
        client.certificateChain = chain
        client.privateKey = key
        // Agents are reached by address; an agent certificate names its ARN, not its host.
        // What the peer may do rests on the name the control plane gave both for this execution.
        client.certificateVerification = .noHostnameVerification
        return (server, client)
    }

    /// A command from the control plane: serve a location to another agent, or stop.
    private func obey(_ command: JSONValue, service: LocationService, served: Shared<[String: ResolvedLocation]>) async {
        if let serve = command["Serve"], let name = serve["Name"]?.string, let body = serve["Location"] {
            let resolver = LocationResolver(store: nil, s3Endpoint: S3Configuration.Overrides(), dataDirectory: configuration.dataDirectory,
                                            metadataCache: nil, secrets: nil, localRoots: configuration.localRoots)
            do {
                let descriptors = try TaskOptions.securityDescriptorCopy(serve["Options"] ?? [:])
                let location = try resolver.open(body, arn: body["LocationArn"]?.string ?? "", asDestination: serve["AsDestination"]?.bool ?? true,
                                                 securityDescriptors: descriptors)
                served.withLock { $0[name] = location }
                service.offer(location.location, as: name)
                logger.info("serving a location to another agent", metadata: ["location": "\(location.location.uri)"])
            } catch {
                logger.error("cannot serve a location to another agent", metadata: ["error": "\(error)"])
                service.refuse(name, reason: "\((error as? ServerError)?.message ?? "\(error)")")
            }
        }
        if let name = command["Withdraw"]?.string {
            await service.withdraw(name)
            if let location = served.withLock({ $0.removeValue(forKey: name) }) { await location.close() }
        }
    }

    // MARK: activation

    /// Asks for activation keys (a new one when one expires) and serves the current one on
    /// the activation port until CreateAgent used it; the certificate and ARN.
    private func activate(_ identity: AgentIdentity, say: @escaping @Sendable (String) -> Void) async throws -> (String, String) {
        let client = try ControlPlaneClient(base: configuration.controlPlane, caFile: configuration.caFile)
        defer { Task { await client.shutdown() } }
        let current = Shared<String?>(nil)
        let router = Router()
        let controlPlane = configuration.controlPlane
        router.get("/") { request, _ -> Response in
            let query = request.uri.queryParameters
            guard query.get("gatewayType") == "SYNC" else {
                return Response(status: .badRequest, body: .init(byteBuffer: ByteBuffer(string: "ask with ?gatewayType=SYNC&activationRegion=REGION\n")))
            }
            // Terraform takes any answer but a 302 as final: a key not there yet is waited for.
            var waited = 0
            while current.value == nil && waited < 80 {
                try? await Task.sleep(for: .milliseconds(100))
                waited += 1
            }
            guard let key = current.withLock({ $0 }) else {
                return Response(status: .serviceUnavailable, body: .init(byteBuffer: ByteBuffer(string: "no activation key yet: the control plane \(controlPlane) has not answered\n")))
            }
            let region = query.get("activationRegion") ?? "us-east-1"
            return Response(status: .found, headers: [.location: "\(controlPlane)/?activationRegion=\(region)&activationKey=\(key)"])
        }
        // Closing the port once activated cancels its server, which Hummingbird logs as
        // errors; what matters (it listens, it failed to bind) is said or thrown here.
        var portLogger = logger
        portLogger.logLevel = .critical
        let app = Application(router: router,
                              configuration: .init(address: .hostname(configuration.activationHost, port: configuration.activationPort),
                                                   serverName: "ferry-agent"),
                              onServerRunning: { channel in
                                  say("Activation port: http://\(configuration.activationHost):\(channel.localAddress?.port ?? configuration.activationPort)/?gatewayType=SYNC&activationRegion=REGION")
                              },
                              logger: portLogger)
        return try await withThrowingTaskGroup(of: (String, String)?.self) { group in
            group.addTask {
                try await app.runService(gracefulShutdownSignals: [])
                return nil
            }
            group.addTask { try await self.waitForActivation(client, identity, current: current, say: say) }
            while let r = try await group.next() {
                if let r {
                    group.cancelAll()
                    return r
                }
            }
            throw ServerError.internalError("the activation port closed before the agent was activated")
        }
    }

    private func waitForActivation(_ client: ControlPlaneClient, _ identity: AgentIdentity, current: Shared<String?>,
                                   say: @escaping @Sendable (String) -> Void) async throws -> (String, String) {
        let publicKey = try identity.publicKeyPEM()
        var reported = false
        while true {
            try Task.checkCancellation()
            let issued: JSONValue
            do {
                issued = try await client.call("activations", ["PublicKey": .string(publicKey), "Version": .string(configuration.version)])
            } catch {
                if !reported { logger.warning("waiting for the control plane", metadata: ["error": "\(error)"]) }
                reported = true
                try await Task.sleep(for: .seconds(5))
                continue
            }
            reported = false
            guard let key = issued["ActivationKey"]?.string, let token = issued["ClaimToken"]?.string else {
                throw ServerError.internalError("the control plane answered an activation request without a key")
            }
            try identity.saveActivationKey(key)
            current.withLock { $0 = key }
            let seconds = Int(issued["ExpiresIn"]?.number ?? 1800)
            let valid = seconds >= 120 ? "\(seconds / 60) minutes" : "\(seconds) seconds"
            say("Activation key: \(key) (valid \(valid)): aws datasync create-agent --activation-key \(key) --agent-name NAME")
            if let activated = try await claimed(client, identity, key: key, token: token) {
                say("Activated as \(activated.1); the activation port is closed")
                return activated
            }
            current.withLock { $0 = nil }  // expired: ask for a new one
        }
    }

    /// Asks every second whether CreateAgent used `key`: the certificate and ARN, saved,
    /// once it did; nil when the key expired first.
    private func claimed(_ client: ControlPlaneClient, _ identity: AgentIdentity, key: String, token: String) async throws -> (String, String)? {
        while true {
            try await Task.sleep(for: .seconds(1))
            let claim: JSONValue
            do {
                claim = try await client.call("claim", ["ActivationKey": .string(key), "ClaimToken": .string(token)])
            } catch let e as ControlPlaneClient.CallError where e.status != 0 {
                throw e
            } catch {
                continue  // the control plane is away: ask again
            }
            switch claim["Status"]?.string {
            case "ACTIVATED":
                guard let certificate = claim["Certificate"]?.string, let agent = claim["AgentArn"]?.string,
                      let authority = claim["AgentAuthority"]?.string else {
                    throw ServerError.internalError("the control plane activated the agent without its certificate")
                }
                try identity.saveActivation(certificate: certificate, agent: agent, controlPlane: configuration.controlPlane,
                                            authority: authority)
                return (certificate, agent)
            case "EXPIRED":
                return nil
            default:
                continue
            }
        }
    }

    // MARK: activated

    private func heartbeats(_ client: ControlPlaneClient, agent: String, running: Shared<Set<String>>, dataPort: Shared<Int?>) async throws {
        var failing = false
        // This process: a control plane that sees a new one knows the agent restarted.
        let instance = ControlPlane.randomHex(bytes: 8)
        // The data port is named from the first heartbeat on (when it binds within 5 s).
        for _ in 0..<50 where dataPort.value == nil { try await Task.sleep(for: .milliseconds(100)) }
        while !Task.isCancelled {
            do {
                var beat: JSONValue = ["Version": .string(configuration.version),
                                       "Running": .array(running.value.sorted().map { JSONValue.string($0) }),
                                       "Capacity": FerryAgent.capacity(), "Instance": .string(instance)]
                if let port = dataPort.value { beat["DataEndpoint"] = .string(dataEndpoint(port)) }
                _ = try await client.call("heartbeat", beat)
                if failing { logger.info("the control plane answers again") }
                failing = false
            } catch let e as ControlPlaneClient.CallError where e.agentDeleted {
                throw ServerError(type: "AgentDeleted", status: 403, message: e.message)
            } catch {
                if !failing { logger.warning("heartbeat failed; the agent keeps running what it runs", metadata: ["error": "\(error)"]) }
                failing = true
            }
            try await Task.sleep(for: .milliseconds(Int64(configuration.heartbeat * 1000)))
        }
    }

    /// What the agent's host offers: processors, memory and memory available (Linux's
    /// MemAvailable), for the control plane to see.
    static func capacity() -> JSONValue {
        var fields: JSONValue = ["Cpus": .number(Double(ProcessInfo.processInfo.activeProcessorCount)),
                                 "MemoryBytes": .number(Double(ProcessInfo.processInfo.physicalMemory))]
        if let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8),
           let line = text.split(separator: "\n").first(where: { $0.hasPrefix("MemAvailable:") }),
           let kib = line.split(separator: " ").dropFirst().first.flatMap({ Double($0) }) {
            fields["AvailableMemoryBytes"] = .number(kib * 1024)
        }
        return fields
    }

    private func leases(_ client: ControlPlaneClient, agent: String, running: Shared<Set<String>>, peerTLS: TLSConfiguration?,
                        obey: @escaping @Sendable (JSONValue) async -> Void) async throws {
        try await withThrowingDiscardingTaskGroup { group in
            while !Task.isCancelled {
                let answer: JSONValue
                do {
                    answer = try await client.call("lease", ["WaitSeconds": 20], timeout: .seconds(40))
                } catch let e as ControlPlaneClient.CallError where e.agentDeleted {
                    throw ServerError(type: "AgentDeleted", status: 403, message: e.message)
                } catch {
                    try await Task.sleep(for: .seconds(2))
                    continue
                }
                if let command = answer["Command"], command != .null {
                    await obey(command)
                    continue
                }
                guard let lease = answer["Lease"], lease != .null else { continue }
                let execution = AgentExecution(lease: lease, agent: agent, client: client,
                                               dataDirectory: configuration.dataDirectory, peerTLS: peerTLS,
                                               localRoots: configuration.localRoots, logger: logger)
                running.withLock { _ = $0.insert(execution.arn) }
                group.addTask {
                    await execution.run()
                    running.withLock { _ = $0.remove(execution.arn) }
                }
            }
        }
    }
}
