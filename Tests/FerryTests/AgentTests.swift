import FerryTesting
import Foundation
import Glibc
import Testing

/// A control plane and agents as separate hosts: each in a network namespace of its own,
/// linked by veth pairs (client ↔ control plane, client ↔ each site, control plane ↔ each
/// site; the aws CLI and curl run in the client namespace, so the host's own interfaces
/// stay as they are). A site's storage (smbd, moto) listens on that site's loopback, which no other
/// namespace reaches, so an execution against it can only have run on the site's agent.
final class AgentWorld {
    let cp: NetworkNamespace
    /// Where the aws CLI and curl run (the operator's host).
    let client: NetworkNamespace
    let cpFromHost: String
    let dataDirectory: String
    let port = 8950
    var server: Process
    let serverArguments: [String]
    var environment: [String: String] = ProcessInfo.processInfo.environment

    /// A site: its namespace, how the host and the control plane reach it, its agent.
    final class Site {
        let namespace: NetworkNamespace
        let fromHost: String
        let cpFromSite: String
        /// Where the other sites reach this one's data port.
        var dataAddress = "127.0.0.1"
        let dataDirectory: String
        var agent: Process?
        /// More arguments for its agent (`--local-root`).
        var agentArguments: [String] = []
        let output: String
        init(namespace: NetworkNamespace, fromHost: String, cpFromSite: String, dataDirectory: String) {
            self.namespace = namespace
            self.fromHost = fromHost
            self.cpFromSite = cpFromSite
            self.dataDirectory = dataDirectory
            output = dataDirectory + ".out"
        }
    }
    var sites: [Site] = []
    /// The control plane's S3 endpoint (task reports go there).
    var s3: NamespaceS3!

    init(root: String, siteCount: Int) throws {
        cp = try NetworkNamespace("cp")
        client = try NetworkNamespace("client")
        cpFromHost = try cp.link(to: client).here
        for i in 0..<siteCount {
            let ns = try NetworkNamespace("site\(i)")
            let fromHost = try ns.link(to: client).here
            let cpFromSite = try ns.link(to: cp).there
            let site = Site(namespace: ns, fromHost: fromHost, cpFromSite: cpFromSite, dataDirectory: root + "/agent\(i)")
            // Sites reach each other's data ports directly, never through the control plane.
            if let first = sites.first { site.dataAddress = try ns.link(to: first.namespace).here }
            sites.append(site)
        }
        dataDirectory = root + "/cp"
        serverArguments = ["server", "--data-dir", dataDirectory, "--host", "0.0.0.0", "--port", "\(port)", "--tls",
                           "--agent-offline-seconds", "5", "--activation-key-seconds", "6", "--s3-endpoint-url", "http://127.0.0.1:5000"]
        server = Process()
        s3 = try NamespaceS3(cp)
        _ = try s3.s3api(["create-bucket", "--bucket", "reports"])
        try startServer()
        for line in try CLI.run(["server", "credentials", "--data-dir", dataDirectory]).stdout.split(separator: "\n") {
            let kv = line.split(separator: "=", maxSplits: 1)
            if kv.count == 2 { environment[String(kv[0])] = String(kv[1]) }
        }
        environment["AWS_DEFAULT_REGION"] = "eu-west-3"
        environment["AWS_PAGER"] = ""
    }

    func startServer() throws {
        server = Process()
        try ProcessLauncher.start(server, cp.command([CLI.executable] + serverArguments), output: dataDirectory + ".out",
                              environment: NamespaceS3.environment)
        try cp.waitFor("127.0.0.1", port, what: "ferry server", process: server)
    }

    func killServer() {
        kill(server.processIdentifier, SIGKILL)
        server.waitUntilExit()
    }

    func startAgent(_ site: Site) throws {
        let p = Process()
        try ProcessLauncher.start(p, site.namespace.command([
            CLI.executable, "agent", "--data-dir", site.dataDirectory, "--control-plane", "https://\(site.cpFromSite):\(port)",
            "--ca-file", dataDirectory + "/tls/ca.pem", "--activation-port", "80", "--heartbeat-seconds", "1",
            "--data-port", "8951", "--data-address", site.dataAddress,
        ] + site.agentArguments), output: site.output)
        site.agent = p
    }

    func killAgent(_ site: Site) {
        guard let p = site.agent else { return }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        site.agent = nil
    }

    func tearDown() {
        for s in sites { killAgent(s); s.namespace.remove() }
        killServer()
        cp.remove()
        client.remove()
    }

    /// curl, run in the client namespace.
    var curl: [String] { client.command(["/usr/bin/curl"]) }

    /// `aws datasync ARGS` against the control plane over HTTPS (its CA given).
    func aws(_ args: [String]) throws -> (status: Int32, json: [String: Any], stderr: String) {
        let r = try CLI.run(["datasync"] + args + ["--endpoint-url", "https://\(cpFromHost):\(port)", "--ca-bundle", dataDirectory + "/tls/ca.pem",
                                                  "--output", "json"], wrapper: client.command([S3TestServer.which("aws") ?? "/usr/bin/aws"]), direct: true, environment: environment)
        let json = (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8))) as? [String: Any] ?? [:]
        return (r.status, json, r.stderr)
    }

    func ok(_ args: [String]) throws -> [String: Any] {
        let r = try aws(args)
        #expect(r.status == 0, "aws datasync \(args.joined(separator: " ")): \(r.stderr)")
        return r.json
    }

    func refused(_ args: [String], saying text: String) throws {
        let r = try aws(args)
        #expect(r.status != 0 && r.stderr.contains(text), "aws datasync \(args.joined(separator: " ")) → \(r.status): \(r.stderr)")
    }

    /// The activation key the site's agent serves on port 80, read as Terraform does: the
    /// `Location` of the 302 answering `GET /?gatewayType=SYNC&activationRegion=R`.
    func activationKey(_ site: Site) -> String? {
        var key: String?
        _ = Fixture.waitUntil(seconds: 30) {
            guard let r = try? CLI.run(["-s", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
                                        "http://\(site.fromHost)/?gatewayType=SYNC&activationRegion=eu-west-3"], wrapper: curl, direct: true),
                  r.stdout.hasPrefix("302 "), let range = r.stdout.range(of: "activationKey=") else { return false }
            key = String(r.stdout[range.upperBound...].prefix(29))
            return true
        }
        return key
    }

    func activate(_ site: Site, name: String) throws -> String {
        try startAgent(site)
        let key = try #require(activationKey(site))
        let arn = try ok(["create-agent", "--activation-key", key, "--agent-name", name])["AgentArn"] as? String ?? ""
        #expect(waitForAgent(arn, "ONLINE"))
        return arn
    }

    func waitForAgent(_ arn: String, _ status: String, seconds: Double = 30) -> Bool {
        Fixture.waitUntil(seconds: seconds) {
            ((try? self.ok(["describe-agent", "--agent-arn", arn]))?["Status"] as? String) == status
        }
    }

    func waitForEnd(_ execution: String, seconds: Double = 120) -> [String: Any] {
        var last: [String: Any] = [:]
        _ = Fixture.waitUntil(seconds: seconds) {
            last = (try? self.ok(["describe-task-execution", "--task-execution-arn", execution])) ?? [:]
            return ["SUCCESS", "ERROR"].contains(last["Status"] as? String ?? "")
        }
        return last
    }

    /// Starts an execution and waits until its bytes move.
    func startMoving(_ task: String, _ extra: [String] = []) throws -> String {
        let execution = try ok(["start-task-execution", "--task-arn", task] + extra)["TaskExecutionArn"] as? String ?? ""
        #expect(Fixture.waitUntil(seconds: 60) {
            ((try? self.ok(["describe-task-execution", "--task-execution-arn", execution]))?["BytesTransferred"] as? Int ?? 0) > 0
        }, "\(execution) never moved a byte")
        return execution
    }
}

/// moto inside a namespace, on its loopback (port 5000): reachable from there only (or on
/// every address of the namespace with `host` 0.0.0.0).
struct NamespaceS3 {
    let namespace: NetworkNamespace
    let port = 5000
    let process = Process()

    init(_ namespace: NetworkNamespace, host: String = "127.0.0.1") throws {
        self.namespace = namespace
        guard let moto = S3TestServer.which("moto_server") else { throw TestTreeError("moto_server not found: pip install 'moto[server]' (.ci/run does)") }
        try ProcessLauncher.start(process, namespace.command([moto, "-H", host, "-p", "\(port)"]))
        try namespace.waitFor("127.0.0.1", port, what: "moto_server", process: process)
    }

    static let environment: [String: String] = ProcessInfo.processInfo.environment.merging(
        ["AWS_ACCESS_KEY_ID": "site", "AWS_SECRET_ACCESS_KEY": "site-secret", "AWS_DEFAULT_REGION": "us-east-1"]) { $1 }

    /// `aws s3api ARGS` run inside the site; its JSON output.
    func s3api(_ args: [String]) throws -> [String: Any] {
        let r = try CLI.run(namespace.command([S3TestServer.which("aws") ?? "/usr/bin/aws", "--endpoint-url", "http://127.0.0.1:\(port)",
                                                    "s3api"] + args + ["--output", "json"]), direct: true, environment: NamespaceS3.environment)
        guard r.status == 0 else { throw TestTreeError("aws s3api \(args.joined(separator: " ")): \(r.stderr)") }
        return (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8))) as? [String: Any] ?? [:]
    }

    /// Every object under `prefix`: its bytes and its `file-mtime` metadata (ns).
    func objects(under prefix: String, in bucket: String = "dest", scratch: String) throws -> [String: (bytes: Data, mtime: Int64?)] {
        let listed = try s3api(["list-objects-v2", "--bucket", bucket, "--prefix", prefix])
        var out: [String: (Data, Int64?)] = [:]
        for o in listed["Contents"] as? [[String: Any]] ?? [] {
            guard let key = o["Key"] as? String, !key.hasSuffix("/") else { continue }
            let file = scratch + "/object"
            let head = try s3api(["get-object", "--bucket", bucket, "--key", key, file])
            let meta = head["Metadata"] as? [String: String] ?? [:]
            out[String(key.dropFirst(prefix.count))] = (try Data(contentsOf: URL(fileURLWithPath: file)),
                                                        meta["file-mtime"].flatMap { Int64($0.dropLast(2)) })
        }
        return out
    }
}

@Suite(.serialized) struct AgentTests {
    /// The whole flow through the aws CLI with every process a host of its own: activation
    /// on the agent's port 80 (curl, as Terraform), create-agent, ONLINE, an SMB share and
    /// a bucket that only the agent reaches, a task run there exactly; the agent killed
    /// mid-transfer (ERROR naming it, nothing partial), back ONLINE, the run completed;
    /// the control plane restarted mid-transfer (SUCCESS); and each refusal.
    @Test func anAgentOnItsOwnHostRunsTheTaskThroughEveryFault() throws {
        let root = try TestTree(label: "agents").root
        let world = try AgentWorld(root: root, siteCount: 2)
        defer { world.tearDown() }
        let site = world.sites[0]
        let smb = try SMBTestServer.start(in: site.namespace)
        let s3 = try NamespaceS3(site.namespace)
        _ = try s3.s3api(["create-bucket", "--bucket", "dest"])

        // The source on the share: small files, and large ones a slowed run takes seconds over.
        let source = smb.path("share1") + "/src"
        mkdir(source, 0o755)
        let tree = TestTree(existing: source)
        try SampleTrees.smallFiles(tree, files: 40, directories: 3)
        for i in 0..<4 { try tree.file("large/part\(i).bin", TestTree.bytes(3 << 20, seed: UInt64(i))) }
        _ = try NetworkNamespace.run(["/bin/chown", "-R", "\(smb.user):", source])

        // Activation: a key that expired, then a fresh one, used once.
        try world.startAgent(site)
        let stale = try #require(world.activationKey(site))
        sleep(8)
        try world.refused(["create-agent", "--activation-key", stale, "--agent-name", "late"], saying: "has expired")
        let fresh = try #require(world.activationKey(site))
        // DataSync's local console option: the same key, without the port.
        #expect(try CLI.run(["agent", "activation-key", "--data-dir", site.dataDirectory]).stdout == fresh + "\n")
        let agent = try world.ok(["create-agent", "--activation-key", fresh, "--agent-name", "site-a"])["AgentArn"] as? String ?? ""
        try world.refused(["create-agent", "--activation-key", fresh, "--agent-name", "twice"], saying: "already been used")
        #expect(world.waitForAgent(agent, "ONLINE"))
        let described = try world.ok(["describe-agent", "--agent-arn", agent])
        #expect(described["Name"] as? String == "site-a" && (described["Platform"] as? [String: Any])?["Version"] as? String == "ferry-0.1.0"
                && described["LastConnectionTime"] != nil, "\(described)")
        for file in ["agent-key.pem", "agent.pem", "agent.json"] {
            var st = stat()
            #expect(stat(site.dataDirectory + "/" + file, &st) == 0 && st.st_mode & 0o777 == 0o600, "\(file)")
        }
        #expect(!FileManager.default.fileExists(atPath: site.dataDirectory + "/activation-key"))
        // Activated: the activation port is closed.
        #expect(Fixture.waitUntil(seconds: 10) { !site.namespace.accepts("127.0.0.1", 80) })
        _ = try world.ok(["update-agent", "--agent-arn", agent, "--name", "site-a-renamed"])
        #expect(try world.ok(["describe-agent", "--agent-arn", agent])["Name"] as? String == "site-a-renamed")

        // Locations on the agent: the share and a bucket on the site's own loopback.
        let share = try world.ok(["create-location-smb", "--server-hostname", "127.0.0.1", "--subdirectory", "/share1/src",
                                  "--user", smb.user, "--password", smb.password, "--agent-arns", agent])["LocationArn"] as? String ?? ""
        let bucket = try world.ok(["create-location-object-storage", "--server-hostname", "127.0.0.1", "--server-port", "\(s3.port)",
                                   "--server-protocol", "HTTP", "--bucket-name", "dest", "--subdirectory", "/copy",
                                   "--access-key", "site", "--secret-key", "site-secret", "--agent-arns", agent])["LocationArn"] as? String ?? ""
        let task = try world.ok(["create-task", "--source-location-arn", share, "--destination-location-arn", bucket,
                                 "--options", "LogLevel=BASIC,VerifyMode=ONLY_FILES_TRANSFERRED"])["TaskArn"] as? String ?? ""

        func exact(_ s3: NamespaceS3 = s3, under prefix: String = "copy/") throws {
            let arrived = try s3.objects(under: prefix, scratch: root)
            let sent = try TreeSnapshot(source).entries.filter { $0.value.kind == .file }
            let names = sent.keys.map { String(decoding: $0.bytes, as: UTF8.self) }
            #expect(Set(arrived.keys) == Set(names), "\(arrived.keys.sorted()) vs \(names.sorted())")
            for (path, entry) in sent {
                let name = String(decoding: path.bytes, as: UTF8.self)
                let object = arrived[name]
                let bytes = try Data(contentsOf: URL(fileURLWithPath: source + "/" + name))
                #expect(object?.bytes == bytes, "\(name): bytes differ")
                let mtime = entry.mtime.totalNanoseconds
                #expect(object?.mtime.map { abs($0 - mtime) < 1000 } == true, "\(name): mtime \(String(describing: object?.mtime)) vs \(mtime)")
            }
        }
        /// Every object that arrived holds its source's bytes whole (nothing partial under a final name).
        func nothingPartial() throws {
            for (path, object) in try s3.objects(under: "copy/", scratch: root) {
                #expect(object.bytes == (try Data(contentsOf: URL(fileURLWithPath: source + "/" + path))), "\(path) is partial")
            }
        }

        let report = #"{"Destination":{"S3":{"Subdirectory":"ferry","S3BucketArn":"arn:aws:s3:::reports","BucketAccessRoleArn":"arn:aws:iam::000000000000:role/r"}},"OutputType":"STANDARD","ReportLevel":"SUCCESSES_AND_ERRORS"}"#
        let first = try world.ok(["start-task-execution", "--task-arn", task, "--task-report-config", report])["TaskExecutionArn"] as? String ?? ""
        let ran = world.waitForEnd(first)
        #expect(ran["Status"] as? String == "SUCCESS" && (ran["ReportResult"] as? [String: Any])?["Status"] as? String == "SUCCESS", "\(ran)")
        try exact()
        // The task report the agent wrote reached the control plane's bucket.
        let reports = try world.s3.objects(under: "ferry/", in: "reports", scratch: root)
        let detailed = reports.first { $0.key.hasPrefix("Detailed-Reports/") && $0.key.hasSuffix(".detailed.json") }
        #expect(reports.keys.contains { $0.hasPrefix("Summary-Reports/") }, "\(reports.keys)")
        #expect(detailed.map { String(decoding: $0.value.bytes, as: UTF8.self).contains("part2.bin") } == true, "\(reports.keys)")
        let log = try CLI.run(["server", "logs", "--data-dir", world.dataDirectory, first]).stdout
        #expect(log.contains("started on agent \(agent)") && log.contains("ended SUCCESS"), "\(log)")
        #expect(try world.ok(["describe-task", "--task-arn", task])["CurrentTaskExecutionArn"] as? String == first)

        // The agent killed while it transfers: ERROR naming it, within the offline window.
        _ = try s3.s3api(["delete-objects", "--bucket", "dest", "--delete",
                          "{\"Objects\":[{\"Key\":\"copy/large/part1.bin\"},{\"Key\":\"copy/large/part2.bin\"},{\"Key\":\"copy/large/part3.bin\"}]}"])
        let killed = try world.startMoving(task, ["--override-options", "BytesPerSecond=1048576"])
        world.killAgent(site)
        let lost = world.waitForEnd(killed, seconds: 30)
        let lostResult = lost["Result"] as? [String: Any] ?? [:]
        #expect(lost["Status"] as? String == "ERROR" && lostResult["ErrorCode"] as? String == "AgentOffline"
                && (lostResult["ErrorDetail"] as? String ?? "").contains(agent), "\(lost)")
        #expect(world.waitForAgent(agent, "OFFLINE"))
        #expect(try world.ok(["describe-task", "--task-arn", task])["Status"] as? String == "UNAVAILABLE")
        try world.refused(["start-task-execution", "--task-arn", task], saying: "OFFLINE")
        try nothingPartial()

        // Back: ONLINE, and the next run completes the tree.
        try world.startAgent(site)
        #expect(world.waitForAgent(agent, "ONLINE"))
        let again = try world.ok(["start-task-execution", "--task-arn", task])["TaskExecutionArn"] as? String ?? ""
        #expect(world.waitForEnd(again)["Status"] as? String == "SUCCESS")
        try exact()

        // Cancel reaches the agent; nothing partial is left.
        _ = try s3.s3api(["delete-objects", "--bucket", "dest", "--delete",
                          "{\"Objects\":[{\"Key\":\"copy/large/part0.bin\"},{\"Key\":\"copy/large/part1.bin\"}]}"])
        let cancelled = try world.startMoving(task, ["--override-options", "BytesPerSecond=1048576"])
        _ = try world.ok(["cancel-task-execution", "--task-execution-arn", cancelled])
        let stoppedRun = world.waitForEnd(cancelled, seconds: 30)
        #expect(stoppedRun["Status"] as? String == "ERROR" && (stoppedRun["Result"] as? [String: Any])?["ErrorCode"] as? String == "Cancelled",
                "\(stoppedRun)")
        try nothingPartial()

        // The control plane restarted while the agent transfers: the run still succeeds.
        _ = try s3.s3api(["delete-objects", "--bucket", "dest", "--delete",
                          "{\"Objects\":[{\"Key\":\"copy/large/part0.bin\"},{\"Key\":\"copy/large/part3.bin\"}]}"])
        // BytesPerSecond goes through too: slowed to a crawl (hours for what is left), then
        // lifted after the restart.
        let across = try world.startMoving(task, ["--override-options", "BytesPerSecond=1048576"])
        _ = try world.ok(["update-task-execution", "--task-execution-arn", across, "--options", "BytesPerSecond=100"])
        world.killServer()
        try world.startServer()
        _ = try world.ok(["update-task-execution", "--task-execution-arn", across, "--options", "BytesPerSecond=-1"])
        let survived = world.waitForEnd(across)
        #expect(survived["Status"] as? String == "SUCCESS", "\(survived)")
        try exact()

        // Agent to agent: a bucket only the second site reaches, served by its agent to the
        // first site's agent, which reads the share and runs the engine.
        let other = try world.activate(world.sites[1], name: "site-b")
        let farS3 = try NamespaceS3(world.sites[1].namespace)
        _ = try farS3.s3api(["create-bucket", "--bucket", "dest"])
        let far = try world.ok(["create-location-object-storage", "--server-hostname", "127.0.0.1", "--server-port", "\(farS3.port)",
                                "--server-protocol", "HTTP", "--bucket-name", "dest", "--subdirectory", "/far",
                                "--access-key", "site", "--secret-key", "site-secret", "--agent-arns", other])["LocationArn"] as? String ?? ""
        let twoSites = try world.ok(["create-task", "--source-location-arn", share, "--destination-location-arn", far,
                                     "--options", "LogLevel=BASIC"])["TaskArn"] as? String ?? ""
        let crossed = world.waitForEnd(try world.ok(["start-task-execution", "--task-arn", twoSites])["TaskExecutionArn"] as? String ?? "")
        #expect(crossed["Status"] as? String == "SUCCESS", "\(crossed)")
        try exact(farS3, under: "far/")
        // The serving agent killed mid-run: the execution ends in ERROR naming it, and what
        // arrived at the far bucket is whole.
        _ = try farS3.s3api(["delete-objects", "--bucket", "dest", "--delete",
                             "{\"Objects\":[{\"Key\":\"far/large/part0.bin\"},{\"Key\":\"far/large/part1.bin\"},{\"Key\":\"far/large/part2.bin\"}]}"])
        let cut = try world.startMoving(twoSites, ["--override-options", "BytesPerSecond=1048576"])
        world.killAgent(world.sites[1])
        let servingLost = world.waitForEnd(cut, seconds: 30)
        let servingResult = servingLost["Result"] as? [String: Any] ?? [:]
        #expect(servingLost["Status"] as? String == "ERROR" && servingResult["ErrorCode"] as? String == "AgentOffline"
                && (servingResult["ErrorDetail"] as? String ?? "").contains(other)
                && (servingResult["ErrorDetail"] as? String ?? "").contains("serving its destination"), "\(servingLost)")
        for (path, object) in try farS3.objects(under: "far/", scratch: root) {
            #expect(object.bytes == (try Data(contentsOf: URL(fileURLWithPath: source + "/" + path))), "\(path) is partial")
        }
        // The serving agent restarted mid-run, back within the offline window: the control
        // plane has its new process serve the destination again under the same name, the
        // first agent's connection comes back to it, and the run ends SUCCESS, exact.
        try world.startAgent(world.sites[1])
        #expect(world.waitForAgent(other, "ONLINE"))
        _ = try farS3.s3api(["delete-objects", "--bucket", "dest", "--delete",
                             "{\"Objects\":[{\"Key\":\"far/large/part0.bin\"},{\"Key\":\"far/large/part1.bin\"},{\"Key\":\"far/large/part2.bin\"}]}"])
        let restartedRun = try world.startMoving(twoSites, ["--override-options", "BytesPerSecond=1048576"])
        world.killAgent(world.sites[1])
        try world.startAgent(world.sites[1])
        let resumed = world.waitForEnd(restartedRun, seconds: 120)
        #expect(resumed["Status"] as? String == "SUCCESS", "\(resumed)")
        try exact(farS3, under: "far/")
        let restartLog = try CLI.run(["server", "logs", "--data-dir", world.dataDirectory, restartedRun]).stdout
        #expect(restartLog.contains("ended SUCCESS"), "\(restartLog)")
        _ = try world.ok(["delete-task", "--task-arn", twoSites])
        _ = try world.ok(["delete-location", "--location-arn", far])

        // A local path at the far site (an NFS location on localhost, under the agent's
        // --local-root): the files land in that directory, and a file changed in part sends
        // only its changed blocks across.
        let localRoot = root + "/site1-local"
        mkdir(localRoot, 0o755)
        world.killAgent(world.sites[1])
        world.sites[1].agentArguments = ["--local-root", localRoot]
        try world.startAgent(world.sites[1])
        #expect(world.waitForAgent(other, "ONLINE"))
        let local = try world.ok(["create-location-nfs", "--server-hostname", "localhost", "--subdirectory", localRoot + "/copy",
                                  "--on-prem-config", "AgentArns=\(other)"])["LocationArn"] as? String ?? ""
        let toLocal = try world.ok(["create-task", "--source-location-arn", share, "--destination-location-arn", local,
                                    "--options", "LogLevel=BASIC"])["TaskArn"] as? String ?? ""
        let landed = world.waitForEnd(try world.ok(["start-task-execution", "--task-arn", toLocal])["TaskExecutionArn"] as? String ?? "")
        #expect(landed["Status"] as? String == "SUCCESS", "\(landed)")
        func localExact() throws {
            for (path, entry) in try TreeSnapshot(source).entries where entry.kind == .file {
                let name = String(decoding: path.bytes, as: UTF8.self)
                #expect(FileManager.default.contents(atPath: localRoot + "/copy/" + name) == FileManager.default.contents(atPath: source + "/" + name),
                        "\(name) differs in the local copy")
            }
        }
        try localExact()
        let patch = try #require(FileHandle(forWritingAtPath: source + "/large/part2.bin"))
        try patch.seek(toOffset: 1_000_000)
        try patch.write(contentsOf: TestTree.bytes(100_000, seed: 99))
        try patch.close()
        let delta = world.waitForEnd(try world.ok(["start-task-execution", "--task-arn", toLocal])["TaskExecutionArn"] as? String ?? "")
        let onLink = delta["BytesCompressed"] as? Int ?? -1, moved = delta["BytesTransferred"] as? Int ?? -1
        #expect(delta["Status"] as? String == "SUCCESS" && moved == 3 << 20 && onLink >= 100_000 && onLink < 400_000, "\(delta)")
        try localExact()
        // The serving agent killed and restarted in the middle of a large file: the next
        // writer reads what the killed one's temporary held and keeps its matching blocks,
        // so the link carries about the rest of the file, not all of it again.
        let resumeSize = 16 << 20
        try tree.file("large/resume.bin", TestTree.bytes(resumeSize, seed: 77))
        _ = try NetworkNamespace.run(["/bin/chown", "\(smb.user):", source + "/large/resume.bin"])
        let resuming = try world.ok(["start-task-execution", "--task-arn", toLocal, "--override-options", "BytesPerSecond=2097152"])["TaskExecutionArn"] as? String ?? ""
        #expect(Fixture.waitUntil(seconds: 60) {
            ((try? world.ok(["describe-task-execution", "--task-execution-arn", resuming]))?["BytesCompressed"] as? Int ?? 0) >= 5 << 20
        }, "the large file never got going")
        world.killAgent(world.sites[1])
        try world.startAgent(world.sites[1])
        let afterRestart = world.waitForEnd(resuming, seconds: 120)
        let carried = afterRestart["BytesCompressed"] as? Int ?? -1
        #expect(afterRestart["Status"] as? String == "SUCCESS" && carried >= resumeSize && carried < resumeSize + resumeSize / 8, "\(afterRestart)")
        try localExact()
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: localRoot + "/copy/large").filter { $0.hasPrefix(".ferry-tmp-") }
        #expect(leftovers == [], "temporaries left: \(leftovers)")
        // A path outside the agent's local roots is refused, naming the option.
        let outside = try world.ok(["create-location-nfs", "--server-hostname", "localhost", "--subdirectory", root + "/elsewhere",
                                    "--on-prem-config", "AgentArns=\(other)"])["LocationArn"] as? String ?? ""
        let escape = try world.ok(["create-task", "--source-location-arn", share, "--destination-location-arn", outside])["TaskArn"] as? String ?? ""
        let refusedRun = world.waitForEnd(try world.ok(["start-task-execution", "--task-arn", escape])["TaskExecutionArn"] as? String ?? "")
        #expect(refusedRun["Status"] as? String == "ERROR"
                && ((refusedRun["Result"] as? [String: Any])?["ErrorDetail"] as? String ?? "").contains("--local-root"), "\(refusedRun)")
        #expect(!FileManager.default.fileExists(atPath: root + "/elsewhere"))
        for t in [toLocal, escape] { _ = try world.ok(["delete-task", "--task-arn", t]) }
        for l in [local, outside] { _ = try world.ok(["delete-location", "--location-arn", l]) }

        // Credentials stay apart: an agent's certificate cannot call the API; the channel
        // wants a certificate, and an admin signature does not stand in for one.
        let ca = world.dataDirectory + "/tls/ca.pem", base = "https://\(world.cpFromHost):\(world.port)"
        let certificate = ["--cert", site.dataDirectory + "/agent.pem", "--key", site.dataDirectory + "/agent-key.pem"]
        let api = try CLI.run(["-s", "--cacert", ca] + certificate + ["-X", "POST", "-H", "X-Amz-Target: FmrsService.ListAgents", base + "/"],
                              wrapper: world.curl, direct: true)
        #expect(api.stdout.contains("AccessDeniedException") && api.stdout.contains("cannot call the DataSync API"), "\(api.stdout)")
        let bare = try CLI.run(["-s", "--cacert", ca, "-X", "POST", "-d", "{}", base + "/agent/v1/heartbeat"], wrapper: world.curl, direct: true)
        #expect(bare.stdout.contains("needs the agent's client certificate"), "\(bare.stdout)")
        let signed = try CLI.run(["-s", "--cacert", ca, "-X", "POST", "-d", "{}", "--aws-sigv4", "aws:amz:eu-west-3:datasync",
                                  "--user", "\(world.environment["AWS_ACCESS_KEY_ID"] ?? ""):\(world.environment["AWS_SECRET_ACCESS_KEY"] ?? "")",
                                  base + "/agent/v1/lease"], wrapper: world.curl, direct: true)
        #expect(signed.stdout.contains("needs the agent's client certificate"), "\(signed.stdout)")
        // The share's password is on neither side's disk nor in either process's output.
        #expect(try ServerFileServerTests.filesContaining(smb.password, under: site.dataDirectory) == [])
        for output in [site.output, world.dataDirectory + ".out"] {
            #expect(!((try? String(contentsOfFile: output, encoding: .utf8)) ?? "").contains(smb.password), "\(output)")
        }

        // DeleteAgent: refused while a location uses it; afterwards its certificate is refused
        // and the agent stops, saying why.
        try world.refused(["delete-agent", "--agent-arn", agent], saying: "in-use by these location(s)")
        _ = try world.ok(["delete-task", "--task-arn", task])
        for location in [share, bucket] { _ = try world.ok(["delete-location", "--location-arn", location]) }
        _ = try world.ok(["delete-agent", "--agent-arn", agent])
        let stopped = Fixture.waitUntil(seconds: 15) { !(site.agent?.isRunning ?? false) }
        #expect(stopped)
        #expect(site.agent?.terminationStatus != 0)
        let said = (try? String(contentsOfFile: site.output, encoding: .utf8)) ?? ""
        #expect(said.contains("was deleted"), "\(said)")
        let revoked = try CLI.run(["-s", "--cacert", ca] + certificate + ["-X", "POST", "-d", "{}", base + "/agent/v1/heartbeat"],
                                  wrapper: world.curl, direct: true)
        #expect(revoked.stdout.contains("AgentDeleted"), "\(revoked.stdout)")
    }
}
