import FerryCore
import Foundation

/// Writes an image kept on object storage back to a file or device: the newest
/// generation or a kept older one. Only blocks that differ from what the target's map says
/// it holds are fetched (a fresh file needs every non-zero block; zero blocks stay holes);
/// every chunk is checked against its SHA-256 name before it is written, and the target is
/// verified against the manifest's digest.
public struct BlockRestore: Sendable {
    public let store: ObjectImageStore
    public let generation: Int?
    public let target: ImageTarget
    public var parallelism = 16
    public var windowBytes = 64 << 20
    public var verify = true

    public init(store: ObjectImageStore, generation: Int?, target: ImageTarget) {
        self.store = store
        self.generation = generation
        self.target = target
    }

    public func run(progress: @Sendable (BlockSyncReport) -> Void = { _ in }) async throws -> BlockSyncReport {
        let started = ContinuousClock.now
        guard let manifest = try await store.manifest(generation: generation) else {
            throw BlockError(.badBlockMap, "\(store.uri) holds no image (no manifests/ under it)")
        }
        guard manifest.hashIsCurrent else {
            throw BlockError(.badBlockMap, "\(store.uri) generation \(manifest.header.generation) was written with another block hash (\(manifest.header.hash ?? "sha256")), which this version cannot check")
        }
        let blockSize = manifest.header.blockSize, size = manifest.header.size
        var state = try await target.prepare(size: size, blockSize: blockSize)
        var report = BlockSyncReport(source: store.uri, sourceRead: store.uri, destination: target.description, snapshot: nil,
                                     blockSize: blockSize, size: size, previousSize: state.map?.header.size,
                                     generation: manifest.header.generation, verification: .init(mode: verify ? "full" : "none"))
        report.blocksTotal = manifest.hashes.count
        report.notes = state.notes
        let windowBlocks = max(1, windowBytes / blockSize)
        var commits = ProgressCommits(blockCount: manifest.hashes.count, blockSize: blockSize, windowBytes: windowBytes)
        var unknownEnd = state.known.count
        var first = 0
        while first < manifest.hashes.count {
            let window = first..<min(first + windowBlocks, manifest.hashes.count)
            first = window.upperBound
            report.blocksScanned += window.count
            report.blocksZero += window.filter { manifest.hashes[$0] == .zero }.count
            let wanted = window.filter { !(state.known[$0] && state.hashes[$0] == manifest.hashes[$0]) }
            guard !wanted.isEmpty else { continue }
            let fetched = try await fetch(wanted.filter { manifest.hashes[$0] != .zero }.map { manifest.hashes[$0] })
            let writes = wanted.map { i -> BlockWrite in
                let r = BlockReading.range(i, blockSize: blockSize, size: size)
                let h = manifest.hashes[i]
                return BlockWrite(index: i, offset: r.lowerBound, length: Int(r.count), hash: h, data: h == .zero ? nil : fetched[h]!)
            }
            unknownEnd = state.unknownEnd(below: unknownEnd)
            if let step = commits.before(first: wanted.first!, last: wanted.last!, unknownEnd: unknownEnd) {
                if step.flushFirst { try await target.flush() }
                var progressMap = BlockMap(blockSize: blockSize, size: size, hashes: state.hashes)
                progressMap.header.generation = state.map?.header.generation ?? 0
                progressMap.header.dirty = step.dirty
                progressMap.header.committedBlocks = step.dirty.lowerBound
                try await target.saveProgress(progressMap)
            }
            report.bytesRead += fetched.values.reduce(0) { $0 + Int64($1.count) }
            report.bytesWritten += try await target.write(writes)
            report.blocksChanged += writes.count
            report.blocksSent += writes.filter { $0.data != nil }.count
            for i in wanted { state.hashes[i] = manifest.hashes[i]; state.known[i] = true }
            progress(report)
        }
        var map = manifest
        map.header.sourcePath = store.uri
        map.header.snapshot = nil
        if verify {
            report.verification = try await target.verification(of: map, at: Array(0..<map.hashes.count), mode: "full", digests: true)
        }
        if let notes = try await target.conclude(map, generation: manifest.header.generation, verification: report.verification) {
            report.notes += notes
        } else {
            report.result = "VERIFICATION_FAILED"
        }
        report.finish(started: started)
        return report
    }

    /// The chunks' bytes, up to `parallelism` requests at once, each checked against its name.
    private func fetch(_ hashes: [BlockHash]) async throws -> [BlockHash: [UInt8]] {
        let store = self.store
        let fetched = try await boundedConcurrentMap(Array(Set(hashes)), limit: parallelism) { h in (h, try await store.chunk(h)) }
        return Dictionary(uniqueKeysWithValues: fetched)
    }
}
