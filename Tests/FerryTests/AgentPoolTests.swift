import FerryTesting
import Foundation
import Glibc
import Testing

/// One execution spread over the agents of a location (DataSync's several agents per
/// location), each agent a host of its own beside one file server: the NFS export (and an
/// SMB share) on a LAN they all reach (a bridge in the file server's namespace), the bucket
/// on the same server. Shares of the tree on the export go to every agent that polls; one agent is killed mid-run
/// (its share goes to another after the offline window), a fourth is started mid-run (it
/// joins); the destination ends exact, deletions waited for every share, and the counters
/// count each share once.
@Suite(.serialized) struct AgentPoolTests {
    @Test func anExecutionSpreadOverAgentsSurvivesOneLostAndTakesOneLate() throws {
        let root = try TestTree(label: "agent-pool").root
        let world = try AgentWorld(root: root, siteCount: 4)
        let nas = try NetworkNamespace("nas")
        defer {
            world.tearDown()
            nas.remove()
        }
        let lan = try nas.bridge(world.sites.map(\.namespace))
        let smb = try SMBTestServer.start(in: nas, addresses: [lan.here])
        let s3 = try NamespaceS3(nas, host: "0.0.0.0")
        _ = try s3.s3api(["create-bucket", "--bucket", "dest"])
        mkdir(root + "/nfs", 0o755)
        let nfs = try NamespaceNFS(nas, export: root + "/nfs-export", scratch: root + "/nfs")
        defer { nfs.stop() }

        // 48 top-level directories of 8 files each (64 KiB) on the NFS export: enough shares
        // for every agent; the same tree on the SMB share for the second task.
        let source = nfs.export + "/src"
        mkdir(source, 0o755)
        let tree = TestTree(existing: source)
        var files: [String] = []
        for d in 0..<48 {
            for f in 0..<8 {
                let name = "dir\(d)/file\(f).bin"
                try tree.file(name, TestTree.bytes(64 << 10, seed: UInt64(d * 100 + f)))
                files.append(name)
            }
        }
        try tree.file("top.txt", Array("a file at the top\n".utf8))
        files.append("top.txt")
        _ = try NetworkNamespace.run(["/bin/cp", "-a", source, smb.path("share1") + "/src"])
        _ = try NetworkNamespace.run(["/bin/chown", "-R", "\(smb.user):", smb.path("share1") + "/src"])

        var agents: [String] = []
        for (i, site) in world.sites.enumerated() { agents.append(try world.activate(site, name: "pool-\(i)")) }
        // The fourth is stopped: it joins mid-run.
        world.killAgent(world.sites[3])

        let export = try world.ok(["create-location-nfs", "--server-hostname", lan.here, "--subdirectory", source,
                                   "--on-prem-config", "AgentArns=" + agents.joined(separator: ",")])["LocationArn"] as? String ?? ""
        let bucket = try world.ok(["create-location-object-storage", "--server-hostname", lan.here, "--server-port", "\(s3.port)",
                                   "--server-protocol", "HTTP", "--bucket-name", "dest", "--subdirectory", "/pool",
                                   "--access-key", "site", "--secret-key", "site-secret", "--agent-arns"] + agents)["LocationArn"] as? String ?? ""
        // An object only the destination has: removed, but only after every share succeeded.
        let stray = root + "/stray"
        try Data("stray".utf8).write(to: URL(fileURLWithPath: stray))
        _ = try s3.s3api(["put-object", "--bucket", "dest", "--key", "pool/dir7/stray.bin", "--body", stray])
        let task = try world.ok(["create-task", "--source-location-arn", export, "--destination-location-arn", bucket,
                                 "--options", "LogLevel=BASIC,VerifyMode=ONLY_FILES_TRANSFERRED,PreserveDeletedFiles=REMOVE"])["TaskArn"] as? String ?? ""

        // What arrived, fetched in one `aws s3 cp --recursive` (one get-object per file takes minutes).
        var fetches = 0
        func exact() throws {
            fetches += 1
            let copy = root + "/arrived\(fetches)"
            let r = try CLI.run(nas.command([S3TestServer.which("aws") ?? "/usr/bin/aws", "--endpoint-url", "http://127.0.0.1:\(s3.port)",
                                             "s3", "cp", "--recursive", "--only-show-errors", "s3://dest/pool/", copy]),
                                direct: true, environment: NamespaceS3.environment)
            #expect(r.status == 0, "\(r.stderr)")
            let arrived = try TreeSnapshot(copy).entries.filter { $0.value.kind == .file }.keys.map { String(decoding: $0.bytes, as: UTF8.self) }
            #expect(Set(arrived) == Set(files), "\(arrived.count) objects for \(files.count) files; stray: \(arrived.contains("dir7/stray.bin"))")
            for name in files {
                #expect(FileManager.default.contents(atPath: copy + "/" + name) == FileManager.default.contents(atPath: source + "/" + name),
                        "\(name) differs")
            }
        }

        /// An execution's log lines that say what went wrong, for a failed expectation.
        func problems(_ execution: String) -> String {
            let log = (try? CLI.run(["server", "logs", "--data-dir", world.dataDirectory, execution]).stdout) ?? ""
            return log.split(separator: "\n").filter { $0.contains("ERROR") || $0.contains("WARN") || $0.contains("started on agent") }
                .prefix(60).joined(separator: "\n")
        }

        // Slowed (shared among the shares running) so that the run lasts while agents come and go.
        let execution = try world.startMoving(task, ["--override-options", "BytesPerSecond=2097152"])
        world.killAgent(world.sites[1])
        try world.startAgent(world.sites[3])
        let ended = world.waitForEnd(execution, seconds: 180)
        #expect(ended["Status"] as? String == "SUCCESS", "\(ended)\n\(problems(execution))")
        try exact()
        // Each share counted once: never more items than there are (files, the 48 directories
        // and the root; those the lost agent moved are not counted), each listed once (the
        // lost agent's share by the agent that ran it again), and the stray deleted once.
        #expect((ended["FilesTransferred"] as? Int ?? 0) <= files.count + 49 && (ended["FilesDeleted"] as? Int) == 1, "\(ended)")
        #expect(((ended["FilesListed"] as? [String: Any])?["AtSource"] as? Int ?? 0) <= files.count + 48, "\(ended)")
        // Every agent had shares (the late one too), and the lost agent's went to another.
        let leased = ((try? String(contentsOfFile: world.dataDirectory + ".out", encoding: .utf8)) ?? "")
            .split(separator: "\n").filter { $0.contains("share leased") }
        for (i, agent) in agents.enumerated() {
            #expect(leased.contains { $0.contains("agent=\(agent)") }, "agent \(i) had no share")
        }
        #expect(leased.contains { $0.contains("attempt=2") }, "the lost agent's share was not leased again")

        // A clean run after some objects went: exactly those come back, counted once each.
        let gone = ["dir1/file0.bin", "dir20/file3.bin", "dir33/file7.bin"]
        _ = try s3.s3api(["delete-objects", "--bucket", "dest", "--delete",
                          "{\"Objects\":[" + gone.map { "{\"Key\":\"pool/\($0)\"}" }.joined(separator: ",") + "]}"])
        let againArn = try world.ok(["start-task-execution", "--task-arn", task])["TaskExecutionArn"] as? String ?? ""
        let again = world.waitForEnd(againArn, seconds: 180)
        #expect(again["Status"] as? String == "SUCCESS" && again["FilesTransferred"] as? Int == gone.count, "\(again)\n\(problems(againArn))")
        try exact()

        // The whole first share, whose top holds one directory, into the second, which keeps
        // times: the shares cut the tree a level lower (src is common to them all), and the
        // finishing share gives src and the root their times after every share wrote in them.
        let copy = smb.path("share2") + "/copy"
        mkdir(copy, 0o755)
        _ = try NetworkNamespace.run(["/bin/chown", "\(smb.user):", copy])
        let first = try world.ok(["create-location-smb", "--server-hostname", lan.here, "--subdirectory", "/share1",
                                  "--user", smb.user, "--password", smb.password, "--agent-arns"] + agents)["LocationArn"] as? String ?? ""
        let second = try world.ok(["create-location-smb", "--server-hostname", lan.here, "--subdirectory", "/share2/copy",
                                   "--user", smb.user, "--password", smb.password, "--agent-arns"] + agents)["LocationArn"] as? String ?? ""
        // Security descriptors are left out: this Samba in a namespace answers none (no LSA
        // service on IPC$), which SMBTests covers.
        let task2 = try world.ok(["create-task", "--source-location-arn", first, "--destination-location-arn", second,
                                  "--options", "LogLevel=BASIC,VerifyMode=ONLY_FILES_TRANSFERRED,SecurityDescriptorCopyFlags=NONE"])["TaskArn"] as? String ?? ""
        let report = #"{"Destination":{"S3":{"Subdirectory":"pool","S3BucketArn":"arn:aws:s3:::reports","BucketAccessRoleArn":"arn:aws:iam::000000000000:role/r"}},"OutputType":"STANDARD","ReportLevel":"SUCCESSES_AND_ERRORS"}"#
        let copiedArn = try world.ok(["start-task-execution", "--task-arn", task2, "--task-report-config", report])["TaskExecutionArn"] as? String ?? ""
        let copied = world.waitForEnd(copiedArn, seconds: 180)
        #expect(copied["Status"] as? String == "SUCCESS", "\(copied)\n\(problems(copiedArn))")
        let (from, to) = (try TreeSnapshot(smb.path("share1")), try TreeSnapshot(copy))
        #expect(Set(from.entries.keys) == Set(to.entries.keys))
        for (path, entry) in from.entries {
            guard let arrived = to.entries[path] else { continue }
            #expect(arrived.checksum == entry.checksum, "\(path) differs")
            // Samba sets times to the microsecond.
            #expect(arrived.mtime.seconds == entry.mtime.seconds && Int(entry.mtime.nanoseconds) / 1000 == Int(arrived.mtime.nanoseconds) / 1000,
                    "\(path): mtime \(arrived.mtime) at the destination, \(entry.mtime) at the source")
        }
        // One task report from every share's part: each file listed once as transferred.
        #expect((copied["ReportResult"] as? [String: Any])?["Status"] as? String == "SUCCESS", "\(copied)")
        let detailed = try world.s3.objects(under: "pool/", in: "reports", scratch: root).first { $0.key.hasPrefix("Detailed-Reports/") }
        let listed = (try? JSONSerialization.jsonObject(with: detailed?.value.bytes ?? Data())) as? [String: Any] ?? [:]
        var times: [String: Int] = [:]
        for entry in listed["Transferred"] as? [[String: Any]] ?? [] {
            times[String((entry["RelativePath"] as? String ?? "").drop { $0 == "/" }), default: 0] += 1
        }
        for name in files { #expect(times["src/" + name] == 1, "src/\(name) is listed \(times["src/" + name] ?? 0) times in the report") }
        let log = (try? String(contentsOfFile: world.dataDirectory + ".out", encoding: .utf8)) ?? ""
        let ends = log.split(separator: "\n").filter { $0.contains("transfer round ended") && $0.contains(copiedArn) }
        #expect(ends.count == 1 && ends[0].contains("depth=2"), "\(ends)")
        #expect(log.split(separator: "\n").contains { $0.contains("FINISH 1/1") && $0.contains(copiedArn) }, "no finishing share was leased")
    }
}

/// nfs-ganesha (NFSv3, VFS) inside a namespace, with an rpcbind of its own there (in a mount
/// namespace with a private /run, so neither touches the host's rpcbind socket): agents
/// reach `export` at the namespace's addresses through the portmapper, as DataSync's NFS
/// locations name a server (no port).
final class NamespaceNFS {
    let process = Process()
    let export: String

    init(_ namespace: NetworkNamespace, export: String, scratch: String) throws {
        self.export = export
        guard let ganesha = S3TestServer.which("ganesha.nfsd"), let rpcbind = S3TestServer.which("rpcbind") else {
            throw TestTreeError("ganesha.nfsd or rpcbind not found: apt-get install nfs-ganesha nfs-ganesha-vfs rpcbind (.ci/run does)")
        }
        mkdir(export, 0o755)
        let config = """
            NFS_CORE_PARAM { NFS_Port = 2049; MNT_Port = 20048; Protocols = 3; Enable_NLM = false; Enable_RQUOTA = false; }
            NFSV4 { Graceless = true; }
            NFS_KRB5 { Active_krb5 = false; }
            EXPORT { Export_Id = 1; Path = \(export); Pseudo = \(export); Access_Type = RW; Squash = No_Root_Squash; Protocols = 3; Transports = TCP; SecType = sys; FSAL { Name = VFS; } }
            """
        try config.write(toFile: scratch + "/ganesha.conf", atomically: true, encoding: .utf8)
        // Both end with the shell: SIGTERM (or the test process's end, through pdeathsig) kills them.
        let script = """
            mount -t tmpfs tmpfs /run || exit 1
            \(rpcbind) -f -w & R=$!
            sleep 0.3
            \(ganesha) -F -f \(scratch)/ganesha.conf -L \(scratch)/ganesha.log -p \(scratch)/ganesha.pid & G=$!
            trap 'kill -9 $R $G; exit 0' TERM INT
            wait $G
            kill -9 $R
            """
        try ProcessLauncher.start(process, namespace.command(["/usr/bin/unshare", "-m", "--propagation", "private", "/bin/sh", "-c", script]),
                                  output: scratch + "/nfs.out")
        try namespace.waitFor("127.0.0.1", 2049, what: "ganesha.nfsd (log: \(scratch)/ganesha.log)", process: process)
    }

    func stop() {
        process.terminate()
        process.waitUntilExit()
    }
}
