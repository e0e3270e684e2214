import FerryCore
import FerryTesting
import Foundation
import Glibc
import Testing

/// Small files and symlinks are handled several to a task when much work waits
/// (`Scheduler.nextWork`); each item of a batch still succeeds, fails and links on its own.
@Suite struct BatchTests {
    @Test func batchedSmallFilesKeepPerFileOutcomes() throws {
        let f = try Fixture("batch")
        defer { f.cleanUp() }
        // 70 small files in one directory: with --parallel 2 the stack holds far more than
        // 8 x 2 items, so they go in batches of 8.
        func source(_ i: Int) -> Int { i == 61 ? 10 : i }  // f61 is a hard link to f10
        for i in 0..<70 where i != 33 && i != 61 {
            try f.source.file("many/f\(i)", TestTree.bytes(100 + i * 700, seed: UInt64(i)), mode: i % 2 == 0 ? 0o640 : 0o604)
        }
        try f.lockedSourceFile("many/f33")  // unreadable: fails inside its batch
        try f.source.hardLink("many/f61", to: "many/f10")
        for i in 0..<20 { try f.source.symlink("many/l\(i)", to: "f\(i)") }  // symlinks batch too
        let run = try CLI.run(["sync", f.source.root, f.destinationRoot, "--parallel", "2", "--json"], wrapper: CLI.withoutDACOverride)
        #expect(run.status == 2, "\(run.stdout) \(run.stderr)")
        let json = try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as! [String: Any]
        let problems = (json["Problems"] as! [[String: Any]]).map { $0["entry"] as! [String: Any] }
        #expect(problems.map { $0["RelativePath"] as? String } == ["/many/f33"], "\(problems)")
        for i in 0..<70 where i != 33 {
            let path = "many/f\(i)"
            let s = source(i)
            #expect(FileManager.default.contents(atPath: "\(f.destinationRoot)/\(path)") == Data(TestTree.bytes(100 + s * 700, seed: UInt64(s))), "\(path)")
            var st = stat()
            #expect(stat("\(f.destinationRoot)/\(path)", &st) == 0 && st.st_mode & 0o777 == (s % 2 == 0 ? 0o640 : 0o604), "\(path)")
        }
        #expect(!FileManager.default.fileExists(atPath: "\(f.destinationRoot)/many/f33"))
        var a = stat(), b = stat()
        stat("\(f.destinationRoot)/many/f10", &a)
        stat("\(f.destinationRoot)/many/f61", &b)
        #expect(a.st_ino == b.st_ino)
        for i in 0..<20 {
            var buffer = [CChar](repeating: 0, count: 64)
            let n = readlink("\(f.destinationRoot)/many/l\(i)", &buffer, buffer.count)
            #expect(n > 0 && String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) == "f\(i)")
        }
        #expect(try f.temporaries().isEmpty)
    }

    /// A destination that fills up mid-batch (ENOSPC is fatal): the execution stops with the
    /// reason and starts no further file, every file under its final name holds the source's
    /// bytes, no temporary is left.
    @Test func aFullDestinationStopsInsideABatch() throws {
        let f = try Fixture("batch-full")
        defer { f.cleanUp() }
        for i in 0..<70 { try f.source.file("many/f\(i)", TestTree.bytes(20_000, seed: UInt64(i))) }
        let mountPoint = f.destinationRoot + "-small"
        #expect(mkdir(mountPoint, 0o755) == 0)
        let mount = try CLI.run(["-t", "tmpfs", "-o", "size=512k", "tmpfs", mountPoint], wrapper: ["mount"], direct: true)
        #expect(mount.status == 0, "mount a 512 KiB tmpfs: \(mount.stderr)")
        guard mount.status == 0 else { return }
        defer { _ = try? CLI.run([mountPoint], wrapper: ["umount"], direct: true) }
        let run = try CLI.run(["sync", f.source.root, mountPoint + "/dest", "--parallel", "2", "-v"])
        #expect(run.status == 1, "\(run.stdout) \(run.stderr)")
        #expect(run.stderr.contains("free space at the destination"), "\(run.stderr)")
        let arrived = (try? FileManager.default.contentsOfDirectory(atPath: mountPoint + "/dest/many")) ?? []
        #expect(!arrived.isEmpty && arrived.count < 70, "\(arrived.count) files arrived")
        // After the fatal error no file starts: at most the two tasks' batches (8 each) were under way.
        let started = (run.stdout + run.stderr).split(separator: "\n").filter { $0.hasPrefix("create /many/f") }.count
        #expect(started <= arrived.count + 2 * 8, "\(started) files started, \(arrived.count) arrived")
        for name in arrived {
            #expect(!name.hasPrefix(".ferry-tmp-"), "temporary left: \(name)")
            let i = UInt64(name.dropFirst())!
            #expect(FileManager.default.contents(atPath: "\(mountPoint)/dest/many/\(name)") == Data(TestTree.bytes(20_000, seed: i)), "\(name)")
        }
    }
}
