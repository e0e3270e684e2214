import FerryCore
import FerryEngine
import Testing

@Suite struct FilterTests {
    func matches(_ filter: String, _ path: String) throws -> Bool {
        try FilterRule(filter).matches(EntryPath(path)!)
    }

    @Test func anchoredFolderMatchesItsContents() throws {
        #expect(try matches("/photos", "photos"))
        #expect(try matches("/photos", "photos/2020/a.jpg"))
        #expect(try !matches("/photos", "photosX"))
        #expect(try !matches("/photos", "old/photos"))
    }

    @Test func unanchoredAndWildcards() throws {
        #expect(try matches("*.tmp", "a/b/c.tmp"))
        #expect(try matches("*.tmp", "c.tmp"))
        #expect(try !matches("*.tmp", "c.tmpx"))
        #expect(try matches(".snapshot", "vol/.snapshot/x"))
        #expect(try matches("/logs/*/old", "logs/2020/old"))
        #expect(try matches("/logs/*/old", "logs/2020/old/file"))
        #expect(try !matches("/logs/*/old", "logs/2020/older"))
        #expect(try matches("/a*", "abc/d"))
    }

    @Test func caseSensitiveAndPipes() throws {
        #expect(try !matches("/Photos", "photos"))
        #expect(try matches("/x|/y", "y/z"))
    }

    @Test func invalidFiltersAreRefused() {
        #expect(throws: FerryError.self) { try FilterRule("/a||/b") }
        #expect(throws: FerryError.self) { try FilterRule("/") }
        #expect(throws: FerryError.self) { try FilterRule("") }
    }

    @Test func includesDescendOnlyWhereMatchesMayBe() throws {
        let filters = Filters(includes: try FilterRule("/a/b/c"))
        #expect(filters.decide(EntryPath("a")!, isDirectory: true) == .descendOnly)
        #expect(filters.decide(EntryPath("a/b")!, isDirectory: true) == .descendOnly)
        #expect(filters.decide(EntryPath("a/b/c")!, isDirectory: true) == .take)
        #expect(filters.decide(EntryPath("z")!, isDirectory: true) == .skip)
        #expect(filters.decide(EntryPath("a/x")!, isDirectory: false) == .skip)
    }
}

@Suite struct OptionsTests {
    @Test func dataSyncRulesAreEnforced() {
        var o = TransferOptions()
        o.preserveDeletedFiles = .remove
        o.transferMode = .all
        #expect(throws: FerryError.self) { try o.validate() }
        o = TransferOptions()
        o.mtime = .none
        #expect(throws: FerryError.self) { try o.validate() }
        o.atime = .none
        #expect(throws: Never.self) { try o.validate() }
    }

    @Test func rates() {
        #expect(TransferOptions.parseRate("1048576") == 1_048_576)
        #expect(TransferOptions.parseRate("10M") == 10 << 20)
        #expect(TransferOptions.parseRate("1G") == 1 << 30)
        #expect(TransferOptions.parseRate("1.5k") == 1536)
        #expect(TransferOptions.parseRate("fast") == nil)
        #expect(TransferOptions.parseRate("0") == nil)
        #expect(TransferOptions.parseRate("-5M") == nil)
    }
}

@Suite struct EntryPathTests {
    @Test func unsafePathsAreRefused() {
        for bad in ["..", "a/../b", "/abs", "a//b", "a/./b", "a/", String(repeating: "x", count: 256)] {
            #expect(EntryPath(bad) == nil, "\(bad)")
        }
        #expect(EntryPath(checking: [0x61, 0, 0x62]) == nil)
        #expect(EntryPath("a/b c/-d")?.depth == 3)
    }

    @Test func orderAndDisplay() {
        #expect(EntryPath("a")! < EntryPath("a/b")!)
        #expect(EntryPath(validatedBytes: [0x66, 0xff, 0x0a]).description == "/f\\xff\\x0a")
        #expect(EntryPath("ü/x")!.description == "/ü/x")
        #expect(EntryPath("a/b/c")!.parent == EntryPath("a/b")!)
        #expect(EntryPath("a/b/c")!.name == Array("c".utf8))
    }

    /// `isChild(of:)` is what the scheduler and the local copier decide "same directory" by:
    /// it must agree with `parent ==` for every pair, prefixes and the root included.
    @Test func childOfAgreesWithParent() {
        let paths = [EntryPath.root] + ["a", "b", "ab", "a/b", "a/bc", "ab/c", "a/b/c", "a/bc/d", "x/b", "é/ü", "é/ü/v"].map { EntryPath($0)! }
        for child in paths {
            for directory in paths {
                #expect(child.isChild(of: directory) == (!child.isRoot && child.parent == directory), "\(child) in \(directory)")
            }
        }
    }
}

/// Ferry's XXH3-128 (whichever accumulator the CPU selects: AVX2 or SSE2) against digests
/// printed by the reference `xxhsum -H2` 0.8.1 for the same bytes.
@Suite struct ChecksumTests {
    static let pattern: [UInt8] = (0..<1_000_003).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }

    @Test func streamingInUnevenPiecesMatchesXxhsum() {
        let state = ChecksumState()
        Self.pattern.withUnsafeBytes { all in
            var at = 0
            for piece in [1, 63, 64, 4_095, 4_096, 1_024 * 1_024] where at < all.count {
                let n = min(piece, all.count - at)
                state.update(UnsafeRawBufferPointer(rebasing: all[at..<at + n]))
                at += n
            }
            state.update(UnsafeRawBufferPointer(rebasing: all[at...]))
        }
        #expect(state.finalize().description == "xxh3-128:a6ea16ee0fd324191f748a0eacf646fa")  // xxhsum -H2
    }

    @Test func holesHashAsZeros() {
        let state = ChecksumState()
        Self.pattern.withUnsafeBytes { all in
            state.update(UnsafeRawBufferPointer(rebasing: all[..<777]))
            state.updateZeros(5_000_000)
            state.update(UnsafeRawBufferPointer(rebasing: all[..<12_345]))
        }
        #expect(state.finalize().description == "xxh3-128:046e3520b572de3c8fd2a84af2c75e08")  // xxhsum -H2
    }

    /// Long holes skip XXH3's per-byte work (whole zero stripes are added in closed form);
    /// the digest must equal hashing the zeros, at every alignment of block, stripe and buffer.
    @Test func longHolesMatchHashingTheZeros() {
        let zeros = [UInt8](repeating: 0, count: 3_000_000)
        let prefixes = [0, 1, 63, 64, 65, 200, 255, 256, 257, 1_000, 1_023, 1_024, 1_025, 5_000, 70_001]
        let holes = [4_095, 4_096, 4_097, 5_000, 16_384 + 64 * 3 + 7, 1 << 20, (1 << 20) + 1, 3_000_000]
        let suffixes = [0, 1, 100, 5_000]
        Self.pattern.withUnsafeBytes { all in
            zeros.withUnsafeBytes { z in
                for prefix in prefixes {
                    for hole in holes {
                        for suffix in suffixes {
                            let fast = ChecksumState(), slow = ChecksumState()
                            for s in [fast, slow] { s.update(UnsafeRawBufferPointer(rebasing: all[..<prefix])) }
                            fast.updateZeros(Int64(hole))
                            slow.update(UnsafeRawBufferPointer(rebasing: z[..<hole]))
                            for s in [fast, slow] { s.update(UnsafeRawBufferPointer(rebasing: all[1_000..<1_000 + suffix])) }
                            #expect(fast.finalize() == slow.finalize(), "prefix \(prefix), hole \(hole), suffix \(suffix)")
                        }
                    }
                }
            }
        }
        // Holes back to back, and after a hole the state keeps taking bytes.
        let fast = ChecksumState(), slow = ChecksumState()
        fast.updateZeros(10_000); fast.updateZeros(70_000)
        zeros.withUnsafeBytes { slow.update(UnsafeRawBufferPointer(rebasing: $0[..<80_000])) }
        #expect(fast.finalize() == slow.finalize())
        Self.pattern.withUnsafeBytes { all in
            for s in [fast, slow] { s.update(all) }
        }
        #expect(fast.finalize() == slow.finalize())
    }
}

@Suite struct TimestampTests {
    /// Nanoseconds since the epoch, both ways, before 1970 too (a remembered mtime sent to
    /// a server that drops metadata comes back through this).
    @Test func timestampsFromNanosecondsBeforeAndAfterTheEpoch() {
        #expect(Timestamp(totalNanoseconds: -1) == Timestamp(seconds: -1, nanoseconds: 999_999_999))
        #expect(Timestamp(totalNanoseconds: -1_000_000_000) == Timestamp(seconds: -1, nanoseconds: 0))
        #expect(Timestamp(totalNanoseconds: 1_600_000_000_123_456_789) == Timestamp(seconds: 1_600_000_000, nanoseconds: 123_456_789))
        for n: Int64 in [-2_500_000_001, -1, 0, 1, 999_999_999, 1_795_380_828_173_711_018] {
            #expect(Timestamp(totalNanoseconds: n).totalNanoseconds == n)
        }
    }
}

/// The execution's counters keep a row per CPU and sum the rows when read.
@Suite struct ExecutionCounterTests {
    @Test func addsFromManyThreadsAtOnceSumExactly() async {
        let counters = ExecutionCounters()
        await withTaskGroup(of: Void.self) { group in
            for t in 0..<8 {
                group.addTask {
                    for i in 0..<20_000 {
                        counters.add(.filesTransferred)
                        counters.add(.bytesTransferred, Int64(t * 1000 + i % 7))
                    }
                }
            }
        }
        let expectedBytes = (0..<8).reduce(Int64(0)) { sum, t in sum + (0..<20_000).reduce(Int64(0)) { $0 + Int64(t * 1000 + $1 % 7) } }
        let snapshot = counters.snapshot()
        #expect(snapshot.filesTransferred == 160_000)
        #expect(snapshot.bytesTransferred == expectedBytes)
        #expect(counters.value(.filesTransferred) == 160_000)
        #expect(snapshot.filesFailed == 0 && snapshot.bytesWritten == 0)
    }
}
