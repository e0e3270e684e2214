import FerryCore
import Foundation
import Synchronization

/// The categories of DataSync's task report.
public enum ReportCategory: String, Sendable, Codable, CaseIterable {
    case transferred = "Transferred"
    case skipped = "Skipped"
    case verified = "Verified"
    case deleted = "Deleted"
}

/// DataSync's verification failure kinds, plus transfer-time failures.
public enum FailureKind: String, Sendable, Codable {
    case checksumFailure = "CHECKSUM_FAILURE"
    case metadataFailure = "METADATA_FAILURE"
    /// At the destination but not the source (after a run that should have removed it).
    case fileAdded = "FILE_ADDED"
    /// At the source but missing at the destination.
    case fileRemoved = "FILE_REMOVED"
    case sourceChanged = "SOURCE_CHANGED_DURING_TRANSFER"
    case unreadable = "UNREADABLE"
    case transferError = "TRANSFER_ERROR"
    case unsupported = "UNSUPPORTED"
    case overwriteNever = "OVERWRITE_NEVER"
    case deleteError = "DELETE_ERROR"
    /// The data arrived, but the destination did not keep some of the metadata.
    case metadataNotStored = "METADATA_NOT_STORED"
    /// The data arrived; some metadata could not be applied at the destination (an owner
    /// an unprivileged process may not set), said before writing, not a verification failure.
    case metadataNotApplied = "METADATA_NOT_APPLIED"
    /// The listing held another entry of the same name (an object and a prefix in a bucket).
    case duplicateName = "DUPLICATE_NAME"
}

/// One line of the task report.
public struct ReportEntry: Sendable, Codable, Hashable {
    public var path: String
    public var kind: String
    public var size: Int64?
    public var checksum: String?
    /// `SUCCESS` or `FAILED` (or `SKIPPED` in the skipped category).
    public var status: ItemStatus
    public var failureKind: FailureKind?
    public var reason: String?

    enum CodingKeys: String, CodingKey {
        case path = "RelativePath", kind = "SrcMetadataType", size = "Size", checksum = "Checksum"
        case status = "Status", failureKind = "FailureKind", reason = "Reason"
    }
}

/// Collects report entries as the workers produce them. Problems (skipped, failed,
/// mismatched) are kept in memory for the summary (up to a cap); with a report file, every
/// entry is streamed to a spool file per category, so memory does not grow with the tree.
public final class TaskReportSink: Sendable {
    private struct State {
        var problems: [ReportCategoryEntry] = []
        var problemsDropped = 0
        var spools: [ReportCategory: FileHandle] = [:]
    }
    private let state: Mutex<State>
    private let spoolDirectory: URL?
    private let keep: @Sendable (ReportCategory, ReportEntry) -> Bool
    public let problemCap: Int

    /// `spoolDirectory`: where per-category spool files go (nil: keep only problems).
    /// `keep`: which entries the report file lists (DataSync's ReportLevel: all, or only
    /// what failed or was skipped); the summary counts everything.
    public init(spoolDirectory: URL?, problemCap: Int = 10_000,
                keep: @escaping @Sendable (ReportCategory, ReportEntry) -> Bool = { _, _ in true }) {
        self.spoolDirectory = spoolDirectory
        self.keep = keep
        self.problemCap = problemCap
        var s = State()
        if let dir = spoolDirectory {
            try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            for c in ReportCategory.allCases {
                let url = dir.appendingPathComponent(c.rawValue + ".jsonl")
                if FileManager.default.createFile(atPath: url.path, contents: nil, attributes: [.posixPermissions: 0o600]) {
                    s.spools[c] = try? FileHandle(forWritingTo: url)
                }
            }
        }
        state = Mutex(s)
    }

    public var recordsEverything: Bool { spoolDirectory != nil }

    /// Records one entry; problems also go to the in-memory list.
    public func record(_ category: ReportCategory, _ entry: ReportEntry) {
        let isProblem = entry.status != .success
        let line: Data? = recordsEverything && keep(category, entry) ? (try? TaskReportSink.encoder.encode(entry)).map { $0 + Data([10]) } : nil
        state.withLock { s in
            if isProblem {
                if s.problems.count < problemCap {
                    s.problems.append(ReportCategoryEntry(category: category, entry: entry))
                } else {
                    s.problemsDropped += 1
                }
            }
            if let line, let h = s.spools[category] { h.write(line) }
        }
    }

    public var problems: [ReportCategoryEntry] { state.withLock { $0.problems } }
    public var problemsDropped: Int { state.withLock { $0.problemsDropped } }

    static let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return e
    }()

    /// The entries spooled so far, a JSON line each, by category; the spool is closed and
    /// removed (a share of an execution spread over agents sends its part this way).
    public func takeSpooled() -> [ReportCategory: Data] {
        var parts: [ReportCategory: Data] = [:]
        for category in closeSpools() {
            guard let dir = spoolDirectory else { continue }
            parts[category] = FileManager.default.contents(atPath: dir.appendingPathComponent(category.rawValue + ".jsonl").path) ?? Data()
        }
        if let dir = spoolDirectory { try? FileManager.default.removeItem(at: dir) }
        return parts
    }

    /// Closes the spool files (no entry is recorded in them after this); the categories that had one.
    private func closeSpools() -> [ReportCategory] {
        let handles = state.withLock { s -> [ReportCategory: FileHandle] in
            let h = s.spools
            s.spools = [:]
            return h
        }
        for h in handles.values { try? h.close() }
        return Array(handles.keys)
    }

    /// Adds JSON lines another sink spooled (a share's part) to this report's list of
    /// `category`, as they are: the share kept them by the same ReportLevel.
    public func appendSpooled(_ lines: Data, to category: ReportCategory) {
        state.withLock { s in s.spools[category]?.write(lines) }
    }

    /// Writes the task report: `{"Summary": …, "Transferred": […], "Skipped": […], …}` (mode 0600).
    public func writeReport(to url: URL, summary: ExecutionResult) throws {
        let spooled = closeSpools()
        if let dir = spoolDirectory, spooled.count != ReportCategory.allCases.count {
            throw FerryError(.invalidOption, "could not keep the report's spool files in \(dir.path); the report would be incomplete")
        }
        guard FileManager.default.createFile(atPath: url.path, contents: nil, attributes: [.posixPermissions: 0o600]) else {
            throw FerryError(.invalidOption, "cannot create the report file \(url.path)")
        }
        let out = try FileHandle(forWritingTo: url)
        defer { try? out.close() }
        out.write(Data("{\"Summary\":".utf8))
        out.write(try TaskReportSink.encoder.encode(summary))
        for c in ReportCategory.allCases {
            out.write(Data(",\"\(c.rawValue)\":[".utf8))
            if let dir = spoolDirectory {
                let spool = dir.appendingPathComponent(c.rawValue + ".jsonl")
                if let reader = FileHandle(forReadingAtPath: spool.path) {
                    var first = true
                    var carry = Data()
                    while case let chunk = reader.readData(ofLength: 1 << 20), !chunk.isEmpty {
                        carry.append(chunk)
                        while let nl = carry.firstIndex(of: 10) {
                            if !first { out.write(Data([44])) }
                            out.write(carry[carry.startIndex..<nl])
                            first = false
                            carry = carry[(nl + 1)...]
                        }
                        carry = Data(carry)
                    }
                    try? reader.close()
                }
                try? FileManager.default.removeItem(at: spool)
            }
            out.write(Data("]".utf8))
        }
        out.write(Data("}\n".utf8))
        if let dir = spoolDirectory { try? FileManager.default.removeItem(at: dir) }
    }
}

/// A report entry with its category.
public struct ReportCategoryEntry: Sendable, Codable, Hashable {
    public var category: ReportCategory
    public var entry: ReportEntry
}
