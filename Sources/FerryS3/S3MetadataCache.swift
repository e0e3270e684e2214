import FerryCore
import Foundation
import GRDB
import Synchronization

/// What Ferry last saw or wrote of each object: ETag, size, Last-Modified, the user
/// metadata and a symlink's target. ListObjectsV2 carries no user metadata, so without this
/// every listed object needs a HEAD; with it, an object whose listed ETag, size and
/// Last-Modified match what is remembered is described from here, and a no-change re-run
/// costs one listing per directory (plus a HEAD per directory marker).
///
/// Correctness: any write to an object changes its Last-Modified (a PUT of the same bytes,
/// CopyObject replacing metadata) and usually its ETag, so a match means the object is the
/// one remembered. Objects Ferry wrote itself are remembered before their Last-Modified is
/// known; they match a listed Last-Modified inside the write's window (the server's `Date`
/// of the answer, less the upload's duration, ± 1 s) and are then pinned to it. Only another
/// writer replacing the object within those seconds could go unnoticed. Where the server
/// drops user metadata, a write is remembered without any, as the server holds it; and the
/// cache also remembers, per bucket, whether the server keeps user metadata.
///
/// SQLite through GRDB in `DIRECTORY/s3-objects.sqlite` (0600), one row per endpoint, bucket
/// and key; writes are batched. Lookups go by key, so memory does not grow with the bucket.
public final class S3MetadataCache: Sendable {
    struct Record: Sendable {
        var etag: String
        var size: Int64
        /// Whole seconds since 1970; nil until a listing confirms a write.
        var lastModified: Int64?
        var window: ClosedRange<Int64>?
        var metadata: [String: String]
        var target: [UInt8]?
        /// A write the server dropped the metadata of: the source's mtime sent (ns).
        var sentMtime: Int64? = nil
    }

    /// What the cache says of one listed object.
    struct Described {
        var object: S3Object
        var target: [UInt8]?
        var sentMtime: Timestamp?
    }

    private let queue: DatabaseQueue
    private let pending = Mutex<[(scope: String, key: String, record: Record?)]>([])
    static let batch = 512

    /// Opens (creating if needed) the cache in `directory`.
    public init(directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        let old = umask(0o077)
        defer { umask(old) }
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA journal_mode = WAL")
            try db.execute(sql: "PRAGMA synchronous = NORMAL")  // a cache: a lost write costs a HEAD
        }
        queue = try DatabaseQueue(path: directory + "/s3-objects.sqlite", configuration: configuration)
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1: objects") { db in
            try db.create(table: "object") { t in
                t.column("scope", .text).notNull()
                t.column("key", .text).notNull()
                t.column("etag", .text).notNull()
                t.column("size", .integer).notNull()
                t.column("lastModified", .integer)
                t.column("windowStart", .integer)
                t.column("windowEnd", .integer)
                t.column("metadata", .blob).notNull()
                t.column("target", .blob)
                t.primaryKey(["scope", "key"])
            }
        }
        migrator.registerMigration("v2: servers") { db in
            try db.create(table: "server") { t in
                t.primaryKey("scope", .text)
                t.column("keepsUserMetadata", .boolean).notNull()
            }
        }
        migrator.registerMigration("v3: mtimes sent to servers that drop them") { db in
            try db.alter(table: "object") { t in t.add(column: "sentMtime", .integer) }
        }
        try migrator.migrate(queue)
    }

    /// Whether the server behind `scope` kept user metadata when Ferry last wrote there
    /// (nil: never learned).
    func keepsUserMetadata(scope: String) -> Bool? {
        try? queue.read { db in try Bool.fetchOne(db, sql: "SELECT keepsUserMetadata FROM server WHERE scope = ?", arguments: [scope]) }
    }

    /// Remembers whether the server behind `scope` keeps user metadata.
    func rememberKeepsUserMetadata(scope: String, _ keeps: Bool) {
        try? queue.write { db in
            try db.execute(sql: "INSERT OR REPLACE INTO server (scope, keepsUserMetadata) VALUES (?, ?)", arguments: [scope, keeps])
        }
    }

    /// The default place: `$FERRY_CACHE_DIR`, else `$XDG_CACHE_HOME/ferry`, else `~/.cache/ferry`.
    public static func defaultDirectory(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let d = environment["FERRY_CACHE_DIR"], !d.isEmpty { return d }
        if let x = environment["XDG_CACHE_HOME"], !x.isEmpty { return x + "/ferry" }
        return (environment["HOME"] ?? NSHomeDirectory()) + "/.cache/ferry"
    }

    static func seconds(_ date: Date) -> Int64 { Int64(date.timeIntervalSince1970.rounded(.down)) }

    /// The remembered description of each listed object that still matches, by key.
    func lookup(scope: String, _ listed: [S3Object]) -> [String: Described] {
        let wanted = listed.filter { $0.lastModified != nil }
        guard !wanted.isEmpty else { return [:] }
        var found: [String: Record] = [:]
        for chunk in stride(from: 0, to: wanted.count, by: 400).map({ wanted[$0..<min($0 + 400, wanted.count)] }) {
            let rows = (try? queue.read { db in
                try Row.fetchAll(db, sql: "SELECT * FROM object WHERE scope = ? AND key IN (\(chunk.map { _ in "?" }.joined(separator: ",")))",
                                 arguments: StatementArguments([scope] + chunk.map(\.key)))
            }) ?? []
            for row in rows {
                let metadata = (try? JSONDecoder().decode([String: String].self, from: row["metadata"] as Data)) ?? [:]
                let start: Int64? = row["windowStart"], end: Int64? = row["windowEnd"]
                found[row["key"]] = Record(etag: row["etag"], size: row["size"], lastModified: row["lastModified"],
                                           window: start.flatMap { s in end.map { s...$0 } },
                                           metadata: metadata, target: (row["target"] as Data?).map { Array($0) },
                                           sentMtime: row["sentMtime"])
            }
        }
        var out: [String: Described] = [:]
        for o in wanted {
            // A listing without ETags (the JuiceFS gateway's): size and Last-Modified decide,
            // and the ETag remembered from the write names the bytes.
            let listedTag = S3ETag(o.etag)
            guard var r = found[o.key], r.size == o.size, listedTag == nil || listedTag == S3ETag(r.etag) else { continue }
            let listedSeconds = S3MetadataCache.seconds(o.lastModified!)
            if let lm = r.lastModified {
                guard lm == listedSeconds else { continue }
            } else {
                guard let w = r.window, w.contains(listedSeconds) else { continue }
                r.lastModified = listedSeconds
                r.window = nil
                enqueue(scope: scope, key: o.key, r)
            }
            var described = o
            described.metadata = r.metadata
            if listedTag == nil { described.etag = r.etag.isEmpty ? nil : r.etag }
            out[o.key] = Described(object: described, target: r.target,
                                   sentMtime: r.sentMtime.map(Timestamp.init(totalNanoseconds:)))
        }
        return out
    }

    /// Remembers an object as a HEAD described it (and a symlink's target).
    func remember(scope: String, head: S3Object, target: [UInt8]?) {
        guard let lm = head.lastModified else { return }
        enqueue(scope: scope, key: head.key,
                Record(etag: head.etag ?? "", size: head.size, lastModified: S3MetadataCache.seconds(lm), window: nil, metadata: head.metadata, target: target))
    }

    /// Remembers an object Ferry wrote: `stored` is the server's answer (ETag, `Date`),
    /// `duration` how long the upload took.
    /// `sentMtime`: where the server dropped the metadata, the mtime sent with it (the
    /// object is remembered without metadata, as the server holds it).
    func rememberWrite(scope: String, key: String, stored: S3Object, size: Int64, metadata: [String: String], sentMtime: Timestamp? = nil,
                       duration: Duration) {
        guard let etag = stored.etag, let date = stored.serverDate else { forget(scope: scope, key: key); return }
        let end = S3MetadataCache.seconds(date) + 1
        let start = S3MetadataCache.seconds(date) - duration.components.seconds - 1
        enqueue(scope: scope, key: key, Record(etag: etag, size: size, lastModified: nil, window: start...end, metadata: metadata, target: nil,
                                               sentMtime: sentMtime?.totalNanoseconds))
    }

    /// Remembers an object of a server that dropped its metadata, listed with `etag`, `size`
    /// and `lastModified` (whole seconds), as holding the bytes of a file whose mtime is
    /// `sentMtime` (a content comparison found them equal).
    func rememberContent(scope: String, key: String, etag: String, size: Int64, lastModified: Int64, sentMtime: Timestamp) {
        enqueue(scope: scope, key: key, Record(etag: etag, size: size, lastModified: lastModified, window: nil, metadata: [:], target: nil,
                                               sentMtime: sentMtime.totalNanoseconds))
    }

    /// Forgets an object (deleted, or changed in a way not remembered).
    func forget(scope: String, key: String) {
        enqueue(scope: scope, key: key, nil)
    }

    private func enqueue(scope: String, key: String, _ record: Record?) {
        let full = pending.withLock { p -> Bool in
            p.append((scope, key, record))
            return p.count >= S3MetadataCache.batch
        }
        if full { flush() }
    }

    /// Writes what is pending (also done by batches and at deinit).
    public func flush() {
        let batch = pending.withLock { p -> [(scope: String, key: String, record: Record?)] in
            defer { p = [] }
            return p
        }
        guard !batch.isEmpty else { return }
        // One compiled statement and one encoder for the whole batch (each `execute(sql:)`
        // compiled its SQL again, and each record had its own encoder).
        let encoder = JSONEncoder()
        try? queue.write { db in
            let delete = try db.cachedStatement(sql: "DELETE FROM object WHERE scope = ? AND key = ?")
            let insert = try db.cachedStatement(sql: """
                INSERT OR REPLACE INTO object (scope, key, etag, size, lastModified, windowStart, windowEnd, metadata, target, sentMtime)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """)
            for (scope, key, record) in batch {
                guard let r = record else {
                    try delete.execute(arguments: [scope, key])
                    continue
                }
                let metadata = (try? encoder.encode(r.metadata)) ?? Data("{}".utf8)
                try insert.execute(arguments: [scope, key, r.etag, r.size, r.lastModified, r.window?.lowerBound, r.window?.upperBound,
                                               metadata, r.target.map { Data($0) }, r.sentMtime])
            }
        }
    }

    deinit { flush() }
}
