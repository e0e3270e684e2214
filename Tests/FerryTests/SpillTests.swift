import FerryCore
import FerryEngine
import FerryLocal
import FerryTesting
import Foundation
import Testing

/// A directory larger than the spill threshold is listed in sorted runs to an unnamed
/// file and planned a part at a time; forced here with a threshold of 7 entries, so that
/// every directory of the tree spills, on both sides, with every kind of action.
@Suite struct SpillTests {
    static func run(_ f: Fixture, threshold: Int = 7, to destination: String? = nil, spillDirectory: String? = nil,
                    _ configure: (inout TransferOptions) -> Void = { _ in }) async throws -> ExecutionResult {
        var options = Fixture.defaultOptions
        configure(&options)
        var configuration = SyncConfiguration(source: try POSIXLocation(path: f.source.root),
                                              destination: try POSIXLocation(path: destination ?? f.destinationRoot, create: true),
                                              options: options, parallel: 4)
        configuration.spillThreshold = threshold
        if let spillDirectory { configuration.spillDirectory = spillDirectory }
        return await SyncEngine(configuration).run()
    }

    @Test func hugeDirectoriesSpillAndSyncAlike() async throws {
        let f = try Fixture("spill")
        defer { f.cleanUp() }
        // 3,000 names in one directory (the runs' names interleave: created in no order),
        // subdirectories among them, hard links, symlinks.
        var order = Array(0..<3000)
        order.shuffle()
        for i in order { try f.source.file("big/f\(i)", TestTree.bytes(i % 50, seed: UInt64(i)), mode: i % 3 == 0 ? 0o600 : 0o644) }
        for i in 0..<20 { try f.source.file("big/d\(i)/inner\(i)", [UInt8(i)]) }
        try f.source.hardLink("big/link-to-f7", to: "big/f7")
        try f.source.symlink("big/sym", to: "f1")
        let first = try await Self.run(f) { $0.verifyMode = .pointInTimeConsistent }
        #expect(first.status == .success, "\(first.problems)")
        #expect(first.counters.filesTransferred > 3040, "\(first.counters)")
        // The runs really went to a spill file: where none can be made, this run stops saying so.
        let nowhere = try TestTree(label: "spill-nowhere")
        defer { nowhere.remove() }
        let unspillable = try await Self.run(f, to: nowhere.root + "/d", spillDirectory: "/nonexistent-ferry-spill")
        #expect(unspillable.status == .error && unspillable.errorDetail?.contains("spill file") == true, "\(unspillable.errorDetail ?? "")")
        #expect(try f.differences(compareAtime: false) == [])
        // The same counts as a run that holds each directory in memory.
        let unspilled = try TestTree(label: "spill-unspilled")
        defer { unspilled.remove() }
        let inMemory = try await Self.run(f, threshold: 100_000, to: unspilled.root + "/d") { $0.verifyMode = .pointInTimeConsistent }
        #expect(inMemory.counters == first.counters, "\(inMemory.counters) vs \(first.counters)")

        // No change: nothing moves.
        let again = try await Self.run(f)
        #expect(again.status == .success && again.counters.filesTransferred == 0 && again.counters.filesUnchanged > 3000, "\(again.counters)")

        // Changes spread over the runs, and deletions of destination-only names.
        for i in stride(from: 5, to: 3000, by: 97) { try f.source.file("big/f\(i)", [9, 9, 9]) }
        for i in 0..<50 { try f.destination.file("big/extra\(i)", [1]) }
        try f.source.chmod("big/f11", 0o640)
        let changed = try await Self.run(f) { $0.preserveDeletedFiles = .remove; $0.verifyMode = .pointInTimeConsistent }
        #expect(changed.status == .success, "\(changed.problems)")
        #expect(changed.counters.filesDeleted == 50 && changed.counters.filesTransferred == 31 + 1 + 1, "\(changed.counters)")
        #expect(try f.differences(compareAtime: false) == [])
    }
}
