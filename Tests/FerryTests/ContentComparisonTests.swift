import FerryCore
import FerryTesting
import Foundation
import Testing

/// Files whose destination does not hold their mtime (objects written by another tool, or
/// on a server that drops user metadata) are compared by content against the object's
/// ETag: the same bytes move no data, other bytes of the same size and mtime still go.
@Suite struct ContentComparisonTests {
    struct Outcome {
        var status: Int32
        var counters: [String: Any]
        /// Paths the report lists as transferred (data or metadata).
        var transferred: Set<String>
        var stderr: String
    }

    /// `ferry sync … --json --report` with the server's environment and endpoint.
    static func sync(_ server: S3TestServer, _ args: [String], report: String) throws -> Outcome {
        let run = try CLI.run(["sync"] + args + ["--endpoint-url", server.endpoint, "--json", "--report", report],
                              environment: server.clientEnvironment)
        let json = (try? JSONSerialization.jsonObject(with: Data(run.stdout.utf8))) as? [String: Any] ?? [:]
        let written = (try? JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: report)))) as? [String: Any] ?? [:]
        let transferred = (written["Transferred"] as? [[String: Any]] ?? []).compactMap { $0["RelativePath"] as? String }
        try? FileManager.default.removeItem(atPath: report)
        return Outcome(status: run.status, counters: json["Counters"] as? [String: Any] ?? [:], transferred: Set(transferred),
                       stderr: run.stdout + run.stderr)
    }

    /// Key → (ETag, LastModified) of every object under `prefix`, as the aws CLI lists them.
    static func objects(_ server: S3TestServer, bucket: String, prefix: String) throws -> [String: String] {
        let run = try S3Tests.aws(server, ["s3api", "list-objects-v2", "--bucket", bucket, "--prefix", prefix])
        #expect(run.status == 0, "\(run.stderr)")
        let json = (try? JSONSerialization.jsonObject(with: Data(run.stdout.utf8))) as? [String: Any] ?? [:]
        var out: [String: String] = [:]
        for o in json["Contents"] as? [[String: Any]] ?? [] {
            out[o["Key"] as! String] = "\(o["ETag"] ?? "") \(o["LastModified"] ?? "")"
        }
        return out
    }

    static func body(_ server: S3TestServer, bucket: String, key: String, into path: String) throws -> [UInt8] {
        let get = try S3Tests.aws(server, ["s3", "cp", "s3://\(bucket)/\(key)", path])
        #expect(get.status == 0, "\(get.stderr)")
        defer { try? FileManager.default.removeItem(atPath: path) }
        return Array(FileManager.default.contents(atPath: path) ?? Data())
    }

    @Test func noChangeRunAgainstAServerThatDropsMetadataMovesNothing() async throws {
        let server = try JuiceFSGatewayTests.server()
        let bucket = server.bucket!
        let f = try Fixture("compare-juicefs")
        defer { f.cleanUp() }
        try f.source.file("a/one", TestTree.bytes(3000, seed: 1))
        try f.source.file("a/two", TestTree.bytes(100_000, seed: 2))
        try f.source.file("big.bin", TestTree.bytes(20 << 20, seed: 3))  // a multipart upload
        try f.source.file("same", TestTree.bytes(5000, seed: 4))
        try f.source.file("empty", [])
        try f.source.setTimes("same", atime: SampleTrees.time(1), mtime: SampleTrees.time(2))
        let prefix = "compare-\(UInt32.random(in: 0..<UInt32.max))"
        let args = [f.source.root, "s3://\(bucket)/\(prefix)", "--cache-dir", f.destinationRoot + "-cache"]
        let report = f.destinationRoot + "-report.json"

        let first = try ContentComparisonTests.sync(server, args, report: report)
        #expect(first.status == 3, "the dropped metadata is reported: \(first.stderr)")
        let files: Set<String> = ["/a/one", "/a/two", "/big.bin", "/same", "/empty"]
        #expect(first.transferred.isSuperset(of: files), "\(first.transferred)")
        let stored = try ContentComparisonTests.objects(server, bucket: bucket, prefix: prefix + "/")
        #expect(Set(stored.keys).isSuperset(of: files.map { prefix + $0 }), "\(stored)")

        // Last-Modified has one-second resolution: a re-upload would move it.
        try await Task.sleep(for: .milliseconds(1100))
        let again = try ContentComparisonTests.sync(server, args, report: report)
        #expect(again.status == 0, "\(again.stderr)")
        #expect(again.transferred.isEmpty, "\(again.transferred)")
        #expect(again.counters["BytesTransferred"] as? Int == 0 && again.counters["FilesTransferred"] as? Int == 0, "\(again.counters)")
        #expect(again.counters["FilesUnchanged"] as? Int == 6, "five files and a/: \(again.counters)")
        #expect(try ContentComparisonTests.objects(server, bucket: bucket, prefix: prefix + "/") == stored)

        // The cache remembers the mtime each object's bytes were sent with (the server
        // dropped it): equal size and mtime mean unchanged without reading, as they do
        // where the server keeps mtimes (the same quick check: a same-size edit under the
        // same mtime is not seen).
        let edited = TestTree.bytes(5000, seed: 5)
        _ = try f.source.file("same", edited)
        try f.source.setTimes("same", atime: SampleTrees.time(1), mtime: SampleTrees.time(2))
        let quick = try ContentComparisonTests.sync(server, args, report: report)
        #expect(quick.status == 0 && quick.transferred.isEmpty, "\(quick.transferred) \(quick.stderr)")
        #expect(try ContentComparisonTests.body(server, bucket: bucket, key: prefix + "/same", into: f.destinationRoot + "-same")
                == TestTree.bytes(5000, seed: 4))
        // Another mtime: the content decides. `same` holds other bytes and goes; `a/one`,
        // only touched, holds the bytes the object's ETag names and stays.
        try f.source.setTimes("same", atime: SampleTrees.time(1), mtime: SampleTrees.time(3))
        try f.source.setTimes("a/one", atime: SampleTrees.time(1), mtime: SampleTrees.time(5))
        let third = try ContentComparisonTests.sync(server, args, report: report)
        #expect(third.status == 3, "the dropped metadata of the new upload is reported: \(third.stderr)")
        #expect(third.transferred == ["/same"], "\(third.transferred)")
        #expect(third.counters["BytesTransferred"] as? Int == 5000, "\(third.counters)")
        #expect(try ContentComparisonTests.body(server, bucket: bucket, key: prefix + "/same", into: f.destinationRoot + "-same") == edited)
        // The comparison that kept `a/one` is remembered with its new mtime: the next run's
        // quick check passes it without reading, as it would a file Ferry had sent with that
        // mtime (shown with a same-size edit under that mtime, which the quick check does not see).
        _ = try f.source.file("a/one", TestTree.bytes(3000, seed: 6))
        try f.source.setTimes("a/one", atime: SampleTrees.time(1), mtime: SampleTrees.time(5))
        let fourth = try ContentComparisonTests.sync(server, args, report: report)
        #expect(fourth.status == 0 && fourth.transferred.isEmpty, "a/one not read again: \(fourth.transferred) \(fourth.stderr)")
        #expect(try ContentComparisonTests.body(server, bucket: bucket, key: prefix + "/a/one", into: f.destinationRoot + "-one")
                == TestTree.bytes(3000, seed: 1))
        _ = try f.source.file("a/one", TestTree.bytes(3000, seed: 1))
        try f.source.setTimes("a/one", atime: SampleTrees.time(1), mtime: SampleTrees.time(5))

        // And back, described from the cache (the listing's Last-Modified has milliseconds,
        // a GET's whole seconds: the stand-in mtime must be the same either way).
        let back = try CLI.run(["sync", "s3://\(bucket)/\(prefix)", f.destinationRoot, "--endpoint-url", server.endpoint,
                                "--cache-dir", f.destinationRoot + "-cache"], environment: server.clientEnvironment)
        #expect(back.status == 0, "\(back.stdout)\(back.stderr)")
        #expect(FileManager.default.contents(atPath: f.destinationRoot + "/big.bin") == Data(TestTree.bytes(20 << 20, seed: 3)))
        #expect(FileManager.default.contents(atPath: f.destinationRoot + "/a/two") == Data(TestTree.bytes(100_000, seed: 2)))
        #expect(FileManager.default.contents(atPath: f.destinationRoot + "/same") == Data(edited))
    }

    /// The source reads of a content comparison move data as a copy's do: `--bwlimit`
    /// holds them to its rate too (they once ran at full speed).
    @Test func comparisonReadsKeepToTheBandwidthLimit() async throws {
        let (server, bucket) = try await S3Tests.freshBucket()
        let f = try Fixture("compare-bwlimit")
        defer { f.cleanUp() }
        try f.source.file("big", TestTree.bytes(6 << 20, seed: 7))
        // Written by another tool: the object holds no mtime of Ferry's, so its content decides.
        let upload = try S3Tests.aws(server, ["s3", "cp", f.source.root + "/big", "s3://\(bucket)/limited/big"])
        #expect(upload.status == 0, "\(upload.stderr)")

        let started = ContinuousClock.now
        let run = try ContentComparisonTests.sync(
            server, [f.source.root, "s3://\(bucket)/limited", "--cache-dir", f.destinationRoot + "-cache", "--bwlimit", "2M"],
            report: f.destinationRoot + "-report.json")
        let elapsed = ContinuousClock.now - started
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.counters["BytesTransferred"] as? Int == 0, "compared, not sent: \(run.counters)")
        // 6 MiB read at 2 MiB/s, less the quarter second of burst the limiter allows.
        #expect(elapsed >= .seconds(2), "the comparison read 6 MiB in \(elapsed) under --bwlimit 2M")
    }

    @Test func objectsAnotherToolWroteGetFerrysMetadataWithoutTheirData() async throws {
        let (server, bucket) = try await S3Tests.freshBucket()
        let f = try Fixture("compare-foreign")
        defer { f.cleanUp() }
        try f.source.file("x/a", TestTree.bytes(4000, seed: 1), mode: 0o640)
        try f.source.file("x/big", TestTree.bytes(20 << 20, seed: 2))  // the aws CLI uploads it in 8 MiB parts
        try f.source.file("c", TestTree.bytes(6000, seed: 3))
        try f.source.setTimes("x/a", atime: SampleTrees.time(3), mtime: SampleTrees.time(4))
        let upload = try S3Tests.aws(server, ["s3", "cp", "--recursive", f.source.root, "s3://\(bucket)/t"])
        #expect(upload.status == 0, "\(upload.stderr)")
        // c in the bucket: the same size, other bytes.
        let other = f.destinationRoot + "-other"
        try Data(TestTree.bytes(6000, seed: 9)).write(to: URL(fileURLWithPath: other))
        #expect(try S3Tests.aws(server, ["s3", "cp", other, "s3://\(bucket)/t/c"]).status == 0)
        let before = try ContentComparisonTests.objects(server, bucket: bucket, prefix: "t/")
        #expect(before["t/x/big"]?.contains("-3") == true, "a multipart ETag: \(before)")

        let report = f.destinationRoot + "-report.json"
        let args = [f.source.root, "s3://\(bucket)/t", "--cache-dir", f.destinationRoot + "-cache"]
        let run = try ContentComparisonTests.sync(server, args, report: report)
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.counters["BytesTransferred"] as? Int == 6000, "only c's bytes move: \(run.counters)")
        #expect(Set(["/x/a", "/x/big", "/c"]).isSubset(of: run.transferred), "\(run.transferred)")
        #expect(try ContentComparisonTests.body(server, bucket: bucket, key: "t/c", into: other) == TestTree.bytes(6000, seed: 3))
        let head = try S3Tests.aws(server, ["s3api", "head-object", "--bucket", bucket, "--key", "t/x/a"])
        let metadata = ((try? JSONSerialization.jsonObject(with: Data(head.stdout.utf8))) as? [String: Any])?["Metadata"] as? [String: String] ?? [:]
        #expect(metadata["file-mtime"] == "\(SampleTrees.time(4).totalNanoseconds)ns", "\(metadata)")
        #expect(metadata["file-permissions"] == "0100640", "\(metadata)")

        let again = try ContentComparisonTests.sync(server, args, report: report)
        #expect(again.status == 0 && again.transferred.isEmpty, "\(again.transferred) \(again.stderr)")
        // And back: the tree as it was.
        let back = try S3Tests.ferry(server, ["sync", "s3://\(bucket)/t", f.destinationRoot, "--cache-dir", f.destinationRoot + "-cache"])
        #expect(back.status == 0, "\(back.stderr)")
        #expect(try f.differences(compareAtime: false) == [])
    }
}
