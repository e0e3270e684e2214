import FerryCore
import FerryLocal
import FerryRemote
import FerryServer
import FerryTesting
import Foundation
import Logging
import NIOSSL
import Synchronization
import Testing

/// A location served by `LocationService` over HTTP/2 and mutual TLS on loopback, reached
/// through `RemoteLocation` (what one agent serves to another).
enum RemoteTests {
    /// The service, started once for the test process, and the TLS material it uses.
    struct Service: Sendable {
        let service: LocationService
        let port: Int
        let client: TLSConfiguration
    }

    /// Started once for the test process (awaited, not waited for: a blocked thread of
    /// the cooperative pool could hold back the service's own start).
    static func shared() async throws -> Service { try await Starter.shared.service() }

    actor Starter {
        static let shared = Starter()
        private var started: Task<Service, any Error>?

        func service() async throws -> Service {
            if let started { return try await started.value }
            let task = Task { try await RemoteTests.start() }
            started = task
            return try await task.value
        }
    }

    static func start() async throws -> Service {
        let dir = try TestTree(label: "remote-tls").root
        // A CA of the server's own and a certificate for 127.0.0.1 (the agents' kind of CA).
        let tls = try ServerTLS.prepare(dataDirectory: dir, certificate: nil, key: nil, names: ["127.0.0.1"])
        var server = try tls.serverConfiguration()
        server.certificateVerification = .noHostnameVerification  // mutual: a client certificate is required
        // The client's own certificate, signed by the same CA.
        let clientKey = dir + "/client-key.pem", clientCertificate = dir + "/client.pem"
        _ = try ServerTLSTests.openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=peer",
                                        "-keyout", clientKey, "-out", dir + "/client.csr"])
        _ = try ServerTLSTests.openssl(["x509", "-req", "-in", dir + "/client.csr", "-CA", dir + "/tls/ca.pem", "-CAkey", dir + "/tls/ca-key.pem",
                                        "-CAcreateserial", "-days", "2", "-out", clientCertificate])
        var client = TLSConfiguration.makeClientConfiguration()
        client.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(dir + "/tls/ca.pem"))
        client.certificateChain = try NIOSSLCertificate.fromPEMFile(clientCertificate).map { .certificate($0) }
        client.privateKey = .privateKey(try NIOSSLPrivateKey(file: clientKey, format: .pem))
        client.certificateVerification = .noHostnameVerification
        let service = LocationService()
        let port = try S3TestServer.freePort()
        let serverTLS = server
        let failure = Mutex<String?>(nil)
        // On threads of its own: tests that block the cooperative pool's few threads
        // (waiting for processes) must not keep the service from starting or answering.
        Task(executorPreference: ServiceExecutor.shared) {
            do {
                try await service.runFramed(host: "127.0.0.1", port: port, tls: serverTLS)
            } catch {
                failure.withLock { $0 = "\(error)" }
            }
        }
        let deadline = Date().addingTimeInterval(30)
        while !NFSTestServer.portOpen(port) {
            if let failure = failure.withLock({ $0 }) { throw TestTreeError("the location service did not start: \(failure)") }
            guard Date() < deadline else { throw TestTreeError("the location service did not listen on 127.0.0.1:\(port) within 30 s") }
            try await Task.sleep(for: .milliseconds(50))
        }
        return Service(service: service, port: port, client: client)
    }

    /// A fresh POSIX tree served under a name of its own, and the remote location for it.
    static func serve(_ root: String) async throws -> RemoteLocation {
        let s = try await shared()
        let name = "conformance-\(UInt64.random(in: 0..<UInt64.max))"
        s.service.offer(try POSIXLocation(path: root), as: name)
        return try await RemoteLocation.connect(try FrameRemoteTransport(endpoint: "127.0.0.1:\(s.port)", name: name, tls: s.client))
    }

    static func conformance(_ check: LocationConformance.Check) async throws -> LocationConformance.Outcome {
        let trees = TreeList()
        let opened = Mutex<[RemoteLocation]>([])
        let outcome = await LocationConformance.run(check) {
            let tree = try TestTree(label: "remote", base: "/dev/shm")
            trees.add(tree)
            let location = try await serve(tree.root)
            opened.withLock { $0.append(location) }
            return location
        }
        for l in opened.withLock({ $0 }) { await l.close() }
        trees.removeAll()
        return outcome
    }
}

/// Runs the test location service's jobs on a queue of its own, off Swift's cooperative pool.
final class ServiceExecutor: TaskExecutor, @unchecked Sendable {
    static let shared = ServiceExecutor()
    private let queue = DispatchQueue(label: "ferry.test.location-service", attributes: .concurrent)

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let executor = asUnownedTaskExecutor()
        queue.async { job.runSynchronously(on: executor) }
    }
}
