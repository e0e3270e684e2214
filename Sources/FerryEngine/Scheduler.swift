import FerryCore

/// How many small items one task takes at once.
enum Batching: Sendable {
    /// Neither side ever waits (local file systems): the tasks that really run at once are
    /// the `workers` cores, so the waiting items are shared evenly among them, up to `limit`
    /// per task (a task per 8 files cost more than some of the copies).
    case even(limit: Int, workers: Int)
    /// A side waits on a server: `limit` per task, and only when enough wait to give every
    /// one of the `slots` requests in flight a batch; else one item per task.
    case whenSlotsFill(limit: Int, slots: Int)

    /// The size of the next batch when `waiting` items (the next one included) are queued.
    func size(waiting: Int) -> Int {
        switch self {
        case .even(let limit, let workers): min(limit, waiting / workers)
        case .whenSlotsFill(let limit, let slots): waiting > limit * slots ? limit : 1
        }
    }
}

/// The single owner of the execution's bookkeeping: the work stack, per-directory state
/// and hard-link groups. It runs in one task and hands work to at most `parallel` child
/// tasks, so no lock guards this state. Work is taken last-in first-out, which walks the
/// tree depth first and keeps only the directories on the current path (and their
/// unprocessed siblings) in memory.
struct Scheduler {
    let engine: SyncEngine
    private var stack: [Work] = []
    private var directories: [EntryPath: DirectoryState] = [:]
    private var links: [FileID: LinkGroup] = [:]
    private var scansOutstanding = 0
    /// Destination-only entries to remove once every transfer succeeded.
    private(set) var deletions: [(item: PlannedItem, parent: Entry)] = []

    init(engine: SyncEngine, root: Entry, destinationRoot: Entry?) {
        self.engine = engine
        let job = ScanJob(path: .root, source: root, destinationExists: true, replacing: nil)
        // The finishing share of a tree (several agents) gives the root its metadata.
        let (state, needsMetadata) = newDirectory(root, destination: destinationRoot, common: !engine.configuration.filters.ownsRoot)
        if needsMetadata == true { engine.counters.add(.estimatedFilesToTransfer) }
        directories[.root] = state
        stack.append(.scan(job))
        scansOutstanding = 1
    }

    mutating func run(onListingDone: () -> Void) async throws {
        let limit = engine.configuration.parallel
        let engine = self.engine
        var fatal: String?
        await withTaskGroup(of: Completion.self) { group in
            var running = 0
            while true {
                while running < limit && fatal == nil, let work = nextWork() {
                    group.addTask { await engine.perform(work) }
                    running += 1
                }
                guard let completion = await group.next() else { break }
                running -= 1
                if let message = handle(completion) {
                    fatal = message
                    group.cancelAll()
                    continue
                }
                if scansOutstanding == 0 {
                    onListingDone()
                    scansOutstanding = -1
                    engine.counters.setPhase(.transferring)
                }
            }
        }
        if let fatal { throw FerryError(.fatal, fatal) }
    }

    /// Files up to this size join a batch (as do symlinks, devices and metadata-only updates).
    static let batchFileSize: Int64 = 64 << 10

    /// The next work: a batch of consecutive small items (copies of small files, symlinks,
    /// metadata updates) as the engine's ``Batching`` sizes it, else one item.
    private mutating func nextWork() -> Work? {
        guard let work = stack.popLast() else { return nil }
        let size = engine.batching.size(waiting: stack.count + 1)
        guard size > 1, case .item(let first) = work, Self.batches(first) else { return work }
        var items = [first]
        while items.count < size, case .item(let next)? = stack.last, Self.batches(next) {
            items.append(next)
            stack.removeLast()
        }
        return items.count == 1 ? work : .items(items)
    }

    private static func batches(_ item: PlannedItem) -> Bool {
        switch item.action {
        case .copyFile, .compareContent: return (item.source?.metadata.size ?? .max) <= batchFileSize
        case .place, .updateMetadata: return true
        default: return false
        }
    }

    /// Books one completion (each of a batch's, in order); returns the message of a fatal one.
    private mutating func handle(_ completion: Completion) -> String? {
        switch completion {
        case .scanned(let job, let items, let newest, let more):
            scansOutstanding -= 1
            planned(job, items, newest: newest, more: more)
        case .planned(let job, let items, let newest, let more):
            planned(job, items, newest: newest, more: more)
        case .itemDone:
            return finish([completion])
        case .finalized(let path):
            if !path.isRoot { childDone(in: path.parent, changed: false) }
        case .fatal(let message):
            return message
        case .batch(let all):
            return finish(all)
        }
        return nil
    }

    /// Books the completions of one work item (a batch's, in order): an item that leads a
    /// hard-link group releases its waiters; items are counted in their directory once per
    /// run of the same directory, not once each (each count builds the parent path and looks
    /// it up). Returns the message of a fatal one.
    private mutating func finish(_ completions: [Completion]) -> String? {
        var run: (directory: EntryPath, count: Int, changed: Bool)?
        for completion in completions {
            guard case .itemDone(let item, let succeeded, let changed) = completion else {
                if let message = handle(completion) { return message }
                continue
            }
            if let id = leaderID(item) { resolveLinkGroup(id, leader: item, succeeded: succeeded) }
            if let current = run, item.path.isChild(of: current.directory) {
                run = (current.directory, current.count + 1, current.changed || changed)
                continue
            }
            if let done = run { childDone(in: done.directory, changed: done.changed, count: done.count) }
            run = (item.path.parent, 1, changed)
        }
        if let done = run { childDone(in: done.directory, changed: done.changed, count: done.count) }
        return nil
    }

    /// A directory's plan, or a part of it: the items are queued above the rest of the
    /// plan (taken once they are), which counts as one more child of the directory.
    private mutating func planned(_ job: ScanJob, _ items: [PlannedItem]?, newest: Timestamp?, more: PlanCursor?) {
        if newest != nil { directories[job.path]?.derived?.newest.note(newest) }
        if let more {
            directories[job.path]?.pending += 1
            stack.append(.plan(job, more))
        }
        if let items { schedule(items, in: job.path) }
        childDone(in: job.path, changed: false)
    }

    /// Queues the planned items of one directory and counts them as its pending children.
    private mutating func schedule(_ items: [PlannedItem], in directory: EntryPath) {
        let counters = engine.counters
        var added = 0
        // The estimates are added once for the directory: every add is an atomic on a line
        // both workers write.
        var files: Int64 = 0, bytes: Int64 = 0
        defer {
            counters.add(.estimatedFilesToTransfer, files)
            counters.add(.estimatedBytesToTransfer, bytes)
        }
        // Pushed in reverse so that the LIFO stack hands them out in name order.
        for item in items.reversed() {
            switch item.action {
            case .unchanged:
                if item.source?.kind == .file, let id = hardLinkID(item) {
                    if !joinLinkGroup(id, item) { added += 1 }
                    continue
                }
                counters.add(.filesUnchanged)
            case .skip(let kind, let reason):
                counters.add(.filesSkipped)
                engine.record(.skipped, item.path, item.source, status: .skipped, failure: kind, reason: reason)
                engine.emit(.skip, item.path, item.source, reason: reason)
            case .delete:
                counters.add(.estimatedFilesToDelete)
                deletions.append((item, directories[directory]!.source))
            case .directory(let exists, let replacing):
                let source = item.source!
                let (state, needsMetadata) = newDirectory(source, destination: exists ? item.destination : nil, common: item.common)
                if let needsMetadata {
                    if needsMetadata { files += 1 } else { counters.add(.filesUnchanged) }
                }
                directories[item.path] = state
                stack.append(.scan(ScanJob(path: item.path, source: source, destinationExists: exists, replacing: replacing)))
                scansOutstanding += 1
                added += 1
                if !exists { directories[directory]!.changed = true }
            case .compareContent:
                stack.append(.item(item))  // counted when its content has decided
                added += 1
            case .copyFile, .updateMetadata, .place:
                files += 1
                if case .copyFile = item.action { bytes += item.source!.metadata.size }
                if let id = hardLinkID(item) {
                    if !joinLinkGroup(id, item) { added += 1 }
                    continue
                }
                stack.append(.item(item))
                added += 1
            }
        }
        directories[directory]!.pending += added
    }

    private var planner: DirectoryPlanner { engine.planner }

    /// The source inode of a file with more than one link, if the destination can link.
    private func hardLinkID(_ item: PlannedItem) -> FileID? {
        guard let s = item.source, planner.inHardLinkGroup(s) else { return nil }
        return s.metadata.fileID
    }

    /// The group this item leads, if it is a hard-link leader still pending.
    private func leaderID(_ item: PlannedItem) -> FileID? {
        guard let id = hardLinkID(item), case .pending(let leader, _)? = links[id], leader == item.path else { return nil }
        return id
    }

    /// Puts a hard-linked item in its group. Returns true when nothing is outstanding for it
    /// (it needs no work, or failed at once).
    private mutating func joinLinkGroup(_ id: FileID, _ item: PlannedItem) -> Bool {
        switch links[id] {
        case nil:
            if case .unchanged = item.action {
                links[id] = .done(leader: item.path, destinationID: item.destination?.metadata.fileID)
                engine.counters.add(.filesUnchanged)
                return true
            }
            links[id] = .pending(leader: item.path, waiters: [])
            stack.append(.item(item))
            return false
        case .pending(let leader, var waiters)?:
            links[id] = nil
            waiters.append(item)
            links[id] = .pending(leader: leader, waiters: waiters)
            return false
        case .done(let leader, let destinationID)?:
            return linkOrSkip(item, leader: leader, destinationID: destinationID)
        case .failed?:
            engine.counters.add(.filesFailed)
            engine.record(.transferred, item.path, item.source, status: .failed, failure: .transferError,
                          reason: "not linked: the first path of its hard-link group failed")
            return true
        }
    }

    /// Links `item` to its leader unless the destination already has them linked.
    private mutating func linkOrSkip(_ item: PlannedItem, leader: EntryPath, destinationID: FileID?) -> Bool {
        if let destinationID, let d = item.destination, d.kind == .file, d.metadata.fileID == destinationID {
            engine.counters.add(.filesUnchanged)
            return true
        }
        if case .unchanged = item.action { engine.counters.add(.estimatedFilesToTransfer) }
        stack.append(.link(item, leader: leader))
        return false
    }

    private mutating func resolveLinkGroup(_ id: FileID, leader item: PlannedItem, succeeded: Bool) {
        guard case .pending(let leader, let waiters)? = links[id] else { return }
        if !succeeded {
            links[id] = .failed
            for waiter in waiters {
                engine.counters.add(.filesFailed)
                engine.record(.transferred, waiter.path, waiter.source, status: .failed, failure: .transferError,
                              reason: "not linked: \(leader) of its hard-link group failed")
                childDone(in: waiter.path.parent, changed: false)
            }
            return
        }
        let unchanged: Bool
        if case .unchanged = item.action { unchanged = true } else if case .updateMetadata = item.action { unchanged = true } else { unchanged = false }
        let destinationID = unchanged ? item.destination?.metadata.fileID : nil
        links[id] = .done(leader: leader, destinationID: destinationID)
        for waiter in waiters where linkOrSkip(waiter, leader: leader, destinationID: destinationID) {
            childDone(in: waiter.path.parent, changed: false)
        }
    }

    /// The state of a directory about to be scanned, `destination` what the destination has
    /// there (nil: to be made). Whether its metadata must be applied is decided now and
    /// returned, or, for a directory whose mtime is derived, once its contents are known
    /// (nil; ``settle(_:_:_:)`` decides and counts it). A directory `common` to the shares
    /// of a tree (several agents) gets its metadata from the finishing share: never here,
    /// nor counted (nil).
    private func newDirectory(_ source: Entry, destination: Entry?, common: Bool = false) -> (DirectoryState, needsMetadata: Bool?) {
        let existed = destination != nil
        if common {
            return (DirectoryState(source: source, pending: 1, needsMetadata: false, existed: existed, changed: false, common: true), nil)
        }
        if source.mtimeIsStandIn {
            return (DirectoryState(source: source, pending: 1, needsMetadata: false, existed: existed, changed: false,
                                   derived: DerivedMtime(destination: destination)), nil)
        }
        let needsMetadata = destination.map { planner.metadataDiffers(source, $0) } ?? true
        return (DirectoryState(source: source, pending: 1, needsMetadata: needsMetadata, existed: existed, changed: false), needsMetadata)
    }

    /// A directory with a derived mtime, all of whose contents are known: it takes the
    /// newest mtime it holds (and passes it up to a parent whose mtime is derived too); its
    /// metadata is then compared with the destination's, and counted, as any directory's.
    private mutating func settle(_ state: inout DirectoryState, _ derived: DerivedMtime, _ directory: EntryPath) {
        if let newest = derived.newest.value {
            state.source.metadata.mtime = newest
            state.source.metadata.atime = newest
            if !directory.isRoot { directories[directory.parent]?.derived?.newest.note(newest) }
        }
        state.needsMetadata = !state.existed || derived.destination.map { planner.metadataDiffers(state.source, $0) } ?? true
        engine.counters.add(state.needsMetadata ? .estimatedFilesToTransfer : .filesUnchanged)
    }

    /// `count` children of `directory` are done; when all are, its metadata is applied (if
    /// needed) and the parent is told. The state is changed in place (copying it out and back
    /// copied its entry).
    private mutating func childDone(in directory: EntryPath, changed: Bool, count: Int = 1) {
        guard let index = directories.index(forKey: directory) else { return }
        directories.values[index].pending -= count
        if changed { directories.values[index].changed = true }
        if directories.values[index].pending > 0 { return }
        var state = directories.remove(at: index).value
        if let derived = state.derived { settle(&state, derived, directory) }
        // A common directory (several agents) is left as the writes left it: the finishing
        // share gives it its metadata once no share writes in it.
        if (state.needsMetadata || state.changed) && !state.common {
            stack.append(.finalize(directory, state.source, counted: state.needsMetadata, existed: state.existed))
        } else if !directory.isRoot {
            childDone(in: directory.parent, changed: false)
        }
    }
}
