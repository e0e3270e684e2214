import FerryEngine
import FerryS3
import FerryStore
import Foundation
import NIOCore

/// DataSync's task report for one execution (TaskReportConfig). OutputType SUMMARY_ONLY
/// writes the summary; STANDARD also the detailed lists (Transferred, Verified, Deleted,
/// Skipped), each at its ReportLevel — ERRORS_ONLY (the default) or SUCCESSES_AND_ERRORS,
/// per category through Overrides. The files land in the data directory under
/// `reports/TASK-ID/EXEC-ID/` (0600) and, when Destination.S3 names a bucket, are uploaded
/// to it (served by the server's S3 endpoint, as create-location-s3 buckets are) under
/// `SUBDIRECTORY/Summary-Reports/TASK-ID/EXEC-ID/` and `SUBDIRECTORY/Detailed-Reports/TASK-ID/EXEC-ID/`.
struct ExecutionReport {
    let config: JSONValue
    let directory: String
    let taskID: String
    let executionID: String
    let detailed: Bool
    let sink: TaskReportSink

    init(config: JSONValue, dataDirectory: String, task: String, execution: String) throws {
        self.config = config
        taskID = String(task.split(separator: "/").last ?? "task")
        executionID = String(execution.split(separator: "/").last ?? "exec")
        directory = "\(dataDirectory)/reports/\(taskID)/\(executionID)"
        detailed = config["OutputType"]?.string != "SUMMARY_ONLY"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        var everything = Set<ReportCategory>()
        for c in ReportCategory.allCases {
            let level = config["Overrides"]?[c.rawValue]?["ReportLevel"]?.string ?? config["ReportLevel"]?.string ?? "ERRORS_ONLY"
            if level == "SUCCESSES_AND_ERRORS" { everything.insert(c) }
        }
        let listed = everything
        sink = TaskReportSink(spoolDirectory: detailed ? URL(fileURLWithPath: directory + "/.spool") : nil) { category, entry in
            entry.status != .success || listed.contains(category)
        }
    }

    /// The files written: the summary and (STANDARD) the detailed report.
    func write(result: ExecutionResult, header: JSONValue) throws -> [(name: String, path: String)] {
        let summaryPath = "\(directory)/\(executionID).summary.json"
        var summary = header
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        summary["Result"] = try JSONValue.parse(encoder.encode(result))
        guard FileManager.default.createFile(atPath: summaryPath, contents: Data(summary.serialized()),
                                             attributes: [.posixPermissions: 0o600]) else {
            throw ServerError.internalError("cannot write the task report \(summaryPath)")
        }
        var files = [(name: "Summary-Reports", path: summaryPath)]
        if detailed {
            let path = "\(directory)/\(executionID).detailed.json"
            try sink.writeReport(to: URL(fileURLWithPath: path), summary: result)
            files.append((name: "Detailed-Reports", path: path))
        }
        return files
    }

    /// Uploads the files to Destination.S3 when one is named; the ReportResult to store.
    /// (Each file is sent in one PutObject: reports of millions of entries would want the
    /// S3 location's multipart writer.)
    func deliver(_ files: [(name: String, path: String)], s3Endpoint: S3Configuration.Overrides) async -> JSONValue {
        guard let bucketArn = config["Destination"]?["S3"]?["S3BucketArn"]?.string else { return ["Status": "SUCCESS"] }
        let bucket = LocationResolver.bucketName(arn: bucketArn)
        var prefix = config["Destination"]?["S3"]?["Subdirectory"]?.string ?? ""
        while prefix.hasPrefix("/") { prefix.removeFirst() }
        if !prefix.isEmpty && !prefix.hasSuffix("/") { prefix += "/" }
        var client: S3Client?
        do {
            client = try S3Client(endpoint: try S3Configuration.endpoint(s3Endpoint))
            for f in files {
                guard let data = FileManager.default.contents(atPath: f.path) else {
                    throw ServerError.internalError("cannot read the task report \(f.path)")
                }
                let key = "\(prefix)\(f.name)/\(taskID)/\(executionID)/\((f.path as NSString).lastPathComponent)"
                try await client!.putObject(bucket: bucket, key: key, body: ByteBuffer(bytes: data), metadata: [:],
                                            contentType: "application/json")
            }
            await client?.shutdown()
            return ["Status": "SUCCESS"]
        } catch {
            await client?.shutdown()
            return ["Status": "ERROR", "ErrorCode": "ReportUploadFailed",
                    "ErrorDetail": .string("the task report could not be uploaded to \(bucketArn): \(error)")]
        }
    }
}
