import Foundation

/// How a block sync runs.
public struct BlockSyncOptions: Sendable {
    public enum Verify: String, Sendable, CaseIterable {
        /// Every block of the destination is hashed and the image digests compared.
        case full
        /// Only the blocks written in this run are read back.
        case changed
        case none
    }

    public var blockSize = 1 << 20
    public var verify = Verify.full
    /// Only these byte ranges changed since the last sync (`--changed-extents`).
    public var changedExtents: [Range<Int64>]?
    /// Hash what was read a second time to find blocks that changed meanwhile (on when no snapshot).
    public var consistencyCheck = true
    /// Reads and hashes in flight.
    public var parallelism = 2
    /// Bytes of blocks read before the destination is written and the map saved.
    public var windowBytes = 64 << 20
    /// What was read, when it is not the source path (a snapshot).
    public var snapshot: String?
    /// Bytes written or sent per second, at most (DataSync's BytesPerSecond); nil: no limit.
    public var bytesPerSecond: Int64?
    public init() {}
}

/// One block-level sync: reads the source's allocated blocks, hashes them (SHA-256),
/// sends the blocks whose hash differs from what the destination's map says it holds,
/// records the new map, and verifies. Works window by window: a window's changed blocks
/// are written and synced only after the map marks them unknown, so an interrupted run
/// leaves a map that claims nothing the destination does not hold, and the next run
/// continues from the last committed window.
public struct BlockSync: Sendable {
    public let source: BlockImage
    /// The source as the user named it (the snapshot, if any, is what `source` opened).
    public let sourceLabel: String
    public let target: any BlockTarget
    public let options: BlockSyncOptions

    public init(source: BlockImage, sourceLabel: String, target: any BlockTarget, options: BlockSyncOptions) {
        self.source = source
        self.sourceLabel = sourceLabel
        self.target = target
        self.options = options
    }

    public func run(progress: @Sendable (BlockSyncReport) -> Void = { _ in }) async throws -> BlockSyncReport {
        let started = ContinuousClock.now
        let blockSize = options.blockSize
        let size = try source.size()
        let count = BlockMap.blockCount(size: size, blockSize: blockSize)
        let sourceIdentity = try source.identity()
        var state = try await target.prepare(size: size, blockSize: blockSize)
        let previous = state.map
        var report = BlockSyncReport(source: sourceLabel, sourceRead: source.path, destination: target.description, snapshot: options.snapshot,
                                     blockSize: blockSize, size: size, previousSize: previous?.header.size,
                                     generation: (previous?.header.generation ?? 0) + 1,
                                     verification: .init(mode: options.verify.rawValue))
        report.blocksTotal = count
        report.notes = state.notes
        report.previousSnapshot = previous?.header.snapshot

        // Take up an interrupted run of this same source where it committed.
        var first = 0
        if let p = previous, !p.header.complete, p.header.size == size, source.kind == .file, p.header.source == sourceIdentity,
           p.header.sourcePath == source.path, p.header.committedBlocks > 0 {
            first = min(p.header.committedBlocks, count)
            report.resumedAtByte = Int64(first) * Int64(blockSize)
            report.notes.append("resumed an interrupted sync at byte \(report.resumedAtByte!)")
        }

        var toRead = Array(first..<count)
        if let changed = options.changedExtents {
            if let p = previous, p.header.complete, p.header.size == size, state.known.allSatisfy({ $0 }) {
                let touched = Set(ChangedExtents.blocks(changed, blockSize: blockSize, blockCount: count))
                toRead = toRead.filter { touched.contains($0) }
            } else {
                report.notes.append("--changed-extents needs the map of a complete earlier sync of this size: the whole source is read")
            }
        }

        let extents = ExtentIndex(extents: try source.dataExtents(size: size))
        let windowBlocks = max(1, options.windowBytes / blockSize)
        var readIndices: [Int] = []  // blocks actually read (for the consistency pass)
        var quickHashes: [BlockHash] = []  // their XXH3, in the same order
        var written: [Int] = []
        var commits = ProgressCommits(blockCount: count, blockSize: blockSize, windowBytes: options.windowBytes)
        var unknownEnd = count  // one past the last unknown block (only ever falls)
        var at = 0
        while at < toRead.count {
            let window = Array(toRead[at..<min(at + windowBlocks, toRead.count)])
            at += window.count
            let hashes = state.hashes, known = state.known
            let reads = try await BlockReading.read(source, indices: window, extents: extents, blockSize: blockSize, size: size,
                                                    parallelism: options.parallelism) { i, h in !(known[i] && hashes[i] == h) }
            var changes: [BlockWrite] = []
            for r in reads {
                report.blocksScanned += 1
                report.bytesRead += Int64(r.bytesRead)
                if r.bytesRead > 0 { readIndices.append(r.index); quickHashes.append(r.quick) }
                if r.hash == .zero { report.blocksZero += 1 }
                guard !(known[r.index] && hashes[r.index] == r.hash) else { continue }
                let range = BlockReading.range(r.index, blockSize: blockSize, size: size)
                changes.append(BlockWrite(index: r.index, offset: range.lowerBound, length: Int(range.count), hash: r.hash, data: r.data))
            }
            if !changes.isEmpty {
                // The map marks these blocks dirty before they are written.
                unknownEnd = state.unknownEnd(below: unknownEnd)
                if let step = commits.before(first: changes.first!.index, last: changes.last!.index, unknownEnd: unknownEnd) {
                    if step.flushFirst { try await target.flush() }
                    try await target.saveProgress(progressMap(state, previous: previous, size: size, committed: step.dirty.lowerBound,
                                                              dirty: step.dirty, identity: sourceIdentity))
                }
                report.bytesWritten += try await target.write(changes)
                try await throttle(report.bytesWritten, since: started)
                report.blocksChanged += changes.count
                report.blocksSent += changes.filter { $0.data != nil }.count
                written += changes.map(\.index)
            }
            for r in reads { state.hashes[r.index] = r.hash; state.known[r.index] = true }
            report.durationSeconds = BlockSyncReport.seconds(since: started)
            progress(report)
        }
        if let unknown = state.known.firstIndex(of: false) {
            throw BlockError(.badBlockMap, "block \(unknown) of \(target.description) was neither read nor known; run again without --changed-extents")
        }

        // Without a snapshot, blocks that changed while they were read make the copy a mix of times.
        if options.snapshot == nil && options.consistencyCheck && !readIndices.isEmpty {
            let again = try await BlockReading.hash(source, indices: readIndices, blockSize: blockSize, size: size,
                                                    parallelism: options.parallelism, hashing: .quick)
            let moved = zip(readIndices, zip(quickHashes, again)).filter { $0.1.0 != $0.1.1 }.map(\.0)
            let sizeNow = try source.size()
            if !moved.isEmpty || sizeNow != size {
                report.pointInTimeConsistent = false
                report.changedWhileReading = BlockSyncReport.ranges(moved, blockSize: blockSize, size: size)
                report.notes.append("\(moved.count) block(s) changed while they were read: the copy is not point-in-time consistent (use --snapshot)")
            }
        }

        var map = progressMap(state, previous: previous, size: size, committed: count, dirty: nil, identity: sourceIdentity)
        map.header.digest = BlockMap.digest(blockSize: blockSize, size: size, hashes: state.hashes)
        switch options.verify {
        case .none: break
        case .changed: report.verification = try await target.verification(of: map, at: written.sorted(), mode: "changed", digests: false)
        case .full: report.verification = try await target.verification(of: map, at: Array(0..<count), mode: "full", digests: true)
        }
        if let notes = try await target.conclude(map, generation: report.generation, verification: report.verification) {
            report.notes += notes
            if !report.pointInTimeConsistent { report.result = "NOT_POINT_IN_TIME" }
        } else {
            report.result = "VERIFICATION_FAILED"
        }
        report.finish(started: started)
        return report
    }

    private func progressMap(_ state: TargetState, previous: BlockMap?, size: Int64, committed: Int, dirty: Range<Int>?, identity: ImageIdentity) -> BlockMap {
        var map = BlockMap(blockSize: options.blockSize, size: size, hashes: state.hashes)
        map.header.generation = previous?.header.generation ?? 0
        map.header.complete = false
        map.header.committedBlocks = committed
        map.header.dirty = dirty
        map.header.source = identity
        map.header.sourcePath = source.path
        map.header.snapshot = options.snapshot
        map.header.destination = previous?.header.destination
        return map
    }

    /// Sleeps until `bytes` written since `start` are within the bandwidth limit.
    private func throttle(_ bytes: Int64, since start: ContinuousClock.Instant) async throws {
        guard let rate = options.bytesPerSecond, rate > 0 else { return }
        let due = Double(bytes) / Double(rate) - BlockSyncReport.seconds(since: start)
        if due > 0 { try await Task.sleep(for: .seconds(due)) }
    }
}
