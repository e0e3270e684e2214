import FerryCore
import FerryEngine
import FerryLocal
import FerryS3
import FerryTesting
import Foundation
import Testing

/// A source and destination that contain one another are refused by the engine itself
/// (so by `ferry sync` and by every execution the server starts) and by CreateTask.
@Suite struct OverlapTests {
    @Test func engineRefusesADestinationInsideItsSourceBothWays() async throws {
        let f = try Fixture("overlap-engine")
        defer { f.cleanUp() }
        try f.source.file("a", [1, 2, 3])
        try f.source.directory("backup")
        // Through a symlink outside both: the same tree after resolving it.
        let alias = f.destinationRoot + "-alias"
        try FileManager.default.createSymbolicLink(atPath: alias, withDestinationPath: f.source.root)
        defer { try? FileManager.default.removeItem(atPath: alias) }
        let before = try TreeSnapshot(f.source.root)
        for (src, dst) in [(f.source.root, f.source.root + "/backup"), (f.source.root + "/backup", f.source.root),
                           (f.source.root, alias + "/backup"), (alias, f.source.root)] {
            let engine = SyncEngine(SyncConfiguration(
                source: try POSIXLocation(path: src), destination: try POSIXLocation(path: dst),
                options: Fixture.defaultOptions, filters: Filters(), parallel: 4, dryRun: false))
            let result = await engine.run()
            #expect(result.status == .error && result.errorCode == "Fatal", "\(src) → \(dst)")
            #expect(result.errorDetail?.contains("overlap") == true, "\(result.errorDetail ?? "")")
            #expect(result.counters.filesTransferred == 0)
        }
        // Nothing was copied into the source (no backup/a, no backup/backup).
        #expect(TreeSnapshot.differences(before, try TreeSnapshot(f.source.root), compareAtime: false) == [])
    }

    @Test func scopesOfBucketsAndPaths() throws {
        let a = LocationScope.bucket(endpoint: "http://h:1", bucket: "b", prefix: "data/")
        #expect(a.overlaps(.bucket(endpoint: "http://h:1", bucket: "b", prefix: "data/backup")))
        #expect(a.overlaps(.bucket(endpoint: "http://h:1", bucket: "b", prefix: "")))
        #expect(!a.overlaps(.bucket(endpoint: "http://h:1", bucket: "b", prefix: "database/")))
        #expect(!a.overlaps(.bucket(endpoint: "http://h:1", bucket: "c", prefix: "data/")))
        #expect(!a.overlaps(.bucket(endpoint: "http://h:2", bucket: "b", prefix: "data/")))
        #expect(!a.overlaps(.posix("/data")))
        // A path not made yet resolves through its deepest existing part.
        #expect(LocationScope.posix("/tmp/ferry-no-such/x/../y").display == LocationScope.posix("/tmp").display + "/ferry-no-such/y")
        #expect(!LocationScope.posix("/tmp/ab").overlaps(.posix("/tmp/abc")))
        #expect(throws: FerryError.self) {
            try LocationScope.checkDisjoint(source: a, destination: .bucket(endpoint: "http://h:1", bucket: "b", prefix: "data/x/"))
        }
        try LocationScope.checkDisjoint(source: a, destination: .bucket(endpoint: "http://h:1", bucket: "b", prefix: "data2/"))
    }

    @Test func createTaskRefusesOverlappingLocationsWhateverNameTheirServerHas() async throws {
        let f = try Fixture("overlap-server")
        defer { f.cleanUp() }
        try f.source.file("a", [1])
        try f.source.directory("backup")
        let server = try FerryServerProcess(dataDirectory: f.destinationRoot + "-state")
        defer { server.kill() }
        let agent = (try server.ok(["list-agents"])["Agents"] as? [[String: Any]])?.first?["AgentArn"] as? String ?? ""
        func nfs(_ host: String, _ path: String) throws -> (status: Int32, json: [String: Any], stderr: String) {
            try server.aws(["create-location-nfs", "--server-hostname", host, "--subdirectory", path, "--on-prem-config", "AgentArns=\(agent)"])
        }
        let data = try nfs("localhost", f.source.root).json["LocationArn"] as? String ?? ""
        let backup = try nfs("127.0.0.1", f.source.root + "/backup").json["LocationArn"] as? String ?? ""
        let elsewhere = try nfs(ThisHostName.name, f.destinationRoot).json["LocationArn"] as? String ?? ""
        #expect(!data.isEmpty && !backup.isEmpty && !elsewhere.isEmpty)
        for (src, dst) in [(data, backup), (backup, data)] {
            let r = try server.aws(["create-task", "--source-location-arn", src, "--destination-location-arn", dst])
            #expect(r.status != 0 && r.stderr.contains("InvalidRequestException") && r.stderr.contains(src) && r.stderr.contains(dst)
                    && r.stderr.contains("overlap"), "\(r.stderr)")
        }
        #expect(try server.aws(["create-task", "--source-location-arn", data, "--destination-location-arn", elsewhere]).status == 0)
        #expect((try server.ok(["list-tasks"])["Tasks"] as? [Any])?.count == 1)

        // Another host's export is taken as that host's (Ferry's NFS client reaches it); a
        // version Ferry does not speak is refused by name.
        // The same path on another server does not overlap.
        let remote = try nfs("nas1.invalid", f.source.root + "/backup").json["LocationArn"] as? String ?? ""
        #expect(try server.aws(["create-task", "--source-location-arn", data, "--destination-location-arn", remote]).status == 0)
        let update = try server.aws(["update-location-nfs", "--location-arn", backup, "--mount-options", "Version=NFS4_0"])
        #expect(update.status != 0 && update.stderr.contains("does not speak NFSv4.0"), "\(update.stderr)")
        #expect((try server.ok(["list-locations"])["Locations"] as? [Any])?.count == 4)
        #expect(try server.ok(["describe-location-nfs", "--location-arn", backup])["LocationUri"] as? String
                == "nfs://127.0.0.1\(f.source.root)/backup/")
    }
}

/// This host's name, as `gethostname(2)` gives it.
enum ThisHostName {
    static var name: String {
        var buffer = [CChar](repeating: 0, count: 256)
        _ = gethostname(&buffer, buffer.count)
        return String(cString: buffer)
    }
}
