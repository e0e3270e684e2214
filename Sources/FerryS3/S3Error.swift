import FerryCore

/// Errors of the S3 client and location: what failed, on which bucket/key, the HTTP
/// status and S3's error code, message and request id. Never carries credentials.
public struct S3Error: LocationError {
    public typealias Code = ErrorCode

    public var code: Code
    public var operation: String
    public var bucket: String?
    public var key: String?
    public var status: Int?
    /// S3's `<Code>`, e.g. `NoSuchBucket`, `SlowDown`.
    public var s3Code: String?
    public var message: String
    public var requestID: String?
    public var path: EntryPath?
    public var retryClass: RetryClass

    public init(
        _ code: Code, operation: String, bucket: String? = nil, key: String? = nil, status: Int? = nil,
        s3Code: String? = nil, message: String, requestID: String? = nil, path: EntryPath? = nil, retryClass: RetryClass? = nil
    ) {
        self.code = code
        self.operation = operation
        self.bucket = bucket
        self.key = key
        self.status = status
        self.s3Code = s3Code
        self.message = message
        self.requestID = requestID
        self.path = path
        self.retryClass = retryClass ?? S3Error.classify(status: status, s3Code: s3Code, code: code)
    }

    static func classify(status: Int?, s3Code: String?, code: Code) -> RetryClass {
        if code == .transport { return .retryable }
        guard let status else { return .itemFailed }
        switch (status, s3Code) {
        // BadDigest: the body arrived other than sent (Content-MD5); sending it again heals.
        case (500..., _), (_, "SlowDown"?), (_, "RequestTimeout"?), (429, _), (_, "BadDigest"?): return .retryable
        case (403, _), (_, "NoSuchBucket"?), (_, "InvalidAccessKeyId"?), (_, "SignatureDoesNotMatch"?): return .fatal
        default: return .itemFailed
        }
    }

    /// Whether the server refused the request itself (a 4xx, or 501 Not Implemented), as
    /// opposed to failing it for the moment (a 5xx, a broken connection).
    public var isRefusal: Bool { status.map { (400..<500).contains($0) || $0 == 501 } ?? false }

    /// Whether the server asks us to slow down.
    public var isThrottle: Bool { s3Code == "SlowDown" || status == 503 || status == 429 }

    public var description: String {
        var where_ = bucket.map { "s3://\($0)" } ?? "S3"
        if let key { where_ += "/\(key)" }
        var s = "\(operation) failed on \(where_)"
        if let status { s += ": HTTP \(status)" }
        if let s3Code { s += " \(s3Code)" }
        s += ": \(message)"
        if let requestID { s += " (request id \(requestID))" }
        return s
    }
}

extension ErrorCode {
    public static let http = ErrorCode("HTTPError")
    public static let transport = ErrorCode("TransportError")
    public static let badResponse = ErrorCode("BadResponse")
    public static let tooLarge = ErrorCode("ObjectTooLarge")
    public static let invalidKey = ErrorCode("InvalidKey")
    public static let configuration = ErrorCode("Configuration")
}
