import FerryCore
import FerryEngine
import FerryLocal
import FerryRemote
import FerryTesting
import Foundation
import Synchronization
import Testing

/// The link between two agents misbehaving: a connection cut in the middle of a file, the
/// far side unreachable for 30 s, a connection that goes silent. Each run ends with the
/// destination exact and nothing partial; the bytes sent show that a cut resumes where the
/// destination acknowledged. And what crosses the link: compressed where it pays
/// (BytesCompressed), checked by the destination so nothing is read back across it.
@Suite(.serialized) struct RemoteLinkTests {
    /// A tree on tmpfs served by the test service, reached through `proxy` (or directly).
    struct Served {
        let fixture: Fixture
        /// The first (or only) connection's transport.
        let transport: FrameRemoteTransport
        /// Every connection's, when the location is reached over several.
        let lanes: [FrameRemoteTransport]
        let counting: CountingTransport
        let location: RemoteLocation
    }

    /// `fixture`'s destination served (a new fixture's when nil), reached over `lanes`
    /// connections (``SpreadTransport`` when more than one).
    static func serve(_ label: String, through proxy: NetemProxy?, silenceLimit: Duration = .seconds(30),
                      fixture: Fixture? = nil, lanes: Int = 1) async throws -> Served {
        let s = try await RemoteTests.shared()
        let fixture = try fixture ?? Fixture(label, base: "/dev/shm")
        try FileManager.default.createDirectory(atPath: fixture.destinationRoot, withIntermediateDirectories: true)
        let name = "\(label)-\(UInt64.random(in: 0..<UInt64.max))"
        s.service.offer(try POSIXLocation(path: fixture.destinationRoot), as: name)
        let all = try (0..<lanes).map { _ in
            try FrameRemoteTransport(endpoint: "127.0.0.1:\(proxy?.port ?? s.port)", name: name, tls: s.client, silenceLimit: silenceLimit)
        }
        let counting = CountingTransport(lanes == 1 ? all[0] : SpreadTransport(all))
        return Served(fixture: fixture, transport: all[0], lanes: all, counting: counting, location: try await RemoteLocation.connect(counting))
    }

    static func sync(_ served: Served, options: TransferOptions = Fixture.defaultOptions) async throws -> ExecutionResult {
        let engine = SyncEngine(SyncConfiguration(source: try POSIXLocation(path: served.fixture.source.root), destination: served.location,
                                                  options: options, parallel: 8))
        let result = await engine.run()
        await served.location.close()
        return result
    }

    /// What one run through ferry-netem came to.
    struct ProxiedRun {
        let served: Served
        let result: ExecutionResult
        /// What the proxy printed (a line per cut, outage or stall).
        let said: String
        let took: Duration
    }

    /// Serves a new fixture through ferry-netem with `arguments`, fills its source with
    /// `fill`, syncs it and stops the proxy. The caller removes `served.fixture`.
    static func throughProxy(_ label: String, _ arguments: [String], silenceLimit: Duration = .seconds(30),
                             _ fill: (TestTree) throws -> Void) async throws -> ProxiedRun {
        let proxy = try NetemProxy(upstream: try await RemoteTests.shared().port, arguments)
        let served = try await serve(label, through: proxy, silenceLimit: silenceLimit)
        do {
            try fill(served.fixture.source)
        } catch {
            served.fixture.remove()
            throw error
        }
        let started = ContinuousClock.now
        let result = try await sync(served)
        let took = ContinuousClock.now - started
        return ProxiedRun(served: served, result: result, said: proxy.stop(), took: took)
    }

    static func expectExact(_ served: Served, _ result: ExecutionResult) throws {
        #expect(result.status == .success, "\(result.errorCode ?? "") \(result.errorDetail ?? "") \(result.problems)")
        #expect(try served.fixture.differences(compareAtime: false) == [])
        #expect(try served.fixture.temporaries() == [])
    }

    @Test("a connection cut in the middle of a file resumes at the first write not acknowledged")
    func cutResumes() async throws {
        let size = 48 << 20
        let run = try await RemoteLinkTests.throughProxy("remote-cut", ["--cut-after", "\(16 << 20)"]) { source in
            try source.file("big.bin", TestTree.bytes(size, seed: 271))
            try source.file("after.txt", Array("written after the cut\n".utf8))
        }
        let served = run.served
        defer { served.fixture.remove() }
        #expect(run.said.contains("cut"), "the proxy did not cut: \(run.said)")
        try RemoteLinkTests.expectExact(served, run.result)
        // A whole-file retry would send the 16 MiB before the cut again: ≥ 64 MiB.
        #expect(served.transport.bytesSent < Int64(size + (6 << 20)), "sent \(served.transport.bytesSent) bytes for a \(size)-byte file")
        #expect(served.transport.connectionsMade >= 2, "the cut was not survived by a new connection")
    }

    @Test("the far side unreachable for 30 s: the calls wait, then go on")
    func outageIsWaitedOut() async throws {
        let run = try await RemoteLinkTests.throughProxy("remote-outage", ["--cut-after", "\(6 << 20)", "--outage-ms", "30000"]) { source in
            try source.file("big.bin", TestTree.bytes(20 << 20, seed: 272))
            for i in 0..<200 { try source.file("small/\(i).txt", Array("file \(i)\n".utf8)) }
        }
        defer { run.served.fixture.remove() }
        #expect(run.said.contains("down for 30000 ms"), "no outage: \(run.said)")
        #expect(run.took >= .seconds(30))
        try RemoteLinkTests.expectExact(run.served, run.result)
        #expect(run.served.transport.connectionsMade >= 2)
    }

    @Test("a connection gone silent is given up after the silence limit and made again")
    func silentConnectionIsReplaced() async throws {
        let run = try await RemoteLinkTests.throughProxy("remote-stall", ["--stall-after", "\(4 << 20)", "--stall-ms", "600000"],
                                                         silenceLimit: .seconds(8)) { source in
            try source.file("big.bin", TestTree.bytes(16 << 20, seed: 273))
        }
        defer { run.served.fixture.remove() }
        #expect(run.said.contains("stall"), "no stall: \(run.said)")
        try RemoteLinkTests.expectExact(run.served, run.result)
        // The stall lasts 10 minutes: the run ended because the silent connection was replaced.
        #expect(run.served.transport.connectionsMade >= 2, "the silent connection was waited out, not replaced")
    }

    @Test("a link at 1 Mbit/s: one connection throughout (answers keep it alive), the destination exact")
    func slowLink() async throws {
        let run = try await RemoteLinkTests.throughProxy("remote-slow", ["--rate-kbit", "1000", "--delay-ms", "10"]) { source in
            try source.file("big.bin", TestTree.bytes(1_200_000, seed: 274))
            for i in 0..<60 { try source.file("small/\(i).bin", TestTree.bytes(2_000 + i * 50, seed: UInt64(600 + i))) }
        }
        defer { run.served.fixture.remove() }
        try RemoteLinkTests.expectExact(run.served, run.result)
        // 1.4 MB of random bytes at 125 kB/s: the proxy really paced it.
        #expect(run.took >= .seconds(10), "took \(run.took)")
        #expect(run.served.transport.connectionsMade == 1,
                "the slow link was taken for a dead one: \(run.served.transport.connectionsMade) connections")
    }

    @Test("a path that caps each TCP stream: the files spread over several connections, each its own session")
    func severalConnections() async throws {
        let proxy = try NetemProxy(upstream: try await RemoteTests.shared().port, ["--rate-kbit", "16000"])
        let served = try await RemoteLinkTests.serve("remote-lanes", through: proxy, lanes: 4)
        defer { served.fixture.remove() }
        for i in 0..<4 { try served.fixture.source.file("big\(i).bin", TestTree.bytes(3 << 20, seed: 600 + UInt64(i))) }
        try SampleTrees.smallFiles(served.fixture.source, files: 200, directories: 4)
        let result = try await RemoteLinkTests.sync(served)
        _ = proxy.stop()
        try RemoteLinkTests.expectExact(served, result)
        // Every lane carried files, each over its own connection through the capped path.
        for (i, lane) in served.lanes.enumerated() {
            #expect(lane.bytesSent > 100_000 && lane.connectionsMade == 1, "lane \(i): \(lane.bytesSent) bytes, \(lane.connectionsMade) connection(s)")
        }
    }

    @Test("text is compressed on the link and random data is not; BytesCompressed is what crossed")
    func compression() async throws {
        let text = try await RemoteLinkTests.serve("remote-text", through: nil)
        defer { text.fixture.remove() }
        for i in 0..<40 {
            var lines = ""
            for n in 0..<4000 { lines += "\(i)-\(n): the quick brown fox jumps over the lazy dog, line \(n * 7919 % 1000)\n" }
            try text.fixture.source.file("text/\(i).log", Array(lines.utf8))
        }
        try text.fixture.source.file("text/large.log", Array(String(repeating: "a log that grew and grew\n", count: 200_000).utf8))
        let t = try await RemoteLinkTests.sync(text)
        try RemoteLinkTests.expectExact(text, t)
        #expect(t.counters.bytesCompressed == text.location.bytesOnLink)
        #expect(t.counters.bytesCompressed > 0 && t.counters.bytesCompressed < t.counters.bytesTransferred / 3,
                "text: \(t.counters.bytesCompressed) of \(t.counters.bytesTransferred) bytes on the link")

        let random = try await RemoteLinkTests.serve("remote-random", through: nil)
        defer { random.fixture.remove() }
        for i in 0..<20 { try random.fixture.source.file("random/\(i).bin", TestTree.bytes(300_000 + i * 1000, seed: UInt64(300 + i))) }
        try random.fixture.source.file("random/large.bin", TestTree.bytes(6 << 20, seed: 299))
        let r = try await RemoteLinkTests.sync(random)
        try RemoteLinkTests.expectExact(random, r)
        #expect(r.counters.bytesCompressed == r.counters.bytesTransferred,
                "random: \(r.counters.bytesCompressed) of \(r.counters.bytesTransferred) bytes on the link")
    }

    @Test("the destination checks what it wrote against the sender's checksum: nothing is read back across the link")
    func destinationConfirms() async throws {
        let served = try await RemoteLinkTests.serve("remote-confirm", through: nil)
        defer { served.fixture.remove() }
        for i in 0..<20 { try served.fixture.source.file("f\(i).bin", TestTree.bytes(i * 40_000 + 1, seed: UInt64(400 + i))) }
        try served.fixture.source.file("large.bin", TestTree.bytes(5 << 20, seed: 420))
        try served.fixture.source.file("empty", [])
        let result = try await RemoteLinkTests.sync(served)
        try RemoteLinkTests.expectExact(served, result)
        #expect(result.counters.filesVerified == 23)  // the 22 files and the root
        #expect(served.counting.count(.openRead) == 0 && served.counting.count(.read) == 0,
                "read back: \(served.counting.count(.openRead)) opens, \(served.counting.count(.read)) reads")

        // POINT_IN_TIME_CONSISTENT checks every file at the end: the serving side computes
        // each checksum where the data lies, and only the answers cross.
        let again = try await RemoteLinkTests.serve("remote-confirm-2", through: nil, fixture: served.fixture)
        try served.fixture.source.file("late.bin", TestTree.bytes(3 << 20, seed: 421))
        var options = Fixture.defaultOptions
        options.verifyMode = .pointInTimeConsistent
        let verified = try await RemoteLinkTests.sync(again, options: options)
        try RemoteLinkTests.expectExact(again, verified)
        #expect(verified.counters.filesVerified == 23 && again.counting.count(.checksum) >= 22, "\(verified.counters) \(again.counting.count(.checksum))")
        #expect(again.counting.count(.read) == 0 && again.transport.bytesSent < 4 << 20, "sent \(again.transport.bytesSent)")
    }
}

extension RemoteLinkTests {
    /// Overwrites `bytes` at `offset` of the source file `name`.
    static func patch(_ served: Served, _ name: String, at offset: Int, _ bytes: [UInt8]) throws {
        let handle = try #require(FileHandle(forWritingAtPath: "\(served.fixture.source.root)/\(name)"))
        try handle.seek(toOffset: UInt64(offset))
        try handle.write(contentsOf: bytes)
        try handle.close()
    }

    @Test("a file changed in part sends only the blocks that differ; the rest is kept from the destination's copy")
    func onlyChangedBlocksCross() async throws {
        let first = try await RemoteLinkTests.serve("remote-delta", through: nil)
        defer { first.fixture.remove() }
        try first.fixture.source.file("db.bin", TestTree.bytes(48 << 20, seed: 501))
        try first.fixture.source.file("grows.log", TestTree.bytes(3 << 20, seed: 502))
        try first.fixture.source.file("shrinks.img", TestTree.bytes(8 << 20, seed: 503))
        try first.fixture.source.file("replaced.bin", TestTree.bytes(2 << 20, seed: 504))
        // Sparse: data at 0–1 MiB and 6–8 MiB, a hole between (no writes there; the runs of
        // kept blocks on either side of it are asked for separately).
        let sparse = "\(first.fixture.source.root)/sparse.img"
        #expect(FileManager.default.createFile(atPath: sparse, contents: Data(TestTree.bytes(1 << 20, seed: 509))))
        try RemoteLinkTests.patch(first, "sparse.img", at: 6 << 20, TestTree.bytes(2 << 20, seed: 510))
        let r1 = try await RemoteLinkTests.sync(first)
        try RemoteLinkTests.expectExact(first, r1)
        // A first copy: every large file is created as a delta (which resumes a file a
        // restarted serving agent left), with nothing at the destination to keep from.
        #expect(first.counting.count(.createDelta) == 5 && first.counting.count(.keep) == 0)

        // 1 MiB changed at an odd offset, 300 KiB appended, a file cut short with a block
        // changed, a file rewritten whole (every block differs: all of it crosses).
        try RemoteLinkTests.patch(first, "db.bin", at: (20 << 20) + 12_345, TestTree.bytes(1 << 20, seed: 505))
        try RemoteLinkTests.patch(first, "grows.log", at: 3 << 20, TestTree.bytes(300 << 10, seed: 506))
        let shrinks = "\(first.fixture.source.root)/shrinks.img"
        #expect(truncate(shrinks, 6 << 20) == 0)
        try RemoteLinkTests.patch(first, "shrinks.img", at: 100_000, TestTree.bytes(5_000, seed: 507))
        try first.fixture.source.file("replaced.bin", TestTree.bytes(2 << 20, seed: 508))
        try RemoteLinkTests.patch(first, "sparse.img", at: (7 << 20) + 100, TestTree.bytes(1_000, seed: 511))
        let second = try await RemoteLinkTests.serve("remote-delta-2", through: nil, fixture: first.fixture)
        let r2 = try await RemoteLinkTests.sync(second)
        try RemoteLinkTests.expectExact(second, r2)
        #expect(r2.counters.filesTransferred == 5)
        #expect(second.counting.count(.createDelta) == 5 && second.counting.count(.keep) >= 5)
        // Changed: 1 MiB + 300 KiB + 5,000 bytes + 2 MiB, each rounded out to whole blocks,
        // and the signatures (8 bytes a block) come back.
        let changed: Int64 = (1 << 20) + (300 << 10) + 5_000 + (2 << 20) + 1_000
        #expect(second.transport.bytesSent < changed + (1 << 20), "sent \(second.transport.bytesSent) bytes for \(changed) changed")
        #expect(r2.counters.bytesCompressed < changed + (1 << 20) && r2.counters.bytesCompressed >= changed,
                "BytesCompressed \(r2.counters.bytesCompressed) for \(changed) changed")
        let logical: Int64 = (48 << 20) + (3 << 20) + (300 << 10) + (6 << 20) + (2 << 20) + (8 << 20)
        #expect(r2.counters.bytesTransferred == logical)
        // Verified by the destination's checksum of the whole result: nothing read back.
        #expect(second.counting.count(.openRead) == 0 && r2.counters.filesVerified >= 5)
    }
}

/// Counts the calls of each operation a remote location makes.
final class CountingTransport: RemoteTransport {
    let base: any RemoteTransport
    private let counts = Mutex<[RemoteOperation: Int]>([:])

    init(_ base: any RemoteTransport) { self.base = base }

    var peer: String { base.peer }

    func count(_ operation: RemoteOperation) -> Int { counts.withLock { $0[operation] ?? 0 } }

    func call(_ operation: RemoteOperation, _ body: [UInt8]) async throws -> [UInt8] {
        counts.withLock { $0[operation, default: 0] += 1 }
        return try await base.call(operation, body)
    }

    func call(_ operation: RemoteOperation, _ body: [UInt8], lane: Int) async throws -> [UInt8] {
        counts.withLock { $0[operation, default: 0] += 1 }
        return try await base.call(operation, body, lane: lane)
    }

    func nextLane() -> Int { base.nextLane() }

    func close() async { await base.close() }
}
