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

    /// True if the server kept the user metadata of `key` (checked with one HEAD, once a run).
    func keepsUserMetadata(location: S3Location, key: String) async throws -> Bool {
        if let k = confirmed.withLock({ $0 }) { return k }
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
