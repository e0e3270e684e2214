import Synchronization

/// Whether a server keeps `x-amz-meta-*` user metadata. Some S3-compatible servers (the
/// JuiceFS gateway) accept it and drop it silently. The first object written in a run is
/// read back once to find out, so every later report can say what was not stored; the
/// answer is kept in the metadata cache for later runs, which then plan no metadata-only
/// updates that the server would drop (``Capabilities/keepsMetadata``). A remembered answer
/// is corrected by the next run that writes there.
final class MetadataSupport: Sendable {
    /// Learned in this run, from an object written.
    private let confirmed = Mutex<Bool?>(nil)
    /// Learned in an earlier run (read from the cache once).
    private let remembered = Mutex<Bool??>(nil)
    /// The HEAD in flight: writers that finish while it runs wait for its answer instead of
    /// asking too (16 uploads in flight asked 36 times in a run of 2,000 files).
    private let inFlight = Mutex<Task<Bool, any Error>?>(nil)

    /// True if the server kept the user metadata of `key`, or of the object another writer
    /// asked about first (checked with one HEAD, once a run; a failed check is asked again).
    func keepsUserMetadata(location: S3Location, key: String) async throws -> Bool {
        if let k = confirmed.withLock({ $0 }) { return k }
        let check = inFlight.withLock { running in
            if let running { return running }
            let started = Task { try await self.ask(location: location, key: key) }
            running = started
            return started
        }
        do {
            return try await check.value
        } catch {
            inFlight.withLock { if $0 == check { $0 = nil } }
            throw error
        }
    }

    /// Reads `key` back once and records what the server kept.
    private func ask(location: S3Location, key: String) async throws -> Bool {
        let head = try await location.client.headObject(bucket: location.bucket, key: key)
        let kept = head?.metadata[S3Metadata.userAgent] != nil
        let changed = confirmed.withLock { c -> Bool in
            defer { c = kept }
            return c == nil
        }
        if changed, rememberedAnswer(location) != kept {
            location.metadataCache?.rememberKeepsUserMetadata(scope: location.cacheScope, kept)
            remembered.withLock { $0 = .some(kept) }
        }
        return kept
    }

    /// Whether this run saw the server keep user metadata.
    var knownToKeep: Bool { confirmed.withLock { $0 } == true }

    /// Whether the server is known to drop user metadata: learned in this run, else in an
    /// earlier one. Unknown counts as keeping it.
    func knownToDrop(_ location: S3Location) -> Bool {
        if let k = confirmed.withLock({ $0 }) { return !k }
        return rememberedAnswer(location) == false
    }

    private func rememberedAnswer(_ location: S3Location) -> Bool? {
        if let r = remembered.withLock({ $0 }) { return r }
        let r = location.metadataCache?.keepsUserMetadata(scope: location.cacheScope)
        remembered.withLock { $0 = .some(r) }
        return r
    }
}
