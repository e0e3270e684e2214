import FerryS3
import Foundation

/// The server's admin access key: taken from FERRY_ACCESS_KEY_ID / FERRY_SECRET_ACCESS_KEY
/// at the first start, otherwise generated; kept in `DATA_DIR/credentials` (mode 0600) and
/// read from there on every later start.
public enum AdminCredentials {
    public static func file(in dataDirectory: String) -> String { dataDirectory + "/credentials" }

    /// Loads the stored key, or creates it (from the environment or at random).
    public static func loadOrCreate(dataDirectory: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> AWSCredentials {
        if let existing = try load(dataDirectory: dataDirectory) { return existing }
        let credentials: AWSCredentials
        if let id = environment["FERRY_ACCESS_KEY_ID"], let secret = environment["FERRY_SECRET_ACCESS_KEY"], !id.isEmpty, !secret.isEmpty {
            credentials = AWSCredentials(accessKeyID: id, secretAccessKey: secret)
        } else {
            credentials = AWSCredentials(accessKeyID: "FERRY" + random(15, alphabet: "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"),
                                         secretAccessKey: random(40, alphabet: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"))
        }
        try FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let text = "AWS_ACCESS_KEY_ID=\(credentials.accessKeyID)\nAWS_SECRET_ACCESS_KEY=\(credentials.secretAccessKey)\n"
        try PrivateFile.create(file(in: dataDirectory), Array(text.utf8))
        return credentials
    }

    /// The stored key, or nil when none was created yet.
    public static func load(dataDirectory: String) throws -> AWSCredentials? {
        guard let text = try? String(contentsOfFile: file(in: dataDirectory), encoding: .utf8) else { return nil }
        var values: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let kv = line.split(separator: "=", maxSplits: 1)
            if kv.count == 2 { values[String(kv[0])] = String(kv[1]) }
        }
        guard let id = values["AWS_ACCESS_KEY_ID"], let secret = values["AWS_SECRET_ACCESS_KEY"] else {
            throw ServerError.internalError("\(file(in: dataDirectory)) does not hold AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        }
        return AWSCredentials(accessKeyID: id, secretAccessKey: secret)
    }

    static func random(_ n: Int, alphabet: String) -> String {
        var g = SystemRandomNumberGenerator()
        let chars = Array(alphabet)
        return String((0..<n).map { _ in chars[Int(g.next(upperBound: UInt64(chars.count)))] })
    }
}

/// DataSync's ARNs: `arn:aws:datasync:REGION:ACCOUNT:location/loc-<17 hex>`, `…:task/task-…`,
/// `…:task/task-…/execution/exec-…`, `…:agent/agent-…`.
public struct ARNFactory: Sendable {
    public var region: String
    public var account: String

    public init(region: String = "us-east-1", account: String = "000000000000") {
        self.region = region
        self.account = account
    }

    static func id() -> String {
        var g = SystemRandomNumberGenerator()
        return (0..<17).map { _ in String(g.next(upperBound: UInt8(16)), radix: 16) }.joined()
    }

    public func location() -> String { "arn:aws:datasync:\(region):\(account):location/loc-\(ARNFactory.id())" }
    public func task() -> String { "arn:aws:datasync:\(region):\(account):task/task-\(ARNFactory.id())" }
    public func agent() -> String { "arn:aws:datasync:\(region):\(account):agent/agent-\(ARNFactory.id())" }
    public func execution(of task: String) -> String { "\(task)/execution/exec-\(ARNFactory.id())" }
}
