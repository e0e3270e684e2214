import FerryCore
import FerryLocal
import FerryTesting
import Synchronization
import Testing

/// The POSIX location passes the location conformance suite, on disk and on tmpfs.
@Suite struct POSIXConformanceTests {
    @Test(arguments: ["/tmp", "/dev/shm"])
    func conforms(base: String) async throws {
        let trees = TreeList()
        let failures = await LocationConformance.run {
            let tree = try TestTree(label: "conformance", base: base)
            trees.add(tree)
            return try POSIXLocation(path: tree.root)
        }
        trees.removeAll()
        #expect(failures == [])
    }
}

/// Collects temp trees made inside a @Sendable factory, to remove them afterwards.
final class TreeList: Sendable {
    private let trees = Mutex<[TestTree]>([])
    func add(_ t: TestTree) { trees.withLock { $0.append(t) } }
    func removeAll() { trees.withLock { $0.forEach { $0.remove() }; $0 = [] } }
}
