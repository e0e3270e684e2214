import Synchronization

/// Whether a server keeps `x-amz-meta-*` user metadata. Some S3-compatible servers (the
/// JuiceFS gateway) accept it and drop it silently; the first object written is read
/// back once to find out, so every later report can say what was not stored.
final class MetadataSupport: Sendable {
    private let known = Mutex<Bool?>(nil)

    /// True if the server kept the user metadata of `key` (checked with one HEAD, once).
    func keepsUserMetadata(location: S3Location, key: String) async throws -> Bool {
        if let k = known.withLock({ $0 }) { return k }
        let head = try await location.client.headObject(bucket: location.bucket, key: key)
        let kept = head?.metadata[S3Metadata.userAgent] != nil
        known.withLock { $0 = kept }
        return kept
    }
}
