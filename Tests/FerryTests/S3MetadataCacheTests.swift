import FerryTesting
import Foundation
import Glibc
import Testing

/// The S3 metadata cache: a no-change re-run lists instead of HEADing every object, and an
/// object changed behind Ferry's back (its Last-Modified moves) is still noticed.
@Suite struct S3MetadataCacheTests {
    static func requests(_ run: CLI.Run) -> Int {
        run.stderr.split(separator: "\n").compactMap { line -> Int? in
            line.hasPrefix("S3 requests:") ? Int(line.dropFirst("S3 requests:".count).trimmingCharacters(in: .whitespaces)) : nil
        }.first ?? -1
    }

    /// `ferry sync ARGS -v` against `server`, which must succeed.
    static func sync(_ server: S3TestServer, _ args: [String]) throws -> CLI.Run {
        let r = try S3Tests.ferry(server, ["sync"] + args + ["-v"])
        #expect(r.status == 0, "\(r.stderr)")
        return r
    }

    /// The entries a `-v` run created or updated.
    static func changes(_ run: CLI.Run) -> [Substring] {
        run.stdout.split(separator: "\n").filter { $0.hasPrefix("create ") || $0.hasPrefix("update ") || $0.hasPrefix("metadata ") }
    }

    /// An object's user metadata, as `aws s3api head-object` reads it.
    static func userMetadata(_ server: S3TestServer, bucket: String, key: String) throws -> [String: String] {
        let head = try S3Tests.aws(server, ["s3api", "head-object", "--bucket", bucket, "--key", key])
        return ((try? JSONSerialization.jsonObject(with: Data(head.stdout.utf8))) as? [String: Any])?["Metadata"] as? [String: String] ?? [:]
    }

    @Test func unchangedObjectsNeedNoHeadAndChangedOnesAreNoticed() async throws {
        let (server, bucket) = try await S3Tests.freshBucket()
        let f = try Fixture("s3-cache")
        defer { f.cleanUp() }
        for d in 0..<3 {
            for i in 0..<10 { try f.source.file("d\(d)/f\(i)", TestTree.bytes(100 + i, seed: UInt64(d * 10 + i))) }
        }
        try f.source.symlink("d0/link", to: "f1")
        let cache = f.destinationRoot + "-cache"
        let target = "s3://\(bucket)/tree"
        func sync(_ extra: [String] = []) throws -> CLI.Run {
            try S3MetadataCacheTests.sync(server, [f.source.root, target, "--cache-dir", cache] + extra)
        }
        _ = try sync()
        let mode = (try? FileManager.default.attributesOfItem(atPath: cache + "/s3-objects.sqlite")[.posixPermissions] as? Int) ?? -1
        #expect(mode == 0o600)

        // 31 objects in 3 directories: with the cache, listings and the directory markers'
        // HEADs only; without it, one HEAD per object more (and a GET for the symlink).
        // The cached run goes through the proxy, which counts the requests itself.
        let out = Pipe()
        let (proxy, port) = try S3FaultTests.startProxy(upstream: server.port, every: 0, environment: ["LOG_REQUESTS": "1"], output: out)
        // (The cache is kept per endpoint: a first run through the proxy fills it for that one.)
        func viaProxy() throws -> CLI.Run {
            try CLI.run(["sync", f.source.root, target, "--cache-dir", cache, "-v", "--endpoint-url", "http://127.0.0.1:\(port)"],
                        environment: server.clientEnvironment)
        }
        let warm = try viaProxy()
        // A marker request between the two runs: the proxy's lines after it are the cached run's.
        _ = try CLI.run(["-s", "-o", "/dev/null", "http://127.0.0.1:\(port)/ferry-test-marker"], wrapper: ["curl"], direct: true)
        let cached = try viaProxy()
        kill(proxy.processIdentifier, SIGKILL)
        proxy.waitUntilExit()
        let lines = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            .split(separator: "\n").filter { $0.hasPrefix("request ") }
        let seen = lines.drop { !$0.contains("/ferry-test-marker") }.dropFirst().count
        #expect(warm.status == 0 && cached.status == 0, "\(warm.stderr)\(cached.stderr)")
        // Ferry counts its attempts (a retry on a connection the proxy closed counts twice);
        // the proxy counts what arrived.
        #expect(seen > 0 && seen <= 12 && seen <= S3MetadataCacheTests.requests(cached), "the proxy saw \(seen): \(cached.stderr)")
        let uncached = try sync(["--no-metadata-cache"])
        #expect(S3MetadataCacheTests.changes(cached).isEmpty && S3MetadataCacheTests.changes(uncached).isEmpty, "\(cached.stdout)\n\(uncached.stdout)")
        #expect(S3MetadataCacheTests.requests(cached) >= 0 && S3MetadataCacheTests.requests(cached) <= 12, "\(cached.stderr)")
        #expect(S3MetadataCacheTests.requests(uncached) >= S3MetadataCacheTests.requests(cached) + 31, "\(uncached.stderr)")

        // Someone else changes an object's metadata (same bytes, same ETag, a later
        // Last-Modified): the next run notices and puts Ferry's metadata back. Last-Modified
        // has one-second resolution, so the change must fall in a later second.
        try await Task.sleep(for: .milliseconds(2200))
        let key = "tree/d1/f3"
        let changed = try S3Tests.aws(server, ["s3api", "copy-object", "--bucket", bucket, "--key", key, "--copy-source", "\(bucket)/\(key)",
                                               "--metadata-directive", "REPLACE", "--metadata", "file-mtime=1000000000000000000ns,file-permissions=0100600"])
        #expect(changed.status == 0, "\(changed.stderr)")
        let repaired = try sync()
        #expect(S3MetadataCacheTests.changes(repaired).contains { $0.hasSuffix(" /d1/f3") }, "the changed object is updated: \(repaired.stdout)")
        let metadata = try S3MetadataCacheTests.userMetadata(server, bucket: bucket, key: key)
        #expect(metadata["file-mtime"] != "1000000000000000000ns" && metadata["file-permissions"] != "0100600", "\(metadata)")
        // And a round trip back still gives the source tree.
        let back = try S3Tests.ferry(server, ["sync", target, f.destinationRoot, "--cache-dir", cache])
        #expect(back.status == 0, "\(back.stderr)")
        #expect(try f.differences(compareAtime: false) == [])
    }

    /// An upload writes each new directory's marker without HEADing it first (none exists)
    /// or after (the finalize compares the xattrs it just wrote), and asks once whether the
    /// server keeps user metadata (once for objects, once for markers), however many uploads finish while it asks. A download
    /// HEADs each directory marker once: the HEAD its parent's listing makes also gives the
    /// xattrs the directory's finalize applies (it used to HEAD the marker again).
    @Test func markersAreAskedForOnceEachWay() async throws {
        let (server, bucket) = try await S3Tests.freshBucket()
        let f = try Fixture("s3-markers")
        defer { f.cleanUp() }
        for d in 0..<6 {
            for i in 0..<2 { try f.source.file("d\(d)/f\(i)", TestTree.bytes(200 + i, seed: UInt64(d * 2 + i))) }
        }
        try f.source.setXattr("d3", name: "user.note", value: Array("kept".utf8))
        let target = "s3://\(bucket)/markers"
        let up = try S3Tests.ferry(server, ["sync", f.source.root, target, "-v", "--no-metadata-cache"])
        #expect(up.status == 0, "\(up.stderr)")
        // 12 PUTs of files and one HEAD of one of them (does the server keep metadata?); the
        // root's listing and ListMultipartUploads; a PUT of each of the 7 markers and, for
        // d3's xattr, a HEAD and a PUT more, and one HEAD of the first marker written (does
        // the server keep a marker's metadata?); verification's stat of each directory (HEAD of
        // the name, then of the marker; the root's marker alone); the root's HEAD at the
        // start and before its marker is written (it may exist).
        #expect(S3MetadataCacheTests.requests(up) == 12 + 1 + 2 + 7 + 2 + 1 + 6 * 2 + 1 + 2, "\(up.stderr)")

        let down = try S3Tests.ferry(server, ["sync", target, f.destinationRoot, "-v", "--no-metadata-cache"])
        #expect(down.status == 0, "\(down.stderr)")
        #expect(try f.differences(compareAtime: false) == [], "bytes, metadata and d3's xattr arrive")
        // 12 GETs (made while listing), 7 listings, a HEAD of each of the 6 markers and of
        // the root's, one ListMultipartUploads.
        #expect(S3MetadataCacheTests.requests(down) == 12 + 7 + 7 + 1, "\(down.stderr)")
    }

    /// A flat listing shows each directory's marker (its ETag and Last-Modified), so with the
    /// cache a no-change `--fast-list` run HEADs no marker Ferry wrote or saw unchanged; a
    /// marker changed behind Ferry's back is HEADed and put right; and a download described
    /// from the cache brings directories' metadata and xattrs.
    @Test func flatListingVouchesForUnchangedMarkers() async throws {
        let (server, bucket) = try await S3Tests.freshBucket()
        let f = try Fixture("s3-flat-markers")
        defer { f.cleanUp() }
        for d in 0..<4 {
            for i in 0..<3 { try f.source.file("d\(d)/f\(i)", TestTree.bytes(80 + i, seed: UInt64(d * 3 + i))) }
        }
        try f.source.file("d1/sub/deep", [7])
        try f.source.setXattr("d2", name: "user.note", value: Array("kept".utf8))
        try f.source.chmod("d3", 0o750)
        let cache = f.destinationRoot + "-cache"
        let target = "s3://\(bucket)/flat"
        func sync(_ args: [String]) throws -> CLI.Run {
            try S3MetadataCacheTests.sync(server, args + ["--cache-dir", cache, "--fast-list"])
        }
        _ = try sync([f.source.root, target])
        // One flat page, ListMultipartUploads and the root marker's HEAD: no HEAD of d0..d3
        // or d1/sub (each was one before).
        let quiet = try sync([f.source.root, target])
        #expect(S3MetadataCacheTests.changes(quiet).isEmpty, "\(quiet.stdout)")
        #expect(S3MetadataCacheTests.requests(quiet) == 3, "\(quiet.stderr)")

        // Another tool rewrites d3's marker with other permissions, in a later second.
        try await Task.sleep(for: .milliseconds(2200))
        let rewritten = try S3Tests.aws(server, ["s3api", "put-object", "--bucket", bucket, "--key", "flat/d3/",
                                                 "--metadata", "file-permissions=040700"])
        #expect(rewritten.status == 0, "\(rewritten.stderr)")
        let repaired = try sync([f.source.root, target])
        #expect(repaired.stdout.contains("FilesTransferred: 1 "), "d3's metadata put back: \(repaired.stdout)")
        #expect(S3MetadataCacheTests.requests(repaired) > 3, "d3's marker HEADed: \(repaired.stderr)")
        let metadata = try S3MetadataCacheTests.userMetadata(server, bucket: bucket, key: "flat/d3/")
        #expect(metadata["file-permissions"] != "040700", "\(metadata)")

        // Back down, markers described from the cache: modes, times and d2's xattr arrive.
        let back = try sync([target, f.destinationRoot])
        #expect(try f.differences(compareAtime: false) == [], "\(back.stdout)")
    }

    /// `--fast-list`: one flat listing instead of one per directory, the same tree either way,
    /// and a point-in-time verification after the transfer lists afresh (it sees what was written).
    @Test func fastListListsFlatAndVerificationListsAfresh() async throws {
        let (server, bucket) = try await S3Tests.freshBucket()
        let f = try Fixture("s3-fastlist")
        defer { f.cleanUp() }
        for d in 0..<4 {
            for i in 0..<5 { try f.source.file("d\(d)/sub/f\(i)", TestTree.bytes(50 + i, seed: UInt64(d * 5 + i))) }
        }
        try f.source.directory("empty", mode: 0o750)
        let target = "s3://\(bucket)/flat"
        func sync(_ args: [String]) throws -> CLI.Run {
            try S3MetadataCacheTests.sync(server, args + ["--no-metadata-cache"])
        }
        let first = try sync([f.source.root, target, "--fast-list", "--verify-mode", "point-in-time-consistent"])
        #expect(first.stdout.contains("create /d3/sub/f4"), "\(first.stdout)")
        let flat = try sync([f.source.root, target, "--fast-list"])
        let perDirectory = try sync([f.source.root, target])
        // 10 directories listed one by one against one flat page.
        #expect(S3MetadataCacheTests.requests(flat) + 9 <= S3MetadataCacheTests.requests(perDirectory), "\(flat.stderr)\n\(perDirectory.stderr)")
        _ = try sync([target, f.destinationRoot, "--fast-list"])
        #expect(try f.differences(compareAtime: false) == [])
    }
}

