import Synchronization

/// Whether a server keeps `x-amz-meta-*` user metadata. Some S3-compatible servers (the
/// JuiceFS gateway) accept it and drop it silently. The first object written in a run is
/// read back once to find out, so every later report can say what was not stored; the
/// answer is kept in the metadata cache for later runs, which then plan no metadata-only
/// updates that the server would drop (``Capabilities/keepsMetadata``). A remembered answer
/// is corrected by the next run that writes there.
final class MetadataSupport: Sendable {
    /// Learned in this run, from an object written (16 uploads in flight asked 36 times in
    /// a run of 2,000 files before one HEAD answered them all).
    private let objects = LearnedOnce<Bool>()
    /// Learned in an earlier run (read from the cache once).
    private let remembered = Mutex<Bool??>(nil)
    /// How directory markers keep user metadata, learned from the first marker written.
    let markers = LearnedOnce<MarkerWriting>()

    /// True if the server kept the user metadata of `key`, or of the object another writer
    /// asked about first (checked with one HEAD, once a run; a failed check is asked again).
    func keepsUserMetadata(location: S3Location, key: String) async throws -> Bool {
        try await objects.value { try await self.ask(location: location, key: key) }.value
    }

    /// Reads `key` back once and records what the server kept.
    private func ask(location: S3Location, key: String) async throws -> Bool {
        let kept = try await location.keptUserMetadata(key)
        if rememberedAnswer(location) != kept {
            location.metadataCache?.rememberKeepsUserMetadata(scope: location.cacheScope, kept)
            remembered.withLock { $0 = .some(kept) }
        }
        return kept
    }

    /// Whether this run saw the server keep user metadata.
    var knownToKeep: Bool { objects.known == true }

    /// Whether the server is known to drop user metadata: learned in this run, else in an
    /// earlier one. Unknown counts as keeping it.
    func knownToDrop(_ location: S3Location) -> Bool {
        if let k = objects.known { return !k }
        return rememberedAnswer(location) == false
    }

    private func rememberedAnswer(_ location: S3Location) -> Bool? {
        if let r = remembered.withLock({ $0 }) { return r }
        let r = location.metadataCache?.keepsUserMetadata(scope: location.cacheScope)
        remembered.withLock { $0 = .some(r) }
        return r
    }
}

/// How a server keeps the user metadata of a directory marker (`dir/`).
enum MarkerWriting: Sendable, Equatable {
    /// The PUT keeps it (S3, moto).
    case put
    /// The PUT drops it and a copy of the marker onto itself keeps it: the JuiceFS gateway
    /// with `--object-meta` makes a directory of a `dir/` PUT, and keeps user metadata only
    /// on CopyObject there.
    case copyOntoItself
    /// Nothing keeps it.
    case dropped
}
