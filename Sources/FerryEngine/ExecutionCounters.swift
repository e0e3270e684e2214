import Synchronization

/// The phases of a task execution, as DataSync names them.
public enum ExecutionPhase: UInt8, Sendable, Codable, CustomStringConvertible {
    case launching, preparing, transferring, verifying, success, error

    public var description: String {
        switch self {
        case .launching: "LAUNCHING"
        case .preparing: "PREPARING"
        case .transferring: "TRANSFERRING"
        case .verifying: "VERIFYING"
        case .success: "SUCCESS"
        case .error: "ERROR"
        }
    }
}

/// Live counters of one execution, updated by every worker and read by progress displays.
/// Names follow DataSync's `DescribeTaskExecution`.
public final class ExecutionCounters: Sendable {
    public let phase = Atomic<UInt8>(ExecutionPhase.launching.rawValue)
    public let filesListedSource = Atomic<Int64>(0)
    public let filesListedDestination = Atomic<Int64>(0)
    public let estimatedFilesToTransfer = Atomic<Int64>(0)
    public let estimatedBytesToTransfer = Atomic<Int64>(0)
    public let estimatedFilesToDelete = Atomic<Int64>(0)
    public let filesTransferred = Atomic<Int64>(0)
    /// Logical bytes moved (holes of sparse files included).
    public let bytesTransferred = Atomic<Int64>(0)
    /// Bytes actually written at the destination (holes not counted).
    public let bytesWritten = Atomic<Int64>(0)
    public let filesDeleted = Atomic<Int64>(0)
    public let filesSkipped = Atomic<Int64>(0)
    public let filesFailed = Atomic<Int64>(0)
    public let filesVerified = Atomic<Int64>(0)
    public let filesUnchanged = Atomic<Int64>(0)
    public let verificationFailures = Atomic<Int64>(0)
    /// Items whose data arrived but some metadata could not be stored at the destination.
    public let metadataNotStored = Atomic<Int64>(0)

    public init() {}

    public var currentPhase: ExecutionPhase {
        ExecutionPhase(rawValue: phase.load(ordering: .relaxed)) ?? .launching
    }

    func setPhase(_ p: ExecutionPhase) { phase.store(p.rawValue, ordering: .relaxed) }

    /// Names of the counters, for ``add(_:_:)``.
    public enum Counter: Sendable {
        case filesListedSource, filesListedDestination, estimatedFilesToTransfer, estimatedBytesToTransfer, estimatedFilesToDelete, filesTransferred, bytesTransferred, bytesWritten, filesDeleted, filesSkipped, filesFailed, filesVerified, filesUnchanged, verificationFailures, metadataNotStored
    }

    /// Adds `n` to one counter.
    public func add(_ counter: Counter, _ n: Int64 = 1) {
        switch counter {
        case .filesListedSource: filesListedSource.add(n, ordering: .relaxed)
        case .filesListedDestination: filesListedDestination.add(n, ordering: .relaxed)
        case .estimatedFilesToTransfer: estimatedFilesToTransfer.add(n, ordering: .relaxed)
        case .estimatedBytesToTransfer: estimatedBytesToTransfer.add(n, ordering: .relaxed)
        case .estimatedFilesToDelete: estimatedFilesToDelete.add(n, ordering: .relaxed)
        case .filesTransferred: filesTransferred.add(n, ordering: .relaxed)
        case .bytesTransferred: bytesTransferred.add(n, ordering: .relaxed)
        case .bytesWritten: bytesWritten.add(n, ordering: .relaxed)
        case .filesDeleted: filesDeleted.add(n, ordering: .relaxed)
        case .filesSkipped: filesSkipped.add(n, ordering: .relaxed)
        case .filesFailed: filesFailed.add(n, ordering: .relaxed)
        case .filesVerified: filesVerified.add(n, ordering: .relaxed)
        case .filesUnchanged: filesUnchanged.add(n, ordering: .relaxed)
        case .verificationFailures: verificationFailures.add(n, ordering: .relaxed)
        case .metadataNotStored: metadataNotStored.add(n, ordering: .relaxed)
        }
    }

    /// A consistent-enough copy for display and the final summary.
    public func snapshot() -> CounterSnapshot {
        CounterSnapshot(
            estimatedFilesToTransfer: estimatedFilesToTransfer.load(ordering: .relaxed),
            estimatedBytesToTransfer: estimatedBytesToTransfer.load(ordering: .relaxed),
            estimatedFilesToDelete: estimatedFilesToDelete.load(ordering: .relaxed),
            filesListedSource: filesListedSource.load(ordering: .relaxed),
            filesListedDestination: filesListedDestination.load(ordering: .relaxed),
            filesTransferred: filesTransferred.load(ordering: .relaxed),
            bytesTransferred: bytesTransferred.load(ordering: .relaxed),
            bytesWritten: bytesWritten.load(ordering: .relaxed),
            filesDeleted: filesDeleted.load(ordering: .relaxed),
            filesSkipped: filesSkipped.load(ordering: .relaxed),
            filesFailed: filesFailed.load(ordering: .relaxed),
            filesVerified: filesVerified.load(ordering: .relaxed),
            filesUnchanged: filesUnchanged.load(ordering: .relaxed),
            verificationFailures: verificationFailures.load(ordering: .relaxed),
            metadataNotStored: metadataNotStored.load(ordering: .relaxed))
    }
}

/// DataSync's counters at one moment (field names as in `DescribeTaskExecution`).
public struct CounterSnapshot: Sendable, Codable, Hashable {
    public var estimatedFilesToTransfer: Int64
    public var estimatedBytesToTransfer: Int64
    public var estimatedFilesToDelete: Int64
    public var filesListedSource: Int64
    public var filesListedDestination: Int64
    public var filesTransferred: Int64
    public var bytesTransferred: Int64
    public var bytesWritten: Int64
    public var filesDeleted: Int64
    public var filesSkipped: Int64
    public var filesFailed: Int64
    public var filesVerified: Int64
    public var filesUnchanged: Int64
    public var verificationFailures: Int64
    public var metadataNotStored: Int64

    enum CodingKeys: String, CodingKey {
        case estimatedFilesToTransfer = "EstimatedFilesToTransfer"
        case estimatedBytesToTransfer = "EstimatedBytesToTransfer"
        case estimatedFilesToDelete = "EstimatedFilesToDelete"
        case filesListedSource = "FilesListedSource"
        case filesListedDestination = "FilesListedDestination"
        case filesTransferred = "FilesTransferred"
        case bytesTransferred = "BytesTransferred"
        case bytesWritten = "BytesWritten"
        case filesDeleted = "FilesDeleted"
        case filesSkipped = "FilesSkipped"
        case filesFailed = "FilesFailed"
        case filesVerified = "FilesVerified"
        case filesUnchanged = "FilesUnchanged"
        case verificationFailures = "VerificationFailures"
        case metadataNotStored = "FilesWithMetadataNotStored"
    }
}
