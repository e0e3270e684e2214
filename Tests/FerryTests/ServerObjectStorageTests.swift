import FerryTesting
import Foundation
import Testing

/// `ferry server` driven by boto3: NFS → object storage (moto), a STANDARD task report in
/// the bucket and the data directory, the log over HTTP, metrics after the run.
@Suite struct ServerObjectStorageTests {
    @Test func nfsToObjectStorageThroughBoto3WithReportLogAndMetrics() async throws {
        let f = try Fixture("server-object")
        defer { f.cleanUp() }
        try SampleTrees.rich(f.source, devices: false)
        // Names no S3 key can hold (not UTF-8) or moto cannot (a newline) are S3Tests' subject.
        _ = try CLI.run(["-rf", f.source.root + "/names"], wrapper: ["rm"], direct: true)
        _ = try NFSTestServer.shared.get()  // the NFS location's server (it exports /tmp)
        let (moto, bucket) = try await S3Tests.freshBucket()
        let data = f.destinationRoot + "-state"
        // The report bucket is reached with the server's own S3 credentials (DataSync assumes BucketAccessRoleArn).
        let server = try FerryServerProcess(dataDirectory: data, arguments: ["--s3-endpoint-url", moto.endpoint],
                                            environment: ["AWS_ACCESS_KEY_ID": moto.accessKey, "AWS_SECRET_ACCESS_KEY": moto.secretKey])
        defer { server.kill() }

        let script = Bundle.module.resourceURL!.appendingPathComponent("Fixtures/datasync_boto3_lifecycle.py").path
        let r = try CLI.run([script, "http://127.0.0.1:\(server.port)", f.source.root, "127.0.0.1", "\(moto.port)", bucket,
                             moto.accessKey, moto.secretKey], wrapper: ["python3"], direct: true, environment: server.environment)
        #expect(r.status == 0, "\(r.stderr)")
        let out = (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8))) as? [String: Any] ?? [:]
        let execution = out["execution"] as? [String: Any] ?? [:]
        let statuses = out["statuses"] as? [String] ?? []
        let executionLog = try CLI.run(["server", "logs", "--data-dir", data, execution["TaskExecutionArn"] as? String ?? ""])
        #expect(execution["Status"] as? String == "SUCCESS", "\(execution)\n\(executionLog.stdout)")
        #expect(statuses.last == "SUCCESS" && Set(statuses).isSubset(of: ["QUEUED", "LAUNCHING", "PREPARING", "TRANSFERRING", "VERIFYING", "SUCCESS"]),
                "\(statuses)")
        #expect((execution["FilesTransferred"] as? Int ?? 0) > 10 && (execution["FilesVerified"] as? Int ?? 0) > 10, "\(execution)")
        #expect((execution["ReportResult"] as? [String: Any])?["Status"] as? String == "SUCCESS", "\(execution)")
        // The secret key is never described.
        let location = out["location"] as? [String: Any] ?? [:]
        #expect(location["LocationUri"] as? String != nil && !r.stdout.contains(moto.secretKey), "\(location)")
        let task = out["task"] as? [String: Any] ?? [:]
        #expect((task["TaskReportConfig"] as? [String: Any])?["OutputType"] as? String == "STANDARD", "\(task)")

        // What arrived in the bucket restores to the source tree, data and metadata.
        let restore = try CLI.run(["sync", "s3://\(bucket)/backup", f.destinationRoot, "--endpoint-url", moto.endpoint],
                                  environment: moto.clientEnvironment)
        #expect(restore.status == 0, "\(restore.stderr)")
        let arrived = try f.differencesBeyondNFS()
        #expect(arrived == [], "\(arrived)")

        // The report: summary and detailed objects in the bucket, copies in the data directory (0600).
        let executionArn = execution["TaskExecutionArn"] as? String ?? ""
        let ids = executionArn.split(separator: "/")
        let (taskID, execID) = (String(ids.count > 1 ? ids[1] : ""), String(ids.last ?? ""))
        let listed = try CLI.run(["s3api", "list-objects-v2", "--bucket", bucket, "--prefix", "reports/", "--endpoint-url", moto.endpoint,
                                  "--query", "Contents[].Key", "--output", "text"], wrapper: ["aws"], direct: true,
                                 environment: moto.clientEnvironment)
        let keys = listed.stdout.split(whereSeparator: { $0 == "\t" || $0 == "\n" }).map(String.init)
        #expect(keys.contains("reports/Summary-Reports/\(taskID)/\(execID)/\(execID).summary.json"), "\(keys)")
        #expect(keys.contains("reports/Detailed-Reports/\(taskID)/\(execID)/\(execID).detailed.json"), "\(keys)")
        let local = "\(data)/reports/\(taskID)/\(execID)/\(execID).detailed.json"
        let detailed = (try? JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: local)))) as? [String: Any] ?? [:]
        let transferred = detailed["Transferred"] as? [[String: Any]] ?? []
        #expect(transferred.contains { $0["RelativePath"] as? String == "/dir/owned" && $0["Status"] as? String == "SUCCESS" },
                "SUCCESSES_AND_ERRORS lists what went well: \(transferred.prefix(3))")
        let mode = (try? FileManager.default.attributesOfItem(atPath: local)[.posixPermissions] as? Int) ?? -1
        #expect(mode == 0o600)

        // The log over HTTP, SigV4-signed; refused unsigned.
        let log = try server.curl("/logs/\(taskID)/\(execID)")
        #expect(log.stdout.hasSuffix("\n200") && log.stdout.contains("[NOTICE] Transferred file /dir/owned"), "\(log.stdout.suffix(300))")
        let unsigned = try server.curl("/logs/\(taskID)/\(execID)", signed: false)
        #expect(unsigned.stdout.contains("MissingAuthenticationToken") && !unsigned.stdout.hasSuffix("\n200"), "\(unsigned.stdout)")

        // Metrics carry the finished execution.
        let metrics = try server.curl("/metrics", signed: false)
        #expect(metrics.stdout.contains("datasync_FilesTransferred{task=\"\(ids.prefix(2).joined(separator: "/"))\""), "\(metrics.stdout.prefix(600))")
    }
}
