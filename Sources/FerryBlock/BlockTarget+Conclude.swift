import Foundation

extension BlockTarget {
    /// Reads back the blocks at `indices` and compares them with `map`; with `digests`, also
    /// the whole-image digests (the map's against the destination's).
    func verification(of map: BlockMap, at indices: [Int], mode: String, digests: Bool) async throws -> BlockSyncReport.Verification {
        let got = try await hashes(at: indices, expected: map)
        let bad = zip(indices, got).filter { map.hashes[$0.0] != $0.1 }.map(\.0)
        var v = BlockSyncReport.Verification(mode: mode)
        v.blocksChecked = indices.count
        v.mismatchedBlocks = bad
        v.mismatchedRanges = BlockSyncReport.ranges(bad, blockSize: map.header.blockSize, size: map.header.size)
        if digests {
            v.sourceDigest = map.header.digest
            v.destinationDigest = BlockMap.digest(blockSize: map.header.blockSize, size: map.header.size, hashes: got)
        }
        return v
    }

    /// Records `map` as generation `generation`, complete, if `verification` found nothing;
    /// otherwise syncs what was written and saves `map` with the mismatching blocks unknown
    /// (the next run rewrites them, starting at the first). Returns the target's notes, nil
    /// when verification failed.
    func conclude(_ map: BlockMap, generation: Int, verification: BlockSyncReport.Verification) async throws -> [String]? {
        var map = map
        map.header.generation = generation
        guard verification.ok else {
            let bad = verification.mismatchedBlocks
            map.header.complete = false
            map.header.dirty = bad.min()!..<(bad.max()! + 1)
            map.header.committedBlocks = bad.min()!
            try await flush()
            try await saveProgress(map)
            return nil
        }
        map.header.complete = true
        map.header.dirty = nil
        map.header.committedBlocks = 0
        if map.header.completedAt == nil { map.header.completedAt = ISO8601DateFormatter().string(from: Date()) }
        return try await finish(map)
    }
}

extension BlockSyncReport {
    /// Seconds since `start`.
    static func seconds(since start: ContinuousClock.Instant) -> Double {
        let d = ContinuousClock.now - start
        return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    /// Sets the duration and the throughput (image bytes per second) of a run that began at `start`.
    mutating func finish(started start: ContinuousClock.Instant) {
        durationSeconds = BlockSyncReport.seconds(since: start)
        throughputMBps = durationSeconds > 0 ? Double(size) / 1e6 / durationSeconds : 0
    }
}
