/// How an execution ended, as DataSync's `TaskExecutionStatus` spells its final values.
public enum ExecutionStatus: String, Sendable, Codable, CustomStringConvertible {
    case success = "SUCCESS", error = "ERROR"
    public var description: String { rawValue }
}

/// How one phase (prepare, transfer, verify) ended: DataSync's `PhaseStatus`, and `NONE`
/// for a verification that was not asked for.
public enum PhaseStatus: String, Sendable, Codable, CustomStringConvertible {
    case success = "SUCCESS", error = "ERROR", none = "NONE"
    public var description: String { rawValue }
}

/// What became of one item in the task report (DataSync's report statuses).
public enum ItemStatus: String, Sendable, Codable, CustomStringConvertible {
    case success = "SUCCESS", failed = "FAILED", skipped = "SKIPPED"
    /// The data arrived, some metadata did not (named in the reason).
    case partial = "PARTIAL"
    public var description: String { rawValue }
}
