import FerryCore
import FerryEngine
import FerryTesting
import Foundation
import Glibc
import Testing

/// DataSync's options, as they change what arrives.
@Suite struct OptionsBehaviourTests {
    @Test func deleteRemovesOnlyWhatIsInScope() async throws {
        let f = try Fixture("delete")
        defer { f.cleanUp() }
        try f.source.file("keep", [1])
        try f.source.file("dir/keep", [2])
        try f.destination.file("gone", [3])
        try f.destination.file("dir/gone-too", [4])
        try f.destination.file("old/deep/tree", [5])
        try f.destination.file("logs/excluded.log", [6])
        try await f.sync()
        try f.source.setTimes("", atime: SampleTrees.time(1), mtime: SampleTrees.time(2))
        var options = Fixture.defaultOptions
        options.preserveDeletedFiles = .remove
        let result = try await f.sync(options, filters: Filters(excludes: try FilterRule("/logs")))
        #expect(result.status == .success, "\(result.problems)")
        #expect(result.counters.filesDeleted == 3)
        let dst = try TreeSnapshot(f.destinationRoot)
        #expect(dst.entries.keys.map(\.description).sorted() == ["/", "/dir", "/dir/keep", "/keep", "/logs", "/logs/excluded.log"])
        // The directories' mtimes are right again after the removals.
        #expect(dst.entries[.root]!.mtime == SampleTrees.time(2))
    }

    @Test func dryRunChangesNothing() async throws {
        let f = try Fixture("dryrun")
        defer { f.cleanUp() }
        try SampleTrees.rich(f.source, devices: false)
        try f.destination.file("extra", [1])
        let before = try TreeSnapshot(f.destinationRoot)
        var options = Fixture.defaultOptions
        options.preserveDeletedFiles = .remove
        let result = try await f.sync(options, dryRun: true)
        #expect(result.status == .success)
        #expect(result.counters.estimatedFilesToTransfer > 20)
        #expect(result.counters.filesDeleted == 1)
        // Not one inode touched: same entries, data, metadata, inodes and ctimes.
        let changes = TreeSnapshot.changes(before, try TreeSnapshot(f.destinationRoot))
        #expect(changes == [], "\(changes)")
    }

    @Test func includeAndExcludeFilters() async throws {
        let f = try Fixture("filters")
        defer { f.cleanUp() }
        for p in ["photos/a.jpg", "photos/b.txt", "photos/raw/c.jpg", "docs/x.jpg", "docs/y.txt", "top.jpg", "Photos/z.jpg", "tmp/t.jpg"] {
            try f.source.file(p, [1])
        }
        let filters = Filters(includes: try FilterRule("/photos|*.txt"), excludes: try FilterRule("/photos/raw|/docs/y*"))
        let result = try await f.sync(filters: filters)
        #expect(result.status == .success, "\(result.problems)")
        let files = try TreeSnapshot(f.destinationRoot).entries.filter { $0.value.kind == .file }.keys.map(\.description).sorted()
        #expect(files == ["/photos/a.jpg", "/photos/b.txt"])
    }

    @Test func overwriteNeverLeavesExistingEntries() async throws {
        let f = try Fixture("never")
        defer { f.cleanUp() }
        try f.source.file("exists", [1, 1])
        try f.source.file("new", [2])
        try f.destination.file("exists", [9])
        try f.destination.setTimes("exists", atime: SampleTrees.time(1), mtime: SampleTrees.time(1))
        let before = try TreeSnapshot(f.destinationRoot)
        var options = Fixture.defaultOptions
        options.overwriteMode = .never
        let result = try await f.sync(options)
        // The existing file untouched (inode, ctime, data, metadata); only `new` arrived (and
        // the root, which holds it, changed).
        let changes = TreeSnapshot.changes(before, try TreeSnapshot(f.destinationRoot), except: [.root, EntryPath("new")!])
        #expect(changes == [], "\(changes)")
        #expect(FileManager.default.contents(atPath: f.destinationRoot + "/exists") == Data([9]))
        #expect(FileManager.default.contents(atPath: f.destinationRoot + "/new") == Data([2]))
        #expect(result.problems.contains { $0.entry.path == "/exists" && $0.entry.failureKind == .overwriteNever })
    }

    @Test func transferModeAllRewritesEverything() async throws {
        let f = try Fixture("all")
        defer { f.cleanUp() }
        try f.source.file("a", [1])
        try f.source.file("b", [2])
        try await f.sync()
        let before = try TreeSnapshot(f.destinationRoot)
        var options = Fixture.defaultOptions
        options.transferMode = .all
        let result = try await f.sync(options)
        #expect(result.counters.bytesTransferred == 2)
        #expect(result.counters.filesTransferred >= 2)
        // Every file was written again (a new inode), and the tree is the source's.
        let after = try TreeSnapshot(f.destinationRoot)
        for name in ["a", "b"] {
            let path = EntryPath(name)!
            #expect(after.entries[path]!.inode != before.entries[path]!.inode, "\(name) was not rewritten")
        }
        #expect(try f.differences() == [])
    }

    @Test func metadataOptionsNoneLeaveMetadataToTheWriter() async throws {
        let f = try Fixture("none")
        defer { f.cleanUp() }
        try f.source.file("a", [1], mode: 0o4751)
        try f.source.chown("a", uid: 1111, gid: 2222)
        try f.source.chmod("a", 0o4751)
        try f.source.setTimes("a", atime: SampleTrees.time(1), mtime: SampleTrees.time(2))
        var options = Fixture.defaultOptions
        options.uid = .none
        options.gid = .none
        options.posixPermissions = .none
        options.mtime = .none
        options.atime = .none
        let result = try await f.sync(options)
        #expect(result.status == .success, "\(result.problems)")
        let a = try TreeSnapshot(f.destinationRoot).entries[EntryPath("a")!]!
        #expect(a.uid == 0 && a.gid == 0)
        #expect(a.permissions == 0o600)
        #expect(a.mtime != SampleTrees.time(2))
        #expect(a.checksum == (try TreeSnapshot(f.source.root)).entries[EntryPath("a")!]!.checksum)
    }

    @Test func bandwidthLimitStillDeliversEverything() async throws {
        let f = try Fixture("bwlimit")
        defer { f.cleanUp() }
        try f.source.file("a", TestTree.bytes(2 << 20, seed: 3))
        var options = Fixture.defaultOptions
        options.bytesPerSecond = 8 << 20
        let result = try await f.sync(options)
        #expect(result.status == .success)
        #expect(try f.differences() == [])
    }

    @Test func devicesAreSkippedWithoutPreserveDevices() async throws {
        let f = try Fixture("nodev")
        defer { f.cleanUp() }
        try f.source.fifo("pipe")
        try f.source.file("file", [1])
        var options = Fixture.defaultOptions
        options.preserveDevices = .none
        let result = try await f.sync(options)
        #expect(!FileManager.default.fileExists(atPath: f.destinationRoot + "/pipe"))
        #expect(result.counters.filesSkipped == 1)
        #expect(result.problems.first?.entry.reason?.contains("--preserve-devices") == true)
    }
}
