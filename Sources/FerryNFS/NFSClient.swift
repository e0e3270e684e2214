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
    /// The version spoken: NFSv3, the one Ferry speaks (see ``connect(host:port:path:version:create:writing:connections:timeoutMilliseconds:)``).
    public var version: NFSVersion { .v3 }
    /// The path that was mounted (an export or a directory below one).
    public let mountedPath: String
    /// The location's root below the mount ("" or "/a/b").
    let below: [UInt8]
    /// The connections; one whose connection broke is replaced by a new mount on its next use.
    private let connections: Mutex<[NFSConnection]>
    private let next = Atomic<Int>(0)
    /// What mounts another connection: the URL (ports, version), the export, the timeout.
    private let mount: (url: String, export: String, timeout: Int32)
    /// Whether the server sets a symlink's times (nfs-ganesha's VFS backend does not):
    /// tried once on a temporary symlink when a tree to write to is opened.
    public let symlinkTimesKept: Bool

    /// `nfs://host[:port]` as messages name the server.
    public var server: String { NFSClient.server(host, port) }

    static func server(_ host: String, _ port: Int?) -> String {
        "nfs://" + (host.contains(":") ? "[\(host)]" : host) + (port.map { ":\($0)" } ?? "")
    }

    /// Connects to `host` and mounts `path` over NFSv3 (`version` 3 or automatic); with
    /// `create`, directories of `path` missing below the deepest one that exists are made.
    /// `writing`: the tree is a destination. Blocks while it mounts.
    ///
    /// NFSv4.0 is refused by name rather than served wrong: Debian's libnfs 4.0 fails to
    /// encode NFSv4 WRITE compounds of more than a few bytes ("ZDR error: Failed to encode
    /// COMPOUND4args"; its own `nfs-cp` fails the same way against nfs-ganesha), cannot set
    /// a directory's attributes (NFS4ERR_ISDIR), and some CLOSEs of files read in parallel
    /// fail (NFS4ERR_BAD_SEQID, even with OPEN/CLOSE one at a time per connection);
    /// ``NFSVersion/automatic`` chooses NFSv3.
    public static func connect(
        host: String, port: Int?, path: String, version: NFSVersion, create: Bool, writing: Bool = false,
        connections: Int = 2, timeoutMilliseconds: Int32 = 30_000
    ) throws(NFSError) -> NFSClient {
        let server = NFSClient.server(host, port)
        let location = server + path
        if let refusal = version.refusal {
            throw NFSError(.nfsVersionUnsupported, operation: "mount", path: nil, errno: EPROTONOSUPPORT,
                           detail: refusal, location: location, retryClass: .fatal)
        }
        var path = path
        while path.count > 1 && path.hasSuffix("/") { path.removeLast() }
        let detail: String
        do throws(NFSFailure) {
            return try mount(host: host, port: port, server: server, path: path, create: create, writing: writing,
                             count: max(1, connections), timeout: timeoutMilliseconds)
        } catch {
            detail = "\(NFSVersion.v3.label): \(error.message)"
        }
        let unreachable = detail.contains("connect") || detail.contains("nfs_service failed") || detail.contains("resolv")
        let hint = unreachable
            ? " (is an NFS server listening on \(host)\(port.map { " port \($0)" } ?? ""), and is the name right?)"
            : " (does the server export it to this host, and speak NFSv3? showmount -e \(host) lists its exports)"
        throw NFSError(.nfsMountFailed, operation: "mount", path: nil, errno: ENOENT, detail: detail + hint, location: location, retryClass: .fatal)
    }

    private static func mount(
        host: String, port: Int?, server: String, path: String, create: Bool, writing: Bool, count: Int, timeout: Int32
    ) throws(NFSFailure) -> NFSClient {
        let components = path.split(separator: "/").map(String.init)
        var firstError: NFSFailure?
        // The deepest directory of the path that mounts: the path itself, or a parent (an
        // export above a destination not made yet).
        for depth in stride(from: components.count, through: 0, by: -1) {
            let mounted = "/" + components.prefix(depth).joined(separator: "/")
            let query = "version=3" + (port.map { "&nfsport=\($0)" } ?? "")
            let url = "\(server)\(mounted)?\(query)"
            do throws(NFSFailure) {
                let first = try NFSConnection(url: url, export: mounted, timeoutMilliseconds: timeout)
                let rest = components.dropFirst(depth)
                if !rest.isEmpty {
                    guard create else {
                        first.close()
                        throw firstError ?? NFSFailure(errno: ENOENT, message: "\(path) does not exist")
                    }
                    var made = ""
                    for name in rest {
                        made += "/" + name
                        let made = made
                        let status = made.withCString { p in first.blocking { nfs_mkdir2($0, p, 0o755) } }
                        if status < 0 && status != -EEXIST {
                            first.close()
                            throw NFSFailure(errno: -status, message: "mkdir \(mounted)\(made): \(String(cString: strerror(-status)))")
                        }
                    }
                }
                var all = [first]
                do throws(NFSFailure) {
                    for _ in 1..<count { all.append(try NFSConnection(url: url, export: mounted, timeoutMilliseconds: timeout)) }
                } catch {
                    for c in all { c.close() }
                    throw error
                }
                let below = rest.map { "/" + $0 }.joined()
                let kept = writing ? symlinkKeepsTimes(first, in: below) : true
                for c in all { c.start() }
                return NFSClient(host: host, port: port, mountedPath: mounted, below: Array(below.utf8), connections: all,
                                 mount: (url, mounted, timeout), symlinkTimesKept: kept)
            } catch {
                let missing = error.message.contains("NOENT") || error.message.contains("MNT3ERR_ACCES") || error.errno == ENOENT
                if !missing { throw error }
                if firstError == nil { firstError = NFSFailure(errno: ENOENT, message: error.message) }
            }
        }
        throw firstError ?? NFSFailure(errno: ENOENT, message: "\(path) does not exist")
    }

    /// Makes a temporary symlink in `directory`, sets its mtime to 1 s after the epoch, and
    /// reads it back (blocking calls, before the connection's thread starts); the
    /// directory's times are put back (to the microsecond) so a later run sees no change.
    private static func symlinkKeepsTimes(_ connection: NFSConnection, in directory: String) -> Bool {
        let dir = directory.isEmpty ? "/" : directory
        let path = "\(directory)/.ferry-tmp-probe-\(getpid())-\(UInt32.random(in: 0..<UInt32.max))"
        return connection.blocking { ctx in
            var before = nfs_stat_64()
            guard nfs_lstat64(ctx, dir, &before) == 0, nfs_symlink(ctx, "probe", path) == 0 else { return true }
            defer {
                _ = nfs_unlink(ctx, path)
                var times = [timeval(tv_sec: Int(before.nfs_atime), tv_usec: Int(before.nfs_atime_nsec / 1_000)),
                             timeval(tv_sec: Int(before.nfs_mtime), tv_usec: Int(before.nfs_mtime_nsec / 1_000))]
                _ = nfs_lutimes(ctx, dir, &times)
            }
            var times = [timeval(tv_sec: 1, tv_usec: 0), timeval(tv_sec: 1, tv_usec: 0)]
            guard nfs_lutimes(ctx, path, &times) == 0 else { return false }
            var st = nfs_stat_64()
            guard nfs_lstat64(ctx, path, &st) == 0 else { return true }
            return st.nfs_mtime == 1
        }
    }

    private init(host: String, port: Int?, mountedPath: String, below: [UInt8], connections: [NFSConnection],
                 mount: (url: String, export: String, timeout: Int32), symlinkTimesKept: Bool) {
        self.mount = mount
        self.symlinkTimesKept = symlinkTimesKept
        self.host = host
        self.port = port
        self.mountedPath = mountedPath
        self.below = below
        self.connections = Mutex(connections)
    }

    deinit { close() }

    /// Closes every connection; calls still outstanding fail.
    public func close() { for c in connections.withLock({ $0 }) { c.close() } }

    /// A connection for the next call or file (round robin). One whose connection broke
    /// (libnfs's own reconnection did not bring it back: its calls time out) is replaced by
    /// a new mount here; should that fail too, the broken one is used and its calls fail.
    var connection: NFSConnection {
        connections.withLock { all in
            let i = next.add(1, ordering: .relaxed).oldValue % all.count
            guard all[i].broken else { return all[i] }
            do throws(NFSFailure) {
                let fresh = try NFSConnection(url: mount.url, export: mount.export, timeoutMilliseconds: mount.timeout)
                fresh.start()
                let old = all[i]
                all[i] = fresh
                DispatchQueue.global().async { old.close() }
                return fresh
            } catch {
                return all[i]
            }
        }
    }

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
