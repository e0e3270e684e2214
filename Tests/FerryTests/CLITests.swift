import FerryCore
import FerryTesting
import Foundation
import Testing

/// `ferry sync` end to end: exit codes, output formats, URIs.
@Suite struct CLITests {
    @Test(arguments: [
        ["--verify-mode", "sometimes"],
        ["--delete", "--transfer-mode", "all"],
        ["--mtime", "none"],
        ["--atime", "none"],
        ["--bwlimit", "fast"],
        ["--include", "/a||/b"],
        ["--parallel", "0"],
        ["--uid", "name-please"],
    ])
    func badUsageExits64WithAMessage(_ extra: [String]) throws {
        let run = try CLI.run(["sync", "/tmp", "/tmp/ferry-never-made"] + extra)
        #expect(run.status == 64, "\(extra): \(run.stderr)")
        #expect(run.stderr.contains("Error") || run.stderr.contains("error"))
        #expect(!FileManager.default.fileExists(atPath: "/tmp/ferry-never-made"))
    }

    /// `--help` shows defaults in DataSync's spelling (`CHANGED`); typing them works too.
    @Test func dataSyncSpellingsAreTakenToo() throws {
        let f = try Fixture("spellings")
        defer { f.cleanUp() }
        try f.source.file("a", [1, 2, 3])
        let run = try CLI.run(["sync", f.source.root, f.destinationRoot, "--transfer-mode", "CHANGED", "--overwrite-mode", "ALWAYS",
                               "--verify-mode", "ONLY_FILES_TRANSFERRED", "--mtime", "PRESERVE", "-q"])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(FileManager.default.contents(atPath: f.destinationRoot + "/a") == Data([1, 2, 3]))
        let help = try CLI.run(["sync", "--help"])
        #expect(help.stdout.contains("values: changed, all;"), "\(help.stdout)")
    }

    @Test func pairingRuleMessageNamesTheFix() throws {
        let run = try CLI.run(["sync", "/tmp", "/tmp/x", "--mtime", "none"])
        #expect(run.stderr.contains("Atime BEST_EFFORT requires Mtime PRESERVE"))
    }

    @Test func overlappingTreesAreRefused() throws {
        let f = try Fixture("cli-overlap")
        defer { f.cleanUp() }
        try f.source.file("a", [1])
        for (src, dst) in [(f.source.root, f.source.root + "/backup"), (f.source.root + "/.", f.source.root), (f.source.root, (f.source.root as NSString).deletingLastPathComponent)] {
            let run = try CLI.run(["sync", src, dst, "--delete"])
            #expect(run.status == 64, "\(src) → \(dst)")
            #expect(run.stderr.contains("overlap"))
        }
        #expect(!FileManager.default.fileExists(atPath: f.source.root + "/backup"))
        #expect(FileManager.default.fileExists(atPath: f.source.root + "/a"))
    }

    @Test func missingSourceExits1() throws {
        let run = try CLI.run(["sync", "/nonexistent/ferry/source", "/tmp/ferry-never-made-2"])
        #expect(run.status == 1)
        #expect(run.stderr.contains("/nonexistent/ferry/source does not exist"))
    }

    @Test func unsupportedSchemeIsNamed() throws {
        let run = try CLI.run(["sync", "gs://bucket/prefix", "/tmp/x"])
        #expect(run.status == 64)
        #expect(run.stderr.contains("gs://"))
    }

    @Test func jsonSummaryAndFileURIs() throws {
        let f = try Fixture("cli-json")
        defer { f.cleanUp() }
        try f.source.file("a/b", TestTree.bytes(1234, seed: 1))
        try f.source.file("c", [1, 2])
        let run = try CLI.run(["sync", "file://" + f.source.root, "file://" + f.destinationRoot, "--json"])
        #expect(run.status == 0, "\(run.stderr)")
        let json = try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as! [String: Any]
        #expect(json["Status"] as? String == "SUCCESS")
        let counters = json["Counters"] as! [String: Any]
        #expect(counters["FilesTransferred"] as? Int == 4)  // a, a/b, c, and the root's metadata
        #expect(counters["BytesWritten"] as? Int == 1236)
        #expect(counters["EstimatedBytesToTransfer"] as? Int == 1236)
        #expect(json["VerifyStatus"] as? String == "SUCCESS")
        for key in ["PrepareDuration", "TransferDuration", "VerifyDuration", "PrepareStatus", "TransferStatus"] {
            #expect(json[key] != nil, "\(key)")
        }
        #expect(try f.differences() == [])

        let again = try CLI.run(["sync", f.source.root, f.destinationRoot, "--json"])
        let second = try JSONSerialization.jsonObject(with: Data(again.stdout.utf8)) as! [String: Any]
        #expect((second["Counters"] as! [String: Any])["FilesTransferred"] as? Int == 0)
    }

    @Test func dryRunPrintsWhatWouldChange() throws {
        let f = try Fixture("cli-dry")
        defer { f.cleanUp() }
        try f.source.file("new-file", [1])
        let run = try CLI.run(["sync", f.source.root, f.destinationRoot + "/not-yet", "--dry-run"])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stdout.contains("would create /new-file"))
        #expect(run.stdout.contains("dry run"))
        #expect(!FileManager.default.fileExists(atPath: f.destinationRoot + "/not-yet"))
    }

    @Test func quietPrintsNothingOnSuccessAndReportIsWritten() throws {
        let f = try Fixture("cli-quiet")
        defer { f.cleanUp() }
        try f.source.file("x", [1])
        let reportPath = f.destinationRoot + ".report.json"
        let run = try CLI.run(["sync", f.source.root, f.destinationRoot, "-q", "--report", reportPath])
        #expect(run.status == 0)
        #expect(run.stdout.isEmpty && run.stderr.isEmpty)
        var st = stat()
        #expect(stat(reportPath, &st) == 0 && st.st_mode & 0o777 == 0o600)
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: reportPath))) as! [String: Any]
        let transferred = report["Transferred"] as! [[String: Any]]
        #expect(transferred.contains { $0["RelativePath"] as? String == "/x" && ($0["Checksum"] as? String)?.hasPrefix("xxh3-128:") == true })
        #expect((report["Verified"] as! [[String: Any]]).count == transferred.count)
        #expect(report["Deleted"] as? [Any] != nil && report["Skipped"] as? [Any] != nil)
        try? FileManager.default.removeItem(atPath: reportPath)
    }

    @Test func progressLineOnlyOnATerminal() throws {
        let f = try Fixture("cli-progress")
        defer { f.cleanUp() }
        try f.source.file("big", TestTree.bytes(6 << 20, seed: 1))
        let plain = try CLI.run(["sync", f.source.root, f.destinationRoot + "/1", "--bwlimit", "8M"])
        #expect(!plain.stderr.contains("[TRANSFERRING]") && !plain.stdout.contains("[TRANSFERRING]"))
        #expect(plain.stdout.contains("Status: SUCCESS"))
        // script(1) gives the command a pseudo-terminal and records what it drew.
        let typescript = f.destinationRoot + ".typescript"
        let command = "\(CLI.executable) sync \(f.source.root) \(f.destinationRoot)/2 --bwlimit 8M"
        let tty = try CLI.run(["-qc", command, typescript], wrapper: ["script"], direct: true)
        #expect(tty.status == 0)
        let drawn = String(decoding: try Data(contentsOf: URL(fileURLWithPath: typescript)), as: UTF8.self)
        #expect(drawn.contains("[TRANSFERRING] 0/2 files"))
        #expect(drawn.contains("MiB/s"))
        #expect(drawn.contains("ETA"))
        try? FileManager.default.removeItem(atPath: typescript)
    }

    @Test func verboseNamesEveryItem() throws {
        let f = try Fixture("cli-verbose")
        defer { f.cleanUp() }
        try f.source.file("one", [1])
        try f.source.symlink("two", to: "one")
        _ = try f.source.directory("dir", mode: 0o755)
        let run = try CLI.run(["sync", f.source.root, f.destinationRoot, "-v"])
        #expect(run.stdout.contains("create /one"))
        #expect(run.stdout.contains("create /two"))
        #expect(run.stdout.contains("create /dir"))
        #expect(!run.stdout.contains("metadata /dir"), "a new directory is named once: \(run.stdout)")

        // A directory whose metadata alone differs is named too, in a dry run and a real one.
        try f.source.chmod("dir", 0o750)
        let dry = try CLI.run(["sync", f.source.root, f.destinationRoot, "-v", "--dry-run"])
        #expect(dry.stdout.contains("would metadata /dir"), "\(dry.stdout)")
        let update = try CLI.run(["sync", f.source.root, f.destinationRoot, "-v"])
        #expect(update.status == 0, "\(update.stderr)")
        #expect(update.stdout.contains("metadata /dir"), "\(update.stdout)")
        #expect(!update.stdout.contains("/one") && !update.stdout.contains("/two"), "only what changed: \(update.stdout)")
        var st = stat()
        #expect(stat(f.destinationRoot + "/dir", &st) == 0 && st.st_mode & 0o7777 == 0o750)
    }
}
