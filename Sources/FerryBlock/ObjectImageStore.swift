import FerryCore
import FerryS3
import Foundation

/// An image kept on object storage: one object per distinct non-zero block, named by its
/// SHA-256 (`PREFIX/chunks/HASH`), and one manifest per generation
/// (`PREFIX/manifests/GGGGGGGGGG.blockmap`, a ``BlockMap``). Zero blocks are not stored.
/// Chunks are shared between generations, so keeping older generations costs only the
/// blocks that differ; pruning removes old manifests and the chunks no kept manifest uses.
public struct ObjectImageStore: Sendable {
    public let client: S3Client
    public let bucket: String
    /// The prefix without a trailing slash ("" for the bucket's root).
    public let prefix: String

    public init(client: S3Client, bucket: String, prefix: String) {
        self.client = client
        self.bucket = bucket
        var p = prefix
        while p.hasSuffix("/") { p.removeLast() }
        self.prefix = p
    }

    private func key(_ rest: String) -> String { prefix.isEmpty ? rest : "\(prefix)/\(rest)" }
    func chunkKey(_ hash: BlockHash) -> String { key("chunks/\(hash)") }
    func manifestKey(_ generation: Int) -> String { key(String(format: "manifests/%010d.blockmap", generation)) }
    public var uri: String { "s3://\(bucket)/\(prefix)" }

    /// The generations whose manifests are stored, oldest first.
    public func generations() async throws -> [Int] {
        let listed = try await client.listAll(bucket: bucket, prefix: key("manifests/"), delimiter: nil)
        return listed.objects.compactMap { object -> Int? in
            let name = object.key.split(separator: "/").last.map(String.init) ?? ""
            guard name.hasSuffix(".blockmap") else { return nil }
            return Int(name.dropLast(".blockmap".count))
        }.sorted()
    }

    /// The manifest of `generation`, or of the newest one; nil if there is none.
    public func manifest(generation: Int? = nil) async throws -> BlockMap? {
        let wanted: Int
        if let generation { wanted = generation } else {
            guard let newest = try await generations().last else { return nil }
            wanted = newest
        }
        guard let bytes = try await client.getObjectBytes(bucket: bucket, key: manifestKey(wanted)) else {
            if generation != nil {
                throw BlockError(.badBlockMap, "\(uri) has no generation \(generation!) (kept: \(try await generations().map(String.init).joined(separator: ", ")))")
            }
            return nil
        }
        return try BlockMap.decode(bytes, what: "s3://\(bucket)/\(manifestKey(wanted))")
    }

    public func putChunk(_ hash: BlockHash, _ bytes: [UInt8]) async throws {
        try await client.putObject(bucket: bucket, key: chunkKey(hash), bytes: bytes)
    }

    /// The chunk's bytes, checked against its name; an error names the key if they differ.
    public func chunk(_ hash: BlockHash) async throws -> [UInt8] {
        guard let bytes = try await client.getObjectBytes(bucket: bucket, key: chunkKey(hash)) else {
            throw BlockError(.objectStore, "s3://\(bucket)/\(chunkKey(hash)) is missing: the image cannot be restored completely")
        }
        let got = bytes.withUnsafeBytes { BlockHash.of($0) }
        guard got == hash else {
            throw BlockError(.checksumMismatch, "s3://\(bucket)/\(chunkKey(hash)) holds bytes whose SHA-256 is \(got): the chunk is damaged")
        }
        return bytes
    }

    /// Every stored chunk with its size.
    public func chunks() async throws -> [BlockHash: Int64] {
        let listed = try await client.listAll(bucket: bucket, prefix: key("chunks/"), delimiter: nil)
        var out: [BlockHash: Int64] = [:]
        for object in listed.objects {
            if let name = object.key.split(separator: "/").last, let hash = BlockHash(hex: name) { out[hash] = object.size }
        }
        return out
    }

    public func putManifest(_ map: BlockMap) async throws {
        try await client.putObject(bucket: bucket, key: manifestKey(map.header.generation), bytes: try map.encoded())
    }

    /// Keeps the newest `keep` generations: older manifests are deleted, then every chunk
    /// no kept manifest names. Returns (manifests, chunks) removed.
    public func prune(keep: Int) async throws -> (manifests: Int, chunks: Int) {
        let all = try await generations()
        let kept = Array(all.suffix(max(1, keep)))
        let dropped = all.dropLast(kept.count)
        var used = Set<BlockHash>()
        for g in kept {
            guard let m = try await manifest(generation: g) else { continue }
            used.formUnion(m.hashes)
        }
        let unused = try await chunks().keys.filter { !used.contains($0) }
        var keys = dropped.map(manifestKey) + unused.map(chunkKey)
        var removed = 0
        while !keys.isEmpty {
            let batch = Array(keys.prefix(1000))
            keys.removeFirst(batch.count)
            let failed = try await client.deleteObjects(bucket: bucket, keys: batch)
            if let first = failed.first { throw BlockError(.objectStore, "cannot delete s3://\(bucket)/\(first.key): \(first.message)") }
            removed += batch.count
        }
        return (dropped.count, unused.count)
    }
}
