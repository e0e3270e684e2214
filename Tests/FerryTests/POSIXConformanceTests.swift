import FerryCore
import FerryLocal
import FerryTesting
import Glibc
import Synchronization
import Testing

/// The POSIX location's own behaviour (the conformance suite runs in ConformanceTests).
@Suite struct POSIXConformanceTests {
    /// `ferry` grows its descriptor table once at start (later growths stall every thread).
    @Test func descriptorTableIsReservedInOneStep() throws {
        var limit = rlimit()
        #expect(getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0)
        let before = try #require(DescriptorTable.size)
        let want = min(before * 4, Int(limit.rlim_cur))
        try #require(want > before, "RLIMIT_NOFILE \(limit.rlim_cur) leaves no room to grow a table of \(before)")
        DescriptorTable.reserve(want)
        #expect(try #require(DescriptorTable.size) >= want)
        #expect(fcntl(Int32(want - 1), F_GETFD) == -1 && errno == EBADF, "the reserving descriptor was closed again")
    }
}

/// Collects temp trees made inside a @Sendable factory, to remove them afterwards.
final class TreeList: Sendable {
    private let trees = Mutex<[TestTree]>([])
    func add(_ t: TestTree) { trees.withLock { $0.append(t) } }
    func removeAll() { trees.withLock { $0.forEach { $0.remove() }; $0 = [] } }
}
