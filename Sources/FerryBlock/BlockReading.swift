/// The data extents of an image, searchable: whether a block touches data or lies in a hole.
struct ExtentIndex: Sendable {
    let extents: [Range<Int64>]

    /// Whether `range` overlaps any data extent (binary search).
    func touchesData(_ range: Range<Int64>) -> Bool {
        var lo = 0, hi = extents.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if extents[mid].upperBound <= range.lowerBound { lo = mid + 1 } else { hi = mid }
        }
        return lo < extents.count && extents[lo].lowerBound < range.upperBound
    }
}

/// Reads and hashes blocks of an image, several at once.
enum BlockReading {
    struct Read: Sendable {
        var index: Int
        var hash: BlockHash
        /// The bytes, kept only where asked (a changed, non-zero block).
        var data: [UInt8]?
        /// Bytes read (0 for a block that lies in a hole).
        var bytesRead: Int
    }

    static func range(_ i: Int, blockSize: Int, size: Int64) -> Range<Int64> {
        let start = Int64(i) * Int64(blockSize)
        return start..<min(start + Int64(blockSize), size)
    }

    /// Reads the blocks at `indices` with up to `parallelism` reads in flight; blocks in a
    /// hole are zero without a read. `keep(i, hash)` says whether to keep a block's bytes.
    static func read(_ image: BlockImage, indices: [Int], extents: ExtentIndex, blockSize: Int, size: Int64,
                     parallelism: Int, keep: @escaping @Sendable (Int, BlockHash) -> Bool) async throws -> [Read] {
        var out: [Read] = []
        out.reserveCapacity(indices.count)
        try await withThrowingTaskGroup(of: Read.self) { group in
            var next = 0
            func start() {
                let i = indices[next]
                next += 1
                group.addTask {
                    let r = range(i, blockSize: blockSize, size: size)
                    guard extents.touchesData(r) else { return Read(index: i, hash: .zero, data: nil, bytesRead: 0) }
                    let length = Int(r.count)
                    var bytesRead = 0
                    var data = try [UInt8](unsafeUninitializedCapacity: length) { buf, count in
                        let raw = UnsafeMutableRawBufferPointer(buf)
                        bytesRead = try image.read(into: raw, count: length, at: r.lowerBound)
                        if bytesRead < length { raw.baseAddress!.advanced(by: bytesRead).initializeMemory(as: UInt8.self, repeating: 0, count: length - bytesRead) }
                        count = length
                    }
                    let hash = data.withUnsafeBytes { BlockHash.of($0) }
                    if hash == .zero || !keep(i, hash) { data = [] }
                    return Read(index: i, hash: hash, data: data.isEmpty ? nil : data, bytesRead: bytesRead)
                }
            }
            while next < indices.count && next < parallelism { start() }
            while let read = try await group.next() {
                out.append(read)
                if next < indices.count { start() }
            }
        }
        return out.sorted { $0.index < $1.index }
    }

    /// The hashes of the blocks at `indices`, in that order.
    static func hash(_ image: BlockImage, indices: [Int], blockSize: Int, size: Int64, parallelism: Int = 2) async throws -> [BlockHash] {
        let extents = ExtentIndex(extents: try image.dataExtents(size: size))
        var hashes: [BlockHash] = []
        hashes.reserveCapacity(indices.count)
        // In windows, so memory stays bounded by the reads in flight.
        var at = 0
        while at < indices.count {
            let window = Array(indices[at..<min(at + 256, indices.count)])
            let reads = try await read(image, indices: window, extents: extents, blockSize: blockSize, size: size, parallelism: parallelism) { _, _ in false }
            let byIndex = Dictionary(uniqueKeysWithValues: reads.map { ($0.index, $0.hash) })
            hashes += window.map { byIndex[$0]! }
            at += window.count
        }
        return hashes
    }
}
