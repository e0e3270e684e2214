import FerryCore
import Foundation
import Synchronization

/// An object-storage prefix as the destination (``ObjectImageStore``): changed blocks
/// become chunk objects (a chunk already stored, by this image or an older generation, is
/// not sent again), and a complete sync writes the generation's manifest, then prunes to
/// the newest `keep` generations. Progress of an unfinished run is kept in Ferry's state
/// directory, so a resumed run neither re-reads the committed part of the source nor
/// re-sends its chunks.
public final class ObjectImageTarget: BlockTarget {
    public let store: ObjectImageStore
    let keep: Int
    let parallelUploads: Int
    let statePath: String
    /// Chunks known to be stored.
    private let stored = Mutex(Set<BlockHash>())

    public init(store: ObjectImageStore, stateDirectory: String, keep: Int, parallelUploads: Int = 16) throws(BlockError) {
        self.store = store
        self.keep = keep
        self.parallelUploads = parallelUploads
        statePath = try BlockState.mapPath(stateDirectory: stateDirectory, destination: "object:" + store.uri)
    }

    public var description: String { store.uri }

    public func prepare(size: Int64, blockSize: Int) async throws -> TargetState {
        let count = BlockMap.blockCount(size: size, blockSize: blockSize)
        let latest = try await store.manifest()
        var map = latest
        var notes: [String] = []
        // An interrupted run after the latest generation (its chunks are stored).
        if let local = try BlockMap.load(statePath), !local.header.complete,
           local.header.generation == (latest?.header.generation ?? 0) {
            map = local
        }
        if let reason = map?.unusableReason(blockSize: blockSize, what: store.uri, consequence: "every block is sent") {
            notes.append(reason)
            map = nil
        }
        stored.withLock { set in
            for m in [latest, map].compactMap({ $0 }) { set.formUnion(m.hashes) }
            set.remove(.zero)
        }
        // What no manifest names is not stored, so it reads as zeros.
        guard let map else { return .uniform(count: count, known: true, map: latest, notes: notes) }
        return TargetState(map: map, size: size, blockSize: blockSize, extensionKnown: true, notes: notes)
    }

    public func write(_ blocks: [BlockWrite]) async throws -> Int64 {
        // One upload per distinct chunk not yet stored.
        var pending: [BlockHash: [UInt8]] = [:]
        for b in blocks {
            guard let data = b.data, !stored.withLock({ $0.contains(b.hash) }) else { continue }
            pending[b.hash] = data
        }
        let store = self.store
        let sent = try await boundedConcurrentMap(Array(pending), limit: parallelUploads) { hash, data in
            try await store.putChunk(hash, data)
            return hash
        }
        stored.withLock { $0.formUnion(sent) }
        return pending.values.reduce(0) { $0 + Int64($1.count) }
    }

    public func flush() async throws {}

    public func saveProgress(_ map: BlockMap) async throws { try map.save(to: statePath) }

    public func finish(_ map: BlockMap) async throws -> [String] {
        try await store.putManifest(map)
        try map.save(to: statePath)
        let (manifests, chunks) = try await store.prune(keep: keep)
        return manifests + chunks > 0 ? ["pruned \(manifests) generation(s) and \(chunks) chunk(s) no kept generation uses (--keep \(keep))"] : []
    }

    /// A chunk that is stored with the block's length holds the block (its name is the
    /// SHA-256 of its bytes, and every upload was checked with Content-MD5); a missing or
    /// short chunk is a mismatch.
    public func hashes(at indices: [Int], expected: BlockMap) async throws -> [BlockHash] {
        let chunks = try await store.chunks()
        let blockSize = expected.header.blockSize, size = expected.header.size
        return indices.map { i in
            let h = expected.hashes[i]
            if h == .zero { return .zero }
            let length = BlockReading.range(i, blockSize: blockSize, size: size).count
            return chunks[h] == Int64(length) ? h : BlockHash(a: ~0, b: ~0, c: ~0, d: ~0)
        }
    }
}
