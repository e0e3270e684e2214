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
}

/// What a piece of work reports back to the scheduler (per-directory cases boxed, as in
/// ``Work``).
enum Completion: Sendable {
    indirect case scanned(ScanJob, [PlannedItem]?)
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
