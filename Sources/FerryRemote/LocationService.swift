import FerryCore
import Synchronization

/// Serves locations to remote peers in ``Frame``s over TCP and TLS (``runFramed``), each
/// under a name the peer binds its connection to first (an execution's token, brokered by
/// the control plane). With a TLS configuration that requires client certificates, only
/// peers holding one signed by the configured CA get through.
public final class LocationService: Sendable {
    let servers: ServerTable

    public init() { servers = ServerTable() }

    /// Serves `location` under `name` until ``withdraw(_:)``.
    public func offer(_ location: any Location, as name: String) {
        servers.put(name, LocationServer(location))
    }

    /// Says that `name` cannot be served (its location did not open): a peer binding to it
    /// is told `reason` at once, instead of trying again for its outage limit.
    public func refuse(_ name: String, reason: String) {
        servers.refuse(name, reason)
    }

    /// Stops serving `name`: writers still open are aborted, readers closed.
    public func withdraw(_ name: String) async {
        await servers.take(name)?.closeAll()
    }
}

/// The served locations by name, and the sessions of the peers bound to each.
final class ServerTable: Sendable {
    private struct Served {
        let server: LocationServer
        var sessions: [UInt64: CallSession] = [:]
    }
    private let table = Mutex<[String: Served]>([:])
    /// Names that cannot be served, with the reason (see ``LocationService/refuse(_:reason:)``).
    private let refusals = Mutex<[String: String]>([:])
    func put(_ name: String, _ server: LocationServer) {
        refusals.withLock { _ = $0.removeValue(forKey: name) }
        table.withLock { $0[name] = Served(server: server) }
    }
    func take(_ name: String) -> LocationServer? {
        refusals.withLock { _ = $0.removeValue(forKey: name) }
        return table.withLock { $0.removeValue(forKey: name)?.server }
    }
    func refuse(_ name: String, _ reason: String) { refusals.withLock { $0[name] = reason } }
    func refusal(_ name: String) -> String? { refusals.withLock { $0[name] } }

    /// The location served as `name` and the peer's session with it (made on first use).
    func bind(_ name: String, session id: UInt64) -> (LocationServer?, CallSession?) {
        table.withLock { t in
            guard let served = t[name] else { return (nil, nil) }
            if let session = served.sessions[id] { return (served.server, session) }
            let session = CallSession()
            t[name]?.sessions[id] = session
            return (served.server, session)
        }
    }
}
