import Foundation

/// Where an S3-compatible service is and how to talk to it.
public struct S3Endpoint: Sendable, CustomStringConvertible {
    /// `http(s)://host[:port]`; nil means AWS (`https://s3.<region>.amazonaws.com`).
    public var url: URL
    public var region: String
    /// Path-style (`host/bucket/key`) instead of virtual-hosted (`bucket.host/key`).
    public var pathStyle: Bool
    public var credentials: AWSCredentials
    /// PEM file of CA certificates to trust for https.
    public var caBundlePath: String?

    public init(url: URL, region: String, pathStyle: Bool, credentials: AWSCredentials, caBundlePath: String? = nil) {
        self.url = url
        self.region = region
        self.pathStyle = pathStyle
        self.credentials = credentials
        self.caBundlePath = caBundlePath
    }

    var scheme: String { url.scheme ?? "https" }
    var host: String { url.host ?? "localhost" }
    var port: Int? { url.port }

    /// Whether requests for `bucket` go path-style. Virtual-hosted addressing needs a bucket
    /// name that is one DNS label (lowercase letters, digits, `-`; 3–63 characters), so, as
    /// the AWS CLI does, other names fall back to path-style.
    public func usesPathStyle(for bucket: String) -> Bool {
        pathStyle || !S3Endpoint.isDNSLabel(bucket)
    }

    static func isDNSLabel(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard (3...63).contains(bytes.count), bytes.first != UInt8(ascii: "-"), bytes.last != UInt8(ascii: "-") else { return false }
        return bytes.allSatisfy { (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || $0 == UInt8(ascii: "-") }
    }

    /// The Host header for a bucket (port included when not the scheme's default).
    public func hostHeader(bucket: String?) -> String {
        var h = host
        if let bucket, !usesPathStyle(for: bucket) { h = "\(bucket).\(h)" }
        if let port, !((scheme == "http" && port == 80) || (scheme == "https" && port == 443)) { h += ":\(port)" }
        return h
    }

    /// The decoded path of a request (what SigV4 signs) and the URL string to send.
    func target(bucket: String?, key: String?, rawQuery: String) -> (path: String, url: String) {
        var path = "/"
        let pathStyle = bucket.map(usesPathStyle(for:)) ?? true
        if pathStyle, let bucket { path += bucket + (key == nil ? "" : "/") }
        if let key { path += key }
        if pathStyle, let bucket, key == nil { path = "/\(bucket)" }
        let encoded = SigV4Signer.uriEncode(path, keepSlash: true)
        let url = "\(scheme)://\(hostHeader(bucket: bucket))\(encoded)\(rawQuery.isEmpty ? "" : "?" + rawQuery)"
        return (path, url)
    }

    public var description: String { "\(url.absoluteString) (\(pathStyle ? "path-style" : "virtual-hosted"), \(region))" }
}
