import FerryCore

/// What to do with one name of a directory, decided from both listings.
struct PlannedItem: Sendable {
    enum Action: Sendable {
        /// Descend into a directory; `destinationExists` false means make it first
        /// (after removing `replacing`, a non-directory of that kind in the way).
        case directory(destinationExists: Bool, replacing: EntryKind?)
        /// Copy the file's data (and metadata).
        case copyFile(replacing: EntryKind?)
        /// Data is current; only metadata differs.
        case updateMetadata
        /// Same size, but the destination does not hold the mtime: its content decides
        /// between ``unchanged``/``updateMetadata`` and ``copyFile(replacing:)``.
        case compareContent
        /// Create or replace a symlink, FIFO or device node.
        case place(replacing: EntryKind?)
        /// At the destination only; remove it (PreserveDeletedFiles REMOVE).
        case delete
        /// Nothing to do.
        case unchanged
        /// Left alone, and reported as skipped.
        case skip(FailureKind, String)
    }

    /// The fields, in one immutable reference: an item is copied many times on its way (the
    /// scheduler's stack, batches, completions), and copying two entries each time cost
    /// retains and 400-byte moves for every file (`perf`: most of the scheduler's own time).
    private final class Storage: Sendable {
        let path: EntryPath
        let source: Entry?
        let destination: Entry?
        let action: Action
        let common: Bool

        init(path: EntryPath, source: Entry?, destination: Entry?, action: Action, common: Bool) {
            self.path = path
            self.source = source
            self.destination = destination
            self.action = action
            self.common = common
        }
    }

    private var storage: Storage

    init(path: EntryPath, source: Entry?, destination: Entry?, action: Action, common: Bool = false) {
        storage = Storage(path: path, source: source, destination: destination, action: action, common: common)
    }

    // Borrowed, not copied out: a copy of an entry is a 180-byte move and a retain of
    // each of its buffers, and the copy path reads these several times per file.
    var path: EntryPath { _read { yield storage.path } }
    var source: Entry? { _read { yield storage.source } }
    var destination: Entry? { _read { yield storage.destination } }
    /// Whether the destination had an entry under this name (without copying it).
    var hasDestination: Bool {
        if case .some = storage.destination { return true }
        return false
    }
    /// A directory common to the shares of a tree (``Filters/Decision/common``).
    var common: Bool { storage.common }
    /// Set only when a later step decides again (a content comparison); a new storage then.
    var action: Action {
        get { storage.action }
        set {
            storage = Storage(path: path, source: source, destination: destination, action: newValue, common: common)
        }
    }
}

/// Merge-joins the sorted listings of one directory on both sides (rclone's `march`) and
/// decides an action for each name from the options, the filters and the metadata.
struct DirectoryPlanner: Sendable {
    let options: TransferOptions
    let filters: Filters
    let selection: MetadataSelection
    let destinationCapabilities: Capabilities
    /// What the destination cannot apply to an entry (``Location/metadataWithheld(_:kind:selection:)``):
    /// not compared, so a re-run does not try again what cannot be done.
    var withheld: @Sendable (FileMetadata, EntryKind, MetadataSelection) -> MetadataWithheld? = { _, _, _ in nil }

    /// The work one directory needs. Entries that need none are only counted: unchanged,
    /// and not in a hard-link group (whose members the scheduler tracks). In a no-change run
    /// that is nearly every entry, and an item for each cost an allocation, two entry copies
    /// and a turn through the scheduler.
    struct DirectoryPlan {
        var items: [PlannedItem] = []
        var unchanged = 0
        /// Entries left out because their side lists another of the same name.
        var duplicates: [DuplicateName] = []
    }

    /// Plans one directory from its two listings (``MergeJoin``: duplicates are left out and
    /// named in the plan; a listing out of order throws a fatal error).
    func plan(directory: EntryPath, source: [Entry], destination: [Entry]) throws(FerryError) -> DirectoryPlan {
        let caseSensitive = destinationCapabilities.caseSensitive
        var join = MergeJoin(
            directory: directory,
            source: try ArrayCursor(source, caseSensitive: caseSensitive, side: .source, directory: directory),
            destination: try ArrayCursor(destination, caseSensitive: caseSensitive, side: .destination, directory: directory))
        return try plan(directory: directory, join: &join, names: .max).plan
    }

    /// Plans the next `names` names of `join` (a huge directory is planned a part at a
    /// time, as the scheduler takes its items); `done` when the join is at its end.
    func plan<S: EntryCursor, D: EntryCursor>(
        directory: EntryPath, join: inout MergeJoin<S, D>, names: Int
    ) throws(FerryError) -> (plan: DirectoryPlan, done: Bool) {
        var plan = DirectoryPlan()
        var taken = 0
        while taken < names, let (s, d) = try join.next() {
            taken += 1
            // Through the optionals, not `(s ?? d)!`: that copies a whole entry each time.
            let name = s?.name ?? d!.name
            let isDirectory = (s?.kind ?? d!.kind) == .directory
            var path: EntryPath?
            let decision: Filters.Decision
            if filters.takesEverything {
                decision = .take
            } else {
                path = directory.appending(name)
                decision = filters.decide(path!, isDirectory: isDirectory)
            }
            guard let s else {
                // Destination only: removed with --delete, unless a filter leaves it out of scope.
                if options.preserveDeletedFiles == .remove, let d, filters.removes(path ?? directory.appending(name), decision) {
                    plan.items.append(PlannedItem(path: path ?? directory.appending(name), source: nil, destination: d, action: .delete))
                }
                continue
            }
            if decision == .skip { continue }
            let action = action(s, d)
            if case .unchanged = action, !inHardLinkGroup(s) {
                plan.unchanged += 1
                continue
            }
            plan.items.append(PlannedItem(path: path ?? directory.appending(name), source: s, destination: d, action: action,
                                          common: decision == .common))
        }
        plan.duplicates = join.takeDuplicates()
        return (plan, taken < names)
    }

    /// A file with other links, at a destination that keeps hard links: the scheduler
    /// follows it in its link group even when it is unchanged.
    func inHardLinkGroup(_ s: Entry) -> Bool {
        destinationCapabilities.hardLinks && s.kind == .file && s.metadata.linkCount > 1 && s.metadata.fileID != nil
    }

    /// Whether a source entry is transferred at all (to a destination that lacks it): the
    /// rule point-in-time verification scopes by.
    func transfers(_ s: Entry) -> Bool {
        if case .skip = action(s, nil) { return false }
        return true
    }

    /// What to do with a source entry, given what the destination has under its name.
    private func action(_ s: Entry, _ d: Entry?) -> PlannedItem.Action {
        let replacing = d.flatMap { $0.kind == s.kind ? nil : $0.kind }
        if d != nil && replacing == nil && options.overwriteMode == .never && s.kind != .directory {
            return .skip(.overwriteNever, "exists at the destination and OverwriteMode is NEVER")
        }
        switch s.kind {
        case .directory:
            return .directory(destinationExists: d != nil && replacing == nil, replacing: replacing)
        case .file:
            guard let d, replacing == nil, options.transferMode == .changed else { return .copyFile(replacing: replacing) }
            // Size and mtime decide, where the destination holds the mtime (or remembers the
            // one sent); else the content does.
            let compare = comparesContent(s, d)
            if writtenFromSameFile(s, d) || !compare && !dataDiffers(s, d) {
                return metadataDiffers(s, d) ? .updateMetadata : .unchanged
            }
            return compare ? .compareContent : .copyFile(replacing: nil)
        case .symlink:
            guard destinationCapabilities.symlinks else { return .skip(.unsupported, "the destination cannot hold symlinks") }
            if let d, replacing == nil, options.transferMode == .changed, d.symlinkTarget == s.symlinkTarget {
                return metadataDiffers(s, d) ? .updateMetadata : .unchanged
            }
            return .place(replacing: replacing)
        case .fifo, .characterDevice, .blockDevice, .socket:
            if s.kind == .socket { return .skip(.unsupported, "sockets are not transferred") }
            if options.preserveDevices != .preserve {
                return .skip(.unsupported, "\(s.kind) not transferred without --preserve-devices")
            }
            if !destinationCapabilities.deviceNodes { return .skip(.unsupported, "the destination cannot hold \(s.kind)s") }
            if let d, replacing == nil, options.transferMode == .changed, d.metadata.deviceNumber == s.metadata.deviceNumber {
                return metadataDiffers(s, d) ? .updateMetadata : .unchanged
            }
            return .place(replacing: replacing)
        }
    }

    /// Size, then mtime: exact when mtimes are preserved, "source newer" when they are not.
    func dataDiffers(_ s: Entry, _ d: Entry) -> Bool {
        if s.metadata.size != d.metadata.size { return true }
        if timesWithheld(s) { return false }
        if selection.mtime { return !sameTime(s.metadata.mtime, d.metadata.mtime) }
        return s.metadata.mtime > d.metadata.mtime
    }

    /// A destination file with a stand-in mtime that the location remembers writing from a
    /// source of this size and mtime (see ``Entry/writtenFromMtime``).
    func writtenFromSameFile(_ s: Entry, _ d: Entry) -> Bool {
        guard selection.mtime, d.mtimeIsStandIn, let sent = d.writtenFromMtime else { return false }
        return s.metadata.size == d.metadata.size && sameTime(sent, s.metadata.mtime)
    }

    /// Whether a file of the same size must be compared by content: mtimes are preserved,
    /// but the destination's is a stand-in (an object whose server dropped Ferry's
    /// metadata, or written by another tool), and the destination names its bytes. Not for
    /// hard-linked files, whose groups are settled by their first path's action.
    func comparesContent(_ s: Entry, _ d: Entry) -> Bool {
        selection.mtime && d.mtimeIsStandIn && d.contentTag != nil && s.metadata.size == d.metadata.size
            && !inHardLinkGroup(s)
    }

    /// Whether the preserved metadata (per the options) differs; never where the
    /// destination would not keep it.
    func metadataDiffers(_ s: Entry, _ d: Entry) -> Bool {
        guard destinationCapabilities.keepsMetadata else { return false }
        let a = s.metadata, b = d.metadata
        let uidDiffers = selection.uid && destinationCapabilities.ownership && a.uid != b.uid
        let gidDiffers = selection.gid && destinationCapabilities.ownership && a.gid != b.gid
        if uidDiffers || gidDiffers {
            let w = withheld(a, s.kind, selection)
            if uidDiffers && !(w?.uid ?? false) || gidDiffers && !(w?.gid ?? false) { return true }
        }
        if selection.permissions && destinationCapabilities.permissions && s.kind != .symlink && a.permissions != b.permissions { return true }
        if selection.mtime && !sameTime(a.mtime, b.mtime) && !timesWithheld(s) { return true }
        return false
    }

    /// The destination cannot hold this entry's times (reported where it is written).
    func timesWithheld(_ s: Entry) -> Bool { withheld(s.metadata, s.kind, selection)?.times ?? false }

    /// Equal within the destination's mtime precision.
    func sameTime(_ a: Timestamp, _ b: Timestamp) -> Bool {
        let p = destinationCapabilities.mtimePrecisionNanoseconds
        if p <= 1 { return a == b }
        return a.totalNanoseconds / p == b.totalNanoseconds / p
    }
}
