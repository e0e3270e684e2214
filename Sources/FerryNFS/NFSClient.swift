import CLibNFS
import FerryCore
import Foundation
import Glibc
import Synchronization

/// Ferry's NFS client for one location: a few connections to one server, each mounted at
/// the deepest existing directory of the location's path, and the path below that mount.
/// No kernel mount, no root needed on the client (the server sees the process's uid/gid
/// as AUTH_SYS credentials).
public final class NFSClient: Sendable {
    public let host: String
    public let port: Int?
    /// The version both sides agreed on (never ``NFSVersion/automatic``).
    public let version: NFSVersion
    /// The path that was mounted (an export or a directory below one).
    public let mountedPath: String
    /// The location's root below the mount ("" or "/a/b").
    let below: [UInt8]
    let connections: [NFSConnection]
    private let next = Atomic<Int>(0)

    /// `nfs://host[:port]` as messages name the server.
    public var server: String { "nfs://" + (host.contains(":") ? "[\(host)]" : host) + (port.map { ":\($0)" } ?? "") }

    /// Connects to `host` and mounts `path` with `version` (each version of
    /// ``NFSVersion/automatic`` in turn); with `create`, directories of `path` missing
    /// below the deepest one that exists are made. Blocks while it mounts.
    public static func connect(
        host: String, port: Int?, path: String, version: NFSVersion, create: Bool, connections: Int = 2, timeoutMilliseconds: Int32 = 30_000
    ) throws(NFSError) -> NFSClient {
        let server = "nfs://" + (host.contains(":") ? "[\(host)]" : host) + (port.map { ":\($0)" } ?? "")
        let location = server + path
        if version == .v4_1 {
            throw NFSError(.nfsVersionUnsupported, operation: "mount", path: nil, errno: EPROTONOSUPPORT,
                           detail: "Ferry does not speak NFSv4.1 yet (its NFS client, libnfs 4.0, has no v4.1 sessions); use NFSv4.0 (--nfs-version 4.0, Version=NFS4_0) or NFSv3",
                           location: location, retryClass: .fatal)
        }
        var path = path
        while path.count > 1 && path.hasSuffix("/") { path.removeLast() }
        var failures: [String] = []
        for attempt in version.attempts {
            do throws(NFSFailure) {
                return try mount(host: host, port: port, server: server, path: path, version: attempt, create: create,
                                 count: max(1, connections), timeout: timeoutMilliseconds)
            } catch {
                failures.append("\(attempt.label): \(error.message)")
                if error.errno == ENOENT { break }
            }
        }
        let detail = failures.joined(separator: "; ")
        let unreachable = detail.contains("connect") || detail.contains("nfs_service failed") || detail.contains("resolv")
        let hint = unreachable
            ? " (is an NFS server listening on \(host)\(port.map { " port \($0)" } ?? ""), and is the name right?)"
            : version == .automatic ? "" : " (does the server export it, and speak \(version.label)? try --nfs-version auto)"
        throw NFSError(.nfsMountFailed, operation: "mount", path: nil, errno: ENOENT, detail: detail + hint, location: location, retryClass: .fatal)
    }

    private static func mount(
        host: String, port: Int?, server: String, path: String, version: NFSVersion, create: Bool, count: Int, timeout: Int32
    ) throws(NFSFailure) -> NFSClient {
        let components = path.split(separator: "/").map(String.init)
        var firstError: NFSFailure?
        // The deepest directory of the path that mounts: the path itself, or a parent (an
        // export above a destination not made yet).
        for depth in stride(from: components.count, through: 0, by: -1) {
            let mounted = "/" + components.prefix(depth).joined(separator: "/")
            let query = "version=\(version == .v3 ? 3 : 4)" + (port.map { "&nfsport=\($0)" } ?? "")
            let url = "\(server)\(mounted)?\(query)"
            do throws(NFSFailure) {
                let first = try NFSConnection(url: url, export: mounted, version: version == .v3 ? 3 : 4, timeoutMilliseconds: timeout)
                let rest = components.dropFirst(depth)
                if !rest.isEmpty {
                    guard create else {
                        first.close()
                        throw firstError ?? NFSFailure(errno: ENOENT, message: "\(path) does not exist")
                    }
                    var made = ""
                    for name in rest {
                        made += "/" + name
                        let status = made.withCString { p in first.blocking { nfs_mkdir2($0, p, 0o755) } }
                        if status < 0 && status != -EEXIST {
                            first.close()
                            throw NFSFailure(errno: -status, message: "mkdir \(mounted)\(made): \(String(cString: strerror(-status)))")
                        }
                    }
                }
                var all = [first]
                for _ in 1..<count { all.append(try NFSConnection(url: url, export: mounted, version: version == .v3 ? 3 : 4, timeoutMilliseconds: timeout)) }
                for c in all { c.start() }
                return NFSClient(host: host, port: port, version: version, mountedPath: mounted,
                                 below: Array(rest.map { "/" + $0 }.joined().utf8), connections: all)
            } catch {
                let missing = error.message.contains("NOENT") || error.message.contains("MNT3ERR_ACCES") || error.errno == ENOENT
                if !missing { throw error }
                if firstError == nil { firstError = NFSFailure(errno: ENOENT, message: error.message) }
            }
        }
        throw firstError ?? NFSFailure(errno: ENOENT, message: "\(path) does not exist")
    }

    private init(host: String, port: Int?, version: NFSVersion, mountedPath: String, below: [UInt8], connections: [NFSConnection]) {
        self.host = host
        self.port = port
        self.version = version
        self.mountedPath = mountedPath
        self.below = below
        self.connections = connections
    }

    deinit { close() }

    /// Closes every connection; calls still outstanding fail.
    public func close() { for c in connections { c.close() } }

    /// A connection for the next call or file (round robin).
    var connection: NFSConnection { connections[next.add(1, ordering: .relaxed).oldValue % connections.count] }

    /// The path libnfs is given for `path` (the mount's root is "/"), NUL-terminated.
    func cPath(_ path: EntryPath) -> [CChar] {
        var bytes = below
        if !path.isRoot {
            bytes.append(UInt8(ascii: "/"))
            bytes += path.bytes
        }
        if bytes.isEmpty { bytes = [UInt8(ascii: "/")] }
        return bytes.map { CChar(bitPattern: $0) } + [0]
    }
}
