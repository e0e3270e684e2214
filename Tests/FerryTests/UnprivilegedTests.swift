import FerryCore
import FerryTesting
import Foundation
import Glibc
import Testing

/// `ferry sync` run by an ordinary user (uid 65534, no capabilities), as `rsync -a` often
/// is: files owned by others arrive with their data and every piece of metadata a user may
/// set; the owners it may not set are reported for each file, not turned into a skip.
@Suite struct UnprivilegedTests {
    static let user: UInt32 = 65534
    static let asUser = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "--inh-caps=-all", "--"]

    @Test(arguments: ["only-files-transferred", "point-in-time-consistent"])
    func ownersAUserMayNotSetAreReportedAndTheDataArrives(verify: String) throws {
        let f = try Fixture("unprivileged")
        defer { f.cleanUp() }
        let t = Timestamp(seconds: 1_500_000_000, nanoseconds: 123_456_789)
        try f.source.file("mine", Array("the user's own".utf8))
        try f.source.chown("mine", uid: Self.user, gid: Self.user)
        try f.source.file("theirs", Array("root's, readable by all".utf8), mode: 0o640 | 0o004)
        try f.source.directory("d", mode: 0o750 | 0o005)
        try f.source.file("d/other", TestTree.bytes(100_000, seed: 5), mode: 0o604)
        try f.source.chown("d/other", uid: 4000, gid: 4000)
        try f.source.symlink("link", to: "theirs")
        for p in ["mine", "theirs", "d/other", "d"] { try f.source.setTimes(p, atime: t, mtime: t) }
        try f.source.chmod("", 0o755)
        // The destination's parent belongs to the user, who makes the destination in it.
        let parent = (f.destinationRoot as NSString).deletingLastPathComponent
        #expect(Glibc.chown(parent, Self.user, Self.user) == 0)
        let report = parent + "/report.json"

        let run = try CLI.run(["sync", f.source.root, f.destinationRoot, "--verify-mode", verify, "--report", report, "-v"],
                              wrapper: Self.asUser)
        #expect(run.status == 2, "exit \(run.status): \(run.stdout)\(run.stderr)")
        // Every file's data and mode and mtime arrived, owned by the user.
        let src = try TreeSnapshot(f.source.root), dst = try TreeSnapshot(f.destinationRoot)
        for p in ["mine", "theirs", "d/other", "d", "link"] {
            let s = try #require(src.entries[EntryPath(p)!]), d = try #require(dst.entries[EntryPath(p)!], "\(p) did not arrive")
            #expect(d.kind == s.kind && d.checksum == s.checksum && d.symlinkTarget == s.symlinkTarget, "\(p)")
            if s.kind != .symlink { #expect(d.permissions == s.permissions && d.mtime == s.mtime, "\(p): \(d) vs \(s)") }
            #expect(d.uid == Self.user && d.gid == Self.user, "\(p)")
        }
        // Each entry owned by another is named with what was not applied and why; the
        // user's own file is not; nothing failed verification or was skipped.
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: report))) as? [String: Any] ?? [:]
        let transferred = json["Transferred"] as? [[String: Any]] ?? []
        let partial = transferred.filter { $0["Status"] as? String == "PARTIAL" }
        #expect(Set(partial.compactMap { $0["RelativePath"] as? String }) == ["/theirs", "/d", "/d/other", "/link", "/"], "\(partial)")
        for p in partial {
            #expect(p["FailureKind"] as? String == "METADATA_NOT_APPLIED", "\(p)")
        }
        let other = partial.first { $0["RelativePath"] as? String == "/d/other" }?["Reason"] as? String ?? ""
        #expect(other.contains("uid 4000, gid 4000") && other.contains("CAP_CHOWN") && other.contains("not a member of group 4000"), "\(other)")
        #expect(!run.stdout.contains("UNREADABLE") && !run.stderr.contains("fchown"), "\(run.stdout)\(run.stderr)")
        let counters = (json["Summary"] as? [String: Any])?["Counters"] as? [String: Any] ?? [:]
        #expect(counters["FilesSkipped"] as? Int == 0 && counters["FilesFailed"] as? Int == 0
                && counters["FilesTransferred"] as? Int == 6, "\(counters)")
        #expect((json["Verified"] as? [[String: Any]] ?? []).allSatisfy { $0["Status"] as? String != "FAILED" })

        // Nothing left to do: a second run changes nothing and succeeds.
        let again = try CLI.run(["sync", f.source.root, f.destinationRoot, "--verify-mode", verify, "--json"], wrapper: Self.asUser)
        #expect(again.status == 0, "\(again.stdout)\(again.stderr)")
        #expect(TreeSnapshot.differences(dst, try TreeSnapshot(f.destinationRoot), compareAtime: false) == [])
    }
}
