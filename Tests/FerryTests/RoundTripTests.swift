import FerryCore
import FerryEngine
import FerryTesting
import Glibc
import Testing

/// POSIX → POSIX: everything arrives, a second run moves nothing.
@Suite struct RoundTripTests {
    @Test func richTreeArrivesWithAllMetadata() async throws {
        let f = try Fixture("rich")
        defer { f.cleanUp() }
        try SampleTrees.rich(f.source)
        let result = try await f.sync()
        #expect(result.status == .success, "\(result.problems)")
        let diffs = try f.differences()
        #expect(diffs == [], "\(diffs)")
        #expect(try f.temporaries() == [])
        let c = result.counters
        #expect(c.filesTransferred == c.estimatedFilesToTransfer)
        #expect(c.verificationFailures == 0 && c.filesFailed == 0)
        #expect(c.filesVerified == c.filesTransferred)

        // Sparse file: same holes, about the same allocation.
        let src = try TreeSnapshot(f.source.root), dst = try TreeSnapshot(f.destinationRoot)
        let sparse = EntryPath("sparse.img")!
        #expect(dst.entries[sparse]!.allocatedBytes <= src.entries[sparse]!.allocatedBytes + 64 * 1024)
        #expect(dst.entries[sparse]!.allocatedBytes < 1 << 20)
        // Hard links: one inode at the destination, data sent once.
        let one = dst.entries[EntryPath("hard/one")!]!, three = dst.entries[EntryPath("dir/three-hard")!]!
        #expect(one.inode == three.inode && one.linkCount == 3)
        #expect(one.uid == 500 && one.gid == 501)
        // setuid survives the chown, ACL arrives as an xattr.
        #expect(dst.entries[EntryPath("dir/setuid")!]!.permissions == 0o4755)
        #expect(dst.entries[EntryPath("dir/owned")!]!.xattrs.contains { $0.name == Array("system.posix_acl_access".utf8) })
        #expect(dst.entries[EntryPath("links/loop-a")!]!.symlinkTarget == Array("loop-b".utf8))
        #expect(dst.entries[EntryPath("special/block")!]!.kind == .blockDevice)
        let logical = src.entries.values.filter { $0.kind == .file }.reduce(Int64(0)) { $0 + $1.size }
        #expect(c.bytesTransferred == logical - 2 * 20_000)  // two hard links not sent again
    }

    @Test func secondRunMovesNothing() async throws {
        let f = try Fixture("again")
        defer { f.cleanUp() }
        try SampleTrees.rich(f.source)
        try await f.sync()
        let before = try TreeSnapshot(f.destinationRoot)
        let result = try await f.sync()
        #expect(result.status == .success)
        #expect(result.counters.filesTransferred == 0)
        #expect(result.counters.bytesWritten == 0)
        #expect(result.counters.estimatedFilesToTransfer == 0)
        // Every entry below the root is counted unchanged (hard links, symlinks, empty directories too).
        let entries = before.entries.keys.filter { !$0.isRoot }.count
        #expect(result.counters.filesUnchanged == Int64(entries), "\(result.counters.filesUnchanged) of \(entries)")
        let after = try TreeSnapshot(f.destinationRoot)
        // Not even ctime-visible changes: inodes the same, nothing rewritten.
        for (path, e) in before.entries { #expect(after.entries[path]?.inode == e.inode, "\(path)") }
        let diffs = try f.differences()
        #expect(diffs == [], "\(diffs)")
    }

    @Test func changesAreFoundAndOnlyThemMoved() async throws {
        let f = try Fixture("changes")
        defer { f.cleanUp() }
        try SampleTrees.rich(f.source)
        try await f.sync()
        let untouched = try TreeSnapshot(f.destinationRoot).entries[EntryPath("dir/sub/deep/big.bin")!]!.inode
        // Data change with same size, a mode change, an owner change, a new file, a new link.
        try f.source.file("plain.txt", Array("HELLO, FERRY\n".utf8))
        try f.source.setTimes("plain.txt", atime: SampleTrees.time(1), mtime: SampleTrees.time(2))
        try f.source.chmod("empty-file", 0o600)
        try f.source.chown("dir/setgid", uid: 99, gid: 98)
        try f.source.chmod("dir/setgid", 0o2711)
        try f.source.file("dir/new-file", [9, 9, 9])
        try f.source.hardLink("dir/sub/another-hard", to: "hard/two")
        try f.source.setTimes("dir", atime: SampleTrees.time(5), mtime: SampleTrees.time(6))
        try f.source.setTimes("dir/sub", atime: SampleTrees.time(7), mtime: SampleTrees.time(8))
        try f.source.setTimes("", atime: SampleTrees.time(9), mtime: SampleTrees.time(10))
        let result = try await f.sync()
        #expect(result.status == .success, "\(result.problems)")
        let diffs = try f.differences()
        #expect(diffs == [], "\(diffs)")
        #expect(result.counters.bytesTransferred == 13 + 3)
        #expect(try TreeSnapshot(f.destinationRoot).entries[EntryPath("dir/sub/deep/big.bin")!]!.inode == untouched)
    }

    @Test func replacesEntriesOfAnotherKind() async throws {
        let f = try Fixture("kinds")
        defer { f.cleanUp() }
        try f.source.file("a", [1])
        try f.source.directory("b")
        try f.source.file("b/inner", [2])
        try f.source.symlink("c", to: "a")
        let d = f.destination
        try d.directory("a")
        try d.file("a/old", [0])
        try d.file("b", [3])
        try d.directory("c")
        let result = try await f.sync()
        #expect(result.status == .success, "\(result.problems)")
        #expect(try f.differences(compareAtime: false) == [])
    }

    @Test func namesAreBytes() async throws {
        let f = try Fixture("names")
        defer { f.cleanUp() }
        let latin1: [UInt8] = [0x63, 0x61, 0x66, 0xe9]  // "café" in Latin-1: not UTF-8
        try f.source.fileBytes(latin1, [1, 2, 3])
        try f.source.file("--help", [4])
        try f.source.file(" leading space", [5])
        try f.source.file(String(repeating: "é", count: 127) + "x", [6])  // 255 bytes
        let result = try await f.sync()
        #expect(result.status == .success, "\(result.problems)")
        let diffs = try f.differences()
        #expect(diffs == [], "\(diffs)")
        #expect(try TreeSnapshot(f.destinationRoot).entries[EntryPath(validatedBytes: latin1)] != nil)
    }

    /// New files are created with their final mode (no one can open them before they are
    /// linked) and only changed where that did not hold: the umask (022 here: 0666 and 0777
    /// lose bits), a setgid directory and a default ACL at the destination all alter what creation gives, and every file,
    /// FIFO and device node must still arrive with the source's owner, mode and ACL (none where the source has none).
    @Test func modeAndOwnerHoldDespiteUmaskSetgidAndDefaultACL() async throws {
        let f = try Fixture("creation-mode")
        defer { f.cleanUp() }
        try f.source.directory("d", mode: 0o755)
        try f.source.file("d/world-writable", [1], mode: 0o666)
        try f.source.file("d/all", [2], mode: 0o777)
        try f.source.file("d/owned", [3], mode: 0o640)
        try f.source.chown("d/owned", uid: 1000, gid: 2000)
        try f.source.file("d/root", [4], mode: 0o755)
        try f.source.chown("d/root", uid: 0, gid: 0)
        try f.source.directory("d/sub", mode: 0o750)
        try f.source.file("d/sub/deeper", [5], mode: 0o600)
        // A FIFO and a device node without an ACL, and a FIFO with one (set through the
        // directory's descriptor, not by opening the node).
        try f.source.fifo("d/pipe", mode: 0o640)
        try f.source.deviceNode("d/null-like", character: true, major: 1, minor: 3, mode: 0o660)
        try f.source.fifo("d/pipe-with-acl", mode: 0o600)
        try f.source.setXattr("d/pipe-with-acl", name: "system.posix_acl_access", value: SampleTrees.aclValue(uid: 1002))
        // The destination directory exists with setgid, another group and a default ACL.
        try f.destination.directory("d", mode: 0o755)
        try f.destination.chown("d", uid: 0, gid: 4444)
        try f.destination.chmod("d", 0o2775)
        try f.destination.setXattr("d", name: "system.posix_acl_default", value: SampleTrees.aclValue(uid: 1000))
        let result = try await f.sync()
        #expect(result.status == .success, "\(result.problems)")
        #expect(result.counters.verificationFailures == 0)
        let diffs = try f.differences()
        #expect(diffs == [], "\(diffs)")
    }
}
