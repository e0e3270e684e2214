import FerryCore

extension SyncEngine {
    /// Runs one work item in a child task and reports its completion to the scheduler.
    func perform(_ work: Work) async -> Completion {
        switch work {
        case .scan(let job): return await scan(job)
        case .item(let item): return await apply(item, direct: sourceFeatures.directCopier(to: destination))
        case .items(let items):
            var done: [Completion] = []
            done.reserveCapacity(items.count)
            // One copier and one buffer for the whole batch (a pool round-trip per file takes
            // a lock the other workers contend for).
            let direct = sourceFeatures.directCopier(to: destination)
            let buffer = buffers.take()
            defer { buffers.recycle(buffer) }
            for item in items {
                if Task.isCancelled { break }  // a fatal error elsewhere: start no more files
                let completion = await apply(item, direct: direct, buffer: buffer)
                let fatal = if case .fatal = completion { true } else { false }
                done.append(completion)  // moved, not copied: nothing reads it after
                if fatal { break }
            }
            return .batch(done)
        case .link(let item, let leader): return await link(item, to: leader)
        case .finalize(let path, let entry, let counted, let existed):
            return await finalize(path, entry, counted: counted, existed: existed)
        case .plan(let job, let cursor):
            return continuePlan(job, cursor)
        }
    }

    /// Lists one directory on both sides at once and plans it. A missing destination
    /// directory is made first (after removing whatever non-directory stands in its place).
    func scan(_ job: ScanJob) async -> Completion {
        let item = PlannedItem(path: job.path, source: job.source, destination: nil, action: .unchanged)
        do {
            if !dryRun {
                if let replacing = job.replacing { try await destination.remove(job.path, kind: replacing) }
                if !job.destinationExists { try await destination.makeDirectory(job.path) }
            }
            // A connection that broke while listing (a file server dropped it): the
            // directory is listed again, after a pause that grows, a few times.
            var broken = 0
            var listed: Listed
            while true {
                do {
                    listed = try await listBoth(job)
                    break
                } catch {
                    guard try await pausedForBrokenConnection(error, broken: &broken, "listing the directory again", job.path) else { throw error }
                }
            }
            let (sourceListing, destinationListing, runs) = (listed.source, listed.destination, listed.runs)
            // In a directory other shares write in at once (several agents), their files in
            // flight look stale: the finishing share removes what is left there.
            if !dryRun && !configuration.filters.writtenByOtherShares(job.path) {
                for name in destinationListing?.staleTemporaries ?? [] {
                    try? await destinationFeatures.removeTemporary(in: job.path, name: name)
                }
            }
            guard let listing = sourceListing else {
                throw FerryError(.sourceChanged, "directory \(job.path) vanished from the source during the run",
                                  path: job.path, retryClass: .itemFailed)
            }
            var unusable = listing.unusable.map { (name: $0.name, kind: "OBJECT", reason: $0.reason) }
            if sourceFeatures.temporariesAreFiles {
                // Named exactly like one of Ferry's temporaries: a leftover of an interrupted
                // run into the source tree, or a name chosen on purpose. Not copied (the next
                // run at the destination would take it for a leftover), but reported.
                unusable += listing.staleTemporaries.map {
                    (job.path.appending($0).description, "FILE", "named like one of Ferry's temporary files (a leftover of an interrupted run?); not copied")
                }
            }
            for (name, kind, reason) in unusable {
                counters.add(.filesSkipped)
                report.record(.skipped, ReportEntry(path: name, kind: kind, size: nil, checksum: nil, status: .skipped,
                                                    failureKind: .unsupported, reason: reason))
                emit(.skip, job.path, nil, reason: "\(name): \(reason)")
            }
            counters.add(.filesListedSource, listedCount(runs?.source, listing.entries, in: job.path))
            counters.add(.filesListedDestination, listedCount(runs?.destination, destinationListing?.entries ?? [], in: job.path))
            if !job.destinationExists { emit(.create, job.path, job.source) }
            if let runs, runs.source.spool != nil || runs.destination.spool != nil {
                // A huge directory: planned a part at a time from its spill files.
                let cursor = try PlanCursor(directory: job.path, source: runs.source, destination: runs.destination,
                                            caseSensitive: destinationFeatures.capabilities.caseSensitive)
                let (items, newest, more) = try planPart(job, cursor)
                return .scanned(job, items, newest: newest, more: more)
            }
            let sourceEntries = runs?.source.entries ?? listing.entries
            let plan = try planner.plan(directory: job.path, source: sourceEntries,
                                        destination: runs?.destination.entries ?? destinationListing?.entries ?? [])
            counters.add(.filesUnchanged, Int64(plan.unchanged))
            recordDuplicates(plan.duplicates, in: job.path)
            return .scanned(job, plan.items, newest: job.source.mtimeIsStandIn ? NewestMtime.of(sourceEntries) : nil)
        } catch {
            let completion = recordFailure(item, error)
            if case .fatal = completion { return completion }
            return .scanned(job, nil, newest: nil)
        }
    }

    /// Both sides of a directory: listings, or (``Listed/runs``) sorted runs, one in memory,
    /// more spilled to disk.
    struct Listed {
        var source: Listing?
        var destination: Listing?
        var runs: (source: ListingCollector, destination: ListingCollector)?
    }

    /// Lists both sides at once; but a source that fetches small files while listing them is
    /// told, after the destination was listed, which files the copy will read: those the
    /// destination lacks and the filters take.
    func listBoth(_ job: ScanJob) async throws -> Listed {
        var listed = Listed()
        if fetchAhead {
            if job.destinationExists { listed.destination = try await destination.list(job.path) }
            let present = Set((listed.destination?.entries ?? []).map(\.name))
            let (filters, directory) = (planner.filters, job.path)
            listed.source = try await sourceFeatures.listForCopying(job.path) { name in
                !present.contains(name) && filters.decide(directory.appending(name), isDirectory: false) == .take
            }
            return listed
        }
        let (s, d) = (ListingCollector(spillDirectory: configuration.spillDirectory),
                      ListingCollector(spillDirectory: configuration.spillDirectory))
        let runSize = configuration.spillThreshold
        async let listing = sourceFeatures.listInRuns(job.path, runSize: runSize) { try s.add($0) }
        if job.destinationExists { listed.destination = try await destinationFeatures.listInRuns(job.path, runSize: runSize) { try d.add($0) } }
        listed.source = try await listing
        listed.runs = (s, d)
        return listed
    }

    /// Names planned at once from a huge directory's spill files.
    static let planPartNames = 1024

    /// Plans the next part of a huge directory: its items, the newest source mtime read so
    /// far (for a directory whose mtime is derived), and the cursor again unless it is done.
    func planPart(_ job: ScanJob, _ cursor: PlanCursor) throws(FerryError) -> ([PlannedItem], Timestamp?, PlanCursor?) {
        let (plan, done) = try planner.plan(directory: job.path, join: &cursor.join, names: Self.planPartNames)
        counters.add(.filesUnchanged, Int64(plan.unchanged))
        recordDuplicates(plan.duplicates, in: job.path)
        return (plan.items, job.source.mtimeIsStandIn ? cursor.newest : nil, done ? nil : cursor)
    }

    /// The next part of a huge directory's plan; a failure stops the directory's planning
    /// (reported like a failed listing).
    func continuePlan(_ job: ScanJob, _ cursor: PlanCursor) -> Completion {
        do {
            let (items, newest, more) = try planPart(job, cursor)
            return .planned(job, items, newest: newest, more: more)
        } catch {
            let item = PlannedItem(path: job.path, source: job.source, destination: nil, action: .unchanged)
            let completion = recordFailure(item, error)
            if case .fatal = completion { return completion }
            return .planned(job, [], newest: nil, more: nil)
        }
    }

    /// Reports the entries a listing held twice under one name (``MergeJoin``): skipped,
    /// with the reason naming both and which was kept. Out of the filters' scope: not at all.
    func recordDuplicates(_ duplicates: [DuplicateName], in directory: EntryPath) {
        for duplicate in duplicates {
            let path = directory.appending(duplicate.dropped.name)
            if planner.filters.decide(path, isDirectory: duplicate.dropped.kind == .directory) == .skip { continue }
            counters.add(.filesSkipped)
            record(.skipped, path, duplicate.dropped, status: .skipped, failure: .duplicateName, reason: duplicate.reason)
            emit(.skip, path, duplicate.dropped, reason: duplicate.reason)
            configuration.logger.warning("duplicate name", metadata: ["file.path": "\(path)", "reason": "\(duplicate.reason)"])
        }
    }

    /// Transfers one planned item: file data, metadata only, or a symlink/device node; a
    /// small file through `direct` when there is one; data through `buffer` when given.
    func apply(_ item: PlannedItem, direct: (any DirectFileCopier)? = nil, buffer: BufferPool.Buffer? = nil) async -> Completion {
        do {
            switch item.action {
            case .copyFile:
                return try await copyFile(item, direct: direct, buffer: buffer)
            case .compareContent:
                return try await compareContent(item)
            case .updateMetadata:
                let s = item.source!
                emit(.metadata, item.path, s)
                if !dryRun {
                    let selection = destinationSelection(item.path, s, report: true)
                    try await destination.setMetadata(item.path, kind: s.kind, metadata: s.metadata, selection: selection)
                    if s.kind == .file && selection.extendedAttributes {
                        let attributes = try await sourceFeatures.extendedAttributes(item.path, kind: s.kind)
                        try await destinationFeatures.setExtendedAttributes(item.path, kind: s.kind, attributes)
                    } else {
                        try await carrySpecialAttributes(item.path, kind: s.kind)
                    }
                    try await carryNativeMetadata(item.path, s, compare: true)
                }
                try await finishNonData(item)
                return .itemDone(item, succeeded: true, changedDestination: false)
            case .place(let replacing):
                let s = item.source!
                emit(item.hasDestination ? .update : .create, item.path, s)
                if !dryRun {
                    let selection = destinationSelection(item.path, s, report: true)
                    if replacing == .directory { try await destination.remove(item.path, kind: .directory) }
                    if s.kind == .symlink {
                        try await destinationFeatures.makeSymlink(item.path, target: s.symlinkTarget ?? [], metadata: s.metadata, selection: selection)
                    } else {
                        try await destinationFeatures.makeSpecial(item.path, kind: s.kind, metadata: s.metadata, selection: selection)
                        try await carrySpecialAttributes(item.path, kind: s.kind)
                    }
                }
                try await finishNonData(item)
                return .itemDone(item, succeeded: true, changedDestination: true)
            default:
                return .itemDone(item, succeeded: true, changedDestination: false)
            }
        } catch {
            return recordFailure(item, error)
        }
    }

    /// Gives a FIFO or device node at the destination the source's extended attributes (an
    /// access ACL, mostly) and none it lacks: one made in a directory with a default ACL
    /// inherits an access ACL of its own. Symlinks hold none on Linux.
    func carrySpecialAttributes(_ path: EntryPath, kind: EntryKind) async throws {
        guard selection.extendedAttributes, kind.isSpecial else { return }
        let attributes = try await sourceFeatures.extendedAttributes(path, kind: kind)
        if try await destinationFeatures.extendedAttributes(path, kind: kind) != attributes {
            try await destinationFeatures.setExtendedAttributes(path, kind: kind, attributes)
        }
    }

    /// Counts and records a non-data item, verifying its metadata when asked to.
    func finishNonData(_ item: PlannedItem) async throws {
        counters.add(.filesTransferred)
        record(.transferred, item.path, item.source)
        if options.verifyMode == .onlyFilesTransferred && !dryRun {
            try await verifyMetadata(item.path, expected: item.source!)
        }
    }

    /// Makes `item.path` a hard link to `leader` at the destination.
    func link(_ item: PlannedItem, to leader: EntryPath) async -> Completion {
        emit(.link, item.path, item.source, reason: "hard link to \(leader)")
        do {
            if !dryRun {
                if item.destination?.kind == .directory { try await destination.remove(item.path, kind: .directory) }
                try await destinationFeatures.makeHardLink(item.path, to: leader)
            }
            counters.add(.filesTransferred)
            record(.transferred, item.path, item.source, reason: "hard link to \(leader)")
            if options.verifyMode == .onlyFilesTransferred && !dryRun {
                try await verifyLink(item.path, leader: leader)
            }
            return .itemDone(item, succeeded: true, changedDestination: true)
        } catch {
            return recordFailure(item, error)
        }
    }

    /// Applies a directory's own metadata once everything inside it is done.
    func finalize(_ path: EntryPath, _ entry: Entry, counted: Bool, existed: Bool) async -> Completion {
        do {
            if counted {
                counters.add(.filesTransferred)
                record(.transferred, path, entry)
                // A new directory was announced when it was made; an existing one whose
                // metadata differed is announced here (with -v, and in a dry run's list).
                if existed { emit(.metadata, path, entry) }
            }
            if !dryRun {
                let selection = destinationSelection(path, entry, report: counted)
                try await destination.setMetadata(path, kind: .directory, metadata: entry.metadata, selection: selection)
                if selection.extendedAttributes, let attributes = try await sourceAttributesIfReadable(path) {
                    let existing = try await destinationFeatures.extendedAttributes(path, kind: .directory)
                    if attributes != existing {
                        try await destinationFeatures.setExtendedAttributes(path, kind: .directory, attributes)
                        // Setting xattrs leaves mtime alone; nothing to re-apply.
                    }
                }
                try await carryNativeMetadata(path, entry, compare: existed)
                // What the destination is known to drop is reported as such (and is what its
                // verification finds), not as the values a read-back would show instead.
                let notStored = counted ? destinationFeatures.metadataNotStored(kind: .directory).map { recordNotStored(path, entry, $0) } : nil
                if options.verifyMode == .onlyFilesTransferred && counted {
                    if let notStored {
                        recordVerificationFailure(path, entry, .metadataFailure, notStored)
                    } else {
                        try await verifyMetadata(path, expected: entry)
                    }
                }
            }
        } catch {
            let item = PlannedItem(path: path, source: entry, destination: nil, action: .updateMetadata)
            let completion = recordFailure(item, error)
            if case .fatal = completion { return completion }
        }
        return .finalized(path)
    }

    /// A directory's xattrs, or nil when the directory cannot be read (already reported by its scan).
    func sourceAttributesIfReadable(_ path: EntryPath) async throws -> [ExtendedAttribute]? {
        do {
            return try await sourceFeatures.extendedAttributes(path, kind: .directory)
        } catch {
            if retryClass(error) == .itemUnreadable { return nil }
            throw error
        }
    }

    /// Removes destination-only entries (after a run without errors), then re-applies the
    /// metadata of the directories they were in (a removal moves the directory's mtime).
    func performDeletions(_ deletions: [(item: PlannedItem, parent: Entry)]) async throws {
        var parents: [EntryPath: Entry] = [:]
        for (item, parent) in deletions {
            let d = item.destination!
            emit(.delete, item.path, d)
            if dryRun {
                counters.add(.filesDeleted)
                record(.deleted, item.path, d)
                continue
            }
            do {
                try await destination.remove(item.path, kind: d.kind)
                counters.add(.filesDeleted)
                record(.deleted, item.path, d)
                parents[item.path.parent] = parent
            } catch {
                if retryClass(error) == .fatal { throw error }
                counters.add(.filesFailed)
                record(.deleted, item.path, d, status: .failed, failure: .deleteError, reason: describe(error))
            }
        }
        for (path, entry) in parents {
            try await destination.setMetadata(path, kind: .directory, metadata: entry.metadata,
                                              selection: destinationSelection(path, entry, report: false))
        }
    }
}

extension SyncEngine {
    /// How many of a directory's listed entries count as listed (`collected` when it was
    /// listed in runs): all, but above a share's depth (several agents) only those the share
    /// holds, so that each entry is counted by one share (a spilled huge directory there is
    /// counted whole).
    func listedCount(_ collected: ListingCollector?, _ entries: [Entry], in directory: EntryPath) -> Int64 {
        if let collected, collected.spool != nil { return Int64(collected.count) }
        let entries = collected?.entries ?? entries
        guard let share = configuration.filters.share, directory.depth < share.depth else { return Int64(entries.count) }
        return Int64(entries.count { share.place(directory.appending($0.name), isDirectory: $0.kind == .directory) == .mine })
    }
}
