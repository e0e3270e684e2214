import FerryCore

/// The data extents of an image, searchable: whether a block touches data or lies in a hole.
struct ExtentIndex: Sendable {
    let extents: [Range<Int64>]

    /// The parts of `range` that hold data, in order.
    func dataParts(of range: Range<Int64>) -> [Range<Int64>] {
        var lo = 0, hi = extents.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if extents[mid].upperBound <= range.lowerBound { lo = mid + 1 } else { hi = mid }
        }
        var parts: [Range<Int64>] = []
        while lo < extents.count && extents[lo].lowerBound < range.upperBound {
            parts.append(max(extents[lo].lowerBound, range.lowerBound)..<min(extents[lo].upperBound, range.upperBound))
            lo += 1
        }
        return parts
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
        /// XXH3-128 of the bytes (for the consistency pass), zero for a hole.
        var quick: BlockHash = .zero
    }

    /// Which hash a read computes.
    enum Hashing: Sendable {
        /// The block hash (SHA-256) and the quick one.
        case strong
        /// Only the quick hash (XXH3), in `Read.hash`.
        case quick
    }

    static func range(_ i: Int, blockSize: Int, size: Int64) -> Range<Int64> {
        let start = Int64(i) * Int64(blockSize)
        return start..<min(start + Int64(blockSize), size)
    }

    /// Reads the blocks at `indices` with up to `parallelism` reads in flight; blocks in a
    /// hole are zero without a read. `keep(i, hash)` says whether to keep a block's bytes.
    static func read(_ image: BlockImage, indices: [Int], extents: ExtentIndex, blockSize: Int, size: Int64,
                     parallelism: Int, hashing: Hashing = .strong, keep: @escaping @Sendable (Int, BlockHash) -> Bool) async throws -> [Read] {
        let out = try await boundedConcurrentMap(indices, limit: parallelism) { i -> Read in
            let r = range(i, blockSize: blockSize, size: size)
            let parts = extents.dataParts(of: r)
            guard !parts.isEmpty else { return Read(index: i, hash: .zero, data: nil, bytesRead: 0) }
            let length = Int(r.count)
            var bytesRead = 0
            // Only the parts that hold data are read; the holes between them are zeros.
            let relative = parts.map { Int($0.lowerBound - r.lowerBound)..<Int($0.upperBound - r.lowerBound) }
            var data = try [UInt8](unsafeUninitializedCapacity: length) { buf, count in
                let raw = UnsafeMutableRawBufferPointer(buf)
                var filled = 0
                for part in relative {
                    if part.lowerBound > filled {
                        raw.baseAddress!.advanced(by: filled).initializeMemory(as: UInt8.self, repeating: 0, count: part.lowerBound - filled)
                    }
                    let n = try image.read(into: UnsafeMutableRawBufferPointer(rebasing: raw[part.lowerBound...]), count: part.count, at: r.lowerBound + Int64(part.lowerBound))
                    bytesRead += n
                    if n < part.count {
                        raw.baseAddress!.advanced(by: part.lowerBound + n).initializeMemory(as: UInt8.self, repeating: 0, count: part.count - n)
                    }
                    filled = part.upperBound
                }
                if filled < length {
                    raw.baseAddress!.advanced(by: filled).initializeMemory(as: UInt8.self, repeating: 0, count: length - filled)
                }
                count = length
            }
            let quick = data.withUnsafeBytes { BlockHash.quick($0, parts: relative) }
            if hashing == .quick { return Read(index: i, hash: quick, data: nil, bytesRead: bytesRead, quick: quick) }
            let hash = data.withUnsafeBytes { BlockHash.of($0, dataParts: relative) }
            if hash == .zero || !keep(i, hash) { data = [] }
            return Read(index: i, hash: hash, data: data.isEmpty ? nil : data, bytesRead: bytesRead, quick: quick)
        }
        return out.sorted { $0.index < $1.index }
    }

    /// The hashes of the blocks at `indices`, in that order.
    static func hash(_ image: BlockImage, indices: [Int], blockSize: Int, size: Int64, parallelism: Int = 2,
                     hashing: Hashing = .strong) async throws -> [BlockHash] {
        let extents = ExtentIndex(extents: try image.dataExtents(size: size))
        var hashes: [BlockHash] = []
        hashes.reserveCapacity(indices.count)
        // In windows, so memory stays bounded by the reads in flight.
        var at = 0
        while at < indices.count {
            let window = Array(indices[at..<min(at + 256, indices.count)])
            let reads = try await read(image, indices: window, extents: extents, blockSize: blockSize, size: size, parallelism: parallelism, hashing: hashing) { _, _ in false }
            let byIndex = Dictionary(uniqueKeysWithValues: reads.map { ($0.index, $0.hash) })
            hashes += window.map { byIndex[$0]! }
            at += window.count
        }
        return hashes
    }
}
