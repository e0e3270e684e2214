import Crypto
import FerryStore
import Foundation
import X509

/// What an agent keeps in its data directory, each file 0600: its private key
/// (`agent-key.pem`, made once), and once activated its certificate (`agent.pem`) and ARN
/// (`agent.json`) and the CA that signs every agent's certificate (`agents-ca.pem`, what it
/// trusts in another agent); while it waits for CreateAgent, its current activation key
/// (`activation-key`, what `ferry agent activation-key` prints). No location secret is
/// ever written here.
struct AgentIdentity: Sendable {
    let directory: String
    var keyPath: String { directory + "/agent-key.pem" }
    var certificatePath: String { directory + "/agent.pem" }
    var statePath: String { directory + "/agent.json" }
    var activationKeyPath: String { directory + "/activation-key" }
    var authorityPath: String { directory + "/agents-ca.pem" }

    init(directory: String) throws {
        self.directory = directory
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    }

    /// The private key (PEM), made on first use.
    func keyPEM() throws -> String {
        if let pem = try? String(contentsOfFile: keyPath, encoding: .utf8) { return pem }
        let pem = try Certificate.PrivateKey(P256.Signing.PrivateKey()).serializeAsPEM().pemString
        try PrivateFile.create(keyPath, Array(pem.utf8))
        return pem
    }

    func publicKeyPEM() throws -> String {
        try Certificate.PrivateKey(pemEncoded: try keyPEM()).publicKey.serializeAsPEM().pemString
    }

    /// The certificate and ARN of an activated agent, nil before activation.
    func activated() -> (certificate: String, agent: String)? {
        guard let certificate = try? String(contentsOfFile: certificatePath, encoding: .utf8),
              let data = FileManager.default.contents(atPath: statePath),
              let agent = (try? JSONValue.parse(data))?["AgentArn"]?.string else { return nil }
        return (certificate, agent)
    }

    func saveActivation(certificate: String, agent: String, controlPlane: String, authority: String) throws {
        try PrivateFile.write(authorityPath, authority)
        try PrivateFile.write(certificatePath, certificate)
        try PrivateFile.write(statePath, JSONValue.object(["AgentArn": .string(agent), "ControlPlane": .string(controlPlane)]).text)
        unlink(activationKeyPath)
    }

    func saveActivationKey(_ key: String) throws {
        try PrivateFile.write(activationKeyPath, key + "\n")
    }

    /// The activation key the running agent waits with, for `ferry agent activation-key`.
    func currentActivationKey() throws -> String {
        if let (_, agent) = activated() {
            throw ServerError.invalid("this agent is already activated as \(agent)")
        }
        guard let text = try? String(contentsOfFile: activationKeyPath, encoding: .utf8) else {
            throw ServerError.invalid("no activation key in \(directory): start `ferry agent` with this --data-dir first; it asks the control plane for one")
        }
        return text.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
