import FerryTesting
import Foundation
import Glibc
import Testing

/// `ferry server` driven by the real `aws datasync` CLI over SigV4, end to end.
final class FerryServerProcess {
    let process = Process()
    let port: Int
    let dataDirectory: String
    let environment: [String: String]
    /// "https" for a server started with --tls.
    let scheme: String

    /// `environment`: extra variables for the server process (e.g. the S3 credentials it uses
    /// for create-location-s3 buckets and report uploads).
    init(dataDirectory: String, arguments: [String] = [], environment serverEnvironment: [String: String] = [:]) throws {
        self.dataDirectory = dataDirectory
        scheme = arguments.contains("--tls") ? "https" : "http"
        port = try S3TestServer.freePort()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        process.arguments = ["--pdeathsig", "KILL", "--", CLI.executable, "server", "--data-dir", dataDirectory, "--port", "\(port)"] + arguments
        if !serverEnvironment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(serverEnvironment) { $1 }
        }
        process.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        process.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try ProcessLauncher.run(process)
        try S3TestServer.waitForPort(port, process: process, what: "ferry server")
        let creds = try CLI.run(["server", "credentials", "--data-dir", dataDirectory])
        var env = ProcessInfo.processInfo.environment
        for line in creds.stdout.split(separator: "\n") {
            let kv = line.split(separator: "=", maxSplits: 1)
            if kv.count == 2 { env[String(kv[0])] = String(kv[1]) }
        }
        env["AWS_DEFAULT_REGION"] = "eu-west-3"  // any region signs
        env["AWS_CA_BUNDLE"] = nil
        env["AWS_PAGER"] = ""
        environment = env
    }

    func kill() {
        Glibc.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// `aws datasync ARGS --endpoint-url …`; JSON output parsed when the call succeeds.
    func aws(_ args: [String], environment: [String: String]? = nil) throws -> (status: Int32, json: [String: Any], stderr: String) {
        let r = try CLI.run(["datasync"] + args + ["--endpoint-url", "\(scheme)://127.0.0.1:\(port)", "--output", "json"],
                            wrapper: ["aws"], direct: true, environment: environment ?? self.environment)
        let json = (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8))) as? [String: Any] ?? [:]
        return (r.status, json, r.stderr)
    }

    /// The built-in agent and two NFS locations: the fixture's source and destination, as
    /// the test NFS server (which exports /tmp) serves them; the server's NFS client finds
    /// it through rpcbind, as it would find any NFS server.
    func nfsLocations(_ f: Fixture) throws -> (agent: String, source: String, destination: String) {
        _ = try NFSTestServer.shared.get()
        let agent = (try ok(["list-agents"])["Agents"] as? [[String: Any]])?.first?["AgentArn"] as? String ?? ""
        func location(_ path: String) throws -> String {
            try ok(["create-location-nfs", "--server-hostname", "127.0.0.1", "--subdirectory", path,
                    "--on-prem-config", "AgentArns=\(agent)"])["LocationArn"] as? String ?? ""
        }
        return (agent, try location(f.source.root), try location(f.destinationRoot))
    }

    /// `curl ARGS` against this server's URL `path`; with `signed`, SigV4 with the admin key.
    func curl(_ path: String, signed: Bool = true, _ args: [String] = []) throws -> CLI.Run {
        var argv = ["-s", "-w", "\\n%{http_code}"] + args
        if signed {
            argv += ["--aws-sigv4", "aws:amz:eu-west-3:datasync",
                     "--user", "\(environment["AWS_ACCESS_KEY_ID"] ?? ""):\(environment["AWS_SECRET_ACCESS_KEY"] ?? "")"]
        }
        return try CLI.run(argv + ["\(scheme)://127.0.0.1:\(port)\(path)"], wrapper: ["curl"], direct: true)
    }

    /// Polls an execution until it ends; its last description.
    func waitForEnd(_ execution: String, seconds: Double = 60) -> [String: Any] {
        var last: [String: Any] = [:]
        _ = Fixture.waitUntil(seconds: seconds) {
            last = (try? ok(["describe-task-execution", "--task-execution-arn", execution])) ?? [:]
            return ["SUCCESS", "ERROR"].contains(last["Status"] as? String ?? "")
        }
        return last
    }

    /// Four 2 MiB source files and a task between NFS locations slowed to `bytesPerSecond`.
    func slowTask(_ f: Fixture, bytesPerSecond: Int) throws -> (agent: String, task: String) {
        for i in 0..<4 { try f.source.file("big\(i).bin", TestTree.bytes(2 << 20, seed: UInt64(i))) }
        let (agent, src, dst) = try nfsLocations(f)
        let task = try ok(["create-task", "--source-location-arn", src, "--destination-location-arn", dst,
                           "--options", "BytesPerSecond=\(bytesPerSecond),VerifyMode=ONLY_FILES_TRANSFERRED"])["TaskArn"] as? String ?? ""
        return (agent, task)
    }

    /// Starts an execution of `task` and waits until its bytes move.
    func startMoving(_ task: String) throws -> String {
        let execution = try ok(["start-task-execution", "--task-arn", task])["TaskExecutionArn"] as? String ?? ""
        #expect(Fixture.waitUntil(seconds: 30) {
            ((try? ok(["describe-task-execution", "--task-execution-arn", execution]))?["BytesTransferred"] as? Int ?? 0) > 0
        })
        return execution
    }

    func ok(_ args: [String]) throws -> [String: Any] {
        let r = try aws(args)
        #expect(r.status == 0, "aws datasync \(args.joined(separator: " ")): \(r.stderr)")
        return r.json
    }
}

@Suite struct ServerTests {
    @Test func nfsToNfsLifecycleThroughTheAWSCLI() async throws {
        let f = try Fixture("server-nfs")
        defer { f.cleanUp() }
        try SampleTrees.rich(f.source, devices: false)
        // nfs-ganesha's VFS sets no symlink times: symlinks over NFS are NFSEndToEndTests' subject.
        _ = try CLI.run(["-rf", f.source.root + "/links"], wrapper: ["rm"], direct: true)
        let data = f.destinationRoot + "-state"
        var server = try FerryServerProcess(dataDirectory: data)
        defer { server.kill() }
        let agents = try server.ok(["list-agents"])["Agents"] as? [[String: Any]] ?? []
        #expect(agents.count == 1 && agents.first?["Status"] as? String == "ONLINE")
        let agent = agents.first?["AgentArn"] as? String ?? ""

        _ = try NFSTestServer.shared.get()  // exports /tmp, where the fixture lies
        let src = try server.ok(["create-location-nfs", "--server-hostname", "127.0.0.1", "--subdirectory", f.source.root,
                                 "--on-prem-config", "AgentArns=\(agent)", "--tags", "Key=side,Value=source"])["LocationArn"] as? String ?? ""
        let dst = try server.ok(["create-location-nfs", "--server-hostname", "127.0.0.1", "--subdirectory", f.destinationRoot,
                                 "--on-prem-config", "AgentArns=\(agent)", "--mount-options", "Version=NFS3"])["LocationArn"] as? String ?? ""
        #expect(src.range(of: #"^arn:aws:datasync:us-east-1:\d{12}:location/loc-[0-9a-f]{17}$"#, options: .regularExpression) != nil, "\(src)")
        let described = try server.ok(["describe-location-nfs", "--location-arn", dst])
        #expect(described["LocationUri"] as? String == "nfs://127.0.0.1\(f.destinationRoot)/")
        #expect((described["MountOptions"] as? [String: Any])?["Version"] as? String == "NFS3")
        // A version Ferry does not speak is refused by name, never served as another.
        let v41 = try server.aws(["create-location-nfs", "--server-hostname", "127.0.0.1", "--subdirectory", "/x",
                                  "--on-prem-config", "AgentArns=\(agent)", "--mount-options", "Version=NFS4_1"])
        #expect(v41.status != 0 && v41.stderr.contains("InvalidRequestException") && v41.stderr.contains("does not speak NFSv4.1"), "\(v41.stderr)")

        // Three locations listed one per page: the CLI follows NextToken to the end.
        _ = try server.ok(["create-location-nfs", "--server-hostname", "127.0.0.1", "--subdirectory", "/spare", "--on-prem-config", "AgentArns=\(agent)"])
        let listed = try server.ok(["list-locations", "--page-size", "1"])["Locations"] as? [[String: Any]] ?? []
        #expect(listed.count == 3, "\(listed)")

        let task = try server.ok(["create-task", "--source-location-arn", src, "--destination-location-arn", dst, "--name", "nightly",
                                  "--options", "VerifyMode=ONLY_FILES_TRANSFERRED,LogLevel=TRANSFER,PreserveDevices=PRESERVE"])["TaskArn"] as? String ?? ""
        let options = try server.ok(["describe-task", "--task-arn", task])["Options"] as? [String: Any] ?? [:]
        #expect(options["VerifyMode"] as? String == "ONLY_FILES_TRANSFERRED" && options["TaskQueueing"] as? String == "ENABLED"
                && options["BytesPerSecond"] as? Int == -1 && options["Atime"] as? String == "BEST_EFFORT", "\(options)")

        let execution = try server.ok(["start-task-execution", "--task-arn", task])["TaskExecutionArn"] as? String ?? ""
        var seen: [String] = []
        var last: [String: Any] = [:]
        #expect(Fixture.waitUntil(seconds: 60) {
            last = (try? server.ok(["describe-task-execution", "--task-execution-arn", execution])) ?? [:]
            if let s = last["Status"] as? String, seen.last != s { seen.append(s) }
            return ["SUCCESS", "ERROR"].contains(last["Status"] as? String ?? "")
        })
        #expect(last["Status"] as? String == "SUCCESS", "\(last)")
        #expect((last["FilesTransferred"] as? Int ?? 0) > 10 && (last["FilesVerified"] as? Int ?? 0) > 10, "\(last)")
        #expect((last["Result"] as? [String: Any])?["TransferStatus"] as? String == "SUCCESS", "\(seen)")
        let arrived = try f.differencesBeyondNFS()
        #expect(arrived == [], "\(arrived)")

        let logs = try CLI.run(["server", "logs", "--data-dir", data, execution])
        #expect(logs.stdout.contains("[NOTICE] Transferred file /dir/owned"), "\(logs.stdout)")
        let tags = try server.ok(["list-tags-for-resource", "--resource-arn", src])["Tags"] as? [[String: Any]] ?? []
        #expect(tags.first?["Key"] as? String == "side" && tags.first?["Value"] as? String == "source")

        // State survives a restart: the same agent, task and execution.
        server.kill()
        server = try FerryServerProcess(dataDirectory: data)
        #expect((try server.ok(["list-agents"])["Agents"] as? [[String: Any]])?.first?["AgentArn"] as? String == agent)
        #expect(try server.ok(["describe-task-execution", "--task-execution-arn", execution])["Status"] as? String == "SUCCESS")
        let executions = try server.ok(["list-task-executions", "--task-arn", task])["TaskExecutions"] as? [[String: Any]] ?? []
        #expect(executions.count == 1)
    }

    @Test func badRequestsGetDataSyncErrorsAndChangeNothing() async throws {
        let f = try Fixture("server-bad")
        defer { f.cleanUp() }
        let server = try FerryServerProcess(dataDirectory: f.destinationRoot + "-state")
        defer { server.kill() }
        let (agent, src, dst) = try server.nfsLocations(f)

        func refused(_ args: [String], _ type: String, _ text: String, environment: [String: String]? = nil) throws {
            let r = try server.aws(args, environment: environment)
            #expect(r.status != 0 && r.stderr.contains(type) && r.stderr.contains(text), "\(args): \(r.stderr)")
        }
        try refused(["create-task", "--source-location-arn", src, "--destination-location-arn", dst, "--options", "VerifyMode=SOMETIMES"],
                    "InvalidRequestException", "Member must satisfy enum value set")
        try refused(["create-task", "--source-location-arn", src, "--destination-location-arn", dst, "--options", "Atime=NONE"],
                    "InvalidRequestException", "Mtime PRESERVE requires Atime BEST_EFFORT")
        try refused(["create-task", "--source-location-arn", src, "--destination-location-arn", dst,
                     "--options", "PreserveDeletedFiles=REMOVE,TransferMode=ALL"], "InvalidRequestException", "REMOVE")
        try refused(["describe-task", "--task-arn", "arn:aws:datasync:us-east-1:000000000000:task/task-12"],
                    "InvalidRequestException", "regular expression pattern")
        try refused(["describe-task", "--task-arn", "arn:aws:datasync:us-east-1:000000000000:task/task-0123456789abcdef0"],
                    "InvalidRequestException", "is not found")
        try refused(["create-location-hdfs", "--name-nodes", "Hostname=h,Port=8020", "--authentication-type", "SIMPLE",
                     "--simple-user", "u", "--agent-arns", agent], "InvalidRequestException", "not supported")
        var wrong = server.environment
        wrong["AWS_SECRET_ACCESS_KEY"] = "not-the-secret"
        try refused(["list-tasks"], "InvalidSignatureException", "signature", environment: wrong)
        var unknown = server.environment
        unknown["AWS_ACCESS_KEY_ID"] = "AKIDUNKNOWN"
        try refused(["list-tasks"], "UnrecognizedClientException", "security token", environment: unknown)
        // What the CLI cannot send: an unknown operation, malformed JSON, a missing member.
        let script = Bundle.module.resourceURL!.appendingPathComponent("Fixtures/datasync_raw.py").path
        func raw(_ target: String, _ body: String) throws -> (status: String, body: String) {
            let r = try CLI.run([script, "http://127.0.0.1:\(server.port)", target, body], wrapper: ["python3"], direct: true,
                                environment: server.environment)
            let lines = r.stdout.split(separator: "\n", maxSplits: 1).map(String.init)
            return (lines.first ?? "", lines.count > 1 ? lines[1] : r.stderr)
        }
        let unknownOp = try raw("FmrsService.MakeCoffee", "{}")
        #expect(unknownOp.status == "400" && unknownOp.body.contains("UnknownOperationException"), "\(unknownOp)")
        let malformed = try raw("FmrsService.CreateTask", "{\"SourceLocationArn\": ")
        #expect(malformed.status == "400" && malformed.body.contains("SerializationException"), "\(malformed)")
        let missing = try raw("FmrsService.CreateTask", "{\"SourceLocationArn\": \"\(src)\"}")
        #expect(missing.status == "400" && missing.body.contains("InvalidRequestException")
                && missing.body.contains("destinationLocationArn") && missing.body.contains("must not be null"), "\(missing)")
        let ok = try raw("FmrsService.ListTasks", "{}")
        #expect(ok.status == "200" && ok.body.contains("Tasks"), "\(ok)")
        // Nothing above created anything.
        #expect((try server.ok(["list-tasks"])["Tasks"] as? [Any])?.isEmpty == true)
        #expect((try server.ok(["list-locations"])["Locations"] as? [Any])?.count == 2)
    }

    /// Two starts of one task: the second waits QUEUED; cancelling the first (slowed by
    /// BytesPerSecond) goes CANCELLING → ERROR with nothing partial under a final name; the
    /// second then runs, sped up by UpdateTaskExecution, to SUCCESS.
    @Test func queueingCancelAndBandwidthUpdate() async throws {
        let f = try Fixture("server-queue")
        defer { f.cleanUp() }
        let server = try FerryServerProcess(dataDirectory: f.destinationRoot + "-state")
        defer { server.kill() }
        let (agent, task) = try server.slowTask(f, bytesPerSecond: 262144)
        let first = try server.ok(["start-task-execution", "--task-arn", task])["TaskExecutionArn"] as? String ?? ""
        let second = try server.ok(["start-task-execution", "--task-arn", task])["TaskExecutionArn"] as? String ?? ""
        func status(_ e: String) -> String { ((try? server.ok(["describe-task-execution", "--task-execution-arn", e]))?["Status"] as? String) ?? "" }
        #expect(Fixture.waitUntil(seconds: 30) { status(first) == "TRANSFERRING" })
        #expect(status(second) == "QUEUED")
        _ = try server.ok(["cancel-task-execution", "--task-execution-arn", first])
        #expect(Fixture.waitUntil(seconds: 30) { status(first) == "ERROR" })
        let cancelled = try server.ok(["describe-task-execution", "--task-execution-arn", first])
        #expect((cancelled["Result"] as? [String: Any])?["ErrorDetail"] as? String == "the execution was cancelled", "\(cancelled)")
        // Whatever arrived under a final name is whole. (The second execution starts at once
        // and has temporaries of its own; ServerRunTests checks a lone cancel leaves none.)
        #expect(f.partialUnderFinalNames() == [])
        #expect(Fixture.waitUntil(seconds: 30) { status(second) == "TRANSFERRING" })
        _ = try server.ok(["update-task-execution", "--task-execution-arn", second, "--options", "BytesPerSecond=-1"])
        #expect(Fixture.waitUntil(seconds: 30) { status(second) == "SUCCESS" }, "an unlimited rate finishes 8 MiB at once")
        let arrived = try f.differencesBeyondNFS()
        #expect(arrived == [], "\(arrived)")
        #expect(try f.temporaries() == [])
        // The metric carries the execution's own count: what it wrote is what Describe says.
        let written = try server.ok(["describe-task-execution", "--task-execution-arn", second])["BytesWritten"] as? Int ?? -1
        #expect(written > 0)
        let metrics = try CLI.run(["-s", "http://127.0.0.1:\(server.port)/metrics"], wrapper: ["curl"], direct: true)
        let line = "datasync_BytesWritten{task=\"\(task)\",execution=\"\(second)\",agent=\"\(agent)\"} \(written)"
        #expect(metrics.stdout.contains(line) && metrics.stdout.contains("ferry_up 1"), "\(line)\n\(metrics.stdout)")
    }
}
