import Synchronization

/// One flat ListObjectsV2 of the whole prefix (no delimiter, 1,000 keys a page), split into
/// what per-directory listings with `/` as delimiter would have answered: rclone's
/// `--fast-list`. Fewer requests for trees of many small directories (20,000 objects in
/// 200 directories: 20 pages instead of 200 listings), at the cost of holding every key of
/// the tree in memory until its directory is listed.
final class FlatListing: Sendable {
    struct Directory: Sendable {
        var objects: [S3Object] = []
        var prefixes: [String] = []
    }

    private struct State {
        var directories: [String: Directory]?
        var handedOut = Set<String>()
    }
    private let state = Mutex(State())

    /// The listing of `directoryPrefix` (ending in `/`, or the root prefix), loading the
    /// whole tree under `rootPrefix` at the first call. Each directory is handed out once
    /// per load: asking again (a verification pass after the transfer) loads afresh.
    func listing(of directoryPrefix: String, rootPrefix: String, load: () async throws -> [S3Object]) async throws -> Directory {
        let needsLoad = state.withLock { s -> Bool in
            if s.handedOut.contains(directoryPrefix) { s = State() }
            return s.directories == nil
        }
        if needsLoad {
            let grouped = FlatListing.group(try await load(), rootPrefix: rootPrefix)
            state.withLock { if $0.directories == nil { $0.directories = grouped } }
        }
        return state.withLock { s in
            s.handedOut.insert(directoryPrefix)
            return s.directories?.removeValue(forKey: directoryPrefix) ?? Directory()
        }
    }

    /// The marker object of the directory `directoryPrefix` (a key equal to it), if the
    /// loaded tree holds one and its listing was not handed out yet: what a listing of its
    /// parent can describe it by (ETag, Last-Modified) without a HEAD.
    func marker(of directoryPrefix: String) -> S3Object? {
        state.withLock { s in
            s.directories?[directoryPrefix]?.objects.first.flatMap { $0.key == directoryPrefix ? $0 : nil }
        }
    }

    /// Walks each key down from the root as delimited listings would see it: every `/`
    /// opens a common prefix in the directory above; the object belongs to the last one.
    static func group(_ objects: [S3Object], rootPrefix: String) -> [String: Directory] {
        var out: [String: Directory] = [:]
        var seen = Set<String>()
        for o in objects where o.key.hasPrefix(rootPrefix) {
            var directory = rootPrefix
            var rest = o.key.dropFirst(rootPrefix.count)
            while let slash = rest.firstIndex(of: "/") {
                let child = directory + rest[...slash]
                if seen.insert(child).inserted { out[directory, default: Directory()].prefixes.append(child) }
                directory = child
                rest = rest[rest.index(after: slash)...]
            }
            out[directory, default: Directory()].objects.append(o)
        }
        return out
    }
}
