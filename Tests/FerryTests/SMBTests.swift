import FerryCore
import FerryEngine
import FerryLocal
import FerrySMB
import FerryTesting
import Foundation
import Testing

enum SMBTests {
    static func server() throws -> SMBTestServer { try SMBTestServer.shared.get() }

    static func client(_ server: SMBTestServer, _ share: String, _ sub: String, create: Bool = true,
                       descriptors: SecurityDescriptorCopy = .ownerDACL) throws -> SMBClient {
        try SMBClient.connect(host: "127.0.0.1", port: server.port, path: "/\(share)/\(sub)",
                              credentials: SMBCredentials(user: server.user, domain: nil, password: server.password),
                              securityDescriptors: descriptors, create: create, workers: 2)
    }

    /// What arrived differs from the source only where SMB is DataSync's rule (owner, mode,
    /// no xattrs) or below the microsecond.
    static func beyondSMBRules(_ diffs: [String]) -> [String] {
        NFSEndToEndTests.beyondMicroseconds(diffs).filter {
            !$0.contains(": uid ") && !$0.contains(": gid ") && !$0.contains(": mode ") && !$0.contains(": xattrs ")
        }
    }

    static func ferry(_ server: SMBTestServer, _ args: [String]) throws -> CLI.Run {
        try CLI.run(args + ["--password-file", try server.passwordFile()])
    }
}

/// Ferry's own SMB client against smbd: trees to a share and back, between shares with
/// each SecurityDescriptorCopyFlags value (checked with smbcacls), DataSync's rules for
/// what SMB cannot hold, and bad input named.
@Suite struct SMBEndToEndTests {
    /// Files and directories with their times go POSIX → SMB → POSIX (to the microsecond);
    /// what SMB cannot keep is DataSync's rule: default POSIX metadata on the way back, each
    /// file's xattrs reported as not stored on the way there; a re-run moves nothing.
    @Test func aTreeGoesToAShareAndBack() async throws {
        let server = try SMBTests.server()
        let f = try Fixture("smb-tree")
        defer { f.cleanUp() }
        try SampleTrees.smallFiles(f.source, files: 200, directories: 5)
        try f.source.file("big.bin", TestTree.bytes(5 << 20 | 77, seed: 9))
        // Above SMBWriter.laneThreshold: written and read on both sessions at once; zeros
        // in the middle and at the end are not sent, yet arrive.
        var huge = TestTree.bytes(21 << 20 | 123, seed: 10)
        for i in (7 << 20)..<(9 << 20) { huge[i] = 0 }
        for i in (huge.count - (1 << 20))..<huge.count { huge[i] = 0 }
        try f.source.file("huge.bin", huge)
        try f.source.file("names/with space", [1])
        try f.source.file("names/ünïcödé", [2])
        try f.source.setXattr("big.bin", name: "user.colour", value: Array("blue".utf8))
        let sub = "tree-\(UInt32.random(in: 0..<UInt32.max))"
        let client = try SMBTests.client(server, "share1", sub)
        defer { client.close() }
        let up = await SyncEngine(SyncConfiguration(source: try POSIXLocation(path: f.source.root), destination: SMBLocation(client: client),
                                                    options: Fixture.defaultOptions)).run()
        #expect(up.counters.filesFailed == 0 && up.counters.verificationFailures == 0, "\(up.problems)")
        let notStored = up.problems.filter { $0.entry.failureKind == .metadataNotStored }
        #expect(notStored.map(\.entry.path) == ["/big.bin"] && notStored.first?.entry.reason?.contains("user.colour") == true, "\(up.problems)")
        let again = await SyncEngine(SyncConfiguration(source: try POSIXLocation(path: f.source.root), destination: SMBLocation(client: client),
                                                       options: Fixture.defaultOptions)).run()
        #expect(again.counters.filesTransferred == 0, "\(again.problems)")

        let down = await SyncEngine(SyncConfiguration(source: SMBLocation(client: client), destination: try POSIXLocation(path: f.destinationRoot, create: true),
                                                      options: Fixture.defaultOptions)).run()
        #expect(down.status == .success, "\(down.problems)")
        let diffs = try f.differences(compareAtime: false)
        // From SMB: 65534:65534, 0755/0644 (DataSync's defaults), no xattrs.
        let unexpected = SMBTests.beyondSMBRules(diffs)
        #expect(unexpected == [], "\(diffs)")
        let owned = try TreeSnapshot(f.destinationRoot).entries.values
        #expect(owned.allSatisfy { $0.uid == 65534 && $0.gid == 65534 && ($0.kind == .directory ? $0.permissions == 0o755 : $0.permissions == 0o644) })
    }

    /// DataSync's rule: a symlink or a hard link on the way to SMB ends the task with an
    /// error that names it.
    @Test func aSymlinkOnTheWayToSMBEndsTheTask() throws {
        let server = try SMBTests.server()
        let f = try Fixture("smb-link")
        defer { f.cleanUp() }
        try f.source.file("a", [1])
        try f.source.symlink("link", to: "a")
        let sub = "links-\(UInt32.random(in: 0..<UInt32.max))"
        let r = try SMBTests.ferry(server, ["sync", f.source.root, server.url("share1", sub)])
        #expect(r.status == 1, "\(r.stdout)\(r.stderr)")
        // Nothing stands for the symlink on the share, under its name or a temporary one.
        let arrived = (try? FileManager.default.contentsOfDirectory(atPath: server.path("share1") + "/\(sub)")) ?? []
        #expect(!arrived.contains("link") && !arrived.contains { $0.hasPrefix(".ferry-tmp-") }, "\(arrived)")
        #expect((r.stdout + r.stderr).contains("/link") && (r.stdout + r.stderr).contains("holds no symlinks"), "\(r.stdout)\(r.stderr)")
    }

    /// Between two shares, with each SecurityDescriptorCopyFlags value: data, times (to the
    /// microsecond), DOS attributes and creation times (to the second) arrive; with
    /// OWNER_DACL the owner and the DACL too (smbcacls shows the same, an added ACE among
    /// them), with NONE neither (share2's files are root's, its DACL its default);
    /// OWNER_DACL_SACL is refused by name (libsmbclient carries no SACL). A re-run moves
    /// nothing; a read-only file changed at the source is replaced.
    @Test func shareToShare() async throws {
        let server = try SMBTests.server()
        let f = try Fixture("smb-sd")
        defer { f.cleanUp() }
        try f.source.file("doc.txt", Array("secret".utf8))
        try f.source.file("dir/inner", [1, 2])
        let sub = "s2s-\(UInt32.random(in: 0..<UInt32.max))"
        #expect(try SMBTests.ferry(server, ["sync", f.source.root, server.url("share1", sub)]).status == 0)
        _ = try server.smbclient("share1", "setmode \"\(sub)/doc.txt\" +rh; setmode \"\(sub)/dir\" +h; setmode \"\(sub)/dir/inner\" +s")
        try server.addACE("share1", "\(sub)/doc.txt", "ACL:S-1-5-21-1-2-3-4444:ALLOWED/0x0/READ")
        try server.setOwner("share1", "\(sub)/doc.txt", "S-1-22-1-65534")
        // Creation times older than anything the copies make by more than the second
        // they are carried to (and smbclient rounds to).
        sleep(2)
        func seconds(_ created: String) -> Double {
            let f = DateFormatter()
            f.locale = Locale(identifier: "en_US_POSIX")
            f.dateFormat = "EEE MMM d HH:mm:ss yyyy zzz"
            return f.date(from: created.split(separator: " ").joined(separator: " "))?.timeIntervalSince1970 ?? -1
        }
        // The owner, then the DACL's entries in no order (libsmbclient writes them in
        // canonical order, denials first).
        func ownerAndDACL(_ share: String, _ path: String) throws -> [String] {
            let lines = try server.acl(share, path).split(separator: "\n")
            return lines.filter { $0.hasPrefix("OWNER:") }.map(String.init) + lines.filter { $0.hasPrefix("ACL:") }.map(String.init).sorted()
        }
        for flags in ["OWNER_DACL", "NONE"] {
            let dst = "\(sub)-\(flags)"
            let r = try SMBTests.ferry(server, ["sync", server.url("share1", sub), server.url("share2", dst), "--security-descriptor-copy-flags", flags])
            #expect(r.status == 0, "\(flags): \(r.stdout)\(r.stderr)")
            for file in ["doc.txt", "dir", "dir/inner"] {
                var a = stat(), b = stat()
                #expect(stat(server.path("share1") + "/\(sub)/\(file)", &a) == 0 && stat(server.path("share2") + "/\(dst)/\(file)", &b) == 0)
                #expect(a.st_mtim.tv_sec == b.st_mtim.tv_sec && a.st_mtim.tv_nsec / 1000 == b.st_mtim.tv_nsec / 1000, "\(flags) \(file)")
                if file != "dir" {
                    #expect(FileManager.default.contents(atPath: server.path("share2") + "/\(dst)/\(file)")
                            == FileManager.default.contents(atPath: f.source.root + "/\(file)"))
                }
                let from = try server.attributes("share1", "\(sub)/\(file)"), to = try server.attributes("share2", "\(dst)/\(file)")
                #expect(from.attributes == to.attributes && abs(seconds(from.created) - seconds(to.created)) <= 1, "\(flags) \(file): \(from) became \(to)")
                let source = try ownerAndDACL("share1", "\(sub)/\(file)"), arrived = try ownerAndDACL("share2", "\(dst)/\(file)")
                if flags == "OWNER_DACL" {
                    #expect(source == arrived, "\(file): \(source) became \(arrived)")
                } else if file == "doc.txt" {
                    #expect(source.first == "OWNER:S-1-22-1-65534" && arrived.first != source.first, "the owner was copied with NONE: \(arrived)")
                    #expect(!arrived.contains { $0.contains("S-1-5-21-1-2-3-4444") }, "the DACL was copied with NONE: \(arrived)")
                }
            }
            #expect(try server.attributes("share1", "\(sub)/doc.txt").attributes.hasPrefix("RHA"))
            #expect(try ownerAndDACL("share2", "\(dst)/doc.txt").contains { $0.contains("S-1-5-21-1-2-3-4444") } == (flags == "OWNER_DACL"))
            // Nothing to do the second time.
            let descriptors = try SecurityDescriptorCopy(parsing: flags)
            let from = try SMBTests.client(server, "share1", sub, create: false, descriptors: descriptors)
            let to = try SMBTests.client(server, "share2", dst, create: false, descriptors: descriptors)
            defer { from.close(); to.close() }
            let again = await SyncEngine(SyncConfiguration(source: SMBLocation(client: from), destination: SMBLocation(client: to),
                                                           options: Fixture.defaultOptions)).run()
            #expect(again.status == .success && again.counters.filesTransferred == 0, "\(flags): \(again.problems)")
        }
        // The read-only file changed at the source replaces its read-only copy.
        try Data("changed".utf8).write(to: URL(fileURLWithPath: server.path("share1") + "/\(sub)/doc.txt"))
        let changed = try SMBTests.ferry(server, ["sync", server.url("share1", sub), server.url("share2", "\(sub)-OWNER_DACL")])
        #expect(changed.status == 0, "\(changed.stdout)\(changed.stderr)")
        #expect(FileManager.default.contents(atPath: server.path("share2") + "/\(sub)-OWNER_DACL/doc.txt") == Data("changed".utf8))
        #expect(try server.attributes("share2", "\(sub)-OWNER_DACL/doc.txt").attributes.hasPrefix("RHA"))
        let sacl = try SMBTests.ferry(server, ["sync", server.url("share1", sub), server.url("share2", "\(sub)-sacl"), "--security-descriptor-copy-flags", "OWNER_DACL_SACL"])
        #expect(sacl.status != 0 && sacl.stderr.contains("OWNER_DACL_SACL is not supported"), "\(sacl.stderr)")
    }

    /// The connection cut in the middle of a large file, each way: the file is retried on a
    /// new session and arrives whole; nothing partial stands under a final name or as a
    /// temporary.
    @Test func aConnectionCutMidFileLeavesNothingPartial() throws {
        let server = try SMBTests.server()
        let f = try Fixture("smb-cut")
        defer { f.cleanUp() }
        try f.source.file("big.bin", TestTree.bytes(24 << 20, seed: 5))
        try f.source.file("small", [1, 2, 3])
        let sub = "cut-\(UInt32.random(in: 0..<UInt32.max))"
        for (label, up) in [("up", true), ("down", false)] {
            let proxy = try NetemProxy(upstream: server.port, ["--cut-after", "\(6 << 20)"])
            let url = "smb://\(server.user)@127.0.0.1:\(proxy.port)/share1/\(sub)"
            // One session, so the connection the proxy cuts is the one carrying the file.
            let r = try SMBTests.ferry(server, ["sync", up ? f.source.root : url, up ? url : f.destinationRoot, "--smb-connections", "1"])
            let said = proxy.stop()
            #expect(said.contains("cut"), "\(label): the proxy did not cut: \(said)")
            #expect(r.status == 0, "\(label): \(r.stdout)\(r.stderr)")
        }
        let onShare = server.path("share1") + "/\(sub)"
        #expect(FileManager.default.contents(atPath: onShare + "/big.bin") == FileManager.default.contents(atPath: f.source.path("big.bin")))
        #expect(FileManager.default.contents(atPath: f.destinationRoot + "/big.bin") == FileManager.default.contents(atPath: f.source.path("big.bin")))
        for place in [onShare, f.destinationRoot] {
            let names = try FileManager.default.contentsOfDirectory(atPath: place)
            #expect(!names.contains { $0.hasPrefix(".ferry-tmp-") }, "\(place): \(names)")
        }
    }

    /// Bad input: each error names the server or share and what to do.
    @Test func badInputIsNamed() throws {
        let server = try SMBTests.server()
        let f = try Fixture("smb-bad")
        defer { f.cleanUp() }
        try f.source.file("a", [1])
        let wrong = f.destinationRoot + "-wrong"
        try "not-the-password\n".write(toFile: wrong, atomically: true, encoding: .utf8)
        func fails(_ args: [String], _ words: [String]) throws {
            let r = try CLI.run(["sync"] + args)
            #expect(r.status != 0, "\(args)")
            for w in words { #expect(r.stderr.contains(w), "\(args): \(r.stderr)") }
        }
        let good = try server.passwordFile()
        try fails([f.source.root, server.url("share1", "x"), "--password-file", wrong], ["refused user ferrysmb", "password"])
        try fails([f.source.root, server.url("noshare", "x"), "--password-file", good], ["noshare"])
        let closed = try S3TestServer.freePort()
        try fails([f.source.root, "smb://ferrysmb@127.0.0.1:\(closed)/share1/x", "--password-file", good], ["127.0.0.1"])
        try fails([f.source.root, "smb://ferrysmb:pw@127.0.0.1/share1/x"], ["put no password in the URI"])
        try fails([f.source.root, server.url("share1", "x"), "--smb-version", "1", "--password-file", good], ["does not speak SMB1"])
    }
}

/// The contract on an SMB share.
extension ConformanceTarget {
    static func smbLocation(_ check: LocationConformance.Check) async throws -> LocationConformance.Outcome {
        let server = try SMBTests.server()
        let clients = SMBClientList()
        defer { clients.closeAll() }
        return await LocationConformance.run(check) {
            let client = try SMBTests.client(server, "share1", "conformance-\(UInt32.random(in: 0..<UInt32.max))")
            clients.add(client)
            return SMBLocation(client: client)
        }
    }
}

final class SMBClientList: @unchecked Sendable {
    private var clients: [SMBClient] = []
    private let lock = NSLock()
    func add(_ c: SMBClient) { lock.withLock { clients.append(c) } }
    func closeAll() { for c in lock.withLock({ clients }) { c.close() } }
}
