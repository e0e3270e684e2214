import AsyncHTTPClient
import FerryStore
import Foundation
import NIOCore
import NIOSSL

/// An agent's calls to the control plane: `POST /agent/v1/OPERATION` with a JSON body over
/// HTTPS, the server checked against `--ca-file`, and once activated the agent's own
/// client certificate presented (mutual TLS).
final class ControlPlaneClient: Sendable {
    /// A call the control plane answered with an error, or that did not reach it.
    struct CallError: Error, CustomStringConvertible {
        /// 0 when the control plane was not reached.
        var status: Int
        var type: String
        var message: String
        var description: String { status == 0 ? message : "\(type): \(message)" }
        /// The control plane no longer knows this agent: its certificate is refused for good.
        var agentDeleted: Bool { type == "AgentDeleted" }
    }

    let base: String
    private let http: HTTPClient

    /// `certificatePEM`/`keyPEM`: the agent's identity (nil before activation).
    init(base: String, caFile: String, certificatePEM: String? = nil, keyPEM: String? = nil) throws {
        var b = base
        while b.hasSuffix("/") { b.removeLast() }
        self.base = b
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv12
        tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(caFile))
        if let certificatePEM, let keyPEM {
            tls.certificateChain = try NIOSSLCertificate.fromPEMBytes(Array(certificatePEM.utf8)).map { .certificate($0) }
            tls.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: Array(keyPEM.utf8), format: .pem))
        }
        var configuration = HTTPClient.Configuration()
        configuration.tlsConfiguration = tls
        configuration.timeout = .init(connect: .seconds(10))
        http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    func call(_ operation: String, _ body: JSONValue = [:], timeout: TimeAmount = .seconds(30)) async throws -> JSONValue {
        var request = HTTPClientRequest(url: "\(base)/agent/v1/\(operation)")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(data: body.serialized()))
        let response: HTTPClientResponse
        let data: ByteBuffer
        do {
            response = try await http.execute(request, timeout: timeout)
            data = try await response.body.collect(upTo: 256 << 20)
        } catch {
            throw CallError(status: 0, type: "Unreachable", message: "the control plane \(base) cannot be reached: \(error)")
        }
        let json = (try? JSONValue.parse(Data(data.readableBytesView))) ?? [:]
        guard response.status.code == 200 else {
            throw CallError(status: Int(response.status.code), type: json["__type"]?.string ?? "HTTP \(response.status.code)",
                            message: json["message"]?.string ?? String(buffer: data))
        }
        return json
    }

    func shutdown() async {
        try? await http.shutdown()
    }
}
