import Crypto
import Foundation
import NIOSSL
import SwiftASN1
import X509

/// Agents' client certificates: signed by the control plane's CA (`DATA_DIR/tls/ca.pem`)
/// for the public key an agent sent when it asked for its activation key, naming the
/// agent's ARN (a URI subject alternative name) for one year. The control plane accepts a
/// certificate only while its serial number is the one stored with the agent, so a
/// deleted agent's certificate is refused although the CA signed it.
struct AgentAuthority: Sendable {
    let directory: String

    /// The CA's certificate (PEM): what agents trust in each other.
    func authorityPEM() throws -> String {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        return try ServerTLS.loadOrMakeAuthority(directory).0.serializeAsPEM().pemString
    }

    init(dataDirectory: String) {
        directory = dataDirectory + "/tls"
    }

    /// The certificate (PEM) for `publicKeyPEM` naming `agentArn`, and its serial number.
    func issue(publicKeyPEM: String, agentArn: String) throws -> (pem: String, serial: String) {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let (ca, caKey) = try ServerTLS.loadOrMakeAuthority(directory)
        let publicKey: Certificate.PublicKey
        do {
            publicKey = try Certificate.PublicKey(pemEncoded: publicKeyPEM)
        } catch {
            throw ServerError.invalid("the agent's public key is not a PEM public key: \(error)")
        }
        let serial = Certificate.SerialNumber()
        let now = Date()
        let certificate = try Certificate(
            version: .v3, serialNumber: serial, publicKey: publicKey,
            notValidBefore: now.addingTimeInterval(-300), notValidAfter: now.addingTimeInterval(365 * 86_400),
            issuer: ca.subject,
            subject: try DistinguishedName {
                OrganizationName("Ferry agents")
                CommonName(String(agentArn.split(separator: "/").last ?? "agent"))
            },
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                // Client: the channel to the control plane; server: its data port, which other
                // agents reach (agent to agent).
                try ExtendedKeyUsage([.clientAuth, .serverAuth])
                SubjectAlternativeNames([.uniformResourceIdentifier(agentArn)])
            },
            issuerPrivateKey: caKey)
        return (try certificate.serializeAsPEM().pemString, AgentAuthority.text(serial))
    }

    /// The agent ARN and serial number a presented (already chain-verified) certificate names.
    static func identity(_ certificate: NIOSSLCertificate) throws -> (agent: String, serial: String) {
        let parsed = try Certificate(derEncoded: try certificate.toDERBytes())
        guard let names = try parsed.extensions.subjectAlternativeNames,
              let arn = names.lazy.compactMap({ name -> String? in
                  if case .uniformResourceIdentifier(let uri) = name { return uri } else { return nil }
              }).first
        else { throw ServerError(type: "AccessDeniedException", status: 403, message: "the client certificate names no agent") }
        return (arn, text(parsed.serialNumber))
    }

    static func text(_ serial: Certificate.SerialNumber) -> String {
        serial.bytes.map { String(format: "%02x", $0) }.joined()
    }
}
