import FerryCore
import Testing

/// One parser of location arguments for the CLI, block sync and the server.
@Suite struct LocationURITests {
    @Test func everySchemeParses() throws {
        #expect(try LocationURI.parse("./data") == .posix(path: "./data"))
        #expect(try LocationURI.parse("file:///srv/a%20b") == .posix(path: "/srv/a b"))
        #expect(try LocationURI.parse("s3://bucket/p/q") == .s3(bucket: "bucket", prefix: "p/q"))
        #expect(try LocationURI.parse("s3://bucket") == .s3(bucket: "bucket", prefix: ""))
        #expect(try LocationURI.parse("block:///dev/vdb") == .block(path: "/dev/vdb"))
        #expect(try LocationURI.parse("nfs://nas1/export/projects") == .nfs(host: "nas1", port: nil, path: "/export/projects"))
        #expect(try LocationURI.parse("nfs://nas2:2049/backup") == .nfs(host: "nas2", port: 2049, path: "/backup"))
        #expect(try LocationURI.parse("nfs://[fd00::1]:2049/x") == .nfs(host: "fd00::1", port: 2049, path: "/x"))
        #expect(try LocationURI.parse("smb://CORP;alice@fs1/share/dept")
                == .smb(domain: "CORP", user: "alice", host: "fs1", port: nil, path: "/share/dept"))
        #expect(try LocationURI.parse("smb://fs1:4450/share") == .smb(domain: nil, user: nil, host: "fs1", port: 4450, path: "/share"))
        #expect(try LocationURI.parse("agent://agent-0123/loc-9") == .agent(agent: "agent-0123", location: "loc-9"))
        #expect(try LocationURI.parse("a/b://c") == .posix(path: "a/b://c"), "a path with :// after a slash is a path")
    }

    @Test(arguments: [
        ("", "empty"), ("file://relative", "absolute path"), ("s3://B", "bucket name"), ("nfs://host", "path"),
        ("nfs://host:99999/x", "port"), ("smb://u:secret@fs1/share", "password"), ("gs://b/p", "gs://"), ("agent:///x", "agent"),
    ])
    func badArgumentsAreNamed(_ text: String, _ named: String) {
        do {
            _ = try LocationURI.parse(text)
            Issue.record("\(text) parsed")
        } catch {
            #expect(error.description.contains(named), "\(error)")
        }
    }
}

extension LocationURITests {
    @Test func urisAreWrittenAsDataSyncWritesThem() throws {
        for text in ["nfs://nas1/export/", "nfs://[fd00::1]:2049/x/", "s3://bucket/p/", "s3://bucket/", "object-storage://h:9000/b/p/",
                     "smb://CORP;alice@fs1/share/", "agent://a/l", "file:///srv", "block:///dev/vdb"] {
            #expect(try LocationURI.parse(text).description == text)
        }
    }
}
