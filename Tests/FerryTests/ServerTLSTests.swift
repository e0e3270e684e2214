import FerryTesting
import Foundation
import Glibc
import Testing

/// `ferry server --tls`: the DataSync API over HTTPS, with a CA and certificate the server
/// makes itself or ones it is given.
@Suite struct ServerTLSTests {
    static func openssl(_ args: [String]) throws -> String {
        let r = try CLI.run(args, wrapper: ["openssl"], direct: true)
        guard r.status == 0 else { throw TestTreeError("openssl \(args.joined(separator: " ")): \(r.stderr)") }
        return r.stdout
    }

    /// A CA and a server certificate made in DATA_DIR/tls (every file 0600), valid for the
    /// names asked for, this host's name, localhost and its addresses; the aws CLI given the
    /// CA (`--ca-bundle`) is answered, without it refused; a restart keeps both.
    @Test func httpsWithACertificateOfItsOwn() throws {
        let dir = try TestTree(label: "server-tls").root
        var server = try FerryServerProcess(dataDirectory: dir, arguments: ["--tls", "--tls-name", "ferry.example"])
        defer { server.kill() }
        let ca = dir + "/tls/ca.pem"
        for file in ["ca.pem", "ca-key.pem", "server.pem", "server-key.pem"] {
            var st = stat()
            #expect(stat(dir + "/tls/" + file, &st) == 0 && st.st_mode & 0o777 == 0o600, "\(file): \(String(st.st_mode & 0o777, radix: 8))")
        }
        let certificate = try ServerTLSTests.openssl(["x509", "-in", dir + "/tls/server.pem", "-noout", "-text"])
        var name = [CChar](repeating: 0, count: 256)
        gethostname(&name, name.count)
        for wanted in ["DNS:ferry.example", "DNS:localhost", "IP Address:127.0.0.1", "DNS:\(String(cString: name))"] {
            #expect(certificate.contains(wanted), "\(wanted) not in \(certificate)")
        }
        #expect(try ServerTLSTests.openssl(["verify", "-CAfile", ca, dir + "/tls/server.pem"]).contains("OK"))

        let listed = try server.aws(["list-agents", "--ca-bundle", ca])
        #expect(listed.status == 0 && listed.json["Agents"] != nil, "\(listed.stderr)")
        let untrusted = try server.aws(["list-agents"])
        #expect(untrusted.status != 0 && untrusted.stderr.contains("CERTIFICATE_VERIFY_FAILED"), "\(untrusted.stderr)")
        let plain = try CLI.run(["-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:\(server.port)/health"], wrapper: ["curl"], direct: true)
        #expect(plain.stdout != "200", "plain HTTP answered on the TLS port")

        let before = try String(contentsOfFile: ca, encoding: .utf8), served = try String(contentsOfFile: dir + "/tls/server.pem", encoding: .utf8)
        server.kill()
        server = try FerryServerProcess(dataDirectory: dir, arguments: ["--tls", "--tls-name", "ferry.example"])
        #expect(try String(contentsOfFile: ca, encoding: .utf8) == before)
        #expect(try String(contentsOfFile: dir + "/tls/server.pem", encoding: .utf8) == served)
        #expect(try server.aws(["list-agents", "--ca-bundle", ca]).status == 0)
    }

    /// A certificate and key given are served as they are (curl trusts them as its CA).
    @Test func httpsWithAGivenCertificate() throws {
        let dir = try TestTree(label: "server-tls-given").root
        _ = try ServerTLSTests.openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
                                        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                                        "-keyout", dir + "/key.pem", "-out", dir + "/cert.pem"])
        let server = try FerryServerProcess(dataDirectory: dir + "/data", arguments: ["--tls", "--tls-cert", dir + "/cert.pem", "--tls-key", dir + "/key.pem"])
        defer { server.kill() }
        let health = try CLI.run(["-s", "--cacert", dir + "/cert.pem", "https://127.0.0.1:\(server.port)/health"], wrapper: ["curl"], direct: true)
        #expect(health.stdout == "ok\n", "\(health.stdout)\(health.stderr)")
        // Only the agents' CA is made (it signs agents' client certificates), no server certificate.
        #expect(!FileManager.default.fileExists(atPath: dir + "/data/tls/server.pem"))
        #expect(FileManager.default.fileExists(atPath: dir + "/data/tls/ca.pem"))
    }
}
