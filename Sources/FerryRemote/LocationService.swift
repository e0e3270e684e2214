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
    /// A name is served or refused (with the reason, see ``LocationService/refuse(_:reason:)``).
    private enum Entry {
        case served(Served)
        case refused(String)
    }
    private let table = Mutex<[String: Entry]>([:])
    func put(_ name: String, _ server: LocationServer) { table.withLock { $0[name] = .served(Served(server: server)) } }
    func take(_ name: String) -> LocationServer? {
        table.withLock { t in
            guard case .served(let served) = t.removeValue(forKey: name) else { return nil }
            return served.server
        }
    }
    func refuse(_ name: String, _ reason: String) { table.withLock { $0[name] = .refused(reason) } }

    /// What a peer binding to `name` is answered: the location served and its session with
    /// it (made on first use), or why it cannot be served, or nothing (not served yet).
    enum Binding {
        case bound(LocationServer, CallSession)
        case refused(String)
        case unknown
    }

    func bind(_ name: String, session id: UInt64) -> Binding {
        table.withLock { t in
            switch t[name] {
            case .refused(let reason): return .refused(reason)
            case nil: return .unknown
            case .served(var served):
                if let session = served.sessions[id] { return .bound(served.server, session) }
                let session = CallSession()
                served.sessions[id] = session
                t[name] = .served(served)
                return .bound(served.server, session)
            }
        }
    }
}
