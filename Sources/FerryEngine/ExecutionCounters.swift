import CFerry
import Glibc
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
///
/// Each CPU adds to a row of its own (128 bytes, aligned) and a read sums the rows: every
/// file moves several counters, and a single row that both workers wrote bounced between
/// the cores at each add. A thread that moves to another CPU between choosing its row and
/// adding only shares a row for that one add; the adds stay atomic.
public final class ExecutionCounters: @unchecked Sendable {
    public let phase = Atomic<UInt8>(ExecutionPhase.launching.rawValue)
    /// Whether a location counts the bytes it put on a link (``LinkMetering``); without
    /// one, BytesCompressed is the bytes written (nothing was compressed).
    let linkMetered = Atomic<Bool>(false)
    /// Int64s per row: every counter, rounded up to whole 128-byte rows.
    private static let rowLength = (Counter.allCases.count + 15) / 16 * 16
    private static let rowBytes = rowLength * MemoryLayout<Int64>.stride
    private let rows: Int
    private let cells: UnsafeMutablePointer<Int64>

    public init() {
        rows = max(1, min(256, sysconf(Int32(_SC_NPROCESSORS_CONF))))
        let raw = UnsafeMutableRawPointer.allocate(byteCount: rows * Self.rowBytes, alignment: Self.rowBytes)
        cells = raw.initializeMemory(as: Int64.self, repeating: 0, count: rows * Self.rowLength)
    }

    /// Given back as allocated: raw, with its alignment.
    deinit { UnsafeMutableRawPointer(cells).deallocate() }

    public var currentPhase: ExecutionPhase {
        ExecutionPhase(rawValue: phase.load(ordering: .relaxed)) ?? .launching
    }

    func setPhase(_ p: ExecutionPhase) { phase.store(p.rawValue, ordering: .relaxed) }

    /// Names of the counters, for ``add(_:_:)``.
    public enum Counter: Int, Sendable, CaseIterable {
        case filesListedSource, filesListedDestination, estimatedFilesToTransfer, estimatedBytesToTransfer, estimatedFilesToDelete, filesTransferred
        /// Logical bytes moved (holes of sparse files included).
        case bytesTransferred
        /// Bytes actually written at the destination (holes not counted).
        case bytesWritten
        case filesDeleted, filesSkipped, filesFailed, filesVerified, filesUnchanged, verificationFailures
        /// Items whose data arrived but some metadata could not be stored at the destination.
        case metadataNotStored
        /// Time the workers spent reading transferred files back, summed (not one of
        /// DataSync's counters: the VERIFYING phase's duration counts it).
        case verifyNanoseconds
        /// File data as it crossed a link of Ferry's own, compressed (``LinkMetering``).
        case bytesCompressed
    }

    /// Adds `n` to one counter.
    public func add(_ counter: Counter, _ n: Int64 = 1) {
        let row = Int(cferry_current_cpu()) % rows
        cferry_counter_add(cells + row * Self.rowLength + counter.rawValue, n)
    }

    /// One counter's value now: the sum of its rows.
    public func value(_ counter: Counter) -> Int64 {
        var sum: Int64 = 0
        for row in 0..<rows { sum &+= cferry_counter_load(cells + row * Self.rowLength + counter.rawValue) }
        return sum
    }

    /// A consistent-enough copy for display and the final summary.
    public func snapshot() -> CounterSnapshot {
        CounterSnapshot(
            estimatedFilesToTransfer: value(.estimatedFilesToTransfer),
            estimatedBytesToTransfer: value(.estimatedBytesToTransfer),
            estimatedFilesToDelete: value(.estimatedFilesToDelete),
            filesListedSource: value(.filesListedSource),
            filesListedDestination: value(.filesListedDestination),
            filesTransferred: value(.filesTransferred),
            bytesTransferred: value(.bytesTransferred),
            bytesWritten: value(.bytesWritten),
            bytesCompressed: value(linkMetered.load(ordering: .relaxed) ? .bytesCompressed : .bytesWritten),
            filesDeleted: value(.filesDeleted),
            filesSkipped: value(.filesSkipped),
            filesFailed: value(.filesFailed),
            filesVerified: value(.filesVerified),
            filesUnchanged: value(.filesUnchanged),
            verificationFailures: value(.verificationFailures),
            metadataNotStored: value(.metadataNotStored))
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
    /// What the data took on the network after compression (DataSync's BytesCompressed).
    public var bytesCompressed: Int64
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
        case bytesCompressed = "BytesCompressed"
        case filesDeleted = "FilesDeleted"
        case filesSkipped = "FilesSkipped"
        case filesFailed = "FilesFailed"
        case filesVerified = "FilesVerified"
        case filesUnchanged = "FilesUnchanged"
        case verificationFailures = "VerificationFailures"
        case metadataNotStored = "FilesWithMetadataNotStored"
    }
}

extension CounterSnapshot {
    /// All counters at zero (to add results to: several agents' shares of one execution).
    public init() {
        self.init(estimatedFilesToTransfer: 0, estimatedBytesToTransfer: 0, estimatedFilesToDelete: 0, filesListedSource: 0,
                  filesListedDestination: 0, filesTransferred: 0, bytesTransferred: 0, bytesWritten: 0, bytesCompressed: 0,
                  filesDeleted: 0, filesSkipped: 0, filesFailed: 0, filesVerified: 0, filesUnchanged: 0, verificationFailures: 0,
                  metadataNotStored: 0)
    }
}
