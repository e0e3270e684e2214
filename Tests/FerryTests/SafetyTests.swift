import FerryCore
import FerryEngine
import FerryTesting
import Foundation
import Glibc
import Synchronization
import Testing

/// Nothing lost, nothing escapes: kill -9, unreadable files, changing files, hostile destinations.
@Suite struct SafetyTests {
    @Test func symlinkedDirectoryAtDestinationReceivesNothing() async throws {
        let f = try Fixture("escape")
        defer { f.cleanUp() }
        let outside = try TestTree(label: "outside")
        defer { outside.remove() }
        try f.source.file("sub/payload", [1, 2, 3])
        try f.source.file("sub/deeper/more", [4])
        try f.destination.directory("")
        try f.destination.symlink("sub", to: outside.root)
        let result = try await f.sync()
        #expect(result.status == .success, "\(result.problems)")
        #expect(try TreeSnapshot(outside.root).entries.count == 1, "nothing may be written outside the destination")
        let diffs = try f.differences(compareAtime: false)
        #expect(diffs == [], "\(diffs)")
        var st = stat()
        #expect(lstat(f.destinationRoot + "/sub", &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR)
    }

    @Test func killedRunLeavesOnlyCompleteFilesAndRerunCompletes() async throws {
        let f = try Fixture("kill")
        defer { f.cleanUp() }
        try SampleTrees.smallFiles(f.source, files: 1500, directories: 30)
        for i in 0..<6 { try f.source.file("large/\(i).bin", TestTree.bytes(12 << 20, seed: UInt64(100 + i))) }
        for progress in [20, 800] {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: CLI.executable)
            p.arguments = ["sync", f.source.root, f.destinationRoot, "-q", "--bwlimit", "40M"]
            try p.run()
            // Kill once the run is under way (so many files in place), whatever the load.
            let underWay = Fixture.waitUntil(seconds: 60) {
                (try? TreeSnapshot(f.destinationRoot).entries.count) ?? 0 >= progress || !p.isRunning
            }
            #expect(underWay)
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            #expect(p.terminationReason == .uncaughtSignal)
            // Every entry under a final name is complete: same data and metadata as the source.
            let src = try TreeSnapshot(f.source.root)
            let dst = try TreeSnapshot(f.destinationRoot)
            for (path, e) in dst.entries where e.kind == .file && !path.name.starts(with: Array(".ferry-tmp-".utf8)) {
                let s = try #require(src.entries[path])
                #expect(e.checksum == s.checksum && e.size == s.size && e.mtime == s.mtime && e.permissions == s.permissions, "partial file \(path)")
            }
        }
        let result = try await f.sync()
        #expect(result.status == .success, "\(result.problems)")
        let diffs = try f.differences()
        #expect(diffs == [], "\(diffs)")
        #expect(try f.temporaries() == [])
    }

    /// Only Ferry's own temporary names (`.ferry-tmp-<pid>-<letters a–p>`) are hidden and
    /// removed as leftovers of an interrupted run: a file of the user's that merely starts
    /// with the prefix is copied like any other (it used to be dropped without a word), and
    /// one named exactly like a temporary at the source is reported as skipped.
    @Test func filesNamedLikeTemporariesAreCopiedAndOnlyLeftoversRemoved() async throws {
        let f = try Fixture("tmp-names")
        defer { f.cleanUp() }
        let userFiles: [(String, [UInt8])] = [
            (".ferry-tmp-notes", [1, 2]), ("d/.ferry-tmp-12-xyz", [3]), ("d/.ferry-tmp-", [4]), ("d/.ferry-tmp-12-", [5]),
            ("d/.ferry-tmp--ab", [6]), ("plain", [7]),
        ]
        for (path, bytes) in userFiles { try f.source.file(path, bytes) }
        #expect(mkdir(f.destinationRoot, 0o755) == 0 && mkdir(f.destinationRoot + "/d", 0o755) == 0)
        let leftover = f.destinationRoot + "/d/.ferry-tmp-4242-bc"
        #expect(FileManager.default.createFile(atPath: leftover, contents: Data([9, 9])))
        // Named exactly like a temporary at the source: not copied, but reported as skipped.
        try f.source.file("d/.ferry-tmp-77-ab", [8])
        let result = try await f.sync()
        #expect(result.counters.filesSkipped == 1)
        #expect(result.problems.map(\.entry.path) == ["/d/.ferry-tmp-77-ab"], "\(result.problems)")
        #expect(result.problems.map(\.entry.kind) == ["FILE"] && result.problems.map(\.entry.status) == [.skipped])
        let diffs = try f.differences()  // before reading the copies (which moves their atime)
        #expect(diffs == ["/d/.ferry-tmp-77-ab: missing at the destination"], "\(diffs)")
        for (path, bytes) in userFiles {
            #expect(FileManager.default.contents(atPath: "\(f.destinationRoot)/\(path)") == Data(bytes), "\(path)")
        }
        #expect(!FileManager.default.fileExists(atPath: leftover), "the leftover temporary is still there")
    }

    @Test func unreadableFileIsSkippedNamedAndRunGoesOn() throws {
        let f = try Fixture("unreadable")
        defer { f.cleanUp() }
        try f.source.file("ok/a", [1])
        try f.lockedSourceFile("secret/locked")
        try f.source.directory("closed", mode: 0o000)
        try f.source.file("z-last", [3])
        try f.source.chown("closed", uid: 4000, gid: 4000)
        let reportPath = f.destinationRoot + "-report.json"
        let run = try CLI.run(["sync", f.source.root, f.destinationRoot, "--report", reportPath], wrapper: CLI.withoutDACOverride)
        #expect(run.status == 2, "\(run.stdout)\(run.stderr)")
        #expect(run.stderr.contains("/secret/locked"))
        #expect(run.stderr.contains("/closed"))
        #expect(run.stderr.contains("Permission denied"))
        #expect(FileManager.default.contents(atPath: f.destinationRoot + "/z-last") == Data([3]))
        #expect(FileManager.default.contents(atPath: f.destinationRoot + "/ok/a") == Data([1]))
        #expect(!FileManager.default.fileExists(atPath: f.destinationRoot + "/secret/locked"))
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: reportPath))) as! [String: Any]
        let skipped = report["Skipped"] as! [[String: Any]]
        #expect(Set(skipped.compactMap { $0["RelativePath"] as? String }) == ["/secret/locked", "/closed"])
        #expect(skipped.allSatisfy { $0["FailureKind"] as? String == "UNREADABLE" })
        let summary = report["Summary"] as! [String: Any]
        #expect((summary["Counters"] as! [String: Any])["FilesSkipped"] as? Int == 2)
        try? FileManager.default.removeItem(atPath: reportPath)
    }

    @Test func fileChangingDuringCopyIsReportedAndNotCommitted() async throws {
        let f = try Fixture("changing")
        defer { f.cleanUp() }
        try f.source.file("steady", TestTree.bytes(1000, seed: 1))
        let path = try f.source.file("moving.bin", TestTree.bytes(8 << 20, seed: 2))
        var options = Fixture.defaultOptions
        options.bytesPerSecond = 16 << 20  // each attempt takes about half a second
        // A thread of its own, so that busy async workers cannot hold it back; it keeps
        // changing the file until the run is over.
        let done = DispatchSemaphore(value: 0)
        let stop = Mutex(false)
        let writer = Thread {
            let fd = open(path, O_WRONLY)
            defer { close(fd); done.signal() }
            var i: UInt8 = 0
            while !stop.withLock({ $0 }) {
                i &+= 1
                var b = i
                _ = pwrite(fd, &b, 1, off_t(Int(i) * 4096))
                usleep(20_000)
            }
        }
        writer.start()
        let result = try await f.sync(options)
        stop.withLock { $0 = true }
        done.wait()
        #expect(result.counters.verificationFailures == 1)
        let problem = try #require(result.problems.first { $0.entry.path == "/moving.bin" })
        #expect(problem.entry.failureKind == .checksumFailure)
        #expect(problem.entry.reason?.contains("changed while it was read") == true)
        #expect(!FileManager.default.fileExists(atPath: f.destinationRoot + "/moving.bin"))
        #expect(FileManager.default.contents(atPath: f.destinationRoot + "/steady") == Data(TestTree.bytes(1000, seed: 1)))
        #expect(try f.temporaries() == [])
        #expect(result.outcome == .verificationFailed)
    }

    @Test func nothingIsDeletedAfterAnError() throws {
        let f = try Fixture("nodelete")
        defer { f.cleanUp() }
        try f.source.file("keep", [1])
        try f.lockedSourceFile("locked")
        try f.destination.file("extra", [9])
        let run = try CLI.run(["sync", f.source.root, f.destinationRoot, "--delete"], wrapper: CLI.withoutDACOverride)
        #expect(run.status == 2)
        #expect(run.stderr.contains("deletion(s) not done because of errors"))
        #expect(FileManager.default.fileExists(atPath: f.destinationRoot + "/extra"))
    }

    @Test func fullDestinationStopsWithAClearErrorAndNoPartialFile() throws {
        let f = try Fixture("enospc")
        defer { f.cleanUp() }
        try f.source.file("a-small", [1, 2, 3])
        try f.source.file("b-big", TestTree.bytes(5 << 20, seed: 1))
        let mountPoint = try TestTree(label: "enospc-mnt")
        defer { mountPoint.remove() }
        let mounted = try CLI.run(["-t", "tmpfs", "-o", "size=2m", "tmpfs", mountPoint.root], wrapper: ["mount"], direct: true)
        #expect(mounted.status == 0, "mounting a small tmpfs needs root: \(mounted.stderr)")
        defer { _ = try? CLI.run([mountPoint.root], wrapper: ["umount"], direct: true) }
        let run = try CLI.run(["sync", f.source.root, mountPoint.root + "/dst", "--parallel", "1"])
        #expect(run.status == 1)
        #expect(run.stderr.contains("No space left on device"))
        #expect(run.stderr.contains("/dst/b-big"))
        let names = try FileManager.default.contentsOfDirectory(atPath: mountPoint.root + "/dst")
        #expect(names == ["a-small"], "files are done in name order; no partial or temporary file may stay: \(names)")
    }
}
