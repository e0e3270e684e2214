import Crypto
import FerryStore
import Foundation
import Glibc

/// Location secrets at rest (an SMB password, an object store's secret key): sealed with
/// AES-GCM under the server's own key before they reach the store, opened only when an
/// execution needs them. The key is `FERRY_SECRET_KEY` (32 bytes, base64) or the file
/// `DATA_DIR/secret.key`, made once with mode 0600; a copy of the database alone reveals
/// no secret.
struct SecretBox: Sendable {
    /// What a sealed value starts with; a stored value without it is from before secrets
    /// were sealed and is read as it is.
    static let prefix = "ferry-aes-gcm:"
    /// The key's 32 bytes (SymmetricKey itself is not Sendable).
    private let keyBytes: Data
    private var key: SymmetricKey { SymmetricKey(data: keyBytes) }

    init(keyBytes: Data) { self.keyBytes = keyBytes }

    /// The key from the environment, else from `DATA_DIR/secret.key` (made when missing).
    init(dataDirectory: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        if let text = environment["FERRY_SECRET_KEY"], !text.isEmpty {
            guard let bytes = Data(base64Encoded: text), bytes.count == 32 else {
                throw ServerError.internalError("FERRY_SECRET_KEY must be 32 bytes in base64 (openssl rand -base64 32)")
            }
            keyBytes = bytes
            return
        }
        let path = dataDirectory + "/secret.key"
        if let bytes = FileManager.default.contents(atPath: path) {
            guard bytes.count == 32 else { throw ServerError.internalError("\(path) must hold 32 bytes; it holds \(bytes.count)") }
            keyBytes = bytes
            return
        }
        let fresh = SymmetricKey(size: .bits256)
        let bytes = fresh.withUnsafeBytes { Array($0) }
        try PrivateFile.create(path, bytes)
        keyBytes = Data(bytes)
    }

    func seal(_ plain: String) throws -> String {
        guard let combined = try AES.GCM.seal(Data(plain.utf8), using: key).combined else {
            throw ServerError.internalError("AES-GCM gave no sealed box")
        }
        return SecretBox.prefix + combined.base64EncodedString()
    }

    func reveal(_ stored: String) throws -> String {
        guard stored.hasPrefix(SecretBox.prefix) else { return stored }
        guard let combined = Data(base64Encoded: String(stored.dropFirst(SecretBox.prefix.count))),
              let plain = try? AES.GCM.open(AES.GCM.SealedBox(combined: combined), using: key) else {
            throw ServerError.internalError("a stored secret cannot be opened with this server's key (was DATA_DIR/secret.key or FERRY_SECRET_KEY changed?)")
        }
        return String(decoding: plain, as: UTF8.self)
    }

    /// `body` with every secret member sealed (those not sealed yet).
    func sealing(_ body: JSONValue, members: Set<String>) throws -> JSONValue {
        var out = body
        for m in members {
            if let s = body[m]?.string, !s.hasPrefix(SecretBox.prefix) { out[m] = .string(try seal(s)) }
        }
        return out
    }
}
