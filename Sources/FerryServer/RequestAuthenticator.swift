import FerryS3
import Foundation

/// Checks the SigV4 signature of every API request against the server's access keys, as
/// AWS does: a missing signature, an unknown key, a clock more than 15 minutes off and a
/// wrong signature each get their own error. Any region; service `datasync`.
public struct RequestAuthenticator: Sendable {
    /// Secret access keys by access key id.
    let keys: [String: String]
    let maxSkew: TimeInterval = 15 * 60

    public init(credentials: [AWSCredentials]) {
        keys = Dictionary(credentials.map { ($0.accessKeyID, $0.secretAccessKey) }, uniquingKeysWith: { $1 })
    }

    /// What the check needs of a request.
    public struct Request: Sendable {
        public var method: String
        /// The path as sent (percent-encoded).
        public var rawPath: String
        public var rawQuery: String
        public var headers: [(name: String, value: String)]
        public var body: Data
        public init(method: String, rawPath: String, rawQuery: String, headers: [(name: String, value: String)], body: Data) {
            self.method = method
            self.rawPath = rawPath
            self.rawQuery = rawQuery
            self.headers = headers
            self.body = body
        }
    }

    static func denied(_ type: String, _ message: String) -> ServerError {
        ServerError(type: type, status: type == "IncompleteSignatureException" ? 400 : 403, message: message)
    }

    /// Returns the access key id that signed the request.
    @discardableResult
    public func authenticate(_ r: Request, now: Date = Date()) throws -> String {
        func header(_ name: String) -> String? { r.headers.first { $0.name.lowercased() == name }?.value }
        guard let authorization = header("authorization") else {
            throw RequestAuthenticator.denied("MissingAuthenticationTokenException", "Missing Authentication Token")
        }
        guard authorization.hasPrefix("AWS4-HMAC-SHA256 ") else {
            throw RequestAuthenticator.denied("IncompleteSignatureException", "Only AWS4-HMAC-SHA256 signatures are accepted.")
        }
        var fields: [String: String] = [:]
        for part in authorization.dropFirst("AWS4-HMAC-SHA256 ".count).split(separator: ",") {
            let kv = part.trimmingCharacters(in: .whitespaces).split(separator: "=", maxSplits: 1)
            if kv.count == 2 { fields[String(kv[0])] = String(kv[1]) }
        }
        guard let credential = fields["Credential"], let signedHeaders = fields["SignedHeaders"], let signature = fields["Signature"] else {
            throw RequestAuthenticator.denied("IncompleteSignatureException",
                                              "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature'.")
        }
        let scope = credential.split(separator: "/").map(String.init)
        guard scope.count == 5, scope[4] == "aws4_request" else {
            throw RequestAuthenticator.denied("IncompleteSignatureException", "Credential should be scoped to a valid region and service.")
        }
        guard let secret = keys[scope[0]] else {
            throw RequestAuthenticator.denied("UnrecognizedClientException", "The security token included in the request is invalid.")
        }
        guard let amzDate = header("x-amz-date"), let date = SigV4Signer.parseAmzDate(amzDate) else {
            throw RequestAuthenticator.denied("IncompleteSignatureException", "The request must carry a valid X-Amz-Date header.")
        }
        if abs(date.timeIntervalSince(now)) > maxSkew {
            throw RequestAuthenticator.denied("InvalidSignatureException",
                                              "Signature expired: \(amzDate) is now earlier or later than \(SigV4Signer.amzDate(now)) by more than 15 minutes.")
        }
        guard amzDate.hasPrefix(scope[1]) else {
            throw RequestAuthenticator.denied("InvalidSignatureException", "The credential date does not match X-Amz-Date.")
        }
        let names = Set(signedHeaders.split(separator: ";").map { $0.lowercased() })
        guard names.contains("host") else {
            throw RequestAuthenticator.denied("InvalidSignatureException", "The host header must be signed.")
        }
        let signed = r.headers.filter { names.contains($0.name.lowercased()) }
        let payloadHash = header("x-amz-content-sha256") ?? SigV4Signer.payloadHash(r.body)
        let signer = SigV4Signer(credentials: AWSCredentials(accessKeyID: scope[0], secretAccessKey: secret), region: scope[2], service: scope[3])
        let path = r.rawPath.removingPercentEncoding ?? r.rawPath
        let request = SigV4Signer.Request(method: r.method, path: path, rawQuery: r.rawQuery, headers: signed, payloadHash: payloadHash)
        let expected = signer.signature(stringToSign: signer.stringToSign(canonicalRequest: signer.canonicalRequest(request), amzDate: amzDate),
                                        amzDate: amzDate)
        guard constantTimeEqual(expected, signature) else {
            throw RequestAuthenticator.denied("InvalidSignatureException",
                                              "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.")
        }
        return scope[0]
    }

    func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        guard x.count == y.count else { return false }
        var diff: UInt8 = 0
        for i in 0..<x.count { diff |= x[i] ^ y[i] }
        return diff == 0
    }
}
