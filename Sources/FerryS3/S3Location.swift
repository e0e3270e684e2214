import FerryCore
import Foundation
import NIOCore

/// A bucket and key prefix on an S3-compatible service as a Ferry location. Directories
/// are empty `dir/` marker objects carrying the directory's metadata; files, symlinks
/// (body = target) and device nodes are objects with `x-amz-meta-file-*` metadata.
public struct S3Location: Location, SymlinkWriting, HardLinkWriting, SpecialFileWriting, ExtendedAttributeStoring,
    RunListing, PrefetchingListing, ServerSideCopying, ContentTagComparing, TemporaryKeeping, ScopeTelling, MetadataLimiting {
    public let client: S3Client
    public let bucket: String
    /// The key prefix of the root: empty or ending in `/`.
    public let prefix: String
    /// Objects up to this size go in one PutObject; larger ones in multipart uploads.
    public var multipartThreshold: Int64 = 16 << 20
    /// Objects up to this size are read in one GET streamed as it arrives (rclone's
    /// `--multi-thread-cutoff` has the same default); larger ones in 8 MiB ranged GETs,
    /// several in parallel.
    public var streamingLimit: Int64 = 256 << 20
    /// ``listForCopying(_:reading:)`` GETs objects up to this size instead of HEADing them and
    /// keeps their bodies for the copy (0: never).
    public var prefetchLimit: Int64 = 1 << 20
    /// Bodies fetched that way, until the copy takes them.
    let prefetched = PrefetchedBodies(budget: 64 << 20)
    /// HEAD requests in flight while listing one directory.
    public var listingConcurrency = 32
    /// Keys per ListObjectsV2 page (S3's maximum is 1,000).
    public var listPageSize = 1000
    /// Server-side copies above this size are multipart copies (S3 allows 5 GiB in one CopyObject).
    public var singleCopyLimit: Int64 = 5 << 30
    /// Whether the server keeps user metadata, learned from the first object written.
    let metadataSupport = MetadataSupport()
    /// Directory markers' xattrs from the listing's HEADs, until the directory asks.
    let markers = MarkerAttributes()
    /// What was last seen or written of each object (nil: HEAD every listed object).
    public let metadataCache: S3MetadataCache?
    /// List the whole prefix flat once instead of each directory with a delimiter (rclone's
    /// `--fast-list`): fewer requests, every key of the tree held in memory.
    public var flatListing = false
    let flat = FlatListing()
    /// This bucket's name space in the cache.
    var cacheScope: String { "\(client.endpoint.url.absoluteString)|\(bucket)" }

    public init(client: S3Client, bucket: String, prefix: String, metadataCache: S3MetadataCache? = nil) {
        self.client = client
        self.bucket = bucket
        self.metadataCache = metadataCache
        var p = prefix
        while p.hasPrefix("/") { p.removeFirst() }
        if !p.isEmpty && !p.hasSuffix("/") { p += "/" }
        self.prefix = p
    }

    public var uri: String { "s3://\(bucket)/\(prefix)" }

    /// The prefix within this endpoint's bucket.
    public var scope: LocationScope? {
        LocationScope.bucket(endpoint: client.endpoint.url.absoluteString, bucket: bucket, prefix: prefix)
    }

    /// Everything is kept as user metadata, but objects have no holes or extents; nothing
    /// is kept on a server known to drop user metadata.
    public var capabilities: Capabilities {
        var c = Capabilities.everything
        c.sparseFiles = false
        c.reportsExtents = false
        c.fetchesContentsWhileListing = prefetchLimit > 0
        c.keepsMetadata = !metadataSupport.knownToDrop(self)
        return c
    }

    /// The object key of a path, or an error if it cannot be one (not UTF-8, over 1,024 bytes).
    func key(_ path: EntryPath, directory: Bool = false) throws -> String {
        guard let text = String(validating: path.bytes, as: UTF8.self) else {
            throw S3Error(.invalidKey, operation: "name object", bucket: bucket, message: "\(path) is not UTF-8 and cannot be an S3 key",
                          path: path, retryClass: .itemUnreadable)
        }
        var k = prefix + text
        if directory && !path.isRoot { k += "/" }
        if k.utf8.count > 1024 {
            throw S3Error(.invalidKey, operation: "name object", bucket: bucket, message: "\(path) makes a key over 1,024 bytes",
                          path: path, retryClass: .itemUnreadable)
        }
        return k
    }

    static let uploadMarker: [UInt8] = [0]

    public func list(_ directory: EntryPath) async throws -> Listing? {
        try await list(directory) { _ in false }
    }

    /// Objects up to ``prefetchLimit`` bytes that the copy will read come with a GET
    /// instead of a HEAD, their bodies kept in ``prefetched`` for the copy: one request per
    /// small file copied.
    public func listForCopying(_ directory: EntryPath, reading: @Sendable ([UInt8]) -> Bool) async throws -> Listing? {
        try await list(directory, reading: reading)
    }

    /// Lists `directory`; the objects `reading` names, up to ``prefetchLimit`` bytes, are fetched whole.
    func list(_ directory: EntryPath, reading: @Sendable ([UInt8]) -> Bool) async throws -> Listing? {
        let dirPrefix = directory.isRoot ? prefix : try key(directory) + "/"
        let objects: [S3Object], prefixes: [String]
        if flatListing {
            let d = try await flat.listing(of: dirPrefix, rootPrefix: prefix) {
                try await client.listAll(bucket: bucket, prefix: prefix, delimiter: nil, pageSize: listPageSize).objects
            }
            (objects, prefixes) = (d.objects, d.prefixes)
        } else {
            (objects, prefixes) = try await client.listAll(bucket: bucket, prefix: dirPrefix, delimiter: "/", pageSize: listPageSize)
        }
        if !directory.isRoot && objects.isEmpty && prefixes.isEmpty { return nil }
        let (listed, unusable) = try await entries(in: dirPrefix, objects: objects, prefixes: prefixes, reading: reading)
        return Listing(entries: listed, staleTemporaries: try await temporaries(directory), unusable: unusable)
    }

    /// ``list(_:)`` a ListObjectsV2 page group at a time: each run is the pages' objects
    /// and prefixes (at least `runSize` of them, or the rest), HEADed and sorted, so a
    /// prefix of millions of keys is never held whole.
    public func listInRuns(_ directory: EntryPath, runSize: Int, _ deliver: ([Entry]) throws -> Void) async throws -> Listing? {
        if flatListing {  // the flat listing holds the whole tree anyway
            return try await list(directory)?.deliveredAsOneRun(deliver)
        }
        let dirPrefix = directory.isRoot ? prefix : try key(directory) + "/"
        var objects: [S3Object] = [], prefixes: [String] = []
        var unusable: [(name: String, reason: String)] = []
        var token: String?, first = true, delivered = false
        repeat {
            let page = try await client.listObjects(bucket: bucket, prefix: dirPrefix, delimiter: "/", continuationToken: token, maxKeys: listPageSize)
            if first && !directory.isRoot && page.objects.isEmpty && page.commonPrefixes.isEmpty { return nil }
            first = false
            objects += page.objects
            prefixes += page.commonPrefixes
            token = page.nextContinuationToken
            if objects.count + prefixes.count >= runSize || token == nil {
                let (sorted, left) = try await entries(in: dirPrefix, objects: objects, prefixes: prefixes, reading: { _ in false })
                // A page holds up to 1,000 keys: runs are cut to the size asked.
                for start in stride(from: 0, to: sorted.count, by: max(1, runSize)) {
                    try deliver(Array(sorted[start..<min(start + max(1, runSize), sorted.count)]))
                }
                if sorted.isEmpty && !delivered { try deliver([]) }
                delivered = true
                unusable += left
                objects = []
                prefixes = []
            }
        } while token != nil
        return Listing(entries: [], staleTemporaries: try await temporaries(directory), unusable: unusable)
    }

    /// The multipart uploads left under the root (named at the root's listing only).
    private func temporaries(_ directory: EntryPath) async throws -> [[UInt8]] {
        var temporaries: [[UInt8]] = []
        if directory.isRoot {
            for u in try await client.listMultipartUploads(bucket: bucket, prefix: prefix) {
                temporaries.append(S3Location.uploadMarker + Array("\(u.uploadID)\n\(u.key)".utf8))
            }
        }
        return temporaries
    }

    /// The entries of listed `objects` and `prefixes` under `dirPrefix`, sorted, and the
    /// keys that cannot name a safe path.
    private func entries(
        in dirPrefix: String, objects: [S3Object], prefixes: [String], reading: @Sendable ([UInt8]) -> Bool
    ) async throws -> ([Entry], [(name: String, reason: String)]) {
        var unusable: [(name: String, reason: String)] = []
        // `marker`: a subdirectory's marker object, which only a flat listing shows here.
        var candidates: [(name: String, key: String, listed: S3Object?, marker: S3Object?)] = []
        for o in objects where o.key != dirPrefix {
            candidates.append((String(o.key.dropFirst(dirPrefix.count)), o.key, o, nil))
        }
        for p in prefixes {
            candidates.append((String(p.dropFirst(dirPrefix.count).dropLast()), p, nil, flatListing ? flat.marker(of: p) : nil))
        }
        var usable: [(name: [UInt8], key: String, listed: S3Object?, marker: S3Object?)] = []
        for c in candidates {
            let bytes = Array(c.name.utf8)
            if EntryPath.isSafeName(bytes) {
                usable.append((bytes, c.key, c.listed, c.marker))
            } else {
                unusable.append((c.key, "the key \"\(c.key)\" cannot name a safe path (empty, \".\" or \"..\" component, NUL, or over 255 bytes)"))
            }
        }
        // Objects the cache still describes need no HEAD. Directories get one unless the
        // listing showed their marker (flat listings do; a delimited listing shows only the
        // prefix) and the cache still describes it.
        let remembered = metadataCache?.lookup(scope: cacheScope, usable.compactMap { $0.listed ?? $0.marker }) ?? [:]
        let entries = try await withThrowingTaskGroup(of: Entry?.self) { group in
            var out: [Entry] = []
            var running = 0
            for u in usable {
                if u.marker != nil, let hit = remembered[u.key] {
                    markers.note(u.key, S3Metadata.decodeAttributes(hit.object.metadata))
                    out.append(S3Location.describe(u.name, hit.object, isDirectory: true, target: nil))
                    continue
                }
                // A small file the copy will read comes with a GET even when remembered: the
                // same one request, made here, many at once.
                let fetchBody = u.listed.map { prefetchLimit > 0 && $0.size <= prefetchLimit && reading(u.name) } ?? false
                if u.listed != nil, let hit = remembered[u.key] {
                    let entry = S3Location.describe(u.name, hit.object, isDirectory: false, target: hit.target, writtenFrom: hit.sentMtime)
                    if !(fetchBody && entry.kind == .file) && (entry.kind != .symlink || hit.target != nil) {
                        out.append(entry)
                        continue
                    }
                }
                if running >= listingConcurrency, let e = try await group.next() { if let e { out.append(e) }; running -= 1 }
                group.addTask { try await self.entry(name: u.name, key: u.key, isDirectory: u.listed == nil, fetchingBody: fetchBody) }
                running += 1
            }
            for try await e in group { if let e { out.append(e) } }
            return out
        }.sorted { $0.name.lexicographicallyPrecedes($1.name) }
        return (entries, unusable)
    }
    /// The entry for one listed name: a HEAD for the metadata (of the marker, for a
    /// directory), and a GET of the body for a symlink's target. With `fetchingBody`, a
    /// GET in place of the HEAD; a file's body is kept for its copy. A directory without a
    /// marker is described with defaults, or is nil when `orUnmarked` is false.
    func entry(name: [UInt8], key: String, isDirectory: Bool, fetchingBody: Bool = false, orUnmarked: Bool = true) async throws -> Entry? {
        var object: S3Object?
        var body: ByteBuffer?
        if fetchingBody {
            do {
                (object, body) = try await client.getObject(bucket: bucket, key: key)
            } catch let error as S3Error where error.status == 404 {
                object = nil
            }
        } else {
            object = try await client.headObject(bucket: bucket, key: key)
        }
        // A directory marker HEADed is remembered like an object (a flat listing that shows
        // it unchanged then needs no HEAD); a directory without one is not.
        let found = object != nil
        if object == nil {
            if !isDirectory || !orUnmarked { return nil }  // deleted since listed
            object = S3Object(key: key, size: 0, lastModified: nil, etag: nil, metadata: [:])
        }
        if isDirectory { markers.note(key, S3Metadata.decodeAttributes(object!.metadata)) }
        var entry = S3Location.describe(name, object!, isDirectory: isDirectory, target: nil)
        if entry.kind == .symlink {
            if body == nil { body = try await client.getObject(bucket: bucket, key: key).1 }
            entry.symlinkTarget = Array(body!.readableBytesView)
        } else if entry.kind == .file, let body {
            prefetched.put(key, object: object!, body: body)
        }
        if found { metadataCache?.remember(scope: cacheScope, head: object!, target: entry.symlinkTarget) }
        return entry
    }

    /// The entry an object stands for: kind and metadata from its user metadata (defaults
    /// without), and for a file its ETag and whether its mtime is only its Last-Modified.
    /// `writtenFrom`: the mtime Ferry sent with the bytes, kept by the cache where the server dropped it.
    static func describe(_ name: [UInt8], _ object: S3Object, isDirectory: Bool, target: [UInt8]?, writtenFrom: Timestamp? = nil) -> Entry {
        let (kind, metadata) = S3Metadata.decode(object, isDirectory: isDirectory)
        let file = kind == .file
        // A file without `file-mtime` has its Last-Modified for one; a directory without a
        // marker object has none at all (the engine derives one from its contents).
        let standIn = file ? S3Metadata.parseTime(object.metadata[S3Metadata.mtime]) == nil
            : isDirectory && object.lastModified == nil && object.metadata.isEmpty
        return Entry(name: name, kind: kind, metadata: metadata, symlinkTarget: target, contentTag: file ? S3ETag(object.etag)?.tag : nil,
                     mtimeIsStandIn: standIn, writtenFromMtime: standIn ? writtenFrom : nil)
    }

    /// Compares the bytes `source` reads with the object's ETag (an MD5, or an MD5 of part
    /// MD5s); nil where the ETag is no such digest. A multipart ETag whose part count
    /// Ferry's (and the aws CLI's) 8 MiB parts give is taken to have those parts; others ask
    /// `HeadObject?partNumber=1`.
    public func holdsSameContent(_ path: EntryPath, _ entry: Entry, as source: any EntryReader) async throws -> Bool? {
        let size = entry.metadata.size, usual = S3Writer.partSize(objectSize: size)
        guard let etag = entry.contentTag.map(S3ETag.init) else { return nil }
        let guess = etag.parts.flatMap { $0 > 1 && (size + usual - 1) / usual == Int64($0) ? usual : nil }
        guard var checker = try await etagChecker(key: try key(path), etag: etag, size: size, firstPart: guess) else { return nil }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(max(1, min(size, 1 << 20))), alignment: 64)
        defer { buffer.deallocate() }
        if size == 0 { checker.feed(UnsafeRawBufferPointer(rebasing: buffer[0..<0])) }
        while checker.fed < size {
            let n = try await source.read(into: buffer, at: checker.fed)
            if n <= 0 { return false }  // shorter than listed
            checker.feed(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
        }
        return checker.computed() == checker.expected
    }

    /// On a server that drops user metadata, remembers `source`'s mtime with the object, as
    /// for an object Ferry wrote there from that file: the next run's quick check (same
    /// size, remembered mtime) then finds a file that was only touched unchanged without
    /// reading it again.
    public func noteSameContent(_ path: EntryPath, _ entry: Entry, source: Entry) async {
        guard let metadataCache, metadataSupport.knownToDrop(self), entry.mtimeIsStandIn, let tag = entry.contentTag,
              let key = try? key(path) else { return }
        metadataCache.rememberContent(scope: cacheScope, key: key, etag: S3ETag(tag).description, size: entry.metadata.size,
                                      lastModified: entry.metadata.mtime.seconds, sentMtime: source.metadata.mtime)
    }

    /// A checker of bytes read in order against `etag`, for an object of `size` bytes
    /// (multipart: parts of `firstPart` bytes, else as the server says).
    func etagChecker(key: String, etag: S3ETag, size: Int64, firstPart known: Int64? = nil) async throws -> S3ETagChecker? {
        var firstPart = size
        if let known {
            firstPart = known
        } else if let parts = etag.parts, parts > 1 {
            guard let part = try await client.partSize(bucket: bucket, key: key, partNumber: 1) else { return nil }
            firstPart = part
        }
        guard let sizes = etag.partSizes(firstPart: firstPart, objectSize: size) else {
            client.logger.debug("cannot check the ETag: parts of unequal size", metadata: ["key": "\(key)", "etag": "\(etag.description)"])
            return nil
        }
        return S3ETagChecker(expected: etag, partSizes: sizes)
    }

    public func stat(_ path: EntryPath) async throws -> Entry? {
        if path.isRoot {
            let marker = prefix.isEmpty ? nil : try await client.headObject(bucket: bucket, key: prefix)
            if !prefix.isEmpty { markers.note(prefix, S3Metadata.decodeAttributes(marker?.metadata ?? [:])) }
            let object = marker ?? S3Object(key: prefix, size: 0, lastModified: nil, etag: nil, metadata: [:])
            return S3Location.describe([], object, isDirectory: true, target: nil)
        }
        let k = try key(path)
        if let e = try await entry(name: path.name, key: k, isDirectory: false) { return e }
        // A marker says a directory is there; without one, a key under the prefix does.
        if let e = try await entry(name: path.name, key: k + "/", isDirectory: true, orUnmarked: false) { return e }
        let page = try await client.listObjects(bucket: bucket, prefix: k + "/", delimiter: "/", maxKeys: 1)
        if page.objects.isEmpty && page.commonPrefixes.isEmpty { return nil }
        markers.note(k + "/", [])
        return S3Location.describe(path.name, S3Object(key: k + "/", size: 0, lastModified: nil, etag: nil, metadata: [:]),
                                   isDirectory: true, target: nil)
    }

    public func openForReading(_ path: EntryPath, expected: Entry) async throws -> any EntryReader {
        S3Reader(location: self, key: try key(path), path: path, metadata: expected.metadata)
    }

    public func createFile(
        _ path: EntryPath, metadata: FileMetadata, attributes: [ExtendedAttribute]?, selection: MetadataSelection
    ) async throws -> any EntryWriter {
        let k = try key(path)
        if metadata.size > 5 << 40 {
            throw S3Error(.tooLarge, operation: "upload", bucket: bucket, key: k,
                          message: "\(metadata.size) bytes is more than the 5 TiB an S3 object can hold", path: path, retryClass: .itemFailed)
        }
        let (values, dropped) = S3Metadata.encode(kind: .file, metadata: metadata, selection: selection, attributes: attributes)
        return S3Writer(location: self, key: k, path: path, size: metadata.size, metadata: values,
                        notStored: dropped.map { "xattr \($0) (over the 2 KiB S3 allows for user metadata)" })
    }

    /// S3 has no directories: the marker is written with the directory's metadata later
    /// (and, as none exists yet, without asking what it holds first).
    public func makeDirectory(_ path: EntryPath) async throws {
        if path.isRoot && prefix.isEmpty { return }
        markers.made(try key(path, directory: true))
    }

    public func makeSymlink(_ path: EntryPath, target: [UInt8], metadata: FileMetadata, selection: MetadataSelection) async throws {
        let (values, _) = S3Metadata.encode(kind: .symlink, metadata: metadata, selection: selection, attributes: nil)
        let k = try key(path)
        forget(k)
        try await client.putObject(bucket: bucket, key: k, body: ByteBuffer(bytes: target), metadata: values)
    }

    /// Drops what the cache remembers of `key` before it changes (the next listing HEADs
    /// it), and a directory marker's xattrs noted while listing.
    func forget(_ key: String) {
        metadataCache?.forget(scope: cacheScope, key: key)
        markers.drop(key)
    }

    /// A server-side copy of the first path, keeping its metadata and link group (the data
    /// crosses the network once). A first path without a group gets one named after its key.
    public func makeHardLink(_ path: EntryPath, to existing: EntryPath) async throws {
        let source = try key(existing)
        guard let head = try await client.headObject(bucket: bucket, key: source) else {
            throw S3Error(.http, operation: "CopyObject", bucket: bucket, key: source, status: 404, message: "the first path of the hard-link group is missing", path: existing)
        }
        var metadata = head.metadata
        forget(source)
        forget(try key(path))
        if metadata[S3Metadata.linkGroup] == nil {
            var hash: UInt64 = 0xcbf2_9ce4_8422_2325  // FNV-1a of the key
            for b in source.utf8 { hash = (hash ^ UInt64(b)) &* 0x100_0000_01b3 }
            metadata[S3Metadata.linkGroup] = "0:\(hash)"
            metadata[S3Metadata.linkCount] = "2"
            try await copy(key: source, from: bucket, source, size: head.size, metadata: metadata)
        }
        try await copy(key: try key(path), from: bucket, source, size: head.size, metadata: metadata)
    }

    public func makeSpecial(_ path: EntryPath, kind: EntryKind, metadata: FileMetadata, selection: MetadataSelection) async throws {
        let (values, _) = S3Metadata.encode(kind: kind, metadata: metadata, selection: selection, attributes: nil)
        let k = try key(path)
        forget(k)
        try await client.putObject(bucket: bucket, key: k, body: ByteBuffer(), metadata: values)
    }

    /// Directories: the marker object is (re)written. Others: a copy onto itself with the
    /// metadata replaced (Ferry's own keys that the new metadata does not set are kept).
    public func setMetadata(_ path: EntryPath, kind: EntryKind, metadata: FileMetadata, selection: MetadataSelection) async throws {
        if kind == .directory {
            if path.isRoot && prefix.isEmpty { return }  // a bucket root has no marker
            let k = try key(path, directory: true)
            forget(k)
            let existing = markers.takeAbsent(k) ? nil : try await client.headObject(bucket: bucket, key: k)
            var (values, _) = S3Metadata.encode(kind: .directory, metadata: metadata, selection: selection, attributes: nil)
            if let x = existing?.metadata[S3Metadata.xattrs] { values[S3Metadata.xattrs] = x }
            let started = ContinuousClock.now
            let (stored, writing) = try await writeMarker(k, values, exists: existing != nil)
            // The finalize asks next what the marker holds: what was just written, unless
            // the server drops it. The cache remembers a marker PUT where the server is known
            // to keep it (a flat listing of the next run then needs no HEAD).
            if writing != .dropped && !metadataSupport.knownToDrop(self) { markers.note(k, S3Metadata.decodeAttributes(values)) }
            if let stored, writing == .put, metadataSupport.knownToKeep {
                metadataCache?.rememberWrite(scope: cacheScope, key: k, stored: stored, size: 0, metadata: values,
                                             duration: ContinuousClock.now - started)
            }
            return
        }
        let k = try key(path)
        forget(k)
        guard let head = try await client.headObject(bucket: bucket, key: k) else {
            throw S3Error(.http, operation: "CopyObject", bucket: bucket, key: k, status: 404, message: "no such object", path: path)
        }
        var (values, _) = S3Metadata.encode(kind: kind, metadata: metadata, selection: selection, attributes: nil)
        for (name, value) in head.metadata where name.hasPrefix("ferry-") && values[name] == nil { values[name] = value }
        try await copy(key: k, from: bucket, k, size: head.size, metadata: values)
        _ = try await metadataSupport.keepsUserMetadata(location: self, key: k)  // learned once a run, for later runs
    }

    /// Directories, where this run found that markers keep no user metadata (the first
    /// marker written was read back without it, and a copy onto itself did not keep it either).
    public func metadataNotStored(kind: EntryKind) -> String? {
        guard kind == .directory, metadataSupport.markers.known == .dropped else { return nil }
        return "x-amz-meta-* of the directory marker (the server keeps no user metadata on directory markers)"
    }

    /// Writes the directory marker `key` with `metadata` the way this server keeps it
    /// (``MarkerWriting``), learned from the first marker written in the run: read back
    /// after its PUT, and if the metadata is missing, copied onto itself and read back again.
    /// A marker that `exists` needs no PUT where only the copy keeps metadata. Returns the
    /// PUT's answer (nil if none was made) and how markers keep metadata here.
    func writeMarker(_ key: String, _ metadata: [String: String], exists: Bool) async throws -> (stored: S3Object?, writing: MarkerWriting) {
        let known = metadataSupport.markers.known
        if known == .copyOntoItself && exists {
            try await copy(key: key, from: bucket, key, size: 0, metadata: metadata)
            return (nil, .copyOntoItself)
        }
        let stored = try await client.putObject(bucket: bucket, key: key, body: ByteBuffer(), metadata: metadata)
        if let known {
            if known == .copyOntoItself { try await copy(key: key, from: bucket, key, size: 0, metadata: metadata) }
            return (stored, known)
        }
        let (writing, learnedHere) = try await metadataSupport.markers.value {
            // A marker the server will not show (HEAD 404) or refuses to copy (a 4xx, or 501
            // Not Implemented) keeps nothing; other failures fail this write, and the next
            // marker asks again.
            guard let head = try await self.client.headObject(bucket: self.bucket, key: key) else { return .dropped }
            if head.metadata[S3Metadata.userAgent] != nil { return .put }
            do {
                try await self.copy(key: key, from: self.bucket, key, size: 0, metadata: metadata)
            } catch let error as S3Error where error.isRefusal {
                return .dropped
            }
            return try await self.keptUserMetadata(key) ? .copyOntoItself : .dropped
        }
        if writing == .copyOntoItself && !learnedHere { try await copy(key: key, from: bucket, key, size: 0, metadata: metadata) }
        return (stored, writing)
    }

    /// Whether `key` holds the user metadata Ferry writes with every object (read back with a HEAD).
    func keptUserMetadata(_ key: String) async throws -> Bool {
        try await client.headObject(bucket: bucket, key: key)?.metadata[S3Metadata.userAgent] != nil
    }

    public func extendedAttributes(_ path: EntryPath, kind: EntryKind) async throws -> [ExtendedAttribute] {
        guard kind != .symlink else { return [] }
        if path.isRoot && prefix.isEmpty { return [] }
        let k = try key(path, directory: kind == .directory)
        if kind == .directory, let noted = markers.take(k) { return noted }
        let head = try await client.headObject(bucket: bucket, key: k)
        return head.map { S3Metadata.decodeAttributes($0.metadata) } ?? []
    }

    public func setExtendedAttributes(_ path: EntryPath, kind: EntryKind, _ attributes: [ExtendedAttribute]) async throws {
        guard kind != .symlink else { return }
        if path.isRoot && prefix.isEmpty { return }
        let k = try key(path, directory: kind == .directory)
        forget(k)
        guard let head = try await client.headObject(bucket: bucket, key: k) else { return }
        var values = head.metadata
        if attributes.isEmpty { values[S3Metadata.xattrs] = nil } else { values[S3Metadata.xattrs] = S3Metadata.encodeAttributes(attributes) }
        if kind == .directory {
            _ = try await writeMarker(k, values, exists: true)
        } else {
            try await copy(key: k, from: bucket, k, size: head.size, metadata: values)
        }
    }

    public func remove(_ path: EntryPath, kind: EntryKind) async throws {
        if kind != .directory {
            let k = try key(path)
            forget(k)
            try await client.deleteObject(bucket: bucket, key: k)
            return
        }
        let dirPrefix = try key(path) + "/"
        let (objects, _) = try await client.listAll(bucket: bucket, prefix: dirPrefix, delimiter: nil, pageSize: listPageSize)
        for o in objects { forget(o.key) }
        let failed = try await client.deleteObjects(bucket: bucket, keys: objects.map(\.key))
        if let first = failed.first {
            throw S3Error(.http, operation: "DeleteObjects", bucket: bucket, key: first.key, message: first.message, path: path)
        }
    }

    /// Same endpoint and credentials: CopyObject can read the source.
    public func canCopyServerSide(from source: any Location) -> Bool {
        guard let s = source as? S3Location else { return false }
        return s.client.endpoint.url == client.endpoint.url && s.client.endpoint.credentials == client.endpoint.credentials
    }

    /// CopyObject with the metadata replaced (a multipart copy above ``singleCopyLimit``).
    public func copyServerSide(
        from source: any Location, _ path: EntryPath, metadata: FileMetadata, attributes: [ExtendedAttribute]?, selection: MetadataSelection
    ) async throws -> Bool {
        guard let s = source as? S3Location else { return false }
        let (values, _) = S3Metadata.encode(kind: .file, metadata: metadata, selection: selection, attributes: attributes)
        let k = try key(path)
        forget(k)
        try await copy(key: k, from: s.bucket, try s.key(path), size: metadata.size, metadata: values)
        return true
    }

    /// A server-side copy into `key` here, of any size, with `metadata`.
    func copy(key: String, from sourceBucket: String, _ sourceKey: String, size: Int64, metadata: [String: String]) async throws {
        try await client.copyObjectAnySize(bucket: bucket, key: key, sourceBucket: sourceBucket, sourceKey: sourceKey,
                                           size: size, metadata: metadata, singleCopyLimit: singleCopyLimit)
    }

    /// Its leftovers are unfinished multipart uploads, not objects of the listed prefix.
    public var temporariesAreFiles: Bool { false }

    /// Aborts a multipart upload left by an interrupted run (named in ``Listing/staleTemporaries``).
    public func removeTemporary(in directory: EntryPath, name: [UInt8]) async throws {
        guard name.first == 0, let text = String(validating: name.dropFirst(), as: UTF8.self),
              let newline = text.firstIndex(of: "\n") else { return }
        try await client.abortMultipartUpload(bucket: bucket, key: String(text[text.index(after: newline)...]),
                                              uploadID: String(text[..<newline]))
    }
}
