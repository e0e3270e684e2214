import Foundation
import GRDB

/// A part of one execution that an agent runs (several agents per execution): one unit of
/// its tree out of `units`, in a phase (`TRANSFER`, then `DELETE` when deletions wait
/// until every transfer succeeded). A row, claimed in a transaction — SQLite's one writer
/// serializes claims as PostgreSQL's `FOR UPDATE SKIP LOCKED` would — so a restarted
/// control plane finds every lease where it was.
public struct Lease: Sendable, Hashable {
    public enum State: String, Sendable {
        /// Waiting for an agent (or given back: its agent fell silent).
        case available = "AVAILABLE"
        case claimed = "CLAIMED"
        /// Its agent reported the end; `result` holds it.
        case done = "DONE"
    }
    public var id: String
    public var execution: String
    public var unit: Int
    public var units: Int
    public var phase: String
    public var state: State
    public var agent: String?
    /// When a claimed lease lapses unless renewed (seconds since 1970).
    public var expires: Double
    /// How many times it was claimed.
    public var attempts: Int
    /// The agent's end of it (the engine's result as JSON).
    public var result: JSONValue?

    /// The columns a lease is read from (not its part of the task report, read once at the end).
    static let columns = "id, execution, unit, units, phase, state, agent, expires, attempts, result"

    init(_ row: Row) throws {
        id = row["id"]
        execution = row["execution"]
        unit = row["unit"]
        units = row["units"]
        phase = row["phase"]
        state = State(rawValue: row["state"]) ?? .available
        agent = row["agent"]
        expires = row["expires"]
        attempts = row["attempts"]
        result = try (row["result"] as String?).map { try JSONValue.parse(Data($0.utf8)) }
    }
}

extension Store {
    /// Adds `units` leases of `execution` in `phase`, all AVAILABLE.
    public func addLeases(_ execution: String, units: Int, phase: String) throws {
        try pool.write { db in
            for unit in 0..<units {
                try db.execute(sql: "INSERT INTO lease (id, execution, unit, units, phase, state) VALUES (?, ?, ?, ?, ?, 'AVAILABLE')",
                               arguments: ["\(execution)/\(phase.lowercased())-\(unit)", execution, unit, units, phase])
            }
        }
    }

    /// Claims for `agent` the oldest lease of `executions` that is AVAILABLE or whose claim
    /// lapsed before `now`, until `until` — never a second lease of an execution the agent
    /// holds one of (every agent of the location gets work); nil when there is none.
    public func claimLease(for agent: String, among executions: [String], now: Double, until: Double) throws -> Lease? {
        guard !executions.isEmpty else { return nil }
        let marks = Array(repeating: "?", count: executions.count).joined(separator: ", ")
        return try pool.write { db in
            let sql = """
                UPDATE lease SET state = 'CLAIMED', agent = ?, expires = ?, attempts = attempts + 1
                WHERE id = (SELECT l.id FROM lease l WHERE l.execution IN (\(marks))
                            AND (l.state = 'AVAILABLE' OR (l.state = 'CLAIMED' AND l.expires < ?))
                            AND NOT EXISTS (SELECT 1 FROM lease m WHERE m.execution = l.execution AND m.agent = ?
                                            AND m.state = 'CLAIMED' AND m.expires >= ?)
                            ORDER BY l.rowid LIMIT 1)
                RETURNING \(Lease.columns)
                """
            var arguments: StatementArguments = [agent, until]
            arguments += StatementArguments(executions)
            arguments += [now, agent, now]
            return try Row.fetchOne(db, sql: sql, arguments: arguments).map(Lease.init)
        }
    }

    /// Extends `agent`'s claim on lease `id` until `until`; false when it is not the
    /// agent's any more (it lapsed and another agent claimed it, or it ended).
    public func renewLease(_ id: String, agent: String, until: Double) throws -> Bool {
        try pool.write { db in
            try db.execute(sql: "UPDATE lease SET expires = ? WHERE id = ? AND agent = ? AND state = 'CLAIMED'", arguments: [until, id, agent])
            return db.changesCount > 0
        }
    }

    /// Records `agent`'s end of lease `id`, with its part of the task report; false when it
    /// is not the agent's (the end of a lease that lapsed counts only once, from the agent
    /// that holds it).
    public func completeLease(_ id: String, agent: String, result: JSONValue, report: JSONValue? = nil) throws -> Bool {
        try pool.write { db in
            try db.execute(sql: "UPDATE lease SET state = 'DONE', result = ?, report = ? WHERE id = ? AND agent = ? AND state = 'CLAIMED'",
                           arguments: [result.text, report?.text, id, agent])
            return db.changesCount > 0
        }
    }

    /// The parts of the task report the ended leases of `execution` sent, in lease order
    /// (read only once, at the end: a report may be large).
    public func leaseReports(of execution: String) throws -> [JSONValue] {
        try pool.read { db in
            try String.fetchAll(db, sql: "SELECT report FROM lease WHERE execution = ? AND state = 'DONE' AND report IS NOT NULL ORDER BY rowid",
                                arguments: [execution]).map { try JSONValue.parse(Data($0.utf8)) }
        }
    }

    /// Gives back every lease `agent` holds (it restarted: what it ran is gone).
    public func releaseLeases(of agent: String) throws {
        try pool.write { db in
            try db.execute(sql: "UPDATE lease SET state = 'AVAILABLE', agent = NULL, expires = 0 WHERE agent = ? AND state = 'CLAIMED'",
                           arguments: [agent])
        }
    }

    public func leases(of execution: String) throws -> [Lease] {
        try pool.read { db in
            try Row.fetchAll(db, sql: "SELECT \(Lease.columns) FROM lease WHERE execution = ? ORDER BY rowid", arguments: [execution]).map(Lease.init)
        }
    }

    public func lease(_ id: String) throws -> Lease? {
        try pool.read { db in try Row.fetchOne(db, sql: "SELECT \(Lease.columns) FROM lease WHERE id = ?", arguments: [id]).map(Lease.init) }
    }

    /// Removes the leases of an execution that ended.
    public func removeLeases(of execution: String) throws {
        try pool.write { db in try db.execute(sql: "DELETE FROM lease WHERE execution = ?", arguments: [execution]) }
    }
}
