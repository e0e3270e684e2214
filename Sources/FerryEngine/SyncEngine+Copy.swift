import FerryCore

extension SyncEngine {
    static let maxBufferSize = 1 << 20
    /// How often a file is copied, or a directory listed, again after its connection broke.
    static let brokenConnectionRetries = 3

    /// Whether `error` is a broken connection worth another try (`broken`, the tries so far,
    /// is counted here); then after a pause that grows, 0.25, 1, 4 s.
    func pausedForBrokenConnection(_ error: any Error, broken: inout Int, _ doing: String, _ path: EntryPath) async throws -> Bool {
        guard retryClass(error) == .retryable, broken < SyncEngine.brokenConnectionRetries else { return false }
        broken += 1
        configuration.logger.warning("\(doing) after a broken connection", metadata: ["file.path": "\(path)", "error": "\(describe(error))"])
        try await Task.sleep(for: .milliseconds(250 << (2 * (broken - 1))))
        return true
    }

    /// Bytes corrupted in transit, or a source replaced while it was read, are worth one
    /// more try of the whole file.
    private func worthOneMoreTry(_ error: any Error, _ path: EntryPath) -> (FailureKind, String)? {
        guard let e = error as? any LocationError, e.code == .checksumMismatch || e.code == .sourceChanged else { return nil }
        configuration.logger.warning("retrying the file", metadata: ["file.path": "\(path)", "reason": "\(e)"])
        return (e.code == .sourceChanged ? .sourceChanged : .checksumFailure, "\(e)")
    }

    /// Copies one file: reads the source extent by extent (holes stay holes), checksums what
    /// it reads, writes it under a temporary name, checks that the source did not change
    /// meanwhile (size, mtime, ctime), commits metadata and the final name, then (with
    /// ONLY_FILES_TRANSFERRED) re-reads the destination and compares checksum and metadata —
    /// unless the destination confirmed the bytes itself (``EntryWriter/contentConfirmed``).
    /// A changed source or a checksum mismatch is tried once more before it is reported.
    /// A small file goes through `direct` when there is one (both ends local), else through
    /// a reader and a writer; the data through `buffer`, else one from the pool.
    func copyFile(_ item: PlannedItem, direct: (any DirectFileCopier)? = nil, buffer: BufferPool.Buffer? = nil) async throws -> Completion {
        emit(item.hasDestination ? .update : .create, item.path, item.source)
        if dryRun {
            counters.add(.filesTransferred)
            counters.add(.bytesTransferred, item.source!.metadata.size)
            record(.transferred, item.path, item.source)
            return .itemDone(item, succeeded: true, changedDestination: true)
        }
        if serverSideCopy, try await copyServerSide(item) {
            return .itemDone(item, succeeded: true, changedDestination: true)
        }
        let direct = copiesDirectly(item) ? direct : nil
        let itemSelection = destinationSelection(item.path, item.source!, report: true)
        // One buffer for the copy and the read-back, both attempts (a pool round-trip takes a
        // lock the other workers contend for).
        let pooled = buffer ?? buffers.take()
        defer { if buffer == nil { buffers.recycle(pooled) } }
        var problem: (FailureKind, String)?
        var attempts = 0, broken = 0
        while attempts < 2 {
            let attempt: CopyAttempt
            do {
                if let direct {
                    attempt = try copyDirectly(item, with: direct, using: pooled, selection: itemSelection)
                } else {
                    attempt = try await copyThrough(item, using: pooled, selection: itemSelection)
                }
            } catch {
                if let retry = worthOneMoreTry(error, item.path) {
                    problem = retry
                    attempts += 1
                    continue
                }
                // A connection that broke mid-file (reset, timed out): the whole file again,
                // after a pause that grows, a few times (its temporary was aborted, so nothing
                // partial stands).
                if try await pausedForBrokenConnection(error, broken: &broken, "retrying the file", item.path) { continue }
                throw error
            }
            attempts += 1
            switch attempt {
            case .again(let kind, let reason): problem = (kind, reason)
            case .copied(let copied):
                try await carryNativeMetadata(item.path, item.source!, compare: false)
                return book(item, copied)
            }
        }
        // Two attempts failed the same way: report it as a verification failure.
        let (kind, reason) = problem!
        recordVerificationFailure(item.path, item.source, kind == .sourceChanged ? .checksumFailure : kind, reason)
        emit(.fail, item.path, item.source, reason: reason)
        configuration.logger.error("verification failed", metadata: ["file.path": "\(item.path)", "reason": "\(reason)"])
        return .itemDone(item, succeeded: false, changedDestination: false)
    }

    /// What one attempt at copying a file came to.
    enum CopyAttempt {
        case copied(Copied)
        /// Worth one more try: the source changed while it was read, or the bytes that
        /// arrived are not those sent.
        case again(FailureKind, String)
    }

    /// A file in place at the destination.
    struct Copied {
        /// Of the bytes read from the source.
        var checksum: ContentChecksum
        /// The source's metadata the copy carries.
        var metadata: FileMetadata
        /// Metadata the destination did not keep.
        var notStored: [String] = []
        /// The metadata applied (what verification compares).
        var selection: MetadataSelection
        var arrival: Arrival = .unchecked
    }

    /// How the bytes that arrived were checked.
    enum Arrival {
        /// Not (verification is off).
        case unchecked
        /// The destination confirmed them itself (``EntryWriter/contentConfirmed``).
        case confirmed
        /// Read back with the checksum sent; the metadata found then.
        case readBack(FileMetadata)
    }

    static let sourceChangedReason = "the source changed while it was read (size, mtime or ctime moved)"

    /// What ONLY_FILES_TRANSFERRED says about a read-back whose checksum differs.
    func checksumDiffers(_ arrived: ContentChecksum, _ sent: ContentChecksum) -> CopyAttempt {
        .again(.checksumFailure, "checksum at the destination \(arrived) differs from the source \(sent)")
    }

    /// Whether `item` is a whole small file that a ``DirectFileCopier`` may copy: not sparse
    /// (holes would be written as zeros), not replacing a directory, no bandwidth limit set.
    private func copiesDirectly(_ item: PlannedItem) -> Bool {
        guard case .copyFile(let replacing) = item.action, replacing != .directory, limiter?.isLimited != true,
              let s = item.source, s.metadata.size <= Scheduler.batchFileSize, !s.metadata.mayBeSparse
        else { return false }
        return true
    }

    /// One attempt through a ``DirectFileCopier``: copy, commit and read-back in one call.
    private func copyDirectly(
        _ item: PlannedItem, with copier: any DirectFileCopier, using pooled: BufferPool.Buffer, selection: MetadataSelection
    ) throws -> CopyAttempt {
        let copy = try copier.copy(
            item.path, expected: item.source!.metadata, selection: selection, buffer: pooled.bytes, hash: pooled.hash,
            readBack: options.verifyMode == .onlyFilesTransferred)
        if copy.sourceChanged { return .again(.sourceChanged, Self.sourceChangedReason) }
        counters.add(.bytesTransferred, item.source!.metadata.size)
        counters.add(.bytesWritten, copy.written)
        var copied = Copied(checksum: copy.checksum, metadata: item.source!.metadata, selection: selection)
        if let arrived = copy.arrived {
            counters.add(.verifyNanoseconds, copy.readBackNanoseconds)
            if arrived.checksum != copy.checksum { return checksumDiffers(arrived.checksum, copy.checksum) }
            copied.arrival = .readBack(arrived.metadata)
        }
        return .copied(copied)
    }

    /// One attempt through the source's reader and the destination's writer.
    private func copyThrough(_ item: PlannedItem, using pooled: BufferPool.Buffer, selection: MetadataSelection) async throws -> CopyAttempt {
        let s = item.source!
        let reader = limited(try await source.openForReading(item.path, expected: s))
        let extents = try await reader.dataExtents()
        let attributes = selection.extendedAttributes || attributesReportedDropped ? try await reader.extendedAttributes() : []
        let before = reader.metadata
        // A file that replaces one of the destination's keeps what that one already holds
        // where the destination can (only the blocks that differ cross a link).
        let writer = try await destinationFeatures.createFile(
            item.path, replacing: item.destination, metadata: before, attributes: attributes.isEmpty ? nil : attributes, selection: selection)
        var copied: Copied
        let written: Int64
        // Bytes count as transferred while they move (live progress); an attempt that is
        // abandoned takes its bytes back.
        var moved: Int64 = 0
        do {
            let checksum: ContentChecksum
            (checksum, written) = try await pump(reader, extents: extents, size: before.size, using: pooled) { chunk, offset in
                try await writer.write(chunk, at: offset)
                self.counters.add(.bytesTransferred, Int64(chunk.count))
                moved += Int64(chunk.count)
            }
            let after = try await reader.close()
            if !after.unchanged(since: before) {
                await writer.abort()
                counters.add(.bytesTransferred, -moved)
                return .again(.sourceChanged, Self.sourceChangedReason)
            }
            if case .copyFile(replacing: .directory) = item.action {
                try await destination.remove(item.path, kind: .directory)
            }
            copied = Copied(checksum: checksum, metadata: before, notStored: try await writer.commit(), selection: selection)
        } catch {
            await writer.abort()
            counters.add(.bytesTransferred, -moved)
            throw error
        }
        counters.add(.bytesWritten, written)
        counters.add(.bytesTransferred, before.size - written)  // the holes
        guard options.verifyMode == .onlyFilesTransferred else { return .copied(copied) }
        if writer.contentConfirmed {
            copied.arrival = .confirmed
            return .copied(copied)
        }
        let started = ContinuousClock.now
        defer { counters.add(.verifyNanoseconds, nanoseconds(ContinuousClock.now - started)) }
        let (arrived, metadata) = if let reader = try await writer.committedReader() {
            try await readChecksum(reader, using: pooled)
        } else {
            try await checksumOf(destinationFeatures, item.path, expected: Entry(name: s.name, kind: .file, metadata: before), using: pooled)
        }
        if arrived != copied.checksum { return checksumDiffers(arrived, copied.checksum) }
        copied.arrival = .readBack(metadata)
        return .copied(copied)
    }

    /// `reader` with its reads under the bandwidth limit (the copy's and a content
    /// comparison's source reads alike).
    func limited(_ reader: any EntryReader) -> any EntryReader {
        limiter.map { LimitedReader(base: reader, limiter: $0) } ?? reader
    }

    /// Counts, records and announces an item that arrived without `what` of its metadata;
    /// returns the reason given (which its verification repeats).
    func recordNotStored(_ path: EntryPath, _ entry: Entry?, _ what: String) -> String {
        let reason = "the destination did not store: \(what)"
        counters.add(.metadataNotStored)
        record(.transferred, path, entry, status: .partial, failure: .metadataNotStored, reason: reason)
        emit(.fail, path, entry, reason: reason)
        return reason
    }

    /// Gives the destination entry the source's native metadata (``NativeMetadataCopying``:
    /// between two SMB shares, DOS attributes, creation time and security descriptor), when
    /// `compare` only if it differs; what could not be read or applied is reported for the
    /// item (PARTIAL, METADATA_NOT_APPLIED), the entry stands.
    func carryNativeMetadata(_ path: EntryPath, _ entry: Entry, compare: Bool) async throws {
        guard copiesNativeMetadata, entry.kind == .file || entry.kind == .directory else { return }
        let wanted = try await sourceFeatures.nativeMetadata(path, kind: entry.kind)
        var problems = wanted.unreadable.sorted { $0.key < $1.key }.map { "\($0.key) (could not be read at the source: \($0.value))" }
        if !wanted.parts.isEmpty {
            let differs = compare ? try await destinationFeatures.nativeMetadata(path, kind: entry.kind).parts != wanted.parts : true
            if differs {
                problems += try await destinationFeatures.setNativeMetadata(path, kind: entry.kind, wanted, keeping: entry.metadata, selection: selection)
            }
        }
        guard !problems.isEmpty else { return }
        let reason = "could not be applied: " + problems.joined(separator: "; ")
        counters.add(.metadataNotStored)
        record(.transferred, path, entry, status: .partial, failure: .metadataNotApplied, reason: reason)
        emit(.fail, path, entry, reason: reason)
    }

    /// The metadata to apply to `entry` at `path`: the execution's selection, less what the
    /// destination cannot apply to it (``Location/metadataWithheld(_:kind:selection:)``),
    /// which is reported for the item when `report` (once, where it is written).
    func destinationSelection(_ path: EntryPath, _ entry: Entry, report: Bool) -> MetadataSelection {
        guard let withheld = destinationFeatures.metadataWithheld(entry.metadata, kind: entry.kind, selection: selection) else { return selection }
        if report {
            let reason = "could not be applied: \(withheld.reason)"
            counters.add(.metadataNotStored)
            record(.transferred, path, entry, status: .partial, failure: .metadataNotApplied, reason: reason)
            emit(.fail, path, entry, reason: reason)
        }
        return withheld.applied(to: selection)
    }

    /// Counts and records a verification of `path` that failed (announcing it is the caller's).
    func recordVerificationFailure(_ path: EntryPath, _ entry: Entry?, _ failure: FailureKind, _ reason: String,
                                   checksum: ContentChecksum? = nil) {
        counters.add(.verificationFailures)
        record(.verified, path, entry, status: .failed, checksum: checksum, failure: failure, reason: reason)
    }

    /// Counts and records a file in place, and what its verification found.
    private func book(_ item: PlannedItem, _ copied: Copied) -> Completion {
        let notStored = copied.notStored.isEmpty ? nil : recordNotStored(item.path, item.source, copied.notStored.joined(separator: ", "))
        counters.add(.filesTransferred)
        record(.transferred, item.path, item.source, checksum: copied.checksum)
        let mismatch: String?
        switch copied.arrival {
        case .unchecked:
            return .itemDone(item, succeeded: true, changedDestination: true)
        case .confirmed:
            // What the destination could not keep of the metadata is a verification failure.
            mismatch = notStored
        case .readBack(let metadata):
            mismatch = metadataMismatch(expected: copied.metadata, kind: .file, actual: metadata, selection: copied.selection)
            if let mismatch { emit(.fail, item.path, item.source, reason: mismatch) }
        }
        if let mismatch {
            recordVerificationFailure(item.path, item.source, .metadataFailure, mismatch, checksum: copied.checksum)
        } else {
            counters.add(.filesVerified)
            record(.verified, item.path, item.source, checksum: copied.checksum)
        }
        return .itemDone(item, succeeded: true, changedDestination: true)  // the data is in place
    }

    /// The destination copies the file from the source itself; verification compares the
    /// metadata and size that arrived (the data never passed through Ferry to be hashed).
    func copyServerSide(_ item: PlannedItem) async throws -> Bool {
        let s = item.source!
        let attributes = selection.extendedAttributes ? try await sourceFeatures.extendedAttributes(item.path, kind: .file) : []
        guard try await destinationFeatures.copyServerSide(
            from: source, item.path, metadata: s.metadata, attributes: attributes.isEmpty ? nil : attributes, selection: selection)
        else { return false }
        counters.add(.bytesTransferred, s.metadata.size)
        counters.add(.filesTransferred)
        record(.transferred, item.path, s, reason: "server-side copy")
        if options.verifyMode == .onlyFilesTransferred {
            try await verifyMetadata(item.path, expected: s)
        }
        return true
    }

    func nanoseconds(_ d: Duration) -> Int64 {
        d.components.seconds * 1_000_000_000 + d.components.attoseconds / 1_000_000_000
    }

    /// Reads every data extent of `reader` in chunks of up to 1 MiB (`pooled`'s buffer),
    /// feeds the checksum (holes as zeros) and hands each chunk to `sink`. Returns the
    /// checksum and data bytes.
    func pump(
        _ reader: any EntryReader, extents: [Extent], size: Int64, using pooled: BufferPool.Buffer,
        sink: (UnsafeRawBufferPointer, Int64) async throws -> Void
    ) async throws -> (ContentChecksum, Int64) {
        try await pumpExtents(reader, extents: extents, size: size, buffer: pooled.bytes, hash: pooled.hash, sink: sink)
    }

    /// The checksum and metadata of the file at `path` in `location`: computed where the
    /// data lies when the location can (``ChecksumComputing``: nothing crosses a link but
    /// the answer), else read whole with `pooled`'s buffer.
    func checksumOf(
        _ location: Features, _ path: EntryPath, expected: Entry, using pooled: BufferPool.Buffer
    ) async throws -> (ContentChecksum, FileMetadata) {
        if let computed = try await location.contentChecksum(path, expected: expected) { return computed }
        return try await readChecksum(try await location.location.openForReading(path, expected: expected), using: pooled)
    }

    /// Reads a whole open file with `pooled`'s buffer and returns its checksum and metadata.
    func readChecksum(_ reader: any EntryReader, using pooled: BufferPool.Buffer) async throws -> (ContentChecksum, FileMetadata) {
        try await readContentChecksum(reader, buffer: pooled.bytes, hash: pooled.hash)
    }

    /// Names the first preserved metadata field that differs, or nil; `selection`: what was
    /// applied (the execution's, less what the destination withheld for this item).
    func metadataMismatch(expected: FileMetadata, kind: EntryKind, actual: FileMetadata, selection: MetadataSelection? = nil) -> String? {
        let selection = selection ?? self.selection
        if kind == .file && expected.size != actual.size { return "size \(actual.size), expected \(expected.size)" }
        if selection.uid && expected.uid != actual.uid { return "uid \(actual.uid), expected \(expected.uid)" }
        if selection.gid && expected.gid != actual.gid { return "gid \(actual.gid), expected \(expected.gid)" }
        if selection.permissions && kind != .symlink && expected.permissions != actual.permissions {
            return "mode \(String(actual.permissions, radix: 8)), expected \(String(expected.permissions, radix: 8))"
        }
        if selection.mtime && !planner.sameTime(expected.mtime, actual.mtime) {
            return "mtime \(actual.mtime), expected \(expected.mtime)"
        }
        return nil
    }

    /// Stats a non-file item at the destination and compares its metadata (and symlink target).
    func verifyMetadata(_ path: EntryPath, expected: Entry) async throws {
        let selection = destinationSelection(path, expected, report: false)
        guard let actual = try await destination.stat(path) else {
            recordVerificationFailure(path, expected, .fileRemoved, "missing at the destination after transfer")
            return
        }
        var mismatch = actual.kind != expected.kind ? "a \(actual.kind), expected a \(expected.kind)" : nil
        if mismatch == nil && expected.kind == .symlink && actual.symlinkTarget != expected.symlinkTarget {
            mismatch = "symlink target differs"
        }
        if mismatch == nil {
            mismatch = metadataMismatch(expected: expected.metadata, kind: expected.kind, actual: actual.metadata, selection: selection)
        }
        if let mismatch {
            recordVerificationFailure(path, expected, .metadataFailure, mismatch)
            emit(.fail, path, expected, reason: mismatch)
        } else {
            counters.add(.filesVerified)
            record(.verified, path, expected)
        }
    }

    /// Checks that `path` and `leader` are the same file at the destination.
    func verifyLink(_ path: EntryPath, leader: EntryPath) async throws {
        let a = try await destination.stat(path)
        let b = try await destination.stat(leader)
        if let a, let b, a.metadata.fileID != nil, a.metadata.fileID == b.metadata.fileID {
            counters.add(.filesVerified)
            record(.verified, path, a)
        } else {
            recordVerificationFailure(path, a, .metadataFailure, "not a hard link to \(leader) at the destination")
        }
    }
}
