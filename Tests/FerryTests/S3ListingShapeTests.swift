import FerryCore
import FerryEngine
import FerryLocal
import FerryS3
import FerryTesting
import Foundation
import Testing

/// Bucket shapes another tool leaves: an object and a prefix of one name, prefixes without
/// marker objects. Restored to a file system, each is handled by a rule a user can read in
/// the README, the same in the copy and in point-in-time verification.
@Suite struct S3ListingShapeTests {
    /// Last-Modified of `key`, as the server answers a HEAD (whole seconds).
    static func lastModified(_ client: S3Client, _ bucket: String, _ key: String) async throws -> Int64 {
        let head = try #require(try await client.headObject(bucket: bucket, key: key))
        return Int64(try #require(head.lastModified).timeIntervalSince1970.rounded(.down))
    }

    static func sync(_ client: S3Client, _ bucket: String, _ prefix: String, to destination: String,
                     verify: TransferOptions.VerifyMode) async throws -> ExecutionResult {
        var options = Fixture.defaultOptions
        options.verifyMode = verify
        let engine = SyncEngine(SyncConfiguration(
            source: S3Location(client: client, bucket: bucket, prefix: prefix), destination: try POSIXLocation(path: destination, create: true),
            options: options, filters: Filters(), parallel: 4, dryRun: false))
        return await engine.run()
    }

    @Test func objectAndPrefixOfOneNameGiveOneClearSkip() async throws {
        try await S3Tests.withBucket { _, client, bucket in
            let f = try Fixture("s3-dup-name")
            defer { f.cleanUp() }
            _ = try await client.putObject(bucket: bucket, key: "c/a", bytes: Array("the object a".utf8))
            _ = try await client.putObject(bucket: bucket, key: "c/a/b", bytes: Array("the object a/b".utf8))
            _ = try await client.putObject(bucket: bucket, key: "c/z", bytes: Array("z".utf8))
            for verify in [TransferOptions.VerifyMode.onlyFilesTransferred, .pointInTimeConsistent] {
                let result = try await S3ListingShapeTests.sync(client, bucket, "c", to: f.destinationRoot, verify: verify)
                // One problem: the object left out, naming the object, the prefix and what was kept.
                #expect(result.problems.count == 1, "\(result.problems)")
                let problem = try #require(result.problems.first)
                #expect(problem.category == .skipped && problem.entry.path == "/a" && problem.entry.status == .skipped
                        && problem.entry.failureKind == .duplicateName && problem.entry.kind == "FILE", "\(problem)")
                let reason = problem.entry.reason ?? ""
                #expect(reason.contains("prefix \"a/\"") && reason.contains("object \"a\"") && reason.contains("the directory was kept"), "\(reason)")
                #expect(result.counters.filesSkipped == 1 && result.counters.verificationFailures == 0 && result.counters.filesFailed == 0)
                // The kept directory with its own (default) metadata, its child, nothing else touched.
                let dst = try TreeSnapshot(f.destinationRoot)
                let a = try #require(dst.entries[EntryPath("a")!])
                #expect(a.kind == .directory && a.permissions == 0o755 && a.uid == 65534 && a.gid == 65534)
                #expect(a.mtime.seconds == (try await S3ListingShapeTests.lastModified(client, bucket, "c/a/b")), "not the object's, not the epoch")
                #expect(FileManager.default.contents(atPath: f.destinationRoot + "/a/b") == Data("the object a/b".utf8))
                #expect(FileManager.default.contents(atPath: f.destinationRoot + "/z") == Data("z".utf8))
                #expect(Set(dst.entries.keys.map(\.description)) == ["/", "/a", "/a/b", "/z"])
            }
        }
    }

    /// Prefixes written without markers take the newest mtime of what they hold (files'
    /// Last-Modified, subdirectories' by the same rule), not the epoch; a re-run finds them
    /// unchanged and point-in-time verification agrees.
    @Test func directoriesWithoutMarkersTakeTheNewestTimeBelowThem() async throws {
        try await S3Tests.withBucket { _, client, bucket in
            let f = try Fixture("s3-no-marker")
            defer { f.cleanUp() }
            _ = try await client.putObject(bucket: bucket, key: "t/x/old", bytes: [1])
            // Last-Modified has one-second resolution: the later objects are a second newer.
            try await Task.sleep(for: .milliseconds(1100))
            _ = try await client.putObject(bucket: bucket, key: "t/x/deep/new", bytes: [2])
            _ = try await client.putObject(bucket: bucket, key: "t/y/only", bytes: [3])
            let old = try await S3ListingShapeTests.lastModified(client, bucket, "t/x/old")
            let new = try await S3ListingShapeTests.lastModified(client, bucket, "t/x/deep/new")
            #expect(new > old)
            let first = try await S3ListingShapeTests.sync(client, bucket, "t", to: f.destinationRoot, verify: .pointInTimeConsistent)
            #expect(first.status == .success, "\(first.problems)")
            let dst = try TreeSnapshot(f.destinationRoot)
            for (path, expected) in [("x", new), ("x/deep", new), ("y", try await S3ListingShapeTests.lastModified(client, bucket, "t/y/only"))] {
                let e = try #require(dst.entries[EntryPath(path)!])
                #expect(e.kind == .directory && e.mtime == Timestamp(seconds: expected, nanoseconds: 0), "\(path): \(e.mtime)")
            }
            let root = try #require(dst.entries[.root])
            #expect(root.mtime.seconds >= new, "the root takes the newest below it too")
            let again = try await S3ListingShapeTests.sync(client, bucket, "t", to: f.destinationRoot, verify: .pointInTimeConsistent)
            #expect(again.status == .success && again.counters.filesTransferred == 0, "\(again.counters) \(again.problems)")
            #expect(TreeSnapshot.differences(dst, try TreeSnapshot(f.destinationRoot), compareAtime: false) == [])
        }
    }
}
