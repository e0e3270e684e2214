import FerryCore
import HTTPTypes
import Hummingbird
import HummingbirdHTTP2
import Logging
import NIOCore
import NIOSSL
import Synchronization

/// Serves locations to remote peers over HTTP/2 and TLS (`POST /location/v1/OPERATION`),
/// each under a name the peer gives in `X-Ferry-Location` (an execution's token, brokered
/// by the control plane). With a TLS configuration that requires client certificates,
/// only peers holding one signed by the configured CA get through.
public final class LocationService: Sendable {
    private let servers: ServerTable

    public init() { servers = ServerTable() }

    /// Serves `location` under `name` until ``withdraw(_:)``.
    public func offer(_ location: any Location, as name: String) {
        servers.put(name, LocationServer(location))
    }

    /// Stops serving `name`: writers still open are aborted, readers closed.
    public func withdraw(_ name: String) async {
        await servers.take(name)?.closeAll()
    }

    /// Runs the service on `host:port` until cancelled; `onRunning` gets the bound port.
    public func run(host: String, port: Int, tls: TLSConfiguration, logger: Logger,
                    onRunning: @escaping @Sendable (Int) -> Void = { _ in }) async throws {
        let router = Router()
        let servers = self.servers
        router.post("/location/v1/{operation}") { request, context -> Response in
            guard let operation = RemoteOperation(rawValue: context.parameters.get("operation") ?? "") else {
                return Response(status: .notFound)
            }
            guard let name = request.headers[HTTPField.Name("X-Ferry-Location")!], let server = servers.get(name) else {
                return Response(status: .forbidden, body: .init(byteBuffer: ByteBuffer(string: "no location is served under that name")))
            }
            var request = request
            let body = try await request.collectBody(upTo: RemoteLocation.largestRead + (1 << 20))
            let reply = await server.handle(operation, Array(body.readableBytesView))
            return Response(status: .ok, headers: [.contentType: "application/octet-stream"],
                            body: .init(byteBuffer: ByteBuffer(bytes: reply)))
        }
        var quiet = logger
        quiet.logLevel = .warning
        let app = Application(router: router, server: try .http2Upgrade(tlsConfiguration: tls),
                              configuration: .init(address: .hostname(host, port: port), serverName: "ferry-location"),
                              onServerRunning: { channel in onRunning(channel.localAddress?.port ?? port) },
                              logger: quiet)
        try await app.runService(gracefulShutdownSignals: [])
    }
}

/// The served locations by name.
final class ServerTable: Sendable {
    private let table = Mutex<[String: LocationServer]>([:])
    func put(_ name: String, _ server: LocationServer) { table.withLock { $0[name] = server } }
    func get(_ name: String) -> LocationServer? { table.withLock { $0[name] } }
    func take(_ name: String) -> LocationServer? { table.withLock { $0.removeValue(forKey: name) } }
}
