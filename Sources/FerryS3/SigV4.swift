import Crypto
import Foundation
import Glibc
import Synchronization

/// AWS credentials. `description` never shows the secret or the session token.
public struct AWSCredentials: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible {
    public var accessKeyID: String
    public var secretAccessKey: String
    public var sessionToken: String?

    public init(accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil) {
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
    }

    public var description: String { "AWSCredentials(accessKeyID: \(accessKeyID), secret: <redacted>)" }
    public var debugDescription: String { description }
}

/// AWS Signature Version 4 (header form), written here and checked against AWS's
/// published test suite. S3 signs with single-encoded, un-normalised paths and an
/// `x-amz-content-sha256` header; other services double-encode and normalise the path.
public struct SigV4Signer: Sendable {
    public var credentials: AWSCredentials
    public var region: String
    public var service: String
    /// Shared by copies of this signer; keyed by everything the key is derived from.
    private let keyCache = SigningKeyCache()

    public init(credentials: AWSCredentials, region: String, service: String) {
        self.credentials = credentials
        self.region = region
        self.service = service
    }

    /// What is signed: method, path (decoded, as sent before encoding), the raw query
    /// string, headers in order (names may repeat), and the hex SHA-256 of the payload
    /// (or `UNSIGNED-PAYLOAD`).
    public struct Request: Sendable {
        public var method: String
        public var path: String
        public var rawQuery: String
        public var headers: [(name: String, value: String)]
        public var payloadHash: String

        public init(method: String, path: String, rawQuery: String = "", headers: [(name: String, value: String)], payloadHash: String) {
            self.method = method
            self.path = path
            self.rawQuery = rawQuery
            self.headers = headers
            self.payloadHash = payloadHash
        }
    }

    public static let emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    public static let unsignedPayload = "UNSIGNED-PAYLOAD"

    var isS3: Bool { service == "s3" }

    // MARK: canonical request

    public func canonicalRequest(_ r: Request) -> String {
        canonicalRequest(r, canonicalHeaders(r.headers))
    }

    func canonicalRequest(_ r: Request, _ headers: (block: String, signed: String)) -> String {
        [r.method, canonicalURI(r.path), SigV4Signer.canonicalQuery(r.rawQuery), headers.block, headers.signed, r.payloadHash]
            .joined(separator: "\n")
    }

    /// The path is given decoded (as before it is put on the wire). S3: each byte outside
    /// the unreserved set percent-encoded once, `/` kept, nothing normalised. Others: the
    /// path normalised (dot segments and empty segments removed), then encoded once (the
    /// "double encoding" of the other services is of the already-encoded wire path).
    public func canonicalURI(_ path: String) -> String {
        if isS3 { return SigV4Signer.uriEncode(path, keepSlash: true) }
        return SigV4Signer.uriEncode(SigV4Signer.normalise(path), keepSlash: true)
    }

    static func normalise(_ path: String) -> String {
        var out: [Substring] = []
        let parts = path.split(separator: "/", omittingEmptySubsequences: true)
        for p in parts {
            if p == "." { continue }
            if p == ".." { _ = out.popLast(); continue }
            out.append(p)
        }
        var result = "/" + out.joined(separator: "/")
        let last = path.split(separator: "/", omittingEmptySubsequences: false).last
        if path.hasSuffix("/") && !out.isEmpty && last != ".." && last != "." { result += "/" }
        return result
    }

    /// RFC 3986 percent-encoding of everything but `A–Z a–z 0–9 - . _ ~` (and `/` when kept).
    public static func uriEncode(_ s: String, keepSlash: Bool) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(s.utf8.count + 8)
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.append(b)
            case UInt8(ascii: "/") where keepSlash:
                out.append(b)
            default:
                out.append(UInt8(ascii: "%"))
                out.append(upperHexDigits[Int(b >> 4)])
                out.append(upperHexDigits[Int(b & 15)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    static let upperHexDigits: [UInt8] = Array("0123456789ABCDEF".utf8)

    /// Query parameters decoded, re-encoded, sorted by name then value, `name=value` joined by `&`.
    static func canonicalQuery(_ raw: String) -> String {
        if raw.isEmpty { return "" }
        var pairs: [(String, String)] = []
        for part in raw.split(separator: "&", omittingEmptySubsequences: true) {
            let kv = part.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = String(kv[0]).removingPercentEncoding ?? String(kv[0])
            let value = kv.count > 1 ? (String(kv[1]).removingPercentEncoding ?? String(kv[1])) : ""
            pairs.append((uriEncode(name, keepSlash: false), uriEncode(value, keepSlash: false)))
        }
        pairs.sort { $0.0 != $1.0 ? $0.0 < $1.0 : $0.1 < $1.1 }
        return pairs.map { "\($0.0)=\($0.1)" }.joined(separator: "&")
    }

    /// Lower-cased names, trimmed values with inner runs of spaces collapsed, repeated
    /// names joined with `,` in order, sorted by name. Returns the header block and the
    /// signed-headers list. Works on UTF-8 bytes: every request is signed, and `String`'s
    /// `split`/`lowercased` (grapheme by grapheme) made signing 19 % of an upload's CPU.
    func canonicalHeaders(_ headers: [(name: String, value: String)]) -> (block: String, signed: String) {
        var entries: [(name: [UInt8], value: [UInt8])] = []
        entries.reserveCapacity(headers.count)
        for (name, value) in headers {
            entries.append((SigV4Signer.lowercasedASCII(name), SigV4Signer.canonicalValue(value)))
        }
        // Stable: repeated names keep their order.
        let order = entries.indices.sorted { a, b in
            let x = entries[a].name, y = entries[b].name
            return x == y ? a < b : x.lexicographicallyPrecedes(y)
        }
        var block: [UInt8] = [], signed: [UInt8] = []
        block.reserveCapacity(headers.reduce(0) { $0 + $1.name.utf8.count + $1.value.utf8.count + 2 })
        var previous: [UInt8]?
        for i in order {
            let (name, value) = entries[i]
            if name == previous {
                block.removeLast()  // the newline: joined to the same line with ","
                block.append(UInt8(ascii: ","))
            } else {
                if previous != nil { signed.append(UInt8(ascii: ";")) }
                signed += name
                block += name
                block.append(UInt8(ascii: ":"))
                previous = name
            }
            block += value
            block.append(UInt8(ascii: "\n"))
        }
        return (String(decoding: block, as: UTF8.self), String(decoding: signed, as: UTF8.self))
    }

    /// ASCII letters lower-cased (header names are ASCII; other bytes are kept).
    static func lowercasedASCII(_ s: String) -> [UInt8] {
        s.utf8.map { $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") ? $0 + 32 : $0 }
    }

    /// A header value as signed: each line with leading and trailing spaces removed and
    /// inner runs of spaces made one; empty lines dropped; lines joined with `,`.
    static func canonicalValue(_ value: String) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(value.utf8.count)
        var lineHasContent = false, spacePending = false, commaPending = false
        for b in value.utf8 {
            switch b {
            case UInt8(ascii: "\n"):
                if lineHasContent { commaPending = true }
                lineHasContent = false
                spacePending = false
            case UInt8(ascii: " "):
                if lineHasContent { spacePending = true }
            default:
                if commaPending { out.append(UInt8(ascii: ",")); commaPending = false }
                if spacePending { out.append(UInt8(ascii: " ")); spacePending = false }
                out.append(b)
                lineHasContent = true
            }
        }
        return out
    }

    // MARK: signature

    /// `YYYYMMDD'T'HHMMSS'Z'` in UTC (what `X-Amz-Date` carries), without a formatter
    /// object per request: it is computed for every request signed.
    public static func amzDate(_ date: Date) -> String {
        var t = time_t(date.timeIntervalSince1970.rounded(.down))
        var tm = Glibc.tm()
        gmtime_r(&t, &tm)
        func two(_ n: Int32) -> String { n < 10 ? "0\(n)" : "\(n)" }
        return "\(tm.tm_year + 1900)\(two(tm.tm_mon + 1))\(two(tm.tm_mday))T\(two(tm.tm_hour))\(two(tm.tm_min))\(two(tm.tm_sec))Z"
    }

    /// The instant an `X-Amz-Date` value names; nil if it is not `YYYYMMDD'T'HHMMSS'Z'`.
    public static func parseAmzDate(_ text: String) -> Date? { WireDates.parseAmz(text) }

    /// Lower-case hex SHA-256 of a payload (the signed payload hash).
    public static func payloadHash(_ data: Data) -> String {
        SHA256.hash(data: data).hexString
    }

    func scope(_ amzDate: String) -> String {
        "\(amzDate.prefix(8))/\(region)/\(service)/aws4_request"
    }

    public func stringToSign(canonicalRequest: String, amzDate: String) -> String {
        var text = canonicalRequest
        let hash = text.withUTF8 { SHA256.hash(data: UnsafeRawBufferPointer($0)) }.hexString
        return ["AWS4-HMAC-SHA256", amzDate, scope(amzDate), hash].joined(separator: "\n")
    }

    public func signature(stringToSign: String, amzDate: String) -> String {
        var text = stringToSign
        let key = signingKey(day: String(amzDate.prefix(8)))
        return text.withUTF8 { HMAC<SHA256>.authenticationCode(for: UnsafeRawBufferPointer($0), using: key) }.hexString
    }

    /// The key derived from the secret for `day` (four HMACs); the last one is kept, as AWS
    /// advises: it changes once a day, and every request is signed with it.
    func signingKey(day: String) -> SymmetricKey {
        let id = SigningKeyCache.ID(credentials: credentials, day: day, region: region, service: service)
        if let key = keyCache.key(for: id) { return key }
        func hmac(_ key: SymmetricKey, _ s: String) -> SymmetricKey {
            SymmetricKey(data: Data(HMAC<SHA256>.authenticationCode(for: Data(s.utf8), using: key)))
        }
        var key = SymmetricKey(data: Data(("AWS4" + credentials.secretAccessKey).utf8))
        for part in [day, region, service, "aws4_request"] { key = hmac(key, part) }
        keyCache.store(key, for: id)
        return key
    }

    /// The `Authorization` header value for `request` (whose headers must already hold
    /// `host` and `x-amz-date`, plus `x-amz-security-token`/`x-amz-content-sha256` if used).
    public func authorization(_ request: Request, amzDate: String) -> String {
        let headers = canonicalHeaders(request.headers)
        let creq = canonicalRequest(request, headers)
        let sts = stringToSign(canonicalRequest: creq, amzDate: amzDate)
        return "AWS4-HMAC-SHA256 Credential=\(credentials.accessKeyID)/\(scope(amzDate)), SignedHeaders=\(headers.signed), Signature=\(signature(stringToSign: sts, amzDate: amzDate))"
    }

    /// Adds `x-amz-date`, `x-amz-content-sha256` (S3), `x-amz-security-token` and
    /// `Authorization` to `request.headers` and returns them.
    public func sign(_ request: Request, date: Date = Date()) -> [(name: String, value: String)] {
        var r = request
        let amzDate = SigV4Signer.amzDate(date)
        r.headers.append(("x-amz-date", amzDate))
        if isS3 { r.headers.append(("x-amz-content-sha256", r.payloadHash)) }
        if let token = credentials.sessionToken { r.headers.append(("x-amz-security-token", token)) }
        r.headers.append(("Authorization", authorization(r, amzDate: amzDate)))
        return r.headers
    }
}

extension Sequence where Element == UInt8 {
    /// Lower-case hex.
    var hexString: String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(underestimatedCount * 2)
        for b in self {
            bytes.append(lowerHexDigits[Int(b >> 4)])
            bytes.append(lowerHexDigits[Int(b & 15)])
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

private let lowerHexDigits: [UInt8] = Array("0123456789abcdef".utf8)

extension SHA256.Digest {
    var hexString: String { withUnsafeBytes { $0.hexString } }
}

extension HashedAuthenticationCode {
    var hexString: String { withUnsafeBytes { $0.hexString } }
}

/// The last signing key derived (``SigV4Signer/signingKey(day:)``).
final class SigningKeyCache: Sendable {
    struct ID: Equatable {
        /// (Not the bare secret: printed, credentials show it redacted.)
        var credentials: AWSCredentials
        var day: String
        var region: String
        var service: String
    }

    private let last = Mutex<(id: ID, key: [UInt8])?>(nil)

    func key(for id: ID) -> SymmetricKey? {
        last.withLock { $0?.id == id ? $0?.key : nil }.map { SymmetricKey(data: $0) }
    }

    func store(_ key: SymmetricKey, for id: ID) {
        let bytes = key.withUnsafeBytes { Array($0) }
        last.withLock { $0 = (id, bytes) }
    }
}
