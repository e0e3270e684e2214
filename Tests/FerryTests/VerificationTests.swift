import FerryCore
import FerryEngine
import FerryTesting
import Foundation
import Glibc
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
        #expect(result.verifyStatus == "ERROR")
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
        #expect(result.verifyStatus == "SUCCESS")
        let report = TaskReportSink(spoolDirectory: nil)
        let second = try await f.sync(report: report)
        #expect(second.counters.filesVerified == 0)
    }
}
