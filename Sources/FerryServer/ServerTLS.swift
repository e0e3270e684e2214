import Crypto
import Foundation
import Glibc
import NIOSSL
import SwiftASN1
import X509

/// HTTPS for `ferry server --tls`: the certificate and key given (`--tls-cert`, `--tls-key`),
/// or a CA of the server's own, made on first start in `DATA_DIR/tls` (`ca.pem`: what
/// `aws --ca-bundle` and `ferry agent --ca-file` are given; its key never leaves the
/// directory), and a server certificate it signs for every name and address the server is
/// reached by. The server certificate is issued again, by the same CA, when those names
/// change or it has less than 30 days left; clients keep trusting `ca.pem`.
public struct ServerTLS: Sendable {
    public let certificatePath: String
    public let keyPath: String
    /// The CA that signed a certificate made here (nil when one was given).
    public let caPath: String?
    /// The names and addresses the certificate made here is valid for.
    public let names: [String]
    /// The names the kept certificate was made for, one a line (beside it).
    private var namesPath: String { (certificatePath as NSString).deletingLastPathComponent + "/server.names" }

    /// The CA that signs agents' client certificates (always the server's own, in
    /// `DATA_DIR/tls`, also when the served certificate was given).
    public let agentAuthorityPath: String

    /// The certificate to serve: `certificate` and `key` when given (both), else the one
    /// kept in `dataDirectory/tls`, made or renewed for `names`.
    public static func prepare(dataDirectory: String, certificate: String?, key: String?, names: [String]) throws -> ServerTLS {
        let directory = dataDirectory + "/tls"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let (caCertificate, caKey) = try loadOrMakeAuthority(directory)
        switch (certificate, key) {
        case let (certificate?, key?):
            return ServerTLS(certificatePath: certificate, keyPath: key, caPath: nil, names: [], agentAuthorityPath: directory + "/ca.pem")
        case (nil, nil):
            break
        default:
            throw ServerError.invalid("give both --tls-cert and --tls-key, or neither (a CA of the server's own then signs one)")
        }
        let tls = ServerTLS(certificatePath: directory + "/server.pem", keyPath: directory + "/server-key.pem",
                            caPath: directory + "/ca.pem", names: names, agentAuthorityPath: directory + "/ca.pem")
        if try !tls.stillServes(names) {
            let key = Certificate.PrivateKey(P256.Signing.PrivateKey())
            let now = Date()
            let issued = try Certificate(
                version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: key.publicKey,
                notValidBefore: now.addingTimeInterval(-300), notValidAfter: now.addingTimeInterval(397 * 86_400),
                issuer: caCertificate.subject,
                subject: try DistinguishedName { CommonName(names.first ?? "ferry server") },
                signatureAlgorithm: .ecdsaWithSHA256,
                extensions: try Certificate.Extensions {
                    Critical(BasicConstraints.notCertificateAuthority)
                    Critical(KeyUsage(digitalSignature: true, keyEncipherment: true))
                    try ExtendedKeyUsage([.serverAuth])
                    SubjectAlternativeNames(names.map(ServerTLS.generalName))
                },
                issuerPrivateKey: caKey)
            try PrivateFile.write(tls.keyPath, key.serializeAsPEM().pemString)
            try PrivateFile.write(tls.certificatePath, issued.serializeAsPEM().pemString)
            try PrivateFile.write(tls.namesPath, names.joined(separator: "\n"))
        }
        return tls
    }

    /// The server's TLS configuration (TLS 1.2 and later). A client certificate is asked
    /// for and, when one is presented, must be signed by the agents' CA: API callers
    /// present none; agents present theirs (``AgentAuthority``).
    public func serverConfiguration() throws -> TLSConfiguration {
        let chain = try NIOSSLCertificate.fromPEMFile(certificatePath).map { NIOSSLCertificateSource.certificate($0) }
        var c = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(try NIOSSLPrivateKey(file: keyPath, format: .pem)))
        c.minimumTLSVersion = .tlsv12
        c.certificateVerification = .optionalVerification
        c.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(agentAuthorityPath))
        return c
    }

    /// Whether the kept certificate was made for exactly `names` and has 30 days left.
    private func stillServes(_ names: [String]) throws -> Bool {
        guard let kept = try? String(contentsOfFile: namesPath, encoding: .utf8),
              kept == names.joined(separator: "\n"),
              FileManager.default.fileExists(atPath: keyPath),
              let pem = try? String(contentsOfFile: certificatePath, encoding: .utf8),
              let certificate = try? Certificate(pemEncoded: pem)
        else { return false }
        return certificate.notValidAfter > Date().addingTimeInterval(30 * 86_400)
    }

    /// The CA kept in `directory` (`ca.pem`, `ca-key.pem`), made once (ten years).
    static func loadOrMakeAuthority(_ directory: String) throws -> (Certificate, Certificate.PrivateKey) {
        let certificatePath = directory + "/ca.pem", keyPath = directory + "/ca-key.pem"
        if let pem = try? String(contentsOfFile: certificatePath, encoding: .utf8),
           let keyPEM = try? String(contentsOfFile: keyPath, encoding: .utf8) {
            return (try Certificate(pemEncoded: pem), try Certificate.PrivateKey(pemEncoded: keyPEM))
        }
        let key = Certificate.PrivateKey(P256.Signing.PrivateKey())
        let name = try DistinguishedName {
            OrganizationName("Ferry")
            CommonName("Ferry control plane CA \(ServerTLS.hostName())")
        }
        let now = Date()
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: key.publicKey,
            notValidBefore: now.addingTimeInterval(-300), notValidAfter: now.addingTimeInterval(3650 * 86_400),
            issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(digitalSignature: true, keyCertSign: true, cRLSign: true))
                SubjectKeyIdentifier(hash: key.publicKey)
            },
            issuerPrivateKey: key)
        try PrivateFile.write(keyPath, key.serializeAsPEM().pemString)
        try PrivateFile.write(certificatePath, certificate.serializeAsPEM().pemString)
        return (certificate, key)
    }

    /// What the server is reached by: `host` (unless a wildcard address), this machine's
    /// name, `localhost`, every address of its interfaces, and `extra` — each once, in order.
    public static func names(host: String, extra: [String]) -> [String] {
        var all = extra
        if host != "0.0.0.0" && host != "::" && !host.isEmpty { all.insert(host, at: 0) }
        all += [hostName(), "localhost"] + interfaceAddresses()
        var seen = Set<String>()
        return all.filter { !$0.isEmpty && seen.insert($0.lowercased()).inserted }
    }

    static func hostName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        return gethostname(&buffer, buffer.count) == 0 ? String(cString: buffer) : ""
    }

    /// The IPv4 and IPv6 addresses of this machine's interfaces (loopback included).
    static func interfaceAddresses() -> [String] {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0 else { return [] }
        defer { freeifaddrs(list) }
        var out: [String] = []
        var next = list
        while let entry = next {
            defer { next = entry.pointee.ifa_next }
            guard let address = entry.pointee.ifa_addr else { continue }
            let family = Int32(address.pointee.sa_family)
            guard family == AF_INET || family == AF_INET6 else { continue }
            var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
            let length = socklen_t(family == AF_INET ? MemoryLayout<sockaddr_in>.size : MemoryLayout<sockaddr_in6>.size)
            guard getnameinfo(address, length, &host, socklen_t(host.count), nil, 0, NI_NUMERICHOST) == 0 else { continue }
            let text = String(cString: host)
            if !text.contains("%") { out.append(text) }  // link-local with a scope: not a name to trust
        }
        return out
    }

    /// An IP address as an address, anything else as a DNS name.
    static func generalName(_ name: String) -> GeneralName {
        var v4 = in_addr(), v6 = in6_addr()
        if inet_pton(AF_INET, name, &v4) == 1 {
            return .ipAddress(ASN1OctetString(contentBytes: withUnsafeBytes(of: &v4) { ArraySlice($0) }))
        }
        if inet_pton(AF_INET6, name, &v6) == 1 {
            return .ipAddress(ASN1OctetString(contentBytes: withUnsafeBytes(of: &v6) { ArraySlice($0) }))
        }
        return .dnsName(name)
    }
}
