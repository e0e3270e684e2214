/// When block writes need the map saved first. Writes go in spans of blocks: before the
/// first write into a new span, what earlier spans wrote is synced (``Step/flushFirst``)
/// and the map is saved with the span — and every block still unknown after it — marked
/// dirty. A span is at least the read window and large enough that saving the map (32
/// bytes per block, twice) costs under 1 % of the data written: 64 MiB for a 4 GiB image,
/// 8 GiB for a 1 TiB device.
struct ProgressCommits {
    struct Step {
        /// Sync what was written before saving (an earlier span is being committed).
        var flushFirst: Bool
        /// The blocks the saved map must call unknown; its lower bound is where a resumed run starts.
        var dirty: Range<Int>
    }

    let spanBlocks: Int
    private var spanEnd = -1

    init(blockCount: Int, blockSize: Int, windowBytes: Int) {
        let mapBytes = blockCount * 32
        spanBlocks = max(1, max(windowBytes, mapBytes * 256) / blockSize)
    }

    /// Before writing blocks `first...last`: the save to make, or nil if the current span covers them.
    /// `unknownEnd` is one past the last block whose content is unknown.
    mutating func before(first: Int, last: Int, unknownEnd: Int) -> Step? {
        guard last >= spanEnd else { return nil }
        let flush = spanEnd >= 0
        spanEnd = max(first + spanBlocks, last + 1)
        return Step(flushFirst: flush, dirty: first..<max(spanEnd, unknownEnd))
    }
}
