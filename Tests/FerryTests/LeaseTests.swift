import FerryCore
import FerryEngine
import FerryLocal
@testable import FerryServer
import FerryStore
import FerryTesting
import Foundation
import Testing

/// The pieces an execution spread over several agents rests on: shares of a tree that
/// cover every entry exactly once (at the depth read from the source, with the finishing
/// share after them), and lease rows claimed, renewed, lapsed and completed in the store
/// as the control plane uses them.
@Suite struct LeaseTests {
    @Test func everyTopLevelNameIsInExactlyOneShare() throws {
        let names = (0..<2000).map { Array("dir-\($0)".utf8) } + [Array("é".utf8), [0x66, 0xff], Array("top.txt".utf8)]
        for count in [1, 3, 8, 64] {
            let shares = (0..<count).map { Filters.Share(index: $0, count: count) }
            for name in names { #expect(shares.filter { $0.holds(name) }.count == 1) }
            // Spread: no share of 8 holds more than twice its part of 2,000 names.
            if count == 8 { for s in shares { #expect(names.filter { s.holds($0) }.count < 2 * names.count / count) } }
        }
        // The whole subtree goes with its top-level name; the root is in every share.
        let share = Filters.Share(index: 2, count: 8)
        let filters = Filters(share: share)
        let top = try #require(names.first { share.holds($0) })
        let other = try #require(names.first { !share.holds($0) })
        let below = EntryPath(validatedBytes: top + Array("/a/b".utf8))
        #expect(filters.decide(below, isDirectory: false) == .take)
        #expect(filters.decide(EntryPath(validatedBytes: other + Array("/a".utf8)), isDirectory: false) == .skip)
        #expect(!filters.takesEverything)
    }

    @Test func belowTheTopEveryEntryIsInOneShareAndCommonDirectoriesAreTheFinishingShares() throws {
        let count = 6
        let shares = (0..<count).map { Filters(share: Filters.Share(index: $0, count: count, depth: 2)) }
        let finishing = Filters(share: .finishing(depth: 2))
        for i in 0..<300 {
            let file = EntryPath("projects/p\(i % 7)/f\(i)")!
            #expect(shares.filter { $0.decide(file, isDirectory: false) == .take }.count == 1, "\(file)")
            #expect(finishing.decide(file, isDirectory: false) == .skip)
            // Below the depth, a path goes where its first two names go.
            let dir = EntryPath("projects/d\(i)")!, inside = EntryPath("projects/d\(i)/x/y")!
            for s in shares { #expect(s.decide(dir, isDirectory: true) == s.decide(inside, isDirectory: false)) }
        }
        // A directory above the depth is every share's to descend into, the finishing share's
        // to give its metadata, and (when only the destination has it) one share's to remove.
        let top = EntryPath("projects")!
        #expect(shares.allSatisfy { $0.decide(top, isDirectory: true) == .common })
        #expect(finishing.decide(top, isDirectory: true) == .take)
        #expect(shares.filter { $0.removes(top, .common) }.count == 1)
        #expect(finishing.ownsRoot && !shares.contains { $0.ownsRoot } && Filters().ownsRoot)
        // A file at the top goes by its name, as at depth 1.
        let topFile = EntryPath("top.txt")!
        #expect(shares.filter { $0.decide(topFile, isDirectory: false) == .take }.count == 1)
    }

    /// A tree whose files all sit under one top-level directory, run as its shares one after
    /// another's rounds as the control plane runs them (transfer shares at once, deletion
    /// shares, the finishing share): the depth read from the source spreads it, and the
    /// destination ends exact — the directories every share wrote in included — with each
    /// entry counted once, as one run counts it.
    @Test func aNarrowTreeSpreadOverSharesEndsExactAndCountedOnce() async throws {
        let f = try Fixture("shares")
        let reference = try Fixture("shares-one")
        defer {
            f.remove()
            reference.remove()
        }
        for fixture in [f, reference] {
            let t = fixture.source
            _ = try t.file("top.txt", Array("top".utf8))
            _ = try t.file("projects/readme", Array("readme".utf8))
            for p in 0..<6 {
                for d in 0..<4 {
                    for n in 0..<3 { _ = try t.file("projects/p\(p)/d\(d)/f\(n)", TestTree.bytes(100 + n, seed: UInt64(p * 100 + d * 10 + n))) }
                }
            }
            try t.setTimes("projects/p2", atime: Timestamp(seconds: 1_000_000, nanoseconds: 5), mtime: Timestamp(seconds: 1_000_000, nanoseconds: 5))
            // Only at the destination: a file in a common directory's subtree, a whole directory.
            let d = fixture.destination
            _ = try d.file("projects/p1/stray", Array("stray".utf8))
            _ = try d.file("gone/x", Array("x".utf8))
        }
        var options = Fixture.defaultOptions
        options.preserveDeletedFiles = .remove
        let one = try await reference.sync(options)
        #expect(one.status == .success)

        let count = 8
        let depth = try await Filters.Share.depth(of: try POSIXLocation(path: f.source.root), count: count)
        #expect(depth == 3)  // the top: 2 entries; below it 8 units; a level further, 26
        func round(_ shares: [Filters.Share], remove: Bool) async throws -> [ExecutionResult] {
            var chosen = options
            chosen.preserveDeletedFiles = remove ? .remove : .preserve
            let o = chosen
            let (source, destination) = (f.source.root, f.destinationRoot)
            return try await withThrowingTaskGroup(of: ExecutionResult.self) { group in
                for share in shares {
                    group.addTask {
                        let configuration = SyncConfiguration(source: try POSIXLocation(path: source), destination: try POSIXLocation(path: destination, create: true),
                                                              options: o, filters: Filters(share: share))
                        return await SyncEngine(configuration).run()
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
        }
        let all = (0..<count).map { Filters.Share(index: $0, count: count, depth: depth) }
        let transfers = try await round(all, remove: false)
        let deletions = try await round(all, remove: true)
        let finish = try await round([.finishing(depth: depth)], remove: false)
        for r in transfers + deletions + finish { #expect(r.status == .success, "\(r.errorDetail ?? "")") }
        #expect(try f.differences() == [])
        let spread = (transfers + finish).map(\.counters)
        // Every file once; a common directory the deletion round already put right counts
        // as unchanged (7 of them here: projects and p0–p5).
        #expect(spread.reduce(0) { $0 + $1.bytesTransferred } == one.counters.bytesTransferred)
        let transferred = spread.reduce(0) { $0 + $1.filesTransferred }
        #expect(transferred <= one.counters.filesTransferred && transferred >= one.counters.filesTransferred - 7,
                "\(transferred) transferred by the shares, \(one.counters.filesTransferred) by one run")
        #expect(spread.reduce(0) { $0 + $1.filesListedSource } == one.counters.filesListedSource)
        #expect(deletions.reduce(0) { $0 + $1.counters.filesDeleted } == one.counters.filesDeleted)
        #expect(one.counters.filesDeleted >= 2)

        // Nothing changed: no share moves anything.
        let again = try await round(all, remove: false) + round([.finishing(depth: depth)], remove: false)
        #expect(again.reduce(0) { $0 + $1.counters.filesTransferred } == 0)
    }

    /// Shares that read the source's top differently (it changed while they listed it) would
    /// leave entries to no share: the execution fails, saying so, rather than end SUCCESS.
    @Test func sharesThatFoundDifferentDepthsFailTheExecution() throws {
        let store = try Store(directory: try TestTree(label: "lease-depths").root)
        let e = "arn:aws:datasync:us-east-1:000000000000:task/task-0/execution/exec-1"
        try store.addLeases(e, units: 2, phase: "TRANSFER")
        for (agent, depth) in [("A", 1), ("B", 1)] {
            let lease = try #require(try store.claimLease(for: agent, among: [e], now: 1, until: 100))
            #expect(try store.completeLease(lease.id, agent: agent, result: ["Depth": .number(Double(depth))]))
        }
        #expect(try AgentHub.depth(store.leases(of: e)).get() == 1)
        try store.addLeases(e + "x", units: 2, phase: "TRANSFER")
        for (agent, depth) in [("A", 1), ("B", 2)] {
            let lease = try #require(try store.claimLease(for: agent, among: [e + "x"], now: 1, until: 100))
            #expect(try store.completeLease(lease.id, agent: agent, result: ["Depth": .number(Double(depth))], report: ["Transferred": "e30K"]))
        }
        switch AgentHub.depth(try store.leases(of: e + "x")) {
        case .success(let depth): Issue.record("depths 1 and 2 accepted as \(String(describing: depth))")
        case .failure(let error): #expect(error.message.contains("depths 1, 2") && error.message.contains("start the task again"))
        }
        // Each completed share's part of the task report is kept with it.
        #expect(try store.leaseReports(of: e + "x").count == 2 && store.leaseReports(of: e).isEmpty)
    }

    @Test func sharesAreClaimedOnceRenewedLapsedAndCompletedByTheirHolder() throws {
        let store = try Store(directory: try TestTree(label: "leases").root)
        let e = "arn:aws:datasync:us-east-1:000000000000:task/task-0/execution/exec-0"
        try store.addLeases(e, units: 3, phase: "TRANSFER")
        // One share per agent per execution, in order.
        let a = try #require(try store.claimLease(for: "A", among: [e], now: 100, until: 110))
        #expect(a.unit == 0 && a.attempts == 1 && a.state == .claimed)
        #expect(try store.claimLease(for: "A", among: [e], now: 101, until: 111) == nil)
        let b = try #require(try store.claimLease(for: "B", among: [e], now: 101, until: 111))
        #expect(b.unit == 1)
        // A renews; B falls silent and its share lapses to C (a second attempt).
        #expect(try store.renewLease(a.id, agent: "A", until: 130))
        let c = try #require(try store.claimLease(for: "C", among: [e], now: 112, until: 122))
        #expect(c.unit == 1 && c.attempts == 2 && c.agent == "C")
        // B's late end is refused (it is not B's any more); C's and A's count.
        #expect(try !store.completeLease(b.id, agent: "B", result: ["Result": "late"]))
        #expect(try store.completeLease(c.id, agent: "C", result: ["Result": "c"]))
        #expect(try store.completeLease(a.id, agent: "A", result: ["Result": "a"]))
        #expect(try !store.renewLease(a.id, agent: "A", until: 200))
        // A restarted agent gives back what it holds.
        let last = try #require(try store.claimLease(for: "D", among: [e], now: 113, until: 123))
        try store.releaseLeases(of: "D")
        #expect(try store.lease(last.id)?.state == .available)
        let leases = try store.leases(of: e)
        #expect(leases.map(\.state) == [.done, .done, .available])
        #expect(leases[1].result?["Result"]?.string == "c")
        try store.removeLeases(of: e)
        #expect(try store.leases(of: e).isEmpty)
    }
}
