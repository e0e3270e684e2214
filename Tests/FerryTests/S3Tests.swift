import FerryCore
import FerryEngine
import FerryLocal
import FerryS3
import FerryTesting
import Foundation
import Glibc
import Testing

/// The S3 location against a real moto server on 127.0.0.1, with the real `aws` CLI as
/// the other client.
@Suite struct S3Tests {
    static func server() throws -> S3TestServer { try S3TestServer.moto.get() }

    static func client(_ server: S3TestServer) throws -> S3Client {
        try S3Client(endpoint: S3Configuration.endpoint(
            S3Configuration.Overrides(endpointURL: server.endpoint), environment: server.clientEnvironment, home: "/nonexistent"))
    }

    /// A fresh bucket with a random name.
    static func bucket(_ client: S3Client) async throws -> String {
        let name = "ferry-\(UInt64.random(in: 0..<UInt64.max) % 1_000_000_000_000)"
        try await client.createBucket(name)
        return name
    }

    /// The moto server and a fresh bucket, for tests that use only the command-line clients.
    static func freshBucket() async throws -> (S3TestServer, String) {
        var result: (S3TestServer, String)?
        try await withBucket { server, _, bucket in result = (server, bucket) }
        return result!
    }

    /// Runs `body` with the moto server, a client and a fresh bucket; shuts the client down after.
    static func withBucket(_ body: (S3TestServer, S3Client, String) async throws -> Void) async throws {
        let server = try S3Tests.server()
        let client = try S3Tests.client(server)
        do {
            try await body(server, client, try await S3Tests.bucket(client))
        } catch {
            await client.shutdown()
            throw error
        }
        await client.shutdown()
    }

    static func aws(_ server: S3TestServer, _ args: [String]) throws -> CLI.Run {
        try CLI.run(args, wrapper: ["aws"], direct: true, environment: server.clientEnvironment)
    }

    /// CRC32 (IEEE, reflected, as zlib and S3 compute it), table-driven in Swift: independent of zlib.
    static let crcTable: [UInt32] = (0..<256).map { i in
        var c = UInt32(i)
        for _ in 0..<8 { c = c & 1 == 1 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    static func crc32(_ bytes: ArraySlice<UInt8>) -> UInt32 {
        let table = crcTable
        var crc: UInt32 = 0xFFFF_FFFF
        for b in bytes { crc = table[Int((crc ^ UInt32(b)) & 0xff)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }

    static func ferry(_ server: S3TestServer, _ args: [String]) throws -> CLI.Run {
        try CLI.run(args + ["--endpoint-url", server.endpoint], environment: server.clientEnvironment)
    }

    @Test func richTreeRoundTripsThroughS3() async throws {
        try await S3Tests.withBucket { server, client, bucket in
            let f = try Fixture("s3-rich")
            defer { f.cleanUp() }
            try SampleTrees.rich(f.source)
            try f.source.file("multipart.bin", TestTree.bytes(40 << 20 | 4321, seed: 77))
            let remote = S3Location(client: client, bucket: bucket, prefix: "backup/")
            let up = await SyncEngine(SyncConfiguration(source: try POSIXLocation(path: f.source.root), destination: remote,
                                                        options: Fixture.defaultOptions)).run()
            // The one name that is not UTF-8 cannot be a key: skipped and named, everything else arrives.
            #expect(up.counters.filesSkipped == 1, "\(up.problems)")
            #expect(up.problems.first { $0.entry.failureKind == .unreadable }?.entry.path == "/names/f\\xff\\xfe.bin")
            // moto cannot store a key holding a newline (it answers 404 to the aws CLI too);
            // real S3 can. Ferry must fail that one file the same way and name it.
            let probe = f.destinationRoot + "-probe"
            #expect(FileManager.default.createFile(atPath: probe, contents: Data([1])))
            let newlineStored = try S3Tests.aws(server, ["s3api", "put-object", "--bucket", bucket, "--key", "probe/new\nline",
                                                         "--body", probe]).status == 0
            let failed = up.problems.filter { $0.entry.status == .failed }.map(\.entry.path)
            #expect(failed == (newlineStored ? [] : ["/names/new\\x0aline"]), "\(up.problems)")
            #expect(up.counters.verificationFailures == 0, "\(up.problems)")

            let again = await SyncEngine(SyncConfiguration(source: try POSIXLocation(path: f.source.root), destination: remote,
                                                           options: Fixture.defaultOptions)).run()
            #expect(again.counters.filesTransferred == 0, "\(again.problems)")

            let down = await SyncEngine(SyncConfiguration(source: remote, destination: try POSIXLocation(path: f.destinationRoot, create: true),
                                                          options: Fixture.defaultOptions)).run()
            #expect(down.status == .success, "\(down.problems)")
            let diffs = try f.differences()
            let expected = ["/names/f\\xff\\xfe.bin: missing at the destination"] + (newlineStored ? [] : ["/names/new\\x0aline: missing at the destination"])
            #expect(diffs == expected, "\(diffs)")

            let head = try S3Tests.aws(server, ["s3api", "head-object", "--bucket", bucket, "--key", "backup/dir/owned"])
            let metadata = (try JSONSerialization.jsonObject(with: Data(head.stdout.utf8)) as! [String: Any])["Metadata"] as! [String: String]
            #expect(metadata["file-permissions"] == "0100674")  // 0640 with the ACL's rwx mask as group bits
            #expect(metadata["file-owner"] == "1234" && metadata["file-group"] == "5678")
            #expect(metadata["file-mtime"]?.hasSuffix("ns") == true)
            let big = try S3Tests.aws(server, ["s3api", "head-object", "--bucket", bucket, "--key", "backup/multipart.bin"])
            #expect(big.stdout.contains("-6\\\""), "uploaded in six 8 MiB parts: \(big.stdout)")
            // A composite CRC32 upload: the server checked each part's CRC32 and keeps the
            // CRC32 of their concatenation (computed here with an independent CRC32).
            let attributes = try S3Tests.aws(server, ["s3api", "get-object-attributes", "--bucket", bucket, "--key", "backup/multipart.bin",
                                                      "--object-attributes", "Checksum"])
            let checksum = (try JSONSerialization.jsonObject(with: Data(attributes.stdout.utf8)) as? [String: Any])?["Checksum"] as? [String: Any]
            let bytes = TestTree.bytes(40 << 20 | 4321, seed: 77)
            var partCRCs: [UInt8] = []
            for start in stride(from: 0, to: bytes.count, by: 8 << 20) {
                let c = S3Tests.crc32(bytes[start..<min(start + (8 << 20), bytes.count)])
                partCRCs += withUnsafeBytes(of: c.bigEndian, Array.init)
            }
            let composite = S3Tests.crc32(partCRCs[...])
            let expectedCRC = Data(withUnsafeBytes(of: composite.bigEndian, Array.init)).base64EncodedString()
            #expect(checksum?["ChecksumCRC32"] as? String == expectedCRC, "\(attributes.stdout)")
            #expect(checksum?["ChecksumType"] as? String == "COMPOSITE", "\(attributes.stdout)")
        }
    }

    /// Virtual-hosted addressing end to end: `BUCKET.s3.test` must resolve to 127.0.0.1, so
    /// ferry runs in its own mount namespace with a bind-mounted `/etc/hosts` (glibc reads
    /// it through getaddrinfo). moto takes the bucket from the Host header's first label, so
    /// a path-style request to `s3.test` would name the bucket `s3` and fail.
    @Test func virtualHostedAddressingEndToEnd() async throws {
        try await S3Tests.withBucket { server, client, bucket in
            let f = try Fixture("s3-vhost")
            defer { f.cleanUp() }
            try f.source.file("dir/owned", TestTree.bytes(10_000, seed: 1), mode: 0o640)
            try f.source.chown("dir/owned", uid: 1234, gid: 5678)
            try f.source.file("big.bin", TestTree.bytes(17 << 20, seed: 2))  // multipart
            try f.source.symlink("link", to: "dir/owned")
            try f.source.directory("empty", mode: 0o700)
            let hosts = f.destinationRoot + "-hosts"
            try "127.0.0.1 localhost s3.test \(bucket).s3.test\n".write(toFile: hosts, atomically: false, encoding: .utf8)
            let port = server.endpoint.split(separator: ":").last!
            let inNamespace = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                               "mount --bind \"$0\" /etc/hosts && exec \"$@\"", hosts]
            let endpoint = ["--endpoint-url", "http://s3.test:\(port)", "--addressing-style", "virtual"]
            let up = try CLI.run(["sync", f.source.root, "s3://\(bucket)/v", "-q"] + endpoint,
                                 wrapper: inNamespace, environment: server.clientEnvironment)
            #expect(up.status == 0, "\(up.stderr)")
            // The objects are in the bucket, seen path-style through 127.0.0.1.
            let listed = try S3Tests.aws(server, ["s3api", "head-object", "--bucket", bucket, "--key", "v/dir/owned"])
            #expect(listed.status == 0, "\(listed.stderr)")
            let down = try CLI.run(["sync", "s3://\(bucket)/v", f.destinationRoot, "-q"] + endpoint,
                                   wrapper: inNamespace, environment: server.clientEnvironment)
            #expect(down.status == 0, "\(down.stderr)")
            #expect(try f.differences() == [])
            // Without the name in /etc/hosts the same command fails and says where it could not connect.
            let unresolved = try CLI.run(["sync", f.source.root, "s3://\(bucket)/w", "-q"] + endpoint, environment: server.clientEnvironment)
            #expect(unresolved.status == 1 && (unresolved.stdout + unresolved.stderr).contains("cannot resolve \(bucket).s3.test"), "\(unresolved.stderr)")
        }
    }

    @Test func objectsFromTheAWSCLIRestoreWithTheirMetadataOrDataSyncDefaults() async throws {
        let (server, bucket) = try await S3Tests.freshBucket()
        let f = try Fixture("s3-awscli")
        defer { f.cleanUp() }
        try f.source.file("body", Array("from the aws cli".utf8))
        var r = try S3Tests.aws(server, ["s3api", "put-object", "--bucket", bucket, "--key", "in/with-meta", "--body", f.source.path("body"),
                                         "--metadata", "file-permissions=0100600,file-owner=42,file-group=43,file-mtime=1600000000123456789ns,file-atime=1600000001000"])
        #expect(r.status == 0, "\(r.stderr)")
        r = try S3Tests.aws(server, ["s3", "cp", f.source.path("body"), "s3://\(bucket)/in/plain/file"])
        #expect(r.status == 0, "\(r.stderr)")
        let run = try S3Tests.ferry(server, ["sync", "s3://\(bucket)/in", f.destinationRoot])
        #expect(run.status == 0, "\(run.stdout)\(run.stderr)")
        let dst = try TreeSnapshot(f.destinationRoot)
        let meta = try #require(dst.entries[EntryPath("with-meta")!])
        #expect(meta.permissions == 0o600 && meta.uid == 42 && meta.gid == 43)
        #expect(meta.mtime == Timestamp(seconds: 1_600_000_000, nanoseconds: 123_456_789))
        #expect(meta.atime == Timestamp(seconds: 1_600_000_001, nanoseconds: 0))
        let plain = try #require(dst.entries[EntryPath("plain/file")!])
        #expect(plain.permissions == 0o644 && plain.uid == 65534 && plain.gid == 65534)
        // Last-Modified (whole seconds) becomes the mtime, as the server answers it.
        let head = try S3Tests.aws(server, ["s3api", "head-object", "--bucket", bucket, "--key", "in/plain/file"])
        let modified = (try JSONSerialization.jsonObject(with: Data(head.stdout.utf8)) as? [String: Any])?["LastModified"] as? String ?? ""
        let http = DateFormatter()
        http.locale = Locale(identifier: "en_US_POSIX")
        http.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        let parsed = try #require(ISO8601DateFormatter().date(from: modified) ?? http.date(from: modified), "\(head.stdout)")
        #expect(plain.mtime == Timestamp(seconds: Int64(parsed.timeIntervalSince1970), nanoseconds: 0), "\(plain.mtime) vs \(modified)")
        let dir = try #require(dst.entries[EntryPath("plain")!])
        #expect(dir.permissions == 0o755 && dir.uid == 65534)
        #expect(dir.mtime == plain.mtime, "a prefix without a marker takes the newest mtime it holds")
    }

    @Test func hostileKeysAreSkippedAndNeverEscape() async throws {
        let (server, bucket) = try await S3Tests.freshBucket()
        let f = try Fixture("s3-hostile")
        defer { f.cleanUp() }
        try f.source.file("body", [1, 2, 3])
        for key in ["x/ok", "x/../../escape-1", "x/a/../../../escape-2", "x//double", "x/./dot", "x/" + String(repeating: "n", count: 300)] {
            let r = try S3Tests.aws(server, ["s3api", "put-object", "--bucket", bucket, "--key", key, "--body", f.source.path("body")])
            #expect(r.status == 0, "\(key): \(r.stderr)")
        }
        let parent = (f.destinationRoot as NSString).deletingLastPathComponent
        let run = try S3Tests.ferry(server, ["sync", "s3://\(bucket)/x", f.destinationRoot, "--json"])
        #expect(run.status == 2, "\(run.stderr)")
        let json = try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as! [String: Any]
        let skipped = (json["Problems"] as! [[String: Any]]).map { ($0["entry"] as! [String: Any])["RelativePath"] as! String }
        #expect(skipped.contains("x/../"))
        #expect(skipped.contains("x//"))
        #expect(skipped.contains("x/./"))
        #expect(skipped.contains("x/a/../"))
        #expect(skipped.contains { $0.hasPrefix("x/nnnn") })
        #expect(try FileManager.default.contentsOfDirectory(atPath: parent).sorted() == ["dest"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: f.destinationRoot).sorted() == ["a", "ok"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: f.destinationRoot + "/a") == [])
    }

    @Test func bucketToBucketKeepsMetadata() async throws {
        let server = try S3Tests.server()
        let client = try S3Tests.client(server)
        let a = try await S3Tests.bucket(client), b = try await S3Tests.bucket(client)
        await client.shutdown()
        let f = try Fixture("s3-s3")
        defer { f.cleanUp() }
        try f.source.file("dir/file", TestTree.bytes(5000, seed: 1), mode: 0o640)
        try f.source.chown("dir/file", uid: 321, gid: 654)
        try f.source.symlink("dir/link", to: "file")
        try f.source.file("other", [7])
        try f.source.hardLink("dir/hard", to: "other")
        try f.source.setTimes("dir/file", atime: SampleTrees.time(1), mtime: SampleTrees.time(2))
        try f.source.file("big.bin", TestTree.bytes(8 << 20, seed: 4))
        #expect(try S3Tests.ferry(server, ["sync", f.source.root, "s3://\(a)/x"]).status == 0)
        // The kernel's count of what the process read and wrote (sockets included): the
        // 8 MiB object's bytes never pass through it.
        let copy = try CLI.run(["-c", "\"$0\" \"$@\" && cat /proc/$$/io >&2", CLI.executable, "sync", "s3://\(a)/x", "s3://\(b)/y", "--json",
                                "--endpoint-url", server.endpoint], wrapper: ["sh"], direct: true, environment: server.clientEnvironment)
        #expect(copy.status == 0, "\(copy.stdout)\(copy.stderr)")
        func io(_ field: String) -> Int64 {
            copy.stderr.split(separator: "\n").first { $0.hasPrefix(field + ":") }.flatMap { Int64($0.dropFirst(field.count + 1).trimmingCharacters(in: .whitespaces)) } ?? .max
        }
        #expect(io("rchar") < 4 << 20 && io("wchar") < 4 << 20, "rchar \(io("rchar")), wchar \(io("wchar"))")
        // Same endpoint: CopyObject on the server, no data through Ferry.
        let first = (try JSONSerialization.jsonObject(with: Data(copy.stdout.utf8)) as! [String: Any])["Counters"] as! [String: Any]
        #expect(first["BytesWritten"] as? Int == 0)
        #expect(first["BytesTransferred"] as? Int == 5000 + 1 + 8 << 20)  // dir/file, other and big.bin; the hard link is a copy of other
        #expect((first["VerificationFailures"] as? Int) == 0)
        let again = try S3Tests.ferry(server, ["sync", "s3://\(a)/x", "s3://\(b)/y", "--json"])
        let counters = (try JSONSerialization.jsonObject(with: Data(again.stdout.utf8)) as! [String: Any])["Counters"] as! [String: Any]
        #expect(counters["FilesTransferred"] as? Int == 0)
        let restore = try S3Tests.ferry(server, ["sync", "s3://\(b)/y", f.destinationRoot])
        #expect(restore.status == 0, "\(restore.stdout)\(restore.stderr)")
        let diffs = try f.differences()
        #expect(diffs == [], "\(diffs)")
    }

    @Test func multipartServerSideCopiesAboveTheSingleCopyLimit() async throws {
        try await S3Tests.withBucket { server, client, a in
            let b = try await S3Tests.bucket(client)
            let f = try Fixture("s3-mpcopy")
            defer { f.cleanUp() }
            let content = TestTree.bytes(20 << 20 | 77, seed: 9)
            try f.source.file("big.bin", content, mode: 0o644)
            try f.source.hardLink("big-link", to: "big.bin")
            // A low limit stands in for S3's 5 GiB so that the multipart copy path runs here.
            var left = S3Location(client: client, bucket: a, prefix: "p")
            var right = S3Location(client: client, bucket: b, prefix: "q")
            left.singleCopyLimit = 8 << 20
            right.singleCopyLimit = 8 << 20
            var result = await SyncEngine(SyncConfiguration(source: try POSIXLocation(path: f.source.root), destination: left,
                                                            options: Fixture.defaultOptions)).run()
            #expect(result.status == .success, "\(result.problems)")
            result = await SyncEngine(SyncConfiguration(source: left, destination: right, options: Fixture.defaultOptions)).run()
            #expect(result.status == .success, "\(result.problems)")
            #expect(result.counters.bytesWritten == 0)
            // A metadata-only change of the large object: a multipart copy onto itself.
            try f.source.chmod("big.bin", 0o600)
            result = await SyncEngine(SyncConfiguration(source: try POSIXLocation(path: f.source.root), destination: left,
                                                        options: Fixture.defaultOptions)).run()
            #expect(result.status == .success && result.counters.bytesWritten == 0, "\(result.problems)")
            result = await SyncEngine(SyncConfiguration(source: left, destination: right, options: Fixture.defaultOptions)).run()
            #expect(result.status == .success, "\(result.problems)")
            let head = try S3Tests.aws(server, ["s3api", "head-object", "--bucket", b, "--key", "q/big.bin"])
            #expect(head.stdout.contains("\"file-permissions\": \"0100600\""), "\(head.stdout)")
            #expect(head.stdout.contains("-3\\\""), "copied in three 8 MiB parts: \(head.stdout)")
            let restored = await SyncEngine(SyncConfiguration(source: right, destination: try POSIXLocation(path: f.destinationRoot, create: true),
                                                              options: Fixture.defaultOptions)).run()
            #expect(restored.status == .success, "\(restored.problems)")
            let diffs = try f.differences()
            #expect(diffs == [], "\(diffs)")
            #expect(try S3FaultTests.openUploads(server, bucket: b) == 0)
        }
    }

    @Test func boto3ReadsAndWritesTheSameMetadata() throws {
        let server = try S3Tests.server()
        let f = try Fixture("s3-boto3")
        defer { f.cleanUp() }
        let bucket = "ferry-boto3-\(UInt32.random(in: 0..<UInt32.max))"
        try f.source.file("from-ferry.txt", Array("written by ferry".utf8), mode: 0o640)
        try f.source.chown("from-ferry.txt", uid: 2001, gid: 2002)
        let script = """
            import boto3, json, os, sys
            s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
            if sys.argv[1] == "put":
                s3.create_bucket(Bucket=sys.argv[2])
                s3.put_object(Bucket=sys.argv[2], Key="in/from-boto3.txt", Body=b"written by boto3",
                              Metadata={"file-permissions": "0100604", "file-owner": "3001", "file-group": "3002",
                                        "file-mtime": "1700000000000000001ns"})
            else:
                print(json.dumps(s3.head_object(Bucket=sys.argv[2], Key=sys.argv[3])["Metadata"]))
            """
        let py = S3TestServer.which("python3") ?? "/usr/bin/python3"
        let put = try CLI.run(["-c", script, "put", bucket], wrapper: [py], direct: true, environment: server.clientEnvironment)
        #expect(put.status == 0, "\(put.stderr)")
        let down = try S3Tests.ferry(server, ["sync", "s3://\(bucket)/in", f.destinationRoot])
        #expect(down.status == 0, "\(down.stderr)")
        let got = try #require(try TreeSnapshot(f.destinationRoot).entries[EntryPath("from-boto3.txt")!])
        #expect(got.permissions == 0o604 && got.uid == 3001 && got.gid == 3002)
        #expect(got.mtime == Timestamp(seconds: 1_700_000_000, nanoseconds: 1))
        let up = try S3Tests.ferry(server, ["sync", f.source.root, "s3://\(bucket)/out"])
        #expect(up.status == 0, "\(up.stderr)")
        let head = try CLI.run(["-c", script, "head", bucket, "out/from-ferry.txt"], wrapper: [py], direct: true, environment: server.clientEnvironment)
        let meta = try JSONSerialization.jsonObject(with: Data(head.stdout.utf8)) as? [String: String]
        #expect(meta?["file-permissions"] == "0100640" && meta?["file-owner"] == "2001" && meta?["file-group"] == "2002", "\(head.stdout)\(head.stderr)")
    }

    @Test func deleteFiltersDryRunAndPointInTimeWithSmallPages() async throws {
        try await S3Tests.withBucket { server, client, bucket in
            let f = try Fixture("s3-options")
            defer { f.cleanUp() }
            try SampleTrees.smallFiles(f.source, files: 40, directories: 2)
            try f.source.file("logs/keep.log", [1])
            // Pages of 7 keys make every listing (per directory and flat) take several pages.
            var remote = S3Location(client: client, bucket: bucket, prefix: "o")
            remote.listPageSize = 7
            func sync(_ options: TransferOptions, filters: Filters = Filters(), dryRun: Bool = false) async throws -> ExecutionResult {
                await SyncEngine(SyncConfiguration(source: try POSIXLocation(path: f.source.root), destination: remote, options: options,
                                                   filters: filters, dryRun: dryRun)).run()
            }
            var options = Fixture.defaultOptions
            options.verifyMode = .pointInTimeConsistent
            var r = try await sync(options, filters: Filters(excludes: try FilterRule("/logs")))
            #expect(r.status == .success && r.counters.filesVerified > 40, "\(r.problems)")
            #expect(try await remote.stat(EntryPath("logs")!) == nil, "excluded")
            // Remove source files; a dry run names the deletions and changes nothing.
            for i in 0..<10 { try FileManager.default.removeItem(atPath: f.source.path("d\(i % 2)/f\(i)")) }
            options.preserveDeletedFiles = .remove
            r = try await sync(options, dryRun: true)
            #expect(r.counters.filesDeleted == 10)
            #expect(try await remote.list(EntryPath("d0")!)?.entries.count == 20)
            r = try await sync(options)
            #expect(r.status == .success && r.counters.filesDeleted == 10, "\(r.problems)")
            #expect(try await remote.list(EntryPath("d0")!)?.entries.count == 15)
            #expect(try await remote.list(EntryPath("logs")!)?.entries.count == 1)
            // Removing a whole directory deletes every key below it (flat, paged listing).
            try FileManager.default.removeItem(atPath: f.source.path("d1"))
            r = try await sync(options)
            #expect(r.status == .success, "\(r.problems)")
            let (left, _) = try await client.listAll(bucket: bucket, prefix: "o/d1/", delimiter: nil, pageSize: 3)
            #expect(left.isEmpty)
        }
    }
}

