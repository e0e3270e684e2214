extension TargetState {
    /// Every block the same: all zero and known (a fresh file, an empty prefix) or unknown.
    static func uniform(count: Int, known: Bool, map: BlockMap?, notes: [String]) -> TargetState {
        TargetState(hashes: Array(repeating: .zero, count: count), known: Array(repeating: known, count: count), map: map, notes: notes)
    }

    /// What `map` says a destination now `size` bytes long holds: its hashes cut to the new
    /// size or extended with zero blocks (known when the destination reads zeros there), and
    /// the blocks whose length changed with the size left unknown.
    init(map: BlockMap, size: Int64, blockSize: Int, extensionKnown: Bool, notes: [String]) {
        let count = BlockMap.blockCount(size: size, blockSize: blockSize)
        var hashes = Array(map.hashes.prefix(count))
        var known = (0..<hashes.count).map { map.isKnown($0) }
        hashes += Array(repeating: .zero, count: count - hashes.count)
        known += Array(repeating: extensionKnown, count: count - known.count)
        var notes = notes
        let oldSize = map.header.size
        if oldSize != size {
            for edge in [oldSize, size] where edge % Int64(blockSize) != 0 {
                let i = Int(edge / Int64(blockSize))
                if i < count { known[i] = false }
            }
            notes.append("the source is now \(size) bytes (was \(oldSize))")
        }
        self.init(hashes: hashes, known: known, map: map, notes: notes)
    }
}

extension TargetState {
    /// One past the last unknown block, at or below `bound` (pass the previous answer:
    /// blocks only ever become known, so a run pays one scan of the image in all).
    func unknownEnd(below bound: Int) -> Int {
        var end = min(bound, known.count)
        while end > 0 && known[end - 1] { end -= 1 }
        return end
    }
}

extension BlockMap {
    /// Why this map cannot describe a destination written in blocks of `blockSize` (another
    /// block hash, another block size), as a note ending in `consequence`; nil if it can.
    func unusableReason(blockSize: Int, what: String, consequence: String) -> String? {
        if !hashIsCurrent {
            return "\(what) was made with another block hash (\(header.hash ?? "sha256")): \(consequence)"
        }
        if header.blockSize != blockSize {
            return "the block size changed from \(header.blockSize) to \(blockSize): \(consequence)"
        }
        return nil
    }
}
