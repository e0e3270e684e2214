import FerryCore
import Foundation
import Logging
import Synchronization

/// Runs one execution: PREPARING (concurrent merge-join listing) → TRANSFERRING (a bounded
/// pipeline of workers) → VERIFYING → report. Listing and transfer overlap: a directory's
/// items are transferred as soon as it is planned; memory is bounded by the directories
/// in flight, not by the tree.
public final class SyncEngine: Sendable {
    public let configuration: SyncConfiguration
    public let counters = ExecutionCounters()
    public let report: TaskReportSink
    let limiter: BandwidthLimiter?
    let planner: DirectoryPlanner
    let selection: MetadataSelection
    /// The source holds extended attributes the destination cannot: a copied file's are
    /// still read and handed to the destination's writer, which names them as not stored.
    let attributesReportedDropped: Bool
    /// The destination can copy files from the source itself (decided once).
    let serverSideCopy: Bool
    /// Whether the source lists with ``Location/listForCopying(_:reading:)``.
    let fetchAhead: Bool
    /// Both locations are of one family with metadata of its own (two SMB shares): it is
    /// carried after the engine's metadata (``NativeMetadataCopying``).
    let copiesNativeMetadata: Bool
    let fatalMessage = Mutex<String?>(nil)
    /// Items that could not be read or written in this run (deletions wait for zero).
    let errorsSeen = Atomic<Int64>(0)
    /// Copy and verification buffers, one per task in flight at most.
    let buffers: BufferPool
    /// How small items are grouped into tasks.
    let batching: Batching
    /// Both locations' capabilities, folded once (``Features``).
    let sourceFeatures: Features
    let destinationFeatures: Features

    public init(_ configuration: SyncConfiguration, report: TaskReportSink = TaskReportSink(spoolDirectory: nil)) {
        self.configuration = configuration
        self.report = report
        // Always present, so a rate set while the execution runs (UpdateTaskExecution) applies.
        self.limiter = BandwidthLimiter(bytesPerSecond: configuration.options.bytesPerSecond)
        self.buffers = BufferPool(size: SyncEngine.maxBufferSize, keep: configuration.parallel)
        let sourceFeatures = Features(configuration.source), destinationFeatures = Features(configuration.destination)
        self.sourceFeatures = sourceFeatures
        self.destinationFeatures = destinationFeatures
        if configuration.source.capabilities.neverSuspends && configuration.destination.capabilities.neverSuspends {
            batching = .even(limit: 128, workers: max(1, min(configuration.parallel, ProcessInfo.processInfo.activeProcessorCount)))
        } else {
            batching = .whenSlotsFill(limit: 8, slots: configuration.parallel)
        }
        var selection = configuration.options.metadataSelection
        let caps = destinationFeatures.capabilities
        selection.uid = selection.uid && caps.ownership
        selection.gid = selection.gid && caps.ownership
        selection.ownership = selection.uid || selection.gid
        selection.permissions = selection.permissions && caps.permissions
        selection.atime = selection.atime && caps.atime
        attributesReportedDropped = selection.extendedAttributes && !caps.extendedAttributes && sourceFeatures.capabilities.extendedAttributes
        selection.extendedAttributes = caps.extendedAttributes
        self.selection = selection
        self.serverSideCopy = destinationFeatures.canCopyServerSide(from: configuration.source)
        self.copiesNativeMetadata = !configuration.dryRun && destinationFeatures.copiesNativeMetadata(from: sourceFeatures)
        // Contents fetched while listing are for a copy that reads them: not for a dry run,
        // nor for copies made by the destination itself.
        self.fetchAhead = sourceFeatures.capabilities.fetchesContentsWhileListing && !serverSideCopy && !configuration.dryRun
        self.planner = DirectoryPlanner(
            options: configuration.options, filters: configuration.filters, selection: selection,
            destinationCapabilities: caps, withheld: { destinationFeatures.metadataWithheld($0, kind: $1, selection: $2) })
        // File data that crosses a link of Ferry's own is BytesCompressed as it went there.
        let counters = self.counters
        for case let metered as any LinkMetering in [configuration.source, configuration.destination] {
            counters.linkMetered.store(true, ordering: .relaxed)
            metered.meterLink { counters.add(.bytesCompressed, $0) }
        }
    }

    var source: any Location { configuration.source }
    var destination: any Location { configuration.destination }
    var options: TransferOptions { configuration.options }
    var dryRun: Bool { configuration.dryRun }

    /// Changes BytesPerSecond while the execution runs (nil: no limit).
    public func updateBandwidth(_ bytesPerSecond: Int64?) { limiter?.setRate(bytesPerSecond) }

    /// Runs the execution to its end and returns DataSync-shaped results. Never throws:
    /// failures are in the result and the report.
    public func run() async -> ExecutionResult {
        let clock = ContinuousClock()
        let start = clock.now
        counters.setPhase(.preparing)
        var prepareEnd = start
        var transferStatus = PhaseStatus.success
        var deletionsSkipped: Int64 = 0

        do {
            // Checked here, not only by the callers: every way an execution starts obeys it.
            try LocationScope.checkDisjoint(source: sourceFeatures.scope, destination: destinationFeatures.scope)
            guard let rootEntry = try await source.stat(.root), rootEntry.kind == .directory else {
                throw FerryError(.invalidLocation, "the source \(source.uri) is not a directory")
            }
            let destinationRoot = try await destination.stat(.root)
            var scheduler = Scheduler(engine: self, root: rootEntry, destinationRoot: destinationRoot)
            try await scheduler.run(onListingDone: { prepareEnd = clock.now })
            if prepareEnd == start { prepareEnd = clock.now }
            if !scheduler.deletions.isEmpty {
                if errorsSeen.load(ordering: .relaxed) > 0 || fatalMessage.withLock({ $0 }) != nil {
                    deletionsSkipped = Int64(scheduler.deletions.count)
                    configuration.logger.warning("deletions skipped because of errors", metadata: ["count": "\(deletionsSkipped)"])
                } else {
                    try await performDeletions(scheduler.deletions)
                }
            }
        } catch {
            fatalMessage.withLock { $0 = $0 ?? describe(error) }
        }
        let transferEnd = clock.now
        if counters.value(.filesFailed) > 0 { transferStatus = .error }

        var verifyStatus: PhaseStatus = options.verifyMode == .none ? .none : .success
        var verifyDuration = Duration.nanoseconds(counters.value(.verifyNanoseconds))
        if fatalMessage.withLock({ $0 }) == nil && options.verifyMode == .pointInTimeConsistent && !dryRun {
            counters.setPhase(.verifying)
            let verifyStart = clock.now
            do {
                try await PointInTimeVerifier(engine: self).run()
            } catch {
                fatalMessage.withLock { $0 = $0 ?? describe(error) }
            }
            verifyDuration = clock.now - verifyStart
        }
        if counters.value(.verificationFailures) > 0 { verifyStatus = .error }

        let fatal = fatalMessage.withLock { $0 }
        let snapshot = counters.snapshot()
        var status = ExecutionStatus.success
        var errorCode: String?
        var errorDetail: String?
        if let fatal {
            status = .error; errorCode = "Fatal"; errorDetail = fatal; transferStatus = .error
        } else if snapshot.verificationFailures > 0 {
            status = .error; errorCode = "VerificationFailed"
            errorDetail = "\(snapshot.verificationFailures) item(s) failed verification"
        } else if snapshot.metadataNotStored > 0 {
            status = .error; errorCode = "MetadataNotStored"
            errorDetail = "\(snapshot.metadataNotStored) item(s) arrived without some of their metadata (named in the report)"
        } else if snapshot.filesFailed > 0 || snapshot.filesSkipped > 0 {
            status = .error; errorCode = "FilesSkippedOrFailed"
            errorDetail = "\(snapshot.filesFailed) item(s) failed and \(snapshot.filesSkipped) were skipped"
            if deletionsSkipped > 0 { errorDetail! += "; \(deletionsSkipped) deletion(s) not done because of errors" }
        }
        counters.setPhase(status == .success ? .success : .error)
        func ms(_ d: Duration) -> Int64 { d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000 }
        return ExecutionResult(
            status: status, errorCode: errorCode, errorDetail: errorDetail,
            source: source.uri, destination: destination.uri, options: options, dryRun: dryRun,
            counters: snapshot,
            prepareDuration: ms(prepareEnd - start), prepareStatus: fatal == nil ? .success : .error,
            transferDuration: ms(transferEnd - start), transferStatus: transferStatus,
            verifyDuration: ms(verifyDuration), verifyStatus: verifyStatus,
            totalDuration: ms(clock.now - start), deletionsSkippedForErrors: deletionsSkipped,
            problems: report.problems, problemsNotListed: report.problemsDropped)
    }

    func describe(_ error: any Error) -> String {
        if let e = error as? any LocationError { return e.description }
        if error is CancellationError { return "the execution was cancelled" }
        return "\(error)"
    }

    func retryClass(_ error: any Error) -> RetryClass {
        if let e = error as? any LocationError { return e.retryClass }
        if error is CancellationError { return .fatal }
        return .itemFailed
    }

    func emit(_ kind: ItemEvent.Kind, _ path: EntryPath, _ entry: Entry?, reason: String? = nil) {
        guard let onItem = configuration.onItem else { return }
        onItem(ItemEvent(kind: kind, path: path, entryKind: entry?.kind ?? .file, size: entry?.metadata.size ?? 0, reason: reason))
    }

    func record(_ category: ReportCategory, _ path: EntryPath, _ entry: Entry?, status: ItemStatus = .success,
                checksum: ContentChecksum? = nil, failure: FailureKind? = nil, reason: String? = nil) {
        // Successes matter only to a report file; skip building their entries otherwise.
        guard status != .success || report.recordsEverything else { return }
        report.record(category, ReportEntry(
            path: path.description, kind: (entry?.kind ?? .file).description.uppercased(),
            size: entry?.kind == .file ? entry?.metadata.size : nil, checksum: checksum?.description,
            status: status, failureKind: failure, reason: reason))
    }

    /// Records an item that could not be transferred; a fatal error stops the execution.
    func recordFailure(_ item: PlannedItem, _ error: any Error) -> Completion {
        let message = describe(error)
        let cls = retryClass(error)
        errorsSeen.add(1, ordering: .relaxed)
        if cls == .fatal {
            fatalMessage.withLock { $0 = $0 ?? message }
            return .fatal(message)
        }
        if cls == .itemUnreadable {
            counters.add(.filesSkipped)
            record(.skipped, item.path, item.source, status: .skipped, failure: .unreadable, reason: message)
            emit(.skip, item.path, item.source, reason: message)
        } else {
            counters.add(.filesFailed)
            record(.transferred, item.path, item.source, status: .failed, failure: .transferError, reason: message)
            emit(.fail, item.path, item.source, reason: message)
        }
        configuration.logger.error("transfer failed", metadata: ["file.path": "\(item.path)", "error": "\(message)"])
        return .itemDone(item, succeeded: false, changedDestination: false)
    }
}
