import FerryCore
import FerryEngine
import FerryLocal
import FerryS3
import FerryTesting
import Foundation
import Testing

/// The S3 location against the JuiceFS S3 gateway (MinIO-derived; checks SigV4; keeps
/// data but silently drops user metadata).
@Suite struct JuiceFSGatewayTests {
    static func server() throws -> S3TestServer { try S3TestServer.juicefs.get() }

    static func client(_ server: S3TestServer) throws -> S3Client {
        try S3Client(endpoint: S3Configuration.endpoint(
            S3Configuration.Overrides(endpointURL: server.endpoint), environment: server.clientEnvironment, home: "/nonexistent"))
    }

    @Test func droppedMetadataIsReportedNotClaimed() throws {
        let server = try JuiceFSGatewayTests.server()
        let f = try Fixture("juicefs")
        defer { f.cleanUp() }
        try f.source.file("a/data.bin", TestTree.bytes(100_000, seed: 5), mode: 0o600)
        try f.source.chown("a/data.bin", uid: 1234, gid: 99)
        try f.source.file("big.bin", TestTree.bytes(20 << 20, seed: 6))
        let prefix = "drop-\(UInt32.random(in: 0..<UInt32.max))"
        let reportPath = f.destinationRoot + ".report.json"
        let run = try CLI.run(["sync", f.source.root, "s3://\(server.bucket!)/\(prefix)", "--endpoint-url", server.endpoint, "--report", reportPath],
                              environment: server.clientEnvironment)
        #expect(run.status == 3, "verification says so: \(run.stdout)\(run.stderr)")
        #expect(run.stderr.contains("METADATA_NOT_STORED"))
        #expect(run.stderr.contains("the server drops user metadata"))
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: reportPath))) as! [String: Any]
        let transferred = report["Transferred"] as! [[String: Any]]
        let partial = transferred.filter { $0["Status"] as? String == "PARTIAL" }.compactMap { $0["RelativePath"] as? String }
        // Directories too: their markers keep nothing here, and the report says so rather
        // than naming the owner a read-back shows instead ("uid 65534, expected 0").
        #expect(Set(partial) == ["/", "/a", "/a/data.bin", "/big.bin"], "\(transferred)")
        #expect(run.stderr.contains("the server keeps no user metadata on directory markers"))
        #expect(!run.stderr.contains("uid 65534"), "\(run.stderr)")
        let verified = report["Verified"] as! [[String: Any]]
        #expect(verified.contains { $0["RelativePath"] as? String == "/a/data.bin" && $0["FailureKind"] as? String == "METADATA_FAILURE" })
        #expect(verified.contains { $0["RelativePath"] as? String == "/a" && $0["FailureKind"] as? String == "METADATA_FAILURE"
            && ($0["Reason"] as? String ?? "").contains("directory markers") }, "\(verified)")
        try? FileManager.default.removeItem(atPath: reportPath)
        // The data itself arrived intact (read back with the aws CLI).
        let copy = f.destinationRoot + ".big"
        let get = try CLI.run(["s3", "cp", "s3://\(server.bucket!)/\(prefix)/big.bin", copy], wrapper: ["aws"], direct: true, environment: server.clientEnvironment)
        #expect(get.status == 0, "\(get.stderr)")
        #expect(FileManager.default.contents(atPath: copy) == Data(TestTree.bytes(20 << 20, seed: 6)))
        try? FileManager.default.removeItem(atPath: copy)
    }

    @Test func wrongSecretIsRefusedWithAClearMessage() throws {
        let server = try JuiceFSGatewayTests.server()
        var env = server.clientEnvironment
        env["AWS_SECRET_ACCESS_KEY"] = "not-the-secret"
        let f = try Fixture("juicefs-auth")
        defer { f.cleanUp() }
        try f.source.file("x", [1])
        let run = try CLI.run(["sync", f.source.root, "s3://\(server.bucket!)/auth", "--endpoint-url", server.endpoint], environment: env)
        #expect(run.status == 1)
        #expect(run.stderr.contains("HTTP 403"))
        #expect(run.stderr.contains("check the access key, the secret and the region"))
        #expect(!run.stderr.contains("not-the-secret"))
    }

    /// With `--object-meta` the gateway keeps objects' user metadata but drops a directory
    /// marker's on its PUT (the PUT makes a directory); only a copy of the marker onto itself
    /// keeps it. Directories' metadata must still arrive, survive a re-run untouched, and
    /// come back on a download.
    @Test func directoryMetadataArrivesWhereOnlyACopyKeepsIt() throws {
        let server = try S3TestServer.juicefsObjectMeta.get()
        let f = try Fixture("juicefs-dirmeta")
        defer { f.cleanUp() }
        try f.source.file("d/e/data.bin", TestTree.bytes(3000, seed: 9), mode: 0o640)
        try f.source.file("top.txt", Array("top".utf8))
        try f.source.chmod("d", 0o750)
        try f.source.chown("d", uid: 1234, gid: 99)
        try f.source.chmod("d/e", 0o711)
        try f.source.setTimes("d/e", atime: Timestamp(seconds: 1_500_000_000, nanoseconds: 0), mtime: Timestamp(seconds: 1_500_000_100, nanoseconds: 5))
        try f.source.setTimes("d", atime: Timestamp(seconds: 1_500_000_000, nanoseconds: 0), mtime: Timestamp(seconds: 1_400_000_000, nanoseconds: 7))
        let target = "s3://\(server.bucket!)/dirmeta-\(UInt32.random(in: 0..<UInt32.max))"
        let first = try CLI.run(["sync", f.source.root, target, "--endpoint-url", server.endpoint], environment: server.clientEnvironment)
        #expect(first.status == 0, "\(first.stdout)\(first.stderr)")
        #expect(!first.stderr.contains("METADATA"), "\(first.stderr)")
        // The re-run finds every directory as it left it: nothing is written again.
        let again = try CLI.run(["sync", f.source.root, target, "--endpoint-url", server.endpoint, "-v"], environment: server.clientEnvironment)
        #expect(again.status == 0, "\(again.stdout)\(again.stderr)")
        #expect(again.stdout.contains("FilesTransferred: 0"), "\(again.stdout)")
        #expect(!again.stdout.contains("metadata /"), "\(again.stdout)")
        // What the gateway holds comes back as it left: modes, owners and times of directories too.
        let back = try CLI.run(["sync", target, f.destinationRoot, "--endpoint-url", server.endpoint], environment: server.clientEnvironment)
        #expect(back.status == 0, "\(back.stdout)\(back.stderr)")
        #expect(try f.differences(compareAtime: false) == [])
    }
}
