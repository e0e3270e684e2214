import FerryCore
import FerryEngine
import FerryLocal
import FerryNFS
import FerryTesting
import Foundation
import Synchronization
import Testing

/// NFS clients a test made, closed when it ends.
final class ClientList: Sendable {
    private let clients = Mutex<[NFSClient]>([])
    func add(_ c: NFSClient) { clients.withLock { $0.append(c) } }
    func closeAll() { for c in clients.withLock({ $0 }) { c.close() } }
}

enum NFSTests {
    /// The shared ganesha server, or the reason it could not start (a test failure).
    static func server() throws -> NFSTestServer { try NFSTestServer.shared.get() }
}

/// Ferry's own NFS client against nfs-ganesha: whole trees through NFS and back, the
/// versions, and bad input with the server, export and what to do named.
@Suite struct NFSEndToEndTests {
    static func location(_ server: NFSTestServer, _ name: String, _ version: NFSVersion, writing: Bool, clients: ClientList) throws -> NFSLocation {
        let client = try NFSClient.connect(host: "127.0.0.1", port: server.port, path: "\(server.export)/\(name)", version: version,
                                           create: writing, writing: writing)
        clients.add(client)
        return NFSLocation(client: client)
    }

    /// The rich tree goes POSIX → NFSv3 → POSIX: data, holes, owners, modes, times (to the
    /// microsecond: libnfs sets times as timevals), symlinks, hard links, FIFOs and devices
    /// arrive; the xattrs NFSv3 cannot hold are reported per file; a re-run moves nothing.
    @Test func richTreeRoundTripsThroughNFS() async throws {
        let version = NFSVersion.v3
        let server = try NFSTests.server()
        let clients = ClientList()
        defer { clients.closeAll() }
        let f = try Fixture("nfs-rich")
        defer { f.cleanUp() }
        try SampleTrees.rich(f.source)
        let dir = try server.directory("rich")
        let up = await SyncEngine(SyncConfiguration(
            source: try POSIXLocation(path: f.source.root), destination: try Self.location(server, dir.name, .v3, writing: true, clients: clients),
            options: Fixture.defaultOptions)).run()
        #expect(up.counters.filesFailed == 0 && up.counters.verificationFailures == 0, "\(up.problems)")
        // Each file with xattrs is named, with the attributes it lost.
        let notStored = up.problems.filter { $0.entry.failureKind == .metadataNotStored }.map(\.entry.path).sorted()
        #expect(notStored == ["/dir/owned", "/plain.txt"], "\(up.problems)")
        #expect(up.problems.first { $0.entry.path == "/plain.txt" }?.entry.reason?.contains("user.colour") == true)
        // What arrived on the server's disk, read there directly.
        // Atimes are best-effort: the server moves a file's when Ferry reads it back to verify.
        let onServer = TreeSnapshot.differences(try TreeSnapshot(f.source.root), try TreeSnapshot(dir.local), compareAtime: false)
        #expect(Self.beyondMicroseconds(onServer).filter { !$0.contains("xattrs") && !($0.hasPrefix("/links/") && $0.contains(": mtime ")) } == [],
                "\(onServer)")
        let withheld = up.problems.filter { $0.entry.failureKind == .metadataNotApplied }.map(\.entry.path).sorted()
        #expect(withheld == ["/links/absolute", "/links/dangling", "/links/loop-a", "/links/loop-b", "/links/relative"], "\(up.problems)")

        let again = await SyncEngine(SyncConfiguration(
            source: try POSIXLocation(path: f.source.root), destination: try Self.location(server, dir.name, .v3, writing: true, clients: clients),
            options: Fixture.defaultOptions)).run()
        #expect(again.counters.filesTransferred == 0 && again.counters.bytesTransferred == 0, "\(again.problems)")

        let down = await SyncEngine(SyncConfiguration(
            source: try Self.location(server, dir.name, version, writing: false, clients: clients),
            destination: try POSIXLocation(path: f.destinationRoot, create: true), options: Fixture.defaultOptions)).run()
        #expect(down.counters.filesFailed == 0 && down.counters.verificationFailures == 0, "\(down.problems)")
        #expect(down.counters.filesSkipped == (version == .v3 ? 0 : 2), "\(down.problems)")
        let diffs = try f.differences(compareAtime: false)
        // nfs-ganesha keeps no symlink times (reported as withheld on the way up); NFSv4.0
        // offers no device numbers (its device nodes are skipped and named).
        var expected = ["/links/absolute", "/links/dangling", "/links/loop-a", "/links/loop-b", "/links/relative"].map { "\($0): mtime" }
        if version == .v4_0 {
            expected += ["/special/block: missing", "/special/null-like: missing"]
            // Over NFSv4.0 hard-linked files are read as separate files (NFSLocation.list).
            expected += ["/dir/three-hard: link count", "/hard/one: link count", "/hard/two: link count", "hard links ["]
        }
        let unexpected = Self.beyondMicroseconds(diffs).filter { d in !d.contains("xattrs") && !expected.contains { d.hasPrefix($0) } }
        #expect(unexpected == [], "\(diffs)")
    }

    /// Differences other than times equal to the microsecond.
    static func beyondMicroseconds(_ diffs: [String]) -> [String] {
        func micro(_ t: Substring) -> String? {
            let parts = t.split(separator: ".")
            guard parts.count == 2, parts[1].count == 9 else { return nil }
            return parts[0] + "." + parts[1].prefix(6)
        }
        return diffs.filter { d in
            guard d.contains(": mtime ") || d.contains(": atime ") else { return true }
            let times = d.split(separator: " ").suffix(3)
            guard times.count == 3, let a = micro(times.first!), let b = micro(times.last!) else { return true }
            return a != b
        }
    }

    /// `ferry sync` to and from nfs:// URLs, the version named on the command line.
    @Test func ferrySyncSpeaksNFS() throws {
        let server = try NFSTests.server()
        let f = try Fixture("nfs-cli")
        defer { f.cleanUp() }
        try SampleTrees.smallFiles(f.source, files: 300, directories: 7)
        let dir = try server.directory("cli")
        let url = server.url(dir.name + "/made/here")
        let up = try CLI.run(["sync", f.source.root, url, "--nfs-version", "3"])
        #expect(up.status == 0, "\(up.stdout)\(up.stderr)")
        let again = try CLI.run(["sync", f.source.root, url, "--nfs-version", "auto", "--json"])
        #expect(again.status == 0 && again.stdout.contains("\"FilesTransferred\" : 0"), "\(again.stdout)")
        let down = try CLI.run(["sync", url, f.destinationRoot, "--nfs-version", "auto"])
        #expect(down.status == 0, "\(down.stdout)\(down.stderr)")
        let diffs = try f.differences(compareAtime: false)
        #expect(NFSEndToEndTests.beyondMicroseconds(diffs) == [], "\(diffs)")
        // Files' times are set with SETATTR on their handle: to the nanosecond both ways.
        let fileTimes = diffs.filter { $0.contains(": mtime ") && $0.split(separator: ":")[0].split(separator: "/").count == 2 }
        #expect(fileTimes == [], "\(fileTimes)")
    }

    /// Bad input: each error names the server, the export or the version, and what to do.
    @Test func badInputIsNamed() throws {
        let server = try NFSTests.server()
        let f = try Fixture("nfs-bad")
        defer { f.cleanUp() }
        try f.source.file("a", [1, 2, 3])
        func fails(_ args: [String], _ words: [String]) throws {
            let r = try CLI.run(["sync"] + args)
            #expect(r.status != 0, "\(args)")
            for w in words { #expect(r.stderr.contains(w), "\(args): \(r.stderr)") }
        }
        try fails([f.source.root, "nfs://nas1.invalid/export/x"], ["nfs://nas1.invalid", "is an NFS server listening"])
        let closed = try S3TestServer.freePort()
        try fails([f.source.root, "nfs://127.0.0.1:\(closed)/export/x", "--nfs-version", "3"], ["127.0.0.1:\(closed)"])
        try fails(["nfs://127.0.0.1:\(server.port)/no/such/export", f.destinationRoot], ["/no/such/export", "does the server export it"])
        try fails([f.source.root, server.url("x"), "--nfs-version", "4.1"], ["does not speak NFSv4.1"])
        try fails([server.url("x"), f.destinationRoot, "--nfs-version", "4.0"], ["does not speak NFSv4.0 yet", "NFSv3"])
        try fails([f.source.root, server.url("x"), "--nfs-version", "5"], ["\"5\" is not an NFS version"])
    }

    /// The connection cut in the middle of a large file, each way: the run goes on (libnfs
    /// reconnects and sends again, or the file is retried) and what arrives is whole; nothing
    /// partial stands under a final name or as a temporary.
    @Test func aConnectionCutMidFileLeavesNothingPartial() throws {
        let server = try NFSTests.server()
        let f = try Fixture("nfs-cut")
        defer { f.cleanUp() }
        try f.source.file("big.bin", TestTree.bytes(24 << 20, seed: 3))
        try f.source.file("small", [1, 2, 3])
        let dir = try server.directory("cut")
        for (label, from, to) in [("up", f.source.root, "nfs://127.0.0.1:PORT/tmp/\(dir.name)"), ("down", "nfs://127.0.0.1:PORT/tmp/\(dir.name)", f.destinationRoot)] {
            let proxy = try NetemProxy(upstream: server.port, ["--cut-after", "\(6 << 20)"])
            let r = try CLI.run(["sync", from.replacingOccurrences(of: "PORT", with: "\(proxy.port)"),
                                 to.replacingOccurrences(of: "PORT", with: "\(proxy.port)"), "--nfs-version", "3", "--nfs-connections", "1"])
            let said = proxy.stop()
            #expect(said.contains("cut"), "\(label): the proxy did not cut: \(said)")
            #expect(r.status == 0, "\(label): \(r.stdout)\(r.stderr)")
        }
        #expect(FileManager.default.contents(atPath: dir.local + "/big.bin") == FileManager.default.contents(atPath: f.source.path("big.bin")))
        #expect(FileManager.default.contents(atPath: f.destinationRoot + "/big.bin") == FileManager.default.contents(atPath: f.source.path("big.bin")))
        for place in [dir.local, f.destinationRoot] {
            let names = try FileManager.default.contentsOfDirectory(atPath: place)
            #expect(!names.contains { $0.hasPrefix(".ferry-tmp-") }, "\(place): \(names)")
        }
    }

    /// A file the server refuses to read is skipped and named; the run goes on.
    @Test func anUnreadableFileIsSkippedAndNamed() async throws {
        let server = try NFSTests.server()
        let clients = ClientList()
        defer { clients.closeAll() }
        let dir = try server.directory("unreadable")
        let tree = TestTree(existing: dir.local)
        try tree.file("ok", [1, 2, 3])
        try tree.file("secret", [4, 5, 6], mode: 0o600)
        try tree.chown("secret", uid: 4000, gid: 4000)
        let out = try TestTree(label: "nfs-unreadable-out")
        defer { out.remove() }
        chmod(out.root, 0o777)
        // As uid 65534 over AUTH_SYS, the server refuses to open "secret".
        let r = try CLI.run(["sync", server.url(dir.name), out.root + "/dest", "--nfs-version", "3", "--uid", "none", "--gid", "none"],
                            wrapper: ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "--"])
        #expect(r.status == 2, "\(r.stdout)\(r.stderr)")
        #expect((r.stdout + r.stderr).contains("/secret"), "\(r.stdout)\(r.stderr)")
        #expect(FileManager.default.contents(atPath: out.root + "/dest/ok") == Data([1, 2, 3]))
        #expect(!FileManager.default.fileExists(atPath: out.root + "/dest/secret"))
    }
}
