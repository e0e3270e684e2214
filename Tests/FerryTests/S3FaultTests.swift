import FerryCore
import FerryTesting
import Foundation
import Glibc
import Testing

/// Interrupted multipart uploads: the client killed, the server killed. The next run
/// completes the object exactly and leaves no multipart upload open.
@Suite struct S3FaultTests {
    /// Starts Fixtures/fault_proxy.py on a free port in front of `upstream` (faults every
    /// `every` requests, 0 for none; https with `tls` as (cert, key)); stop it with SIGKILL.
    static func startProxy(upstream: Int, every: Int, tls: (String, String)? = nil, corruptGETs: Int = 0,
                           environment: [String: String] = [:], output: Any? = nil) throws -> (Process, Int) {
        let port = try S3TestServer.freePort()
        let proxy = Process()
        proxy.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        let script = Bundle.module.resourceURL!.appendingPathComponent("Fixtures/fault_proxy.py").path
        proxy.arguments = ["--pdeathsig", "KILL", "--", S3TestServer.which("python3") ?? "/usr/bin/python3", script,
                           "\(port)", "\(upstream)", "\(every)"] + (tls.map { [$0.0, $0.1] } ?? [])
        proxy.standardOutput = output ?? FileHandle(forWritingAtPath: "/dev/null")
        proxy.environment = ProcessInfo.processInfo.environment.merging(["CORRUPT_GETS": "\(corruptGETs)"].merging(environment) { $1 }) { $1 }
        try ProcessLauncher.run(proxy)
        try S3TestServer.waitForPort(port, process: proxy, what: "fault proxy")
        return (proxy, port)
    }

    /// A source with `multi.bin` (20 MiB + 77 bytes: the aws CLI and Ferry upload it in
    /// 8 MiB parts, ETag "…-3") and `single.bin` (5,000 bytes, one PutObject).
    static func multipartAndSingle(_ label: String) throws -> Fixture {
        let f = try Fixture(label)
        try f.source.file("multi.bin", TestTree.bytes(20 << 20 | 77, seed: 11))
        try f.source.file("single.bin", TestTree.bytes(5_000, seed: 12))
        return f
    }

    /// ``multipartAndSingle(_:)`` uploaded by the aws CLI under `prefix` of a fresh bucket.
    static func uploadedMultipartAndSingle(_ label: String, prefix: String) async throws -> (S3TestServer, String, Fixture) {
        let (server, bucket) = try await S3Tests.freshBucket()
        let f = try S3FaultTests.multipartAndSingle(label)
        #expect(try S3Tests.aws(server, ["s3", "cp", "--recursive", f.source.root, "s3://\(bucket)/\(prefix)"]).status == 0)
        return (server, bucket, f)
    }

    static func openUploads(_ server: S3TestServer, bucket: String) throws -> Int {
        let r = try CLI.run(["s3api", "list-multipart-uploads", "--bucket", bucket, "--output", "json"], wrapper: ["aws"], direct: true,
                            environment: server.clientEnvironment)
        #expect(r.status == 0, "\(r.stderr)")
        if r.stdout.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { return 0 }
        let json = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        return (json?["Uploads"] as? [Any])?.count ?? 0
    }

    static func download(_ server: S3TestServer, _ uri: String, to path: String) throws -> Data? {
        let r = try CLI.run(["s3", "cp", uri, path], wrapper: ["aws"], direct: true, environment: server.clientEnvironment)
        #expect(r.status == 0, "\(r.stderr)")
        defer { try? FileManager.default.removeItem(atPath: path) }
        return FileManager.default.contents(atPath: path)
    }

    /// Starts `ferry sync` and kills it with SIGKILL once `ready` holds.
    static func startAndKill(_ args: [String], environment: [String: String], when ready: () -> Bool) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: CLI.executable)
        p.arguments = args
        p.environment = environment
        p.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        p.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try p.run()
        #expect(Fixture.waitUntil(seconds: 60) { ready() || !p.isRunning })
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
    }

    @Test func clientKilledDuringMultipartUploadIsCleanedUpAndCompleted() async throws {
        let server = try S3TestServer.moto.get()
        let bucket = "ferry-kill-\(UInt32.random(in: 0..<UInt32.max))"
        #expect(try CLI.run(["s3", "mb", "s3://\(bucket)"], wrapper: ["aws"], direct: true, environment: server.clientEnvironment).status == 0)
        let f = try Fixture("s3-kill")
        defer { f.cleanUp() }
        let content = TestTree.bytes(60 << 20, seed: 11)
        try f.source.file("large.bin", content)
        let args = ["sync", f.source.root, "s3://\(bucket)/k", "--endpoint-url", server.endpoint]
        try S3FaultTests.startAndKill(args + ["--bwlimit", "20M"], environment: server.clientEnvironment) {
            (try? S3FaultTests.openUploads(server, bucket: bucket)) ?? 0 >= 1
        }
        #expect(try S3FaultTests.openUploads(server, bucket: bucket) >= 1, "the killed run left its upload open")
        let again = try CLI.run(args, environment: server.clientEnvironment)
        #expect(again.status == 0, "\(again.stdout)\(again.stderr)")
        #expect(try S3FaultTests.openUploads(server, bucket: bucket) == 0)
        #expect(try S3FaultTests.download(server, "s3://\(bucket)/k/large.bin", to: f.destinationRoot + ".dl") == Data(content))
    }

    @Test func serverKilledDuringMultipartUploadThenRestarted() async throws {
        let dir = try S3TestServer.formatJuiceFS()
        let port = try S3TestServer.freePort()
        var server = try S3TestServer.launchJuiceFS(directory: dir, port: port)
        defer { server.kill(); TestTree(existing: dir).remove() }
        let f = try Fixture("s3-server-kill")
        defer { f.cleanUp() }
        let content = TestTree.bytes(48 << 20, seed: 12)
        try f.source.file("large.bin", content)
        try f.source.file("small.txt", Array("small".utf8))
        let args = ["sync", f.source.root, "s3://vol1/restart", "--endpoint-url", server.endpoint, "--verify-mode", "none"]
        let p = Process()
        p.executableURL = URL(fileURLWithPath: CLI.executable)
        p.arguments = args + ["--bwlimit", "16M"]
        p.environment = server.clientEnvironment
        p.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        p.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try p.run()
        // Kill the server once the multipart upload is under way.
        #expect(Fixture.waitUntil(seconds: 60) { (try? S3FaultTests.openUploads(server, bucket: "vol1")) ?? 0 >= 1 || !p.isRunning })
        server.kill()
        p.waitUntilExit()
        #expect(p.terminationStatus != 0, "a run whose server died cannot succeed")
        server = try S3TestServer.launchJuiceFS(directory: dir, port: port)
        let again = try CLI.run(args, environment: server.clientEnvironment)
        #expect(again.status == 0 || again.status == 2, "\(again.stdout)\(again.stderr)")
        #expect(try S3FaultTests.openUploads(server, bucket: "vol1") == 0)
        #expect(try S3FaultTests.download(server, "s3://vol1/restart/large.bin", to: f.destinationRoot + ".dl") == Data(content))
    }
}

/// Throttling, server errors and dropped connections on every few requests: the run
/// retries with backoff, slows down, and ends exact.
@Suite struct S3RetryTests {
    @Test func slowDownServerErrorsAndResetsAreRetried() async throws {
        let server = try S3TestServer.moto.get()
        let out = Pipe()
        let (proxy, port) = try S3FaultTests.startProxy(upstream: server.port, every: 4, output: out)
        // SIGKILL: children of Foundation's Process may not see SIGTERM.
        defer { if proxy.isRunning { kill(proxy.processIdentifier, SIGKILL) } }

        let bucket = "ferry-retry-\(UInt32.random(in: 0..<UInt32.max))"
        #expect(try CLI.run(["s3", "mb", "s3://\(bucket)"], wrapper: ["aws"], direct: true, environment: server.clientEnvironment).status == 0)
        let f = try Fixture("s3-retry")
        defer { f.cleanUp() }
        try SampleTrees.smallFiles(f.source, files: 60, directories: 3)
        try f.source.file("large.bin", TestTree.bytes(30 << 20, seed: 3))
        let endpoint = "http://127.0.0.1:\(port)"
        let up = try CLI.run(["sync", f.source.root, "s3://\(bucket)/r", "--endpoint-url", endpoint, "-v"], environment: server.clientEnvironment)
        #expect(up.status == 0, "\(up.stdout)\(up.stderr)")
        let down = try CLI.run(["sync", "s3://\(bucket)/r", f.destinationRoot, "--endpoint-url", endpoint], environment: server.clientEnvironment)
        #expect(down.status == 0, "\(down.stdout)\(down.stderr)")
        let diffs = try f.differences()
        #expect(diffs == [], "\(diffs)")
        kill(proxy.processIdentifier, SIGKILL)
        proxy.waitUntilExit()
        let log = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(log.contains("SlowDown") && log.contains("InternalError") && log.contains("reset"), "faults injected: \(log)")
    }
}

/// Bytes corrupted between the server and Ferry (a flipped bit signatures do not cover)
/// are caught against the ETag — the MD5 of a single-part object, the MD5 of part MD5s of
/// a multipart one — retried once, and never land under a final name.
@Suite struct S3DownloadChecksumTests {
    @Test func corruptedDownloadsAreCaughtAgainstTheETag() async throws {
        let (server, bucket, f) = try await S3FaultTests.uploadedMultipartAndSingle("s3-corrupt", prefix: "c")
        defer { f.cleanUp() }
        let head = try S3Tests.aws(server, ["s3api", "head-object", "--bucket", bucket, "--key", "c/multi.bin"])
        #expect(head.stdout.contains("-3\\\""), "a three-part upload: \(head.stdout)")

        // Every GET corrupted: both files fail (twice each), nothing under a final name.
        let out = Pipe()
        var (proxy, port) = try S3FaultTests.startProxy(upstream: server.port, every: 0, corruptGETs: 1_000, output: out)
        let bad = try CLI.run(["sync", "s3://\(bucket)/c", f.destinationRoot, "--endpoint-url", "http://127.0.0.1:\(port)"],
                              environment: server.clientEnvironment)
        kill(proxy.processIdentifier, SIGKILL)
        proxy.waitUntilExit()
        #expect(bad.status == 3, "\(bad.stdout)\(bad.stderr)")
        #expect(bad.stderr.contains("multi.bin") && bad.stderr.contains("single.bin"), "\(bad.stderr)")
        #expect(bad.stderr.contains("are not what the server stored"), "\(bad.stderr)")
        let left = (try? FileManager.default.contentsOfDirectory(atPath: f.destinationRoot)) ?? []
        #expect(left.isEmpty, "\(left)")
        let log = String(decoding: out.fileHandleForReading.availableData, as: UTF8.self)
        #expect(log.contains("corrupted"), "\(log)")

        // One GET corrupted: caught, the file is read again, the run ends exact.
        (proxy, port) = try S3FaultTests.startProxy(upstream: server.port, every: 0, corruptGETs: 1)
        defer { kill(proxy.processIdentifier, SIGKILL) }
        let good = try CLI.run(["sync", "s3://\(bucket)/c", f.destinationRoot, "--endpoint-url", "http://127.0.0.1:\(port)", "-v"],
                               environment: server.clientEnvironment)
        #expect(good.status == 0, "\(good.stdout)\(good.stderr)")
        #expect(good.stderr.contains("retrying the file") && good.stderr.contains("are not what the server stored"), "\(good.stderr)")
        for name in ["multi.bin", "single.bin"] {
            #expect(FileManager.default.contents(atPath: "\(f.destinationRoot)/\(name)") == FileManager.default.contents(atPath: "\(f.source.root)/\(name)"))
        }
    }
}

/// A download broken off in the middle of the body goes on from the byte where it
/// stopped (a ranged GET with `If-Match` on the ETag), and ends exact; if the object was
/// replaced meanwhile, the file fails as changed and its name keeps what it held.
@Suite struct S3DownloadResumeTests {
    @Test func brokenDownloadsResumeWhereTheyStopped() async throws {
        let (server, bucket, f) = try await S3FaultTests.uploadedMultipartAndSingle("s3-resume", prefix: "r")
        defer { f.cleanUp() }

        // Stale copies at the destination: the files are HEADed while listed (a small file
        // the destination lacks would come whole with its listing GET), then streamed.
        func stale(_ root: String) throws {
            let tree = TestTree(existing: root)
            for name in ["multi.bin", "single.bin"] { try tree.file(name, Array("stale".utf8)) }
        }
        try stale(f.destinationRoot)

        // Both bodies cut at half: each resumes from there with a ranged GET.
        let out = Pipe()
        var (proxy, port) = try S3FaultTests.startProxy(upstream: server.port, every: 0,
                                                         environment: ["TRUNCATE_GETS": "2", "LOG_REQUESTS": "1"], output: out)
        let good = try CLI.run(["sync", "s3://\(bucket)/r", f.destinationRoot, "--endpoint-url", "http://127.0.0.1:\(port)", "-v"],
                               environment: server.clientEnvironment)
        kill(proxy.processIdentifier, SIGKILL)
        proxy.waitUntilExit()
        #expect(good.status == 0, "\(good.stdout)\(good.stderr)")
        #expect(good.stderr.contains("resuming an S3 download"), "\(good.stderr)")
        #expect(!good.stderr.contains("retrying the file"), "resumed, not read again from the start: \(good.stderr)")
        for name in ["multi.bin", "single.bin"] {
            #expect(FileManager.default.contents(atPath: "\(f.destinationRoot)/\(name)") == FileManager.default.contents(atPath: "\(f.source.root)/\(name)"), "\(name)")
        }
        let log = String(decoding: out.fileHandleForReading.availableData, as: UTF8.self)
        // Resumed from a byte past the start (no further than the bytes sent: a reset can
        // drop what was still in flight), on condition of the same ETag.
        let resumed = log.split(separator: "\n").filter { $0.contains("Range: bytes=") && $0.contains("If-Match: \"") }
        #expect(log.contains("truncated") && resumed.count == 2, "\(log)")
        for line in resumed {
            let from = line.split(separator: "bytes=")[1].prefix { $0.isNumber }
            let half = line.contains("multi.bin") ? (20 << 20 | 77) / 2 : 2_500
            #expect((Int(from) ?? 0) > 0 && (Int(from) ?? .max) <= half, "\(line)")
        }

        // Cut, and the object replaced before the download resumes: the file fails as changed.
        let again = try Fixture("s3-resume-changed")
        defer { again.cleanUp() }
        try stale(again.destinationRoot)
        let replaced = Pipe()
        (proxy, port) = try S3FaultTests.startProxy(upstream: server.port, every: 0,
                                                     environment: server.clientEnvironment.merging(["TRUNCATE_GETS": "1", "REPLACE_TRUNCATED": "1"]) { $1 },
                                                     output: replaced)
        defer { kill(proxy.processIdentifier, SIGKILL) }
        let bad = try CLI.run(["sync", "s3://\(bucket)/r", again.destinationRoot, "--endpoint-url", "http://127.0.0.1:\(port)"],
                              environment: server.clientEnvironment)
        let proxyLog = String(decoding: replaced.fileHandleForReading.availableData, as: UTF8.self)
        #expect(proxyLog.contains("replaced") && proxyLog.contains("HTTP 200"), "\(proxyLog)")
        #expect(bad.status != 0, "\(bad.stdout)\(bad.stderr)")
        #expect(bad.stderr.contains("changed while it was read"), "\(bad.stderr)")
        let name = proxyLog.contains("multi.bin") ? "multi.bin" : "single.bin"
        let other = name == "multi.bin" ? "single.bin" : "multi.bin"
        #expect(FileManager.default.contents(atPath: "\(again.destinationRoot)/\(name)") == Data("stale".utf8), "the changed file's name keeps the old copy")
        #expect(FileManager.default.contents(atPath: "\(again.destinationRoot)/\(other)") == FileManager.default.contents(atPath: "\(f.source.root)/\(other)"))
        let left = (try? FileManager.default.contentsOfDirectory(atPath: again.destinationRoot)) ?? []
        #expect(left.allSatisfy { !$0.hasPrefix(".") }, "no temporaries left: \(left)")
    }
}

/// Uploads are checked by the server (Content-MD5 on every PutObject and part) and by
/// Ferry (the ETag answered for the stored object against the MD5s of what was sent), so
/// ONLY_FILES_TRANSFERRED needs no read-back GET.
@Suite struct S3UploadChecksumTests {
    @Test func corruptedUploadsAndWrongETagsAreCaughtWithoutReadingBack() async throws {
        let (server, bucket) = try await S3Tests.freshBucket()
        let f = try S3FaultTests.multipartAndSingle("s3-upcheck")
        defer { f.cleanUp() }
        // moto stores a corrupted body without checking its Content-MD5 (real S3 answers
        // BadDigest, which is retried); the ETag it answers then names other bytes.
        for (prefix, faults) in [("corrupt", ["CORRUPT_PUTS": "1"]), ("lie", ["ETAG_LIES": "1"])] {
            let out = Pipe()
            let (proxy, port) = try S3FaultTests.startProxy(upstream: server.port, every: 0,
                                                            environment: faults.merging(["LOG_REQUESTS": "1"]) { $1 }, output: out)
            let up = try CLI.run(["sync", f.source.root, "s3://\(bucket)/\(prefix)", "--endpoint-url", "http://127.0.0.1:\(port)", "-v"],
                                 environment: server.clientEnvironment)
            kill(proxy.processIdentifier, SIGKILL)
            proxy.waitUntilExit()
            let log = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            #expect(up.status == 0, "\(up.stdout)\(up.stderr)")
            #expect(log.contains(prefix == "corrupt" ? "corrupted" : "lied"), "\(log)")
            #expect(up.stderr.contains("retrying the file") && up.stderr.contains("but the bytes sent give"), "\(up.stderr)")
            #expect(up.stdout.contains("FilesVerified: 3"), "\(up.stdout)")  // two files and the root
            // Verified without reading the objects back: no GetObject (a GET without a query).
            let gets = log.split(separator: "\n").filter { $0.hasPrefix("request GET ") && !$0.contains("?") }
            #expect(gets.isEmpty, "\(gets)")
        }
        for name in ["multi.bin", "single.bin"] {
            #expect(try S3FaultTests.download(server, "s3://\(bucket)/corrupt/\(name)", to: f.destinationRoot + "-" + name)
                    == FileManager.default.contents(atPath: "\(f.source.root)/\(name)"))
        }
    }
}

/// https with a custom CA bundle: a TLS front (self-signed certificate for 127.0.0.1)
/// before moto. Trusted through --ca-bundle it works; without it the run is refused.
@Suite struct S3TLSTests {
    @Test func customCABundle() throws {
        let server = try S3TestServer.moto.get()
        let dir = try TestTree(label: "tls")
        defer { dir.remove() }
        let cert = dir.path("cert.pem"), key = dir.path("key.pem")
        let made = try CLI.run(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1",
                                "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"], wrapper: ["openssl"], direct: true)
        #expect(made.status == 0, "\(made.stderr)")
        let (proxy, port) = try S3FaultTests.startProxy(upstream: server.port, every: 0, tls: (cert, key))
        defer { if proxy.isRunning { kill(proxy.processIdentifier, SIGKILL) } }

        var env = server.clientEnvironment
        env["AWS_CA_BUNDLE"] = nil
        let bucket = "ferry-tls-\(UInt32.random(in: 0..<UInt32.max))"
        #expect(try CLI.run(["s3", "mb", "s3://\(bucket)"], wrapper: ["aws"], direct: true, environment: server.clientEnvironment).status == 0)
        let f = try Fixture("s3-tls")
        defer { f.cleanUp() }
        try f.source.file("secret-plans.txt", Array("over TLS".utf8))
        let endpoint = "https://127.0.0.1:\(port)"
        let refused = try CLI.run(["sync", f.source.root, "s3://\(bucket)/t", "--endpoint-url", endpoint], environment: env)
        #expect(refused.status == 1, "an untrusted certificate must stop the run: \(refused.stdout)\(refused.stderr)")
        #expect(refused.stderr.lowercased().contains("certificate"), "\(refused.stderr)")
        let trusted = try CLI.run(["sync", f.source.root, "s3://\(bucket)/t", "--endpoint-url", endpoint, "--ca-bundle", cert], environment: env)
        #expect(trusted.status == 0, "\(trusted.stdout)\(trusted.stderr)")
        let back = try CLI.run(["sync", "s3://\(bucket)/t", f.destinationRoot, "--endpoint-url", endpoint], environment: env.merging(["AWS_CA_BUNDLE": cert]) { $1 })
        #expect(back.status == 0, "\(back.stderr)")
        #expect(try f.differences() == [])
    }
}

