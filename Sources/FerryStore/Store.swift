import Foundation
import GRDB

/// The control plane's state: agents, locations, tasks and task executions (each a
/// DataSync-shaped JSON body under its ARN), their tags, and execution logs. SQLite in WAL
/// mode through GRDB (one writer, concurrent readers), with versioned migrations. The
/// database files are created 0600: they hold location secrets.
public final class Store: Sendable {
    /// What a stored resource is.
    public enum Kind: String, Sendable, CaseIterable {
        case agent, location, task, execution
        /// An agent's activation key, before and after CreateAgent used it.
        case activation
    }

    /// One stored resource.
    public struct Resource: Sendable {
        public var arn: String
        public var kind: Kind
        /// The task of an execution.
        public var parent: String?
        public var body: JSONValue
        /// Insertion order: stable across restarts, the basis of pagination tokens.
        public var sequence: Int64
    }

    let pool: DatabasePool
    public let path: String

    /// Opens (creating if needed) `directory/ferry.sqlite` and brings its schema up to date.
    public init(directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        path = directory + "/ferry.sqlite"
        let old = umask(0o077)
        defer { umask(old) }
        var configuration = Configuration()
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA foreign_keys = ON")
        }
        pool = try DatabasePool(path: path, configuration: configuration)
        try Store.migrator.migrate(pool)
    }

    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1: resources, tags, logs") { db in
            try db.create(table: "resource") { t in
                t.autoIncrementedPrimaryKey("sequence")
                t.column("arn", .text).notNull().unique()
                t.column("kind", .text).notNull().indexed()
                t.column("parent", .text).indexed()
                t.column("body", .text).notNull()
            }
            try db.create(table: "tag") { t in
                t.column("arn", .text).notNull().references("resource", column: "arn", onDelete: .cascade)
                t.column("key", .text).notNull()
                t.column("value", .text).notNull()
                t.primaryKey(["arn", "key"])
            }
            try db.create(table: "log") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("arn", .text).notNull().indexed()
                t.column("line", .text).notNull()
            }
        }
        m.registerMigration("v2: leases") { db in
            try db.create(table: "lease") { t in
                t.column("id", .text).primaryKey()
                t.column("execution", .text).notNull().indexed()
                t.column("unit", .integer).notNull()
                t.column("units", .integer).notNull()
                t.column("phase", .text).notNull()
                t.column("state", .text).notNull()
                t.column("agent", .text)
                t.column("expires", .double).notNull().defaults(to: 0)
                t.column("attempts", .integer).notNull().defaults(to: 0)
                t.column("result", .text)
            }
        }
        m.registerMigration("v3: a share's part of the task report") { db in
            try db.alter(table: "lease") { t in t.add(column: "report", .text) }
        }
        return m
    }

    // MARK: resources

    public func insert(arn: String, kind: Kind, parent: String? = nil, body: JSONValue) throws {
        try pool.write { db in
            try db.execute(sql: "INSERT INTO resource (arn, kind, parent, body) VALUES (?, ?, ?, ?)",
                           arguments: [arn, kind.rawValue, parent, body.text])
        }
    }

    public func get(_ arn: String) throws -> Resource? {
        try pool.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM resource WHERE arn = ?", arguments: [arn]).map(Store.resource)
        }
    }

    /// Replaces a resource's body; false if there is no such resource.
    @discardableResult
    public func update(_ arn: String, body: JSONValue) throws -> Bool {
        try pool.write { db in
            try db.execute(sql: "UPDATE resource SET body = ? WHERE arn = ?", arguments: [body.text, arn])
            return db.changesCount > 0
        }
    }

    /// Reads, changes and writes a body in one transaction; nil if there is no such resource.
    @discardableResult
    public func modify(_ arn: String, _ change: (inout JSONValue) throws -> Void) throws -> JSONValue? {
        try pool.write { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT body FROM resource WHERE arn = ?", arguments: [arn]) else { return nil }
            var body = try JSONValue.parse(Data((row["body"] as String).utf8))
            try change(&body)
            try db.execute(sql: "UPDATE resource SET body = ? WHERE arn = ?", arguments: [body.text, arn])
            return body
        }
    }

    @discardableResult
    public func delete(_ arn: String) throws -> Bool {
        try pool.write { db in
            try db.execute(sql: "DELETE FROM log WHERE arn = ?", arguments: [arn])
            try db.execute(sql: "DELETE FROM resource WHERE arn = ?", arguments: [arn])
            return db.changesCount > 0
        }
    }

    /// Resources of a kind in insertion order, after `sequence`, at most `limit`.
    public func list(_ kind: Kind, parent: String? = nil, after sequence: Int64 = 0, limit: Int = 1000) throws -> [Resource] {
        try pool.read { db in
            var sql = "SELECT * FROM resource WHERE kind = ? AND sequence > ?"
            var arguments: StatementArguments = [kind.rawValue, sequence]
            if let parent {
                sql += " AND parent = ?"
                arguments += [parent]
            }
            sql += " ORDER BY sequence LIMIT ?"
            arguments += [limit]
            return try Row.fetchAll(db, sql: sql, arguments: arguments).map(Store.resource)
        }
    }

    /// ARNs of other resources whose body names `arn` in `field` (a task's locations).
    public func referencing(_ arn: String, kind: Kind, fields: [String]) throws -> [String] {
        try list(kind, limit: Int.max).filter { r in fields.contains { r.body[$0]?.string == arn } }.map(\.arn)
    }

    static func resource(_ row: Row) throws -> Resource {
        Resource(arn: row["arn"], kind: Kind(rawValue: row["kind"]) ?? .task, parent: row["parent"],
                 body: try JSONValue.parse(Data((row["body"] as String).utf8)), sequence: row["sequence"])
    }

    // MARK: tags

    public func tag(_ arn: String, _ tags: [(key: String, value: String)]) throws {
        try pool.write { db in
            for t in tags {
                try db.execute(sql: "INSERT OR REPLACE INTO tag (arn, key, value) VALUES (?, ?, ?)", arguments: [arn, t.key, t.value])
            }
        }
    }

    public func untag(_ arn: String, keys: [String]) throws {
        try pool.write { db in
            for k in keys { try db.execute(sql: "DELETE FROM tag WHERE arn = ? AND key = ?", arguments: [arn, k]) }
        }
    }

    public func tags(_ arn: String) throws -> [(key: String, value: String)] {
        try pool.read { db in
            try Row.fetchAll(db, sql: "SELECT key, value FROM tag WHERE arn = ? ORDER BY key", arguments: [arn]).map { ($0["key"], $0["value"]) }
        }
    }

    // MARK: logs

    public func appendLog(_ arn: String, _ lines: [String]) throws {
        guard !lines.isEmpty else { return }
        try pool.write { db in
            for line in lines { try db.execute(sql: "INSERT INTO log (arn, line) VALUES (?, ?)", arguments: [arn, line]) }
        }
    }

    public func logs(_ arn: String) throws -> [String] {
        try pool.read { db in
            try String.fetchAll(db, sql: "SELECT line FROM log WHERE arn = ? ORDER BY id", arguments: [arn])
        }
    }
}
