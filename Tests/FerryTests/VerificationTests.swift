import FerryCore
import FerryEngine
import FerryLocal
import FerryTesting
import Foundation
import Glibc
import Synchronization
import Testing

/// Verification names DataSync's failure kinds per path.
@Suite struct VerificationTests {
    @Test func pointInTimeFindsChecksumAndMetadataFailures() async throws {
        let f = try Fixture("pit")
        defer { f.cleanUp() }
        try f.source.file("data", TestTree.bytes(5000, seed: 1))
        try f.source.file("mode", [1], mode: 0o644)
        try f.source.file("fine", [2])
        try await f.sync()
        // Same size and mtime, other bytes: a CHANGED run cannot see it, verification must.
        var st = stat()
        stat(f.destinationRoot + "/data", &st)
        try f.destination.file("data", TestTree.bytes(5000, seed: 2))
        try f.destination.setTimes("data", atime: Timestamp(seconds: Int64(st.st_atim.tv_sec), nanoseconds: Int32(st.st_atim.tv_nsec)),
                                   mtime: Timestamp(seconds: Int64(st.st_mtim.tv_sec), nanoseconds: Int32(st.st_mtim.tv_nsec)))
        try f.destination.chmod("mode", 0o600)
        var options = Fixture.defaultOptions
        options.verifyMode = .pointInTimeConsistent
        options.overwriteMode = .never
        let result = try await f.sync(options)
        let kinds = Dictionary(result.problems.filter { $0.category == .verified }.map { ($0.entry.path, $0.entry.failureKind) }, uniquingKeysWith: { a, _ in a })
        #expect(kinds["/data"] == .checksumFailure)
        #expect(kinds["/mode"] == .metadataFailure)
        #expect(kinds["/fine"] == nil)
        #expect(result.outcome == .verificationFailed)
        #expect(result.verifyStatus == .error)
    }

    @Test func pointInTimeFindsAddedAndRemovedFiles() throws {
        let f = try Fixture("pit2")
        defer { f.cleanUp() }
        try f.source.file("ok", [1])
        try f.lockedSourceFile("locked")
        try f.destination.file("extra", [3])
        let run = try CLI.run(["sync", f.source.root, f.destinationRoot, "--delete", "--verify-mode", "point-in-time-consistent", "--json"], wrapper: CLI.withoutDACOverride)
        #expect(run.status == 3, "\(run.stdout) \(run.stderr)")
        let json = try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as! [String: Any]
        let problems = (json["Problems"] as! [[String: Any]]).map { $0["entry"] as! [String: Any] }
        let kinds = Dictionary(problems.filter { $0["FailureKind"] as? String != "UNREADABLE" }
            .map { ($0["RelativePath"] as! String, $0["FailureKind"] as! String) }, uniquingKeysWith: { a, _ in a })
        #expect(kinds == ["/locked": "FILE_REMOVED", "/extra": "FILE_ADDED"])
    }

    @Test func onlyFilesTransferredVerifiesEachTransferredItem() async throws {
        let f = try Fixture("oft")
        defer { f.cleanUp() }
        try SampleTrees.rich(f.source)
        let result = try await f.sync()
        #expect(result.counters.filesVerified == result.counters.filesTransferred)
        #expect(result.verifyStatus == .success)
        let report = TaskReportSink(spoolDirectory: nil)
        let second = try await f.sync(report: report)
        #expect(second.counters.filesVerified == 0)
    }
}

/// A POSIX destination whose writes of one file arrive corrupted (a bit flipped on its way
/// to the disk): ONLY_FILES_TRANSFERRED's read-back must catch it, try once more, and
/// report a checksum failure; the other files verify.
@Suite struct ReadBackTests {
    /// A connection that breaks while a directory is listed (a file server dropping it under
    /// load): the engine lists it again, and the run ends exact.
    @Test func aListingCutByABrokenConnectionIsMadeAgain() async throws {
        let f = try Fixture("relist")
        defer { f.remove() }
        for i in 0..<5 { try f.source.file("d/f\(i)", TestTree.bytes(100 + i, seed: UInt64(i))) }
        try f.source.file("top", [1, 2, 3])
        let source = DroppingLocation(base: try POSIXLocation(path: f.source.root), victim: EntryPath("d")!, failures: 2)
        let engine = SyncEngine(SyncConfiguration(source: source, destination: try POSIXLocation(path: f.destinationRoot, create: true),
                                                  options: Fixture.defaultOptions))
        let result = await engine.run()
        #expect(result.status == .success, "\(result.errorDetail ?? "") \(result.problems)")
        #expect(source.failures.withLock { $0 } == 0)
        #expect(try f.differences() == [])
    }

    /// Lists `victim` with a broken connection's error the first `failures` times.
    final class DroppingLocation: ForwardingToPOSIX {
        let base: POSIXLocation
        let victim: EntryPath
        let failures: Mutex<Int>
        init(base: POSIXLocation, victim: EntryPath, failures: Int) {
            self.base = base
            self.victim = victim
            self.failures = Mutex(failures)
        }
        var uri: String { base.uri }
        var capabilities: Capabilities { base.capabilities }
        var scope: LocationScope? { base.scope }
        func list(_ directory: EntryPath) async throws -> Listing? {
            let fails = failures.withLock { n in
                guard directory == victim, n > 0 else { return false }
                n -= 1
                return true
            }
            if fails {
                throw FerryError(ErrorCode("ConnectionAborted"), "listing \(directory): Software caused connection abort", path: directory, retryClass: .retryable)
            }
            return try await base.list(directory)
        }
    }

    struct CorruptingLocation: ForwardingToPOSIX {
        let base: POSIXLocation
        let victim: EntryPath
        var uri: String { base.uri }
        var capabilities: Capabilities { base.capabilities }
        var scope: LocationScope? { base.scope }
        func createFile(_ path: EntryPath, metadata: FileMetadata, attributes: [ExtendedAttribute]?, selection: MetadataSelection) async throws -> any EntryWriter {
            let writer = try await base.createFile(path, metadata: metadata, attributes: attributes, selection: selection)
            return path == victim ? FlippingWriter(base: writer) : writer
        }
    }

    /// Writes the first byte with its lowest bit flipped.
    struct FlippingWriter: EntryWriter {
        let base: any EntryWriter
        func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) async throws {
            var copy = Array(bytes)
            if offset == 0, !copy.isEmpty { copy[0] ^= 1 }
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(copy.count, 1), alignment: 16)
            defer { buffer.deallocate() }
            buffer.copyBytes(from: copy)
            try await base.write(UnsafeRawBufferPointer(rebasing: buffer[0..<copy.count]), at: offset)
        }
        func commit() async throws -> [String] { try await base.commit() }
        func abort() async { await base.abort() }
        var contentConfirmed: Bool { false }
        func committedReader() async throws -> (any EntryReader)? { try await base.committedReader() }
    }

    @Test func aCorruptedWriteIsCaughtByTheReadBack() async throws {
        let f = try Fixture("readback")
        defer { f.cleanUp() }
        try f.source.file("good", TestTree.bytes(70_000, seed: 1))
        try f.source.file("bad", TestTree.bytes(70_000, seed: 2))
        let destination = CorruptingLocation(base: try POSIXLocation(path: f.destinationRoot, create: true), victim: EntryPath("bad")!)
        let engine = SyncEngine(SyncConfiguration(source: try POSIXLocation(path: f.source.root), destination: destination,
                                                  options: Fixture.defaultOptions, parallel: 2))
        let result = await engine.run()
        #expect(result.counters.verificationFailures == 1, "\(result.counters)")
        let failure = try #require(result.problems.first { $0.entry.path == "/bad" })
        #expect(failure.entry.failureKind == .checksumFailure && failure.entry.reason?.contains("differs from the source") == true, "\(failure)")
        #expect(!result.problems.contains { $0.entry.path == "/good" })
        #expect(FileManager.default.contents(atPath: f.destinationRoot + "/good") == Data(TestTree.bytes(70_000, seed: 1)))
    }
}
