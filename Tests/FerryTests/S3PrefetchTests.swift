@testable import FerryS3
import FerryTesting
import Foundation
import Glibc
import NIOCore
import Testing

/// Downloads of small objects the destination lacks: the listing GETs each one instead of
/// HEADing it and the copy takes the body it fetched, one request per file, with the same
/// bytes and metadata as the HEAD-then-GET path; objects the filters leave out are not fetched.
@Suite struct S3PrefetchTests {
    @Test func smallObjectsTheDestinationLacksComeInOneRequestEach() async throws {
        let (server, bucket) = try await S3Tests.freshBucket()
        let f = try Fixture("s3-prefetch")
        defer { f.cleanUp() }
        for d in 0..<3 {
            for i in 0..<10 {
                try f.source.file("d\(d)/f\(i)", TestTree.bytes(100 + 97 * i, seed: UInt64(d * 10 + i)), mode: i % 3 == 0 ? 0o600 : 0o644)
            }
        }
        try f.source.symlink("d0/link", to: "f1")
        try f.source.file("d1/empty", [])
        try f.source.file("d2/big.bin", TestTree.bytes(1_500_000, seed: 99))  // over the 1 MiB prefetch limit
        let target = "s3://\(bucket)/p"
        let up = try S3Tests.ferry(server, ["sync", f.source.root, target, "--no-metadata-cache"])
        #expect(up.status == 0, "\(up.stderr)")

        // Into a fresh destination: 33 objects, 32 of them small.
        let fresh = try S3Tests.ferry(server, ["sync", target, f.destinationRoot, "-v", "--no-metadata-cache"])
        #expect(fresh.status == 0, "\(fresh.stderr)")
        #expect(try f.differences(compareAtime: false) == [])

        // Into a destination holding stale copies of every file: each object is HEADed, then read.
        let stale = try Fixture("s3-prefetch-stale")
        defer { stale.cleanUp() }
        for d in 0..<3 {
            for i in 0..<10 { try stale.destination.file("d\(d)/f\(i)", Array("stale".utf8)) }
        }
        try stale.destination.file("d1/empty", Array("stale".utf8))
        try stale.destination.file("d2/big.bin", Array("stale".utf8))
        try stale.destination.symlink("d0/link", to: "elsewhere")
        let headed = try S3Tests.ferry(server, ["sync", target, stale.destinationRoot, "-v", "--no-metadata-cache"])
        #expect(headed.status == 0, "\(headed.stderr)")
        for d in 0..<3 {
            for i in 0..<10 {
                #expect(FileManager.default.contents(atPath: "\(stale.destinationRoot)/d\(d)/f\(i)") ==
                        FileManager.default.contents(atPath: "\(f.source.root)/d\(d)/f\(i)"))
            }
        }

        // Requests: per directory (the root and 3) one delimited listing and two HEADs of
        // its marker (when listed, when finished), one ListMultipartUploads, and per object
        // one GET (big.bin: a HEAD and a GET); the stale run needs a HEAD more for each of
        // the 32 small objects.
        let freshRequests = S3MetadataCacheTests.requests(fresh), headedRequests = S3MetadataCacheTests.requests(headed)
        #expect(freshRequests > 33 && freshRequests <= 4 * 3 + 1 + 33 + 1, "\(fresh.stderr)")
        #expect(headedRequests >= freshRequests + 32, "fresh \(freshRequests), stale \(headedRequests)")

        // Excluded objects are not fetched: the listing HEADs the 11 in d1 (it plans before
        // filtering), but GETs none of them.
        let filtered = try Fixture("s3-prefetch-filtered")
        defer { filtered.cleanUp() }
        let log = Pipe()
        let (proxy, port) = try S3FaultTests.startProxy(upstream: server.port, every: 0, environment: ["LOG_REQUESTS": "1"], output: log)
        let excluding = try CLI.run(["sync", target, filtered.destinationRoot, "--no-metadata-cache", "--exclude", "/d1/*",
                                     "--endpoint-url", "http://127.0.0.1:\(port)"], environment: server.clientEnvironment)
        kill(proxy.processIdentifier, SIGKILL)
        proxy.waitUntilExit()
        #expect(excluding.status == 0, "\(excluding.stderr)")
        let requests = String(decoding: log.fileHandleForReading.availableData, as: UTF8.self)
        #expect(requests.contains("request HEAD /\(bucket)/p/d1/f0") && !requests.contains("request GET /\(bucket)/p/d1/f"), "\(requests)")
        #expect(requests.contains("request GET /\(bucket)/p/d2/f0"), "\(requests)")
        #expect(!FileManager.default.fileExists(atPath: "\(filtered.destinationRoot)/d1/f0"))
        #expect(FileManager.default.contents(atPath: "\(filtered.destinationRoot)/d2/f9") == FileManager.default.contents(atPath: "\(f.source.root)/d2/f9"))
    }

    @Test func prefetchedBodiesStayWithinTheirBudget() {
        let bodies = PrefetchedBodies(budget: 1_000)
        func object(_ key: String, _ size: Int) -> S3Object { S3Object(key: key, size: Int64(size), lastModified: nil, etag: "\"\(key)\"", metadata: [:]) }
        func body(_ size: Int) -> ByteBuffer { ByteBuffer(repeating: 7, count: size) }
        bodies.put("a", object: object("a", 400), body: body(400))
        bodies.put("b", object: object("b", 400), body: body(400))
        #expect(bodies.heldBytes == 800)
        bodies.put("c", object: object("c", 400), body: body(400))  // over budget: the oldest goes
        #expect(bodies.heldBytes == 800)
        #expect(bodies.take("a") == nil)
        #expect(bodies.take("b")?.body.readableBytes == 400)
        #expect(bodies.take("b") == nil, "a body is taken once")
        bodies.put("huge", object: object("huge", 2_000), body: body(2_000))  // larger than the whole budget: not kept
        #expect(bodies.take("huge") == nil)
        #expect(bodies.heldBytes == 400)
        // Many puts and takes: the queue of keys does not grow without bound.
        for i in 0..<10_000 {
            bodies.put("k\(i)", object: object("k\(i)", 10), body: body(10))
            #expect(bodies.take("k\(i)") != nil)
        }
        #expect(bodies.heldBytes == 400 && bodies.queuedKeys < 3_000)
    }
}
