import Foundation

/// What a location argument names, parsed once for every caller (`ferry sync`, `ferry
/// block`, the server): plain paths and `file://` (a tree on this host), `s3://bucket/prefix`,
/// `block:///dev/…` (an image or device), and `nfs://host[:port]/path`,
/// `smb://[domain;][user@]host[:port]/share/path` and `agent://agent/location`, which are
/// parsed but not served yet (each caller says so).
public enum LocationURI: Sendable, Hashable, CustomStringConvertible {
    case posix(path: String)
    case s3(bucket: String, prefix: String)
    case block(path: String)
    case nfs(host: String, port: Int?, path: String)
    case smb(domain: String?, user: String?, host: String, port: Int?, path: String)
    case agent(agent: String, location: String)
    /// DataSync's `object-storage://host[:port]/bucket/prefix` (an S3-compatible endpoint).
    case objectStorage(host: String, port: Int?, bucket: String, prefix: String)

    /// The scheme as a user writes it (`file` for plain paths).
    public var scheme: String {
        switch self {
        case .posix: "file"
        case .s3: "s3"
        case .block: "block"
        case .nfs: "nfs"
        case .smb: "smb"
        case .agent: "agent"
        case .objectStorage: "object-storage"
        }
    }

    /// The URI as DataSync writes a location's `LocationUri` (a directory ends in `/`).
    public var description: String {
        func dir(_ p: String) -> String { p.hasSuffix("/") ? p : p + "/" }
        func authority(_ host: String, _ port: Int?) -> String {
            (host.contains(":") ? "[\(host)]" : host) + (port.map { ":\($0)" } ?? "")
        }
        switch self {
        case .posix(let path): return "file://" + path
        case .s3(let bucket, let prefix): return "s3://\(bucket)/" + (prefix.isEmpty ? "" : dir(prefix))
        case .block(let path): return "block://" + path
        case .nfs(let host, let port, let path): return "nfs://" + authority(host, port) + dir(path)
        case .smb(let domain, let user, let host, let port, let path):
            let who = user.map { (domain.map { $0 + ";" } ?? "") + $0 + "@" } ?? ""
            return "smb://" + who + authority(host, port) + dir(path)
        case .agent(let agent, let location): return "agent://\(agent)/\(location)"
        case .objectStorage(let host, let port, let bucket, let prefix):
            return "object-storage://" + authority(host, port) + "/\(bucket)/" + (prefix.isEmpty ? "" : dir(prefix))
        }
    }

    /// Parses `text`, or a usage error naming what is wrong with it.
    public static func parse(_ text: String) throws(FerryError) -> LocationURI {
        if text.isEmpty { throw FerryError(.invalidLocation, "an empty location was given") }
        guard let range = text.range(of: "://"), !text[..<range.lowerBound].contains("/") else { return .posix(path: text) }
        let scheme = text[..<range.lowerBound].lowercased()
        let rest = String(text[range.upperBound...])
        switch scheme {
        case "file", "block":
            guard rest.hasPrefix("/") else {
                throw FerryError(.invalidLocation, "\(text): a \(scheme):// URI needs an absolute path (\(scheme):///data)")
            }
            let path = rest.removingPercentEncoding ?? rest
            return scheme == "file" ? .posix(path: path) : .block(path: path)
        case "s3":
            let bucket = String(rest.prefix { $0 != "/" })
            guard bucket.count >= 3, bucket.count <= 63, bucket.allSatisfy({ $0.isLowercase || $0.isNumber || $0 == "-" || $0 == "." }) else {
                throw FerryError(.invalidLocation, "\(text): \"\(bucket)\" is not a valid bucket name (3–63 characters: a–z, 0–9, '-', '.')")
            }
            return .s3(bucket: bucket, prefix: String(rest.dropFirst(bucket.count).drop { $0 == "/" }))
        case "nfs":
            let (host, port, path) = try hostPortPath(rest, text)
            return .nfs(host: host, port: port, path: path)
        case "smb":
            var authority = String(rest.prefix { $0 != "/" })
            var domain: String?, user: String?
            if let at = authority.lastIndex(of: "@") {
                var credentials = String(authority[..<at])
                authority = String(authority[authority.index(after: at)...])
                if let semicolon = credentials.firstIndex(of: ";") {
                    domain = String(credentials[..<semicolon])
                    credentials = String(credentials[credentials.index(after: semicolon)...])
                }
                if credentials.contains(":") {
                    throw FerryError(.invalidLocation, "\(text): put no password in the URI (it would show in the process table); use --password-file or the environment")
                }
                user = credentials.removingPercentEncoding ?? credentials
            }
            let (host, port, path) = try hostPortPath(authority + String(rest.drop { $0 != "/" }), text)
            return .smb(domain: domain, user: user, host: host, port: port, path: path)
        case "object-storage":
            let authority = String(rest.prefix { $0 != "/" })
            let (host, port, _) = try hostPortPath(authority + "/x", text)
            let path = rest.dropFirst(authority.count).drop { $0 == "/" }
            let bucket = String(path.prefix { $0 != "/" })
            guard !bucket.isEmpty else { throw FerryError(.invalidLocation, "\(text): name the bucket after the host") }
            return .objectStorage(host: host, port: port, bucket: bucket, prefix: String(path.dropFirst(bucket.count).drop { $0 == "/" }))
        case "agent":
            let agent = String(rest.prefix { $0 != "/" })
            guard !agent.isEmpty else { throw FerryError(.invalidLocation, "\(text): name the agent (agent://AGENT/LOCATION)") }
            return .agent(agent: agent, location: String(rest.dropFirst(agent.count).drop { $0 == "/" }))
        default:
            throw FerryError(.unsupported, "\(text): locations of scheme \(scheme):// are not supported (paths, file://, s3:// and block:// are)")
        }
    }

    /// `host[:port]/path` of an nfs:// or smb:// URI (`[v6]:port` for IPv6).
    private static func hostPortPath(_ rest: String, _ text: String) throws(FerryError) -> (String, Int?, String) {
        let authority = rest.prefix { $0 != "/" }
        let path = String(rest.dropFirst(authority.count))
        var host = String(authority), port: Int?
        if host.hasPrefix("["), let close = host.firstIndex(of: "]") {
            let tail = host[host.index(after: close)...]
            if tail.hasPrefix(":") { port = Int(tail.dropFirst()) }
            host = String(host[host.index(after: host.startIndex)..<close])
        } else if let colon = host.lastIndex(of: ":") {
            guard let p = Int(host[host.index(after: colon)...]), (1...65535).contains(p) else {
                throw FerryError(.invalidLocation, "\(text): \"\(host[host.index(after: colon)...])\" is not a port")
            }
            port = p
            host = String(host[..<colon])
        }
        guard !host.isEmpty else { throw FerryError(.invalidLocation, "\(text): name the server (\(text.prefix { $0 != ":" })://HOST/PATH)") }
        guard path.hasPrefix("/") else { throw FerryError(.invalidLocation, "\(text): name the export or share path after the host") }
        return (host, port, path.removingPercentEncoding ?? path)
    }
}
