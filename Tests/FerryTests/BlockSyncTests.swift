import FerryBlock
import FerryTesting
import Foundation
import Glibc
import Testing

/// `ferry block sync` and `ferry block restore` on real sparse images (ext4 under /tmp),
/// real loop devices and a real moto server.
@Suite(.serialized) struct BlockSyncTests {
    static let gib: Int64 = 1 << 30

    @Test func firstSyncThenOnePercentChanged() throws {
        let f = try BlockImageFixture("block-incr")
        defer { f.cleanUp() }
        try f.sparseImage("src.img", size: BlockSyncTests.gib, writes: 300, seed: 1)
        let data = BlockImageFixture.allocated(f.path("src.img"))
        let (first, r1, firstRead, _) = try f.ferryCountingReads(["sync", f.path("src.img"), f.path("dst.img"), "--verify", "none", "--no-consistency-check"])
        #expect(first.status == 0, "\(first.stderr)")
        let one = try #require(r1)
        #expect(try BlockImageFixture.same(f.path("src.img"), f.path("dst.img")))
        // Only allocated extents were read (about 5.6 MiB of 1 GiB), counted by the kernel
        // (rchar, which also holds the binary's own reads, a few MiB), and by Ferry; the
        // copy is as sparse as the source.
        #expect(firstRead < data + (16 << 20), "rchar \(firstRead) for \(data) bytes of data")
        #expect(one.bytesRead <= data, "\(one.bytesRead) read for \(data) allocated")
        #expect(one.bytesWritten <= BlockImageFixture.allocated(f.path("src.img")))
        #expect(BlockImageFixture.allocated(f.path("dst.img")) <= BlockImageFixture.allocated(f.path("src.img")) + (64 << 10))
        #expect(one.generation == 1 && one.verification.ok && one.verification.sourceDigest == one.verification.destinationDigest)
        // The map beside the destination, 0600, and one in the state directory.
        var st = stat()
        #expect(stat(f.path("dst.img.ferry-blockmap"), &st) == 0 && st.st_mode & 0o777 == 0o600)
        #expect(try FileManager.default.contentsOfDirectory(atPath: f.state + "/block").count == 1)

        // 1 % of the 1,024 blocks change: about 1 % is sent.
        try f.overwrite("src.img", at: BlockImageFixture.offsetsInDistinctBlocks(10, size: BlockSyncTests.gib, seed: 9), seed: 5)
        let (second, r2, _, written) = try f.ferryCountingReads(["sync", f.path("src.img"), f.path("dst.img")])
        #expect(second.status == 0, "\(second.stderr)")
        let two = try #require(r2)
        #expect(two.blocksChanged == 10 && two.blocksSent == 10, "\(two)")
        #expect(two.bytesWritten <= 10 << 20)
        // Counted by the kernel: the changed blocks, the map and the report (JSON), no more.
        #expect(written <= (10 << 20) + (2 << 20), "wchar \(written)")
        #expect(two.generation == 2)
        #expect(try BlockImageFixture.same(f.path("src.img"), f.path("dst.img")))

        // The next sync reads the source's data and not the destination: the process's read
        // syscalls (rchar, which also counts its binary's and the map's reads) stay well under
        // twice the source's data.
        let (measured, _, rchar, _) = try f.ferryCountingReads(["sync", f.path("src.img"), f.path("dst.img"), "--verify", "none", "--no-consistency-check"])
        #expect(measured.status == 0 && rchar < data + data / 2, "rchar \(rchar) for \(data) bytes of data: \(measured.stderr)")

        // Nothing changed: nothing sent; the summary also goes to --report (0600).
        let (_, r3) = try f.ferry(["sync", f.path("src.img"), f.path("dst.img"), "--verify", "changed", "--report", f.path("report.json")])
        #expect(r3?.blocksSent == 0 && r3?.bytesWritten == 0)
        let saved = try JSONDecoder().decode(BlockSyncReport.self, from: Data(contentsOf: URL(fileURLWithPath: f.path("report.json"))))
        #expect(saved.generation == 4 && stat(f.path("report.json"), &st) == 0 && st.st_mode & 0o777 == 0o600)

        // Someone else wrote to the destination: its map no longer describes it, so it is set
        // aside (and said so) and every block is written again.
        try f.overwrite("dst.img", at: [512 << 20], seed: 99)
        #expect(try !BlockImageFixture.same(f.path("src.img"), f.path("dst.img")))
        let (fourth, r4) = try f.ferry(["sync", f.path("src.img"), f.path("dst.img")])
        #expect(fourth.status == 0 && r4?.notes.contains { $0.contains("changed since Ferry last wrote it") } == true, "\(fourth.stderr)")
        #expect(try BlockImageFixture.same(f.path("src.img"), f.path("dst.img")))
    }

    @Test func changeListsFromRbdDiffAndOffsetLength() throws {
        let f = try BlockImageFixture("block-cbt")
        defer { f.cleanUp() }
        let size: Int64 = 256 << 20
        try f.sparseImage("src.img", size: size, writes: 100, seed: 2)
        #expect(try f.ferry(["sync", f.path("src.img"), f.path("dst.img")]).0.status == 0)

        let offsets = BlockImageFixture.offsetsInDistinctBlocks(4, size: size, seed: 3)
        try f.overwrite("src.img", at: offsets, seed: 11)
        let rbd = offsets.map { "{\"offset\":\($0),\"length\":4096,\"exists\":\"true\"}" }.joined(separator: ",")
        try Data("[\(rbd)]".utf8).write(to: URL(fileURLWithPath: f.path("diff.json")))
        let (run, report) = try f.ferry(["sync", f.path("src.img"), f.path("dst.img"), "--changed-extents", f.path("diff.json")])
        #expect(run.status == 0, "\(run.stderr)")
        // Only the listed extents were read.
        #expect(report?.blocksScanned == 4 && report?.blocksSent == 4 && (report?.bytesRead ?? .max) <= 4 << 20, "\(String(describing: report))")
        #expect(try BlockImageFixture.same(f.path("src.img"), f.path("dst.img")))

        let more = BlockImageFixture.offsetsInDistinctBlocks(3, size: size, seed: 4)
        try f.overwrite("src.img", at: more, seed: 12)
        try Data(("# QueryChangedDiskAreas\n" + more.map { "\($0),4096\n" }.joined()).utf8).write(to: URL(fileURLWithPath: f.path("cbt.txt")))
        let (run2, report2) = try f.ferry(["sync", f.path("src.img"), f.path("dst.img"), "--changed-extents", f.path("cbt.txt")])
        #expect(run2.status == 0 && report2?.blocksScanned == 3 && report2?.blocksSent == 3, "\(run2.stderr)")
        #expect(try BlockImageFixture.same(f.path("src.img"), f.path("dst.img")))

        // block:// and file:// URIs name the same images; an image onto itself is refused.
        let (uri, ru) = try f.ferry(["sync", "file://" + f.path("src.img"), "block://" + f.path("dst.img"), "--verify", "none"])
        #expect(uri.status == 0 && ru?.blocksSent == 0, "\(uri.stderr)")
        let (same, _) = try f.ferry(["sync", f.path("src.img"), "file://" + f.path("src.img")])
        #expect(same.status == 64 && same.stderr.contains("the same file or device"), "\(same.stderr)")

        try Data("0,4096\nten,20\n".utf8).write(to: URL(fileURLWithPath: f.path("bad.txt")))
        let (bad, _) = try f.ferry(["sync", f.path("src.img"), f.path("dst.img"), "--changed-extents", f.path("bad.txt")])
        #expect(bad.status == 1 && bad.stderr.contains("bad.txt, line 2"), "\(bad.stderr)")
    }

    @Test func sourceThatGrowsAndShrinks() throws {
        let f = try BlockImageFixture("block-size")
        defer { f.cleanUp() }
        try f.sparseImage("src.img", size: 64 << 20, writes: 40, seed: 6)
        #expect(try f.ferry(["sync", f.path("src.img"), f.path("dst.img")]).0.status == 0)
        for newSize in [Int64(96 << 20) + 12345, Int64(40 << 20) + 777] {
            #expect(truncate(f.path("src.img"), off_t(newSize)) == 0)
            try f.overwrite("src.img", at: [newSize - 8192], seed: UInt64(newSize))
            let (run, report) = try f.ferry(["sync", f.path("src.img"), f.path("dst.img")])
            #expect(run.status == 0, "\(run.stderr)")
            #expect(report?.notes.contains { $0.contains("now \(newSize) bytes") } == true, "\(String(describing: report?.notes))")
            #expect(try BlockImageFixture.same(f.path("src.img"), f.path("dst.img")))
        }
    }

    @Test func objectStorageGenerationsAndRestore() async throws {
        let (server, bucket) = try await S3Tests.freshBucket()
        let f = try BlockImageFixture("block-s3")
        defer { f.cleanUp() }
        let size: Int64 = 128 << 20
        try f.sparseImage("src.img", size: size, writes: 60, seed: 7)
        let remote = "s3://\(bucket)/vm/disk0"
        let (up, r1) = try f.ferry(["sync", f.path("src.img"), remote], s3: server)
        #expect(up.status == 0, "\(up.stderr)")
        #expect(try CLI.run([f.path("src.img"), f.path("gen1.img")], wrapper: ["cp", "--sparse=always"], direct: true).status == 0)
        // One chunk object per distinct non-zero block, one manifest.
        let listing = try S3Tests.aws(server, ["s3", "ls", "--recursive", remote + "/"]).stdout
        let chunks = listing.split(separator: "\n").filter { $0.contains("/chunks/") }.count
        #expect(chunks == (r1?.blocksSent ?? -1) && chunks > 0 && chunks < 128)
        #expect(listing.contains("manifests/0000000001.blockmap"))

        try f.overwrite("src.img", at: BlockImageFixture.offsetsInDistinctBlocks(2, size: size, seed: 8), seed: 13)
        let (up2, r2) = try f.ferry(["sync", f.path("src.img"), remote], s3: server)
        #expect(up2.status == 0 && r2?.blocksSent == 2 && r2?.generation == 2, "\(up2.stderr)")

        let (back, rb) = try f.ferry(["restore", remote, f.path("restored.img")], s3: server)
        #expect(back.status == 0, "\(back.stderr)")
        #expect(rb?.verification.ok == true)
        #expect(try BlockImageFixture.same(f.path("src.img"), f.path("restored.img")))
        #expect(BlockImageFixture.allocated(f.path("restored.img")) <= BlockImageFixture.allocated(f.path("src.img")) + (64 << 10))
        let (old, _) = try f.ferry(["restore", remote, f.path("old.img"), "--generation", "1"], s3: server)
        #expect(old.status == 0, "\(old.stderr)")
        #expect(try BlockImageFixture.same(f.path("gen1.img"), f.path("old.img")))

        // Keeping one generation prunes the first manifest and the chunks only it used.
        let (up3, r3) = try f.ferry(["sync", f.path("src.img"), remote, "--keep", "1"], s3: server)
        #expect(up3.status == 0 && r3?.notes.contains { $0.contains("pruned 2 generation") } == true, "\(up3.stderr) \(String(describing: r3?.notes))")
        let after = try S3Tests.aws(server, ["s3", "ls", "--recursive", remote + "/"]).stdout
        #expect(!after.contains("manifests/0000000001") && after.contains("manifests/0000000003"))
        let (gone, _) = try f.ferry(["restore", remote, f.path("none.img"), "--generation", "1"], s3: server)
        #expect(gone.status == 1 && gone.stderr.contains("no generation 1"), "\(gone.stderr)")
    }

    /// kill -9 in the middle: the map never claims what the destination does not hold, and
    /// the next run takes up where the last committed window ended.
    @Test func killedMidwayThenResumed() async throws {
        let f = try BlockImageFixture("block-kill")
        defer { f.cleanUp() }
        let size: Int64 = 512 << 20
        // Dense: every block holds data, so there are eight 64 MiB windows to write.
        try f.denseImage("src.img", size: size, seed: 100)
        let p = try f.launch(["sync", f.path("src.img"), f.path("dst.img"), "--bwlimit", "100M", "-q"])
        let besideMap = f.path("dst.img.ferry-blockmap")
        let progressed = BlockImageFixture.waitUntil(seconds: 30) {
            ((try? BlockMap.load(besideMap))??.header.committedBlocks ?? 0) >= 128
        }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        #expect(progressed, "the sync never committed a second window")

        // Every block the map calls known holds what the map says.
        let map = try #require(try BlockMap.load(besideMap))
        #expect(!map.header.complete)
        let dst = try BlockImage.openSource(f.path("dst.img"))
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        for i in 0..<map.hashes.count where map.isKnown(i) {
            let n = try buffer.withUnsafeMutableBytes { try dst.read(into: $0, count: 1 << 20, at: Int64(i) << 20) }
            let h = buffer.withUnsafeBytes { BlockHash.of(UnsafeRawBufferPointer(rebasing: $0[..<n])) }
            #expect(h == map.hashes[i], "block \(i) does not hold what the map claims")
        }

        let (run, report) = try f.ferry(["sync", f.path("src.img"), f.path("dst.img")])
        #expect(run.status == 0, "\(run.stderr)")
        #expect((report?.resumedAtByte ?? 0) >= 128 << 20, "\(String(describing: report?.notes))")
        #expect((report?.bytesRead ?? .max) <= size - (128 << 20))
        #expect(try BlockImageFixture.same(f.path("src.img"), f.path("dst.img")))
    }

    /// kill -9 while chunks go to object storage: no manifest claims the unfinished generation,
    /// and the next run takes up after the committed span without sending it again.
    @Test func objectStorageResumesAfterKill() async throws {
        let (server, bucket) = try await S3Tests.freshBucket()
        let f = try BlockImageFixture("block-s3-kill")
        defer { f.cleanUp() }
        let size: Int64 = 256 << 20
        try f.denseImage("src.img", size: size, seed: 900)
        let remote = "s3://\(bucket)/resume"
        let p = try f.launch(["sync", f.path("src.img"), remote, "--bwlimit", "32M", "-q"], s3: server)
        func progress() -> Int {
            let dir = f.state + "/block"
            guard let name = (try? FileManager.default.contentsOfDirectory(atPath: dir))?.first(where: { $0.hasSuffix(".blockmap") }) else { return 0 }
            return ((try? BlockMap.load(dir + "/" + name)) ?? nil)?.header.committedBlocks ?? 0
        }
        let progressed = BlockImageFixture.waitUntil(seconds: 60) { progress() >= 64 }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        #expect(progressed, "the upload never committed its first span")
        #expect(!(try S3Tests.aws(server, ["s3", "ls", "--recursive", remote + "/"]).stdout.contains("manifests/")))

        let (run, report) = try f.ferry(["sync", f.path("src.img"), remote], s3: server)
        #expect(run.status == 0, "\(run.stderr)")
        #expect((report?.resumedAtByte ?? 0) >= 64 << 20, "\(String(describing: report?.notes))")
        #expect((report?.blocksSent ?? .max) <= 192 && (report?.bytesRead ?? .max) <= 192 << 20, "\(String(describing: report))")
        let (back, _) = try f.ferry(["restore", remote, f.path("restored.img")], s3: server)
        #expect(back.status == 0, "\(back.stderr)")
        #expect(try BlockImageFixture.same(f.path("src.img"), f.path("restored.img")))
    }

    @Test func snapshotHooksAndReflink() throws {
        let f = try BlockImageFixture("block-snap")
        defer { f.cleanUp() }
        try f.sparseImage("src.img", size: 32 << 20, writes: 20, seed: 10)
        let create = "s=\(f.dir)/snap-$(date +%s%N).img; cp --sparse=always \"$FERRY_SOURCE\" \"$s\" && echo \"$s\""
        let cleanup = "echo \"$FERRY_SNAPSHOT\" >> \(f.dir)/cleaned; rm -f \"$FERRY_SNAPSHOT\""
        let args = ["sync", f.path("src.img"), f.path("dst.img"), "--snapshot-cmd", create, "--snapshot-cleanup-cmd", cleanup]
        let (one, r1) = try f.ferry(args)
        #expect(one.status == 0, "\(one.stderr)")
        let firstSnap = try #require(r1?.snapshot)
        #expect(r1?.sourceRead == firstSnap && FileManager.default.fileExists(atPath: firstSnap))
        try f.overwrite("src.img", at: [4096], seed: 3)
        let (two, r2) = try f.ferry(args)
        #expect(two.status == 0 && r2?.blocksSent == 1, "\(two.stderr)")
        // The older snapshot was cleaned up, the latest is kept.
        #expect(!FileManager.default.fileExists(atPath: firstSnap))
        #expect(FileManager.default.fileExists(atPath: try #require(r2?.snapshot)))
        #expect((try? String(contentsOfFile: f.dir + "/cleaned", encoding: .utf8)) == firstSnap + "\n")
        #expect(try BlockImageFixture.same(f.path("src.img"), f.path("dst.img")))

        // ext4 has no reflinks: a clear error, nothing written.
        let (reflink, _) = try f.ferry(["sync", f.path("src.img"), f.path("other.img"), "--snapshot", "reflink"])
        #expect(reflink.status == 1 && reflink.stderr.contains("reflink"), "\(reflink.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: f.dir).filter { $0.hasPrefix(".ferry-snapshot") } == [])
    }

    /// `--snapshot reflink` on XFS (reflink=1) in a loop-mounted image: the sync reads a
    /// FICLONE clone, which is gone afterwards.
    @Test func reflinkSnapshotOnXFS() throws {
        let f = try BlockImageFixture("block-xfs")
        defer { f.cleanUp() }
        let fs = f.path("xfs.img"), mnt = f.path("mnt")
        _ = FileManager.default.createFile(atPath: fs, contents: nil)
        #expect(truncate(fs, 512 << 20) == 0)
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
        let mkfs = try CLI.run(["-q", "-m", "reflink=1", fs], wrapper: ["mkfs.xfs"], direct: true)
        #expect(mkfs.status == 0, "mkfs.xfs (xfsprogs, installed by .ci/run): \(mkfs.stderr)")
        let mount = try CLI.run(["-o", "loop", fs, mnt], wrapper: ["mount"], direct: true)
        // A machine that cannot loop-mount fails here: the reflink path would have no test.
        try #require(mount.status == 0, "mount -o loop (the kernel here has loop devices and XFS): \(mount.stderr)")
        defer { _ = try? CLI.run([mnt], wrapper: ["umount"], direct: true) }
        let x = BlockImageFixture(existing: mnt, state: f.state)
        try x.sparseImage("src.img", size: 64 << 20, writes: 30, seed: 21)
        let (run, report) = try x.ferry(["sync", x.path("src.img"), x.path("dst.img"), "--snapshot", "reflink"])
        #expect(run.status == 0, "\(run.stderr)")
        let snap = try #require(report?.snapshot)
        #expect(snap.contains(".ferry-snapshot-src.img") && report?.sourceRead == snap)
        #expect(!FileManager.default.fileExists(atPath: snap))
        // A snapshot is point-in-time by itself: no second pass was needed.
        #expect(report?.pointInTimeConsistent == true)
        #expect(try BlockImageFixture.same(x.path("src.img"), x.path("dst.img")))
    }

    /// Blocks that change while they are read (no snapshot) are found by the second pass.
    @Test func changedWhileReadIsReported() throws {
        let f = try BlockImageFixture("block-moving")
        defer { f.cleanUp() }
        let size: Int64 = 256 << 20
        try f.denseImage("src.img", size: size, seed: 500)
        let (status, report) = try f.syncChangingMidway { try f.overwrite("src.img", at: [4096], seed: 77) }  // block 0: read already
        #expect(status == 2)
        #expect(!report.pointInTimeConsistent && report.changedWhileReading == ["0-1048576"] && report.result == "NOT_POINT_IN_TIME")
        // The next run brings the changed block over.
        let (run, r2) = try f.ferry(["sync", f.path("src.img"), f.path("dst.img")])
        #expect(run.status == 0 && r2?.blocksSent == 1, "\(run.stderr)")
        #expect(try BlockImageFixture.same(f.path("src.img"), f.path("dst.img")))
    }

    /// Someone writes into the destination while the sync runs: full verification finds the
    /// block, names its range, exits 3, leaves it unknown in the map, and the next run repairs it.
    @Test func destinationDamagedDuringTheRunFailsVerification() throws {
        let f = try BlockImageFixture("block-damaged")
        defer { f.cleanUp() }
        let size: Int64 = 256 << 20
        try f.denseImage("src.img", size: size, seed: 700)
        let (status, report) = try f.syncChangingMidway { try f.overwrite("dst.img", at: [(3 << 20) + 8192], seed: 31) }  // block 3: written already
        #expect(status == 3 && report.result == "VERIFICATION_FAILED")
        #expect(report.verification.mismatchedRanges == ["3145728-4194304"], "\(report.verification)")
        #expect(report.verification.sourceDigest != report.verification.destinationDigest)
        let map = try #require(try BlockMap.load(f.path("dst.img.ferry-blockmap")))
        #expect(!map.header.complete && !map.isKnown(3))
        let (run, r2) = try f.ferry(["sync", f.path("src.img"), f.path("dst.img")])
        #expect(run.status == 0 && r2?.blocksSent == 1, "\(run.stderr)")
        #expect(try BlockImageFixture.same(f.path("src.img"), f.path("dst.img")))
    }

    /// A loop device as source and destination (as root, where the machine has loop devices).
    @Test func loopDevices() async throws {
        let f = try BlockImageFixture("block-loop")
        defer { f.cleanUp() }
        try f.sparseImage("a.img", size: 128 << 20, writes: 50, seed: 12)
        _ = FileManager.default.createFile(atPath: f.path("b.img"), contents: nil)
        #expect(truncate(f.path("b.img"), 160 << 20) == 0)
        let a = try CLI.run(["-f", "--show", f.path("a.img")], wrapper: ["losetup"], direct: true)
        let b = try CLI.run(["-f", "--show", f.path("b.img")], wrapper: ["losetup"], direct: true)
        defer {
            for dev in [a, b] where dev.status == 0 { _ = try? CLI.run(["-d", dev.stdout.trimmingCharacters(in: .whitespacesAndNewlines)], wrapper: ["losetup"], direct: true) }
        }
        // A machine without loop devices fails here: the device paths would have no test.
        try #require(a.status == 0 && b.status == 0, "losetup (the kernel here has loop devices): \(a.stderr)\(b.stderr)")
        let src = a.stdout.trimmingCharacters(in: .whitespacesAndNewlines), dst = b.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let (run, report) = try f.ferry(["sync", src, dst])
        #expect(run.status == 0, "\(run.stderr)")
        // A device has no holes to skip: every block is read, zero blocks are not sent.
        #expect(report?.bytesRead == 128 << 20 && (report?.blocksZero ?? 0) > 0 && (report?.blocksSent ?? 0) < 128)
        #expect(try CLI.run(["-n", "\(128 << 20)", src, dst], wrapper: ["cmp"], direct: true).status == 0)
        // A change made through the source device; the next run sends that block only.
        let fd = open(src, O_WRONLY)
        _ = TestTree.bytes(4096, seed: 99).withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 70 << 20) }
        fsync(fd)
        close(fd)
        let (run2, report2) = try f.ferry(["sync", src, dst])
        #expect(run2.status == 0 && report2?.blocksSent == 1, "\(run2.stderr)")
        #expect(try CLI.run(["-n", "\(128 << 20)", src, dst], wrapper: ["cmp"], direct: true).status == 0)
        // Kept on object storage and restored onto a third device.
        let (server, bucket) = try await S3Tests.freshBucket()
        let (up, _) = try f.ferry(["sync", src, "s3://\(bucket)/dev"], s3: server)
        #expect(up.status == 0, "\(up.stderr)")
        _ = FileManager.default.createFile(atPath: f.path("c.img"), contents: nil)
        #expect(truncate(f.path("c.img"), 128 << 20) == 0)
        let c = try CLI.run(["-f", "--show", f.path("c.img")], wrapper: ["losetup"], direct: true)
        let third = c.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        defer { if c.status == 0 { _ = try? CLI.run(["-d", third], wrapper: ["losetup"], direct: true) } }
        #expect(c.status == 0, "\(c.stderr)")
        let (restored, rr) = try f.ferry(["restore", "s3://\(bucket)/dev", third], s3: server)
        #expect(restored.status == 0 && rr?.verification.ok == true, "\(restored.stderr)")
        #expect(try CLI.run([src, third], wrapper: ["cmp"], direct: true).status == 0)

        // A destination smaller than the source is refused by name.
        let (small, _) = try f.ferry(["sync", f.path("b.img"), src])
        #expect(small.status == 1 && small.stderr.contains("holds \(128 << 20) bytes"), "\(small.stderr)")
    }
}

extension BlockImageFixture {
    static func waitUntil(seconds: Double, _ condition: () -> Bool) -> Bool { Fixture.waitUntil(seconds: seconds, condition) }
}
