import FerryCore
import FerryNFS
import FerryTesting
import Foundation
import Synchronization
import Testing

/// NFS clients a test made, closed when it ends.
final class ClientList: Sendable {
    private let clients = Mutex<[NFSClient]>([])
    func add(_ c: NFSClient) { clients.withLock { $0.append(c) } }
    func closeAll() { for c in clients.withLock({ $0 }) { c.close() } }
}

enum NFSTests {
    /// The shared ganesha server, or the reason it could not start (a test failure).
    static func server() throws -> NFSTestServer { try NFSTestServer.shared.get() }
}
