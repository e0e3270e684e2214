import FerryCore

/// The outcome of one execution, shaped like DataSync's `DescribeTaskExecution` `Result`.
public struct ExecutionResult: Sendable, Codable {
    public var status: ExecutionStatus
    /// Why the execution ended the way it did, for the user.
    public var errorCode: String?
    public var errorDetail: String?
    public var source: String
    public var destination: String
    public var options: TransferOptions
    public var dryRun: Bool
    public var counters: CounterSnapshot
    /// Wall time from start until every directory was listed and planned (ms).
    public var prepareDuration: Int64
    public var prepareStatus: PhaseStatus
    /// Wall time from start until the last transfer and deletion ended (ms); listing
    /// and transfer overlap, as in DataSync's enhanced mode.
    public var transferDuration: Int64
    public var transferStatus: PhaseStatus
    /// Time spent verifying (ms): the inline verification summed over workers for
    /// ONLY_FILES_TRANSFERRED, the wall time of the second full pass for POINT_IN_TIME_CONSISTENT.
    public var verifyDuration: Int64
    public var verifyStatus: PhaseStatus
    public var totalDuration: Int64
    /// Deletions not done because the run had errors (rclone's rule).
    public var deletionsSkippedForErrors: Int64
    /// Skipped, failed and mismatched paths with reasons (capped; see ``problemsNotListed``).
    public var problems: [ReportCategoryEntry]
    public var problemsNotListed: Int

    enum CodingKeys: String, CodingKey {
        case status = "Status", errorCode = "ErrorCode", errorDetail = "ErrorDetail"
        case source = "SourceLocation", destination = "DestinationLocation", options = "Options", dryRun = "DryRun"
        case counters = "Counters"
        case prepareDuration = "PrepareDuration", prepareStatus = "PrepareStatus"
        case transferDuration = "TransferDuration", transferStatus = "TransferStatus"
        case verifyDuration = "VerifyDuration", verifyStatus = "VerifyStatus", totalDuration = "TotalDuration"
        case deletionsSkippedForErrors = "DeletionsSkippedForErrors"
        case problems = "Problems", problemsNotListed = "ProblemsNotListed"
    }

    /// How the run ended, for exit codes.
    public enum Outcome: Sendable { case success, partial, verificationFailed, failed }

    public var outcome: Outcome {
        if status == .error && errorCode == "Fatal" { return .failed }
        if counters.verificationFailures > 0 { return .verificationFailed }
        if counters.filesFailed > 0 || counters.filesSkipped > 0 || counters.metadataNotStored > 0 || status == .error { return .partial }
        return .success
    }
}
