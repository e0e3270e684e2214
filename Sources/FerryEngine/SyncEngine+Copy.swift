import FerryCore

extension SyncEngine {
    static let maxBufferSize = 1 << 20

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
    func copyFile(_ item: PlannedItem) async throws -> Completion {
        let s = item.source!
        emit(item.destination == nil ? .create : .update, item.path, s)
        if dryRun {
            counters.add(.filesTransferred)
            counters.add(.bytesTransferred, s.metadata.size)
            record(.transferred, item.path, s)
            return .itemDone(item, succeeded: true, changedDestination: true)
        }
        if serverSideCopy, try await copyServerSide(item) {
            return .itemDone(item, succeeded: true, changedDestination: true)
        }
        // One buffer for the copy and the read-back, both attempts (a pool round-trip takes a
        // lock the other workers contend for).
        let pooled = buffers.take()
        defer { buffers.recycle(pooled) }
        var problem: (FailureKind, String)?
        for _ in 0..<2 {
            let reader: any EntryReader, extents: [Extent], attributes: [ExtendedAttribute]
            do {
                reader = try await source.openForReading(item.path, expected: s)
                extents = try await reader.dataExtents()
                attributes = selection.extendedAttributes ? try await reader.extendedAttributes() : []
            } catch {
                if let retry = worthOneMoreTry(error, item.path) { problem = retry; continue }
                throw error
            }
            let before = reader.metadata
            let writer = try await destination.createFile(
                item.path, metadata: before, attributes: attributes.isEmpty ? nil : attributes, selection: selection)
            let checksum: ContentChecksum
            let written: Int64
            // Bytes count as transferred while they move (live progress); an attempt that is
            // abandoned takes its bytes back.
            var moved: Int64 = 0
            var notStored: [String] = []
            do {
                (checksum, written) = try await pump(reader, extents: extents, size: before.size, using: pooled) { chunk, offset in
                    if let limiter = self.limiter { try await limiter.acquire(chunk.count) }
                    try await writer.write(chunk, at: offset)
                    self.counters.add(.bytesTransferred, Int64(chunk.count))
                    moved += Int64(chunk.count)
                }
                let after = try await reader.close()
                if after.size != before.size || after.mtime != before.mtime || after.ctime != before.ctime {
                    await writer.abort()
                    counters.add(.bytesTransferred, -moved)
                    problem = (.sourceChanged, "the source changed while it was read (size, mtime or ctime moved)")
                    continue
                }
                if case .copyFile(replacing: .directory) = item.action {
                    try await destination.remove(item.path, kind: .directory)
                }
                notStored = try await writer.commit()
                if !notStored.isEmpty {
                    counters.add(.metadataNotStored)
                    let reason = "the destination did not store: \(notStored.joined(separator: ", "))"
                    record(.transferred, item.path, s, status: "PARTIAL", failure: .metadataNotStored, reason: reason)
                    emit(.fail, item.path, s, reason: reason)
                }
            } catch {
                await writer.abort()
                counters.add(.bytesTransferred, -moved)
                if let retry = worthOneMoreTry(error, item.path) { problem = retry; continue }
                throw error
            }
            counters.add(.bytesWritten, written)
            counters.add(.bytesTransferred, before.size - written)  // the holes
            if options.verifyMode == .onlyFilesTransferred, writer.contentConfirmed {
                // The destination checked the bytes it stored against what was sent; what
                // it could not keep of the metadata is a verification failure.
                counters.add(.filesTransferred)
                record(.transferred, item.path, s, checksum: checksum)
                if !notStored.isEmpty {
                    counters.add(.verificationFailures)
                    record(.verified, item.path, s, status: "FAILED", checksum: checksum, failure: .metadataFailure,
                           reason: "the destination did not store: \(notStored.joined(separator: ", "))")
                } else {
                    counters.add(.filesVerified)
                    record(.verified, item.path, s, checksum: checksum)
                }
            } else if options.verifyMode == .onlyFilesTransferred {
                let started = ContinuousClock.now
                defer { verifyNanoseconds.add(nanoseconds(ContinuousClock.now - started), ordering: .relaxed) }
                let (arrived, metadata) = if let reader = try await writer.committedReader() {
                    try await readChecksum(reader, using: pooled)
                } else {
                    try await checksumOf(destination, item.path, expected: Entry(name: s.name, kind: .file, metadata: before), using: pooled)
                }
                if arrived != checksum {
                    problem = (.checksumFailure, "checksum at the destination \(arrived) differs from the source \(checksum)")
                    continue
                }
                counters.add(.filesTransferred)
                record(.transferred, item.path, s, checksum: checksum)
                if let mismatch = metadataMismatch(expected: before, kind: .file, actual: metadata) {
                    counters.add(.verificationFailures)
                    record(.verified, item.path, s, status: "FAILED", checksum: checksum, failure: .metadataFailure, reason: mismatch)
                    emit(.fail, item.path, s, reason: mismatch)
                    return .itemDone(item, succeeded: true, changedDestination: true)  // the data is in place
                }
                counters.add(.filesVerified)
                record(.verified, item.path, s, checksum: checksum)
            } else {
                counters.add(.filesTransferred)
                record(.transferred, item.path, s, checksum: checksum)
            }
            return .itemDone(item, succeeded: true, changedDestination: true)
        }
        // Two attempts failed the same way: report it as a verification failure.
        let (kind, reason) = problem!
        counters.add(.verificationFailures)
        let reportKind: FailureKind = kind == .sourceChanged ? .checksumFailure : kind
        record(.verified, item.path, s, status: "FAILED", failure: reportKind, reason: reason)
        emit(.fail, item.path, s, reason: reason)
        configuration.logger.error("verification failed", metadata: ["file.path": "\(item.path)", "reason": "\(reason)"])
        return .itemDone(item, succeeded: false, changedDestination: false)
    }

    /// The destination copies the file from the source itself; verification compares the
    /// metadata and size that arrived (the data never passed through Ferry to be hashed).
    func copyServerSide(_ item: PlannedItem) async throws -> Bool {
        let s = item.source!
        let attributes = selection.extendedAttributes ? try await source.extendedAttributes(item.path, kind: .file) : []
        guard try await destination.copyServerSide(
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
        var position: Int64 = 0
        var dataBytes: Int64 = 0
        let buffer = pooled.bytes
        let hash = pooled.hash
        hash.reset()
        let bufferSize = buffer.count
        outer: for extent in extents {
            let end = min(extent.offset + extent.length, size)
            if extent.offset > position { hash.updateZeros(extent.offset - position) }
            position = max(position, extent.offset)
            while position < end {
                let want = Int(min(Int64(bufferSize), end - position))
                let n = try await reader.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<want]), at: position)
                if n == 0 { break outer }  // shrank; the caller's re-stat notices
                let chunk = UnsafeRawBufferPointer(rebasing: buffer[0..<n])
                hash.update(chunk)
                try await sink(chunk, position)
                position += Int64(n)
                dataBytes += Int64(n)
            }
        }
        if size > position { hash.updateZeros(size - position) }
        return (hash.finalize(), dataBytes)
    }

    /// Reads a whole file at `location` with `pooled`'s buffer and returns its checksum and metadata.
    func checksumOf(
        _ location: any Location, _ path: EntryPath, expected: Entry, using pooled: BufferPool.Buffer
    ) async throws -> (ContentChecksum, FileMetadata) {
        try await readChecksum(try await location.openForReading(path, expected: expected), using: pooled)
    }

    /// Reads a whole open file with `pooled`'s buffer and returns its checksum and metadata.
    func readChecksum(_ reader: any EntryReader, using pooled: BufferPool.Buffer) async throws -> (ContentChecksum, FileMetadata) {
        let extents = try await reader.dataExtents()
        let (sum, _) = try await pump(reader, extents: extents, size: reader.metadata.size, using: pooled) { _, _ in }
        let after = try await reader.close()
        return (sum, after)
    }

    /// Names the first preserved metadata field that differs, or nil.
    func metadataMismatch(expected: FileMetadata, kind: EntryKind, actual: FileMetadata) -> String? {
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
        guard let actual = try await destination.stat(path) else {
            counters.add(.verificationFailures)
            record(.verified, path, expected, status: "FAILED", failure: .fileRemoved, reason: "missing at the destination after transfer")
            return
        }
        var mismatch = actual.kind != expected.kind ? "a \(actual.kind), expected a \(expected.kind)" : nil
        if mismatch == nil && expected.kind == .symlink && actual.symlinkTarget != expected.symlinkTarget {
            mismatch = "symlink target differs"
        }
        if mismatch == nil { mismatch = metadataMismatch(expected: expected.metadata, kind: expected.kind, actual: actual.metadata) }
        if let mismatch {
            counters.add(.verificationFailures)
            record(.verified, path, expected, status: "FAILED", failure: .metadataFailure, reason: mismatch)
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
            counters.add(.verificationFailures)
            record(.verified, path, a, status: "FAILED", failure: .metadataFailure, reason: "not a hard link to \(leader) at the destination")
        }
    }
}
