import CFerry
import FerryBlock
import FerryTesting
import Foundation
import Glibc

/// Sparse disk images for block-sync tests: a directory under /tmp holding images,
/// with helpers to write random data into them, compare them and look at their holes.
struct BlockImageFixture {
    let dir: String
    let state: String

    init(_ label: String) throws {
        dir = try TestTree(label: label).root
        state = dir + "/state"
    }

    /// Images in an existing directory (a mount point), with another fixture's state directory.
    init(existing dir: String, state: String) {
        self.dir = dir
        self.state = state
    }

    func path(_ name: String) -> String { dir + "/" + name }

    /// A sparse image of `size` bytes with `writes` random extents of 4 KiB or 64 KiB.
    func sparseImage(_ name: String, size: Int64, writes: Int, seed: UInt64) throws {
        let fd = open(path(name), O_RDWR | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw BlockError(.imageIO, "cannot create \(path(name))") }
        defer { close(fd) }
        ftruncate(fd, off_t(size))
        var rng = Xorshift(seed)
        for i in 0..<writes {
            let length = i % 4 == 0 ? 65536 : 4096
            let offset = Int64(rng.next() % UInt64(size - Int64(length))) & ~4095
            try write(fd, TestTree.bytes(length, seed: seed &+ UInt64(i)), at: offset)
        }
    }

    /// An image of `size` bytes with data in every 1 MiB block.
    func denseImage(_ name: String, size: Int64, seed: UInt64) throws {
        let fd = open(path(name), O_RDWR | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw BlockError(.imageIO, "cannot create \(path(name))") }
        defer { close(fd) }
        for i in 0..<Int(size >> 20) { try write(fd, TestTree.bytes(1 << 20, seed: UInt64(i) + seed), at: Int64(i) << 20) }
    }

    /// Starts `ferry block ARGS` without waiting (to kill it, or change the source under it).
    func launch(_ args: [String], s3: S3TestServer? = nil, stdout: Pipe? = nil) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: CLI.executable)
        p.arguments = ["block"] + args + (s3.map { ["--endpoint-url", $0.endpoint] } ?? [])
        p.environment = environment(s3)
        if let stdout { p.standardOutput = stdout }
        try p.run()
        return p
    }

    /// Runs `ferry block sync src.img dst.img` slowly (64 MB/s), calls `change` once the
    /// first 64 blocks are committed, and returns the exit status and the JSON summary.
    func syncChangingMidway(_ change: () throws -> Void) throws -> (Int32, BlockSyncReport) {
        let out = Pipe()
        let p = try launch(["sync", path("src.img"), path("dst.img"), "--bwlimit", "64M", "--json"], stdout: out)
        let committed = BlockImageFixture.waitUntil(seconds: 30) {
            ((try? BlockMap.load(path("dst.img.ferry-blockmap"))) ?? nil)?.header.committedBlocks ?? 0 >= 64
        }
        if committed { try change() }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard committed else { throw BlockError(.imageIO, "the sync never committed 64 blocks") }
        return (p.terminationStatus, try JSONDecoder().decode(BlockSyncReport.self, from: data))
    }

    /// Overwrites 4 KiB at each offset with new random bytes (no other change to the file).
    func overwrite(_ name: String, at offsets: [Int64], seed: UInt64) throws {
        let fd = open(path(name), O_RDWR)
        guard fd >= 0 else { throw BlockError(.imageIO, "cannot open \(path(name))") }
        defer { close(fd) }
        for (i, offset) in offsets.enumerated() { try write(fd, TestTree.bytes(4096, seed: seed &+ UInt64(i) &* 7919), at: offset) }
    }

    /// `count` offsets in distinct 1 MiB blocks of an image of `size` bytes.
    static func offsetsInDistinctBlocks(_ count: Int, size: Int64, seed: UInt64) -> [Int64] {
        var rng = Xorshift(seed)
        var blocks = Set<Int64>()
        while blocks.count < count { blocks.insert(Int64(rng.next() % UInt64(size >> 20))) }
        return blocks.sorted().map { $0 << 20 + Int64(rng.next() % 255) * 4096 }
    }

    private func write(_ fd: Int32, _ bytes: [UInt8], at offset: Int64) throws {
        let n = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(offset)) }
        guard n == bytes.count else { throw BlockError(.imageIO, "pwrite failed") }
    }

    /// Whether two files or devices hold the same bytes (`cmp`).
    static func same(_ a: String, _ b: String) throws -> Bool {
        try CLI.run([a, b], wrapper: ["cmp", "-s"], direct: true).status == 0
    }

    /// Bytes the file system stores for a file (st_blocks × 512).
    static func allocated(_ path: String) -> Int64 {
        var st = stat()
        return stat(path, &st) == 0 ? Int64(st.st_blocks) * 512 : -1
    }

    /// Runs `ferry block ARGS` with the fixture's state directory; the JSON report decoded.
    func ferry(_ args: [String], s3: S3TestServer? = nil) throws -> (CLI.Run, BlockSyncReport?) {
        let run = try CLI.run(["block"] + args + ["--json"] + (s3.map { ["--endpoint-url", $0.endpoint] } ?? []), environment: environment(s3))
        let report = try? JSONDecoder().decode(BlockSyncReport.self, from: Data(run.stdout.utf8))
        return (run, report)
    }

    /// ``ferry(_:s3:)`` run through `sh`, which then prints the process's `/proc/PID/io`:
    /// the bytes its read system calls returned (`rchar`), counted by the kernel, not by Ferry
    /// (the shell's counts include its reaped child's; they follow Ferry's stderr).
    func ferryCountingReads(_ args: [String]) throws -> (CLI.Run, BlockSyncReport?, rchar: Int64, wchar: Int64) {
        let run = try CLI.run(["-c", "\"$0\" \"$@\" && cat /proc/$$/io >&2", CLI.executable, "block"] + args + ["--json"],
                              wrapper: ["sh"], direct: true, environment: environment(nil))
        func field(_ name: String) -> Int64 {
            run.stderr.split(separator: "\n").first { $0.hasPrefix(name + ":") }.flatMap { Int64($0.dropFirst(name.count + 1).trimmingCharacters(in: .whitespaces)) } ?? .max
        }
        return (run, try? JSONDecoder().decode(BlockSyncReport.self, from: Data(run.stdout.utf8)), field("rchar"), field("wchar"))
    }

    /// The environment for a ferry run: the S3 server's credentials if any, this fixture's state directory.
    private func environment(_ s3: S3TestServer?) -> [String: String] {
        var env = s3?.clientEnvironment ?? ProcessInfo.processInfo.environment
        env["FERRY_STATE_DIR"] = state
        return env
    }

    func cleanUp() { TestTree(existing: dir).remove() }
}

/// A small deterministic generator for test offsets.
struct Xorshift {
    var x: UInt64
    init(_ seed: UInt64) { x = seed &* 0x9E3779B97F4A7C15 | 1 }
    mutating func next() -> UInt64 {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17
        return x
    }
}
