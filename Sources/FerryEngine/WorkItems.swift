import FerryCore

/// A directory to list and plan, with what is known of it from its parent's listing.
struct ScanJob: Sendable {
    var path: EntryPath
    var source: Entry
    var destinationExists: Bool
    /// A non-directory at the destination to remove first.
    var replacing: EntryKind?
}

/// One unit of work for the pipeline. The per-directory cases hold their payload in a box
/// (`indirect`), so a per-file value is a reference and a few bits: work and completions
/// are moved several times per file, and a 180-byte ``Entry`` inline made every move of
/// every case that large.
enum Work: Sendable {
    indirect case scan(ScanJob)
    /// Copy, update metadata or place one planned item.
    case item(PlannedItem)
    /// Several small items of one directory (small files, symlinks, metadata updates), done
    /// one after another in one task: a task per tiny item cost more in task creation and
    /// scheduling than some of the copies.
    case items([PlannedItem])
    /// Make `item.path` a hard link to `leader` (already at the destination).
    case link(PlannedItem, leader: EntryPath)
    /// Apply a directory's own metadata after its children.
    /// `counted`: the directory itself is new or its metadata differed (it counts as transferred);
    /// `existed`: it was at the destination before the run (a metadata update to announce).
    indirect case finalize(EntryPath, Entry, counted: Bool, existed: Bool)
    /// Plan the next part of a huge directory (listed into a spill file).
    indirect case plan(ScanJob, PlanCursor)
}

/// What a piece of work reports back to the scheduler (per-directory cases boxed, as in
/// ``Work``).
enum Completion: Sendable {
    /// `newest`: for a directory whose mtime is derived (``DirectoryState/derived``), the
    /// newest mtime its listing held.
    indirect case scanned(ScanJob, [PlannedItem]?, newest: Timestamp?, more: PlanCursor? = nil)
    /// The next part of a huge directory's plan (``Work/plan(_:_:)``).
    indirect case planned(ScanJob, [PlannedItem], newest: Timestamp?, more: PlanCursor?)
    /// `changedDestination`: the parent directory's entries changed (its mtime moved).
    case itemDone(PlannedItem, succeeded: Bool, changedDestination: Bool)
    case finalized(EntryPath)
    case fatal(String)
    /// The completions of an ``Work/items(_:)`` batch, in order.
    case batch([Completion])
}

/// Per-directory bookkeeping in the scheduler: children not yet done, and whether the
/// directory's metadata must be (re)applied when they are.
struct DirectoryState {
    var source: Entry
    var pending: Int
    var needsMetadata: Bool
    /// At the destination before the run (new ones were announced when made).
    var existed: Bool
    var changed: Bool
    /// Set for a directory whose mtime the source does not hold (a prefix without a marker
    /// object): it takes the newest mtime of what it holds, known once all of it is listed.
    var derived: DerivedMtime? = nil
    /// Made and descended into by every share of a tree (several agents); its metadata is
    /// the finishing share's (``Filters/Share``), never applied or counted here.
    var common = false
}

/// What a directory with a derived mtime (``Entry/mtimeIsStandIn``) waits for: the newest
/// mtime of its entries and subdirectories, then the comparison with the destination's.
struct DerivedMtime {
    var destination: Entry?
    var newest = NewestMtime()
}

/// The newest mtime of what a directory holds, the rule a directory without an mtime of
/// its own (a prefix without a marker object) takes: its entries', subdirectories without
/// their own mtime left out (they count by this rule once their own contents are known).
struct NewestMtime {
    private(set) var value: Timestamp?

    /// Notes a time known another way (a subdirectory's, by this rule).
    mutating func note(_ t: Timestamp?) {
        guard let t else { return }
        if value.map({ t > $0 }) ?? true { value = t }
    }

    /// Notes one listed entry, by the rule.
    mutating func note(_ e: Entry) {
        if !(e.kind == .directory && e.mtimeIsStandIn) { note(e.metadata.mtime) }
    }

    /// The newest mtime among `entries`, by the rule.
    static func of(_ entries: [Entry]) -> Timestamp? {
        var n = NewestMtime()
        for e in entries { n.note(e) }
        return n.value
    }
}

/// A hard-link group (source device + inode): the first path seen leads; the others wait
/// for it to reach the destination, then are linked to it.
enum LinkGroup {
    case pending(leader: EntryPath, waiters: [PlannedItem])
    /// `destinationID` is the leader's destination inode when it was left as it was
    /// (nil when it was just written, so every other path must be linked anew).
    case done(leader: EntryPath, destinationID: FileID?)
    case failed
}
