import FerryCore

/// POINT_IN_TIME_CONSISTENT verification: lists both sides again, directory by directory,
/// and compares every item in scope: kind, preserved metadata, symlink targets, and the
/// checksum of every file's data read at both ends. Failures are named as DataSync names
/// them: checksum failure, metadata failure, file added (only at the destination, when
/// deleted files are removed), file removed (missing at the destination).
struct PointInTimeVerifier {
    let engine: SyncEngine

    func run() async throws {
        _ = try await verifyDirectory(.root)
    }

    /// Verifies one directory's entries, then its subdirectories; returns the newest mtime
    /// it holds, which a directory without an mtime of its own takes (as in the copy:
    /// ``NewestMtime``), so such a directory is compared after its contents.
    private func verifyDirectory(_ directory: EntryPath) async throws -> Timestamp? {
        // Listed as the copy lists (sorted runs, a huge directory spilled to disk).
        let configuration = engine.configuration
        let (sourceRuns, destinationRuns) = (ListingCollector(spillDirectory: configuration.spillDirectory),
                                             ListingCollector(spillDirectory: configuration.spillDirectory))
        async let sourceListing = engine.sourceFeatures.listInRuns(directory, runSize: configuration.spillThreshold) { try sourceRuns.add($0) }
        _ = try await engine.destinationFeatures.listInRuns(directory, runSize: configuration.spillThreshold) { try destinationRuns.add($0) }
        _ = try await sourceListing
        let (sourceCursor, destinationCursor) = try AnyCursor.pair(
            sourceRuns, destinationRuns, caseSensitive: engine.destinationFeatures.capabilities.caseSensitive, directory: directory)
        var newest = NewestMtime()
        /// With the entries of those whose mtime is derived, compared once it is known.
        var subdirectories: [(path: EntryPath, standIn: Bool, compared: (Entry, Entry)?)] = []
        var files: [(EntryPath, Entry, Entry)] = []
        // The planner's join: an entry it left out as a duplicate (reported by the run) is
        // left out here too.
        var join = MergeJoin(directory: directory, source: sourceCursor, destination: destinationCursor)
        while let (s, d) = try join.next() {
            // Files are compared a batch at a time: a huge directory is not held in memory.
            if files.count >= 256 {
                try await compareFiles(files)
                files.removeAll(keepingCapacity: true)
            }
            let entry = (s ?? d)!
            let path = directory.appending(entry.name)
            let decision = engine.configuration.filters.decide(path, isDirectory: entry.kind == .directory)
            if decision == .skip { continue }
            if !inScope(s) { continue }
            guard let s else {
                if engine.options.preserveDeletedFiles == .remove && engine.configuration.filters.removes(path, decision) {
                    fail(path, d, .fileAdded, "at the destination but not at the source")
                }
                continue
            }
            guard let d else {
                fail(path, s, .fileRemoved, "at the source but missing at the destination")
                continue
            }
            if s.kind != d.kind {
                fail(path, s, .metadataFailure, "a \(d.kind) at the destination, a \(s.kind) at the source")
                continue
            }
            let compares = decision != .descendOnly && decision != .common
            if s.kind == .directory {
                subdirectories.append((path, s.mtimeIsStandIn, s.mtimeIsStandIn && compares ? (s, d) : nil))
                if s.mtimeIsStandIn { continue }
            }
            if !compares { continue }
            if s.kind == .file {
                files.append((path, s, d))
            } else {
                compareMetadata(path, s, d)
            }
        }
        try await compareFiles(files)
        newest.note(sourceCursor.newest(of: sourceRuns))
        for sub in subdirectories {
            let subNewest = try await verifyDirectory(sub.path)
            guard sub.standIn else { continue }
            newest.note(subNewest)
            guard let (listed, d) = sub.compared else { continue }
            var s = listed
            if let subNewest { s.metadata.mtime = subNewest }
            compareMetadata(sub.path, s, d)
        }
        return newest.value
    }

    /// Reads and compares `files` at both ends, `parallel` at a time.
    private func compareFiles(_ files: [(EntryPath, Entry, Entry)]) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            var running = 0
            for (path, s, d) in files {
                if running >= engine.configuration.parallel { try await group.next(); running -= 1 }
                group.addTask { try await compareFile(path, s, d) }
                running += 1
            }
            try await group.waitForAll()
        }
    }

    /// Entries the run would not have transferred (the planner skips them whatever the
    /// destination holds: sockets, devices without PreserveDevices, what the destination
    /// cannot hold) are not expected at the destination.
    private func inScope(_ s: Entry?) -> Bool {
        guard let s else { return true }
        return engine.planner.transfers(s)
    }

    private func compareMetadata(_ path: EntryPath, _ s: Entry, _ d: Entry) {
        if s.kind == .symlink && s.symlinkTarget != d.symlinkTarget {
            fail(path, s, .metadataFailure, "symlink target differs")
        } else if s.kind.isSpecial && s.metadata.deviceNumber != d.metadata.deviceNumber {
            fail(path, s, .metadataFailure, "device number differs")
        } else if let mismatch = engine.metadataMismatch(expected: s.metadata, kind: s.kind, actual: d.metadata,
                                                         selection: engine.destinationSelection(path, s, report: false)) {
            fail(path, s, .metadataFailure, mismatch)
        } else {
            engine.counters.add(.filesVerified)
            engine.record(.verified, path, s)
        }
    }

    private func compareFile(_ path: EntryPath, _ s: Entry, _ d: Entry) async throws {
        if let mismatch = engine.metadataMismatch(expected: s.metadata, kind: .file, actual: d.metadata,
                                                  selection: engine.destinationSelection(path, s, report: false)) {
            fail(path, s, .metadataFailure, mismatch)
            return
        }
        do {
            let pooled = engine.buffers.take()
            defer { engine.buffers.recycle(pooled) }
            let (a, _) = try await engine.checksumOf(engine.sourceFeatures, path, expected: s, using: pooled)
            let (b, _) = try await engine.checksumOf(engine.destinationFeatures, path, expected: d, using: pooled)
            if a != b {
                fail(path, s, .checksumFailure, "checksum at the destination \(b) differs from the source \(a)")
            } else {
                engine.counters.add(.filesVerified)
                engine.record(.verified, path, s, checksum: a)
            }
        } catch {
            if engine.retryClass(error) == .fatal { throw error }
            fail(path, s, .checksumFailure, "could not be read to verify: \(engine.describe(error))")
        }
    }

    private func fail(_ path: EntryPath, _ entry: Entry?, _ kind: FailureKind, _ reason: String) {
        engine.recordVerificationFailure(path, entry, kind, reason)
        engine.emit(.fail, path, entry, reason: "\(kind.rawValue): \(reason)")
    }
}
