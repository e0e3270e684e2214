import FerryCore
import FerryStore
import FerryTesting
import Foundation
import Testing

/// The pieces an execution spread over several agents rests on: shares of a tree that
/// cover every top-level name exactly once, and lease rows claimed, renewed, lapsed and
/// completed in the store as the control plane uses them.
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
