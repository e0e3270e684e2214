import FerryCore

extension SyncEngine {
    /// A file of the same size whose destination mtime is a stand-in: reads the source
    /// once and lets the destination compare it with the bytes it names
    /// (``Location/holdsSameContent(_:_:as:)``). Same bytes: a metadata update where the
    /// destination would keep one, else unchanged. Different bytes, a source that moved
    /// while it was read, or a destination that cannot tell: the file is copied.
    func compareContent(_ item: PlannedItem) async throws -> Completion {
        let s = item.source!, d = item.destination!
        var same: Bool?
        if let tag = s.contentTag, tag == d.contentTag {
            same = true  // both sides name the bytes alike (objects on one kind of server)
        } else if !serverSideCopy {
            // (A destination that copies from the source itself does that cheaper than
            // reading the source to compare.) Reading is harmless in a dry run too.
            let reader = limited(try await source.openForReading(item.path, expected: s))  // under --bwlimit, as a copy's reads
            same = try await destinationFeatures.holdsSameContent(item.path, d, as: reader)
            let after = try await reader.close()
            if !after.unchanged(since: s.metadata) { same = nil }
        }
        var next = item
        if same == true {
            guard planner.metadataDiffers(s, d) else {
                if !dryRun { await destinationFeatures.noteSameContent(item.path, d, source: s) }
                counters.add(.filesUnchanged)
                return .itemDone(item, succeeded: true, changedDestination: false)
            }
            next.action = .updateMetadata
        } else {
            next.action = .copyFile(replacing: nil)
            counters.add(.estimatedBytesToTransfer, s.metadata.size)
        }
        counters.add(.estimatedFilesToTransfer)
        return await apply(next)
    }
}
