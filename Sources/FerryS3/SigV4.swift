import Crypto
import Foundation
import Glibc

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
        let (headers, signed) = canonicalHeaders(r.headers)
        return [r.method, canonicalURI(r.path), SigV4Signer.canonicalQuery(r.rawQuery), headers, signed, r.payloadHash]
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
        var out = ""
        out.reserveCapacity(s.utf8.count)
        let hex = Array("0123456789ABCDEF")
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(b))
            case UInt8(ascii: "/") where keepSlash:
                out.append("/")
            default:
                out.append("%")
                out.append(hex[Int(b >> 4)])
                out.append(hex[Int(b & 15)])
            }
        }
        return out
    }

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
    /// names joined with `,` in order, sorted by name.
    func canonicalHeaders(_ headers: [(name: String, value: String)]) -> (String, String) {
        var merged: [String: [String]] = [:]
        for (name, value) in headers {
            let trimmed = value.split(separator: "\n").map { line in
                line.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
            }.filter { !$0.isEmpty }.joined(separator: ",")
            merged[name.lowercased(), default: []].append(trimmed)
        }
        let names = merged.keys.sorted()
        let lines = names.map { "\($0):\(merged[$0]!.joined(separator: ","))\n" }.joined()
        return (lines, names.joined(separator: ";"))
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
        let hash = SHA256.hash(data: Data(canonicalRequest.utf8)).hexString
        return ["AWS4-HMAC-SHA256", amzDate, scope(amzDate), hash].joined(separator: "\n")
    }

    public func signature(stringToSign: String, amzDate: String) -> String {
        func hmac(_ key: SymmetricKey, _ s: String) -> SymmetricKey {
            SymmetricKey(data: Data(HMAC<SHA256>.authenticationCode(for: Data(s.utf8), using: key)))
        }
        var key = SymmetricKey(data: Data(("AWS4" + credentials.secretAccessKey).utf8))
        for part in [String(amzDate.prefix(8)), region, service, "aws4_request"] { key = hmac(key, part) }
        return Data(HMAC<SHA256>.authenticationCode(for: Data(stringToSign.utf8), using: key)).hexString
    }

    /// The `Authorization` header value for `request` (whose headers must already hold
    /// `host` and `x-amz-date`, plus `x-amz-security-token`/`x-amz-content-sha256` if used).
    public func authorization(_ request: Request, amzDate: String) -> String {
        let creq = canonicalRequest(request)
        let sts = stringToSign(canonicalRequest: creq, amzDate: amzDate)
        let (_, signed) = canonicalHeaders(request.headers)
        return "AWS4-HMAC-SHA256 Credential=\(credentials.accessKeyID)/\(scope(amzDate)), SignedHeaders=\(signed), Signature=\(signature(stringToSign: sts, amzDate: amzDate))"
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
        let digits = Array("0123456789abcdef")
        var s = ""
        for b in self { s.append(digits[Int(b >> 4)]); s.append(digits[Int(b & 15)]) }
        return s
    }
}

extension SHA256.Digest {
    var hexString: String { Array(self).hexString }
}
