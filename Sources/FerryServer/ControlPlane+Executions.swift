import FerryStore
import Foundation

/// StartTaskExecution, DescribeTaskExecution, ListTaskExecutions, CancelTaskExecution,
/// UpdateTaskExecution.
extension ControlPlane {

    func startTaskExecution(_ input: JSONValue) async throws -> JSONValue {
        let taskArn = input["TaskArn"]?.string ?? ""
        let task = try existing(taskArn, .task, "Task")
        let options = try TaskOptions.merged(task.body["Options"], input["OverrideOptions"])
        let includes = input["Includes"] ?? task.body["Includes"] ?? []
        let excludes = input["Excludes"] ?? task.body["Excludes"] ?? []
        _ = try TaskOptions.filters(includes: includes, excludes: excludes)
        let offline = await offlineAgents(of: task.body)
        if !offline.isEmpty {
            throw ServerError.invalid("Task \(taskArn) is UNAVAILABLE: agent \(offline.joined(separator: ", ")) of its locations is OFFLINE (not heard from for \(Int(hub.offlineAfter)) s). Start the agent, then the task.")
        }
        let active = try store.list(.execution, parent: taskArn, limit: Int.max).filter { !(TaskExecutionStatus($0.body)?.isTerminal ?? false) }
        if !active.isEmpty && options["TaskQueueing"]?.string == "DISABLED" {
            throw ServerError.invalid("Task \(taskArn) already has an execution running (\(active[0].arn)) and TaskQueueing is DISABLED.")
        }
        let arn = arns.execution(of: taskArn)
        var body: JSONValue = [
            "TaskExecutionArn": .string(arn), "Status": TaskExecutionStatus.queued.json, "Options": options, "Includes": includes, "Excludes": excludes,
            "StartTime": ControlPlane.now(), "TaskMode": task.body["TaskMode"] ?? "BASIC",
            "EstimatedFilesToTransfer": 0, "EstimatedBytesToTransfer": 0, "FilesTransferred": 0, "BytesWritten": 0,
            "BytesTransferred": 0, "BytesCompressed": 0, "FilesDeleted": 0, "FilesSkipped": 0, "FilesVerified": 0,
            "EstimatedFilesToDelete": 0, "FilesPrepared": 0,
            "Result": ["PrepareStatus": "PENDING", "TransferStatus": "PENDING", "VerifyStatus": "PENDING",
                       "PrepareDuration": 0, "TransferDuration": 0, "VerifyDuration": 0, "TotalDuration": 0],
        ]
        if let report = input["TaskReportConfig"] ?? task.body["TaskReportConfig"] {
            body["TaskReportConfig"] = report
            body["ReportResult"] = ["Status": "PENDING"]
        }
        try store.insert(arn: arn, kind: .execution, parent: taskArn, body: body)
        try storeTags(arn, input)
        try store.modify(taskArn) { $0["CurrentTaskExecutionArn"] = .string(arn) }
        await runner.enqueue(arn, task: taskArn)
        return ["TaskExecutionArn": .string(arn)]
    }

    static let describedExecutionMembers = [
        "TaskExecutionArn", "Status", "Options", "Excludes", "Includes", "StartTime", "EstimatedFilesToTransfer",
        "EstimatedBytesToTransfer", "FilesTransferred", "BytesWritten", "BytesTransferred", "BytesCompressed", "Result",
        "TaskReportConfig", "FilesDeleted", "FilesSkipped", "FilesVerified", "ReportResult", "EstimatedFilesToDelete",
        "TaskMode", "FilesPrepared", "FilesListed", "FilesFailed", "LaunchTime", "EndTime",
    ]

    func describeTaskExecution(_ input: JSONValue) async throws -> JSONValue {
        let arn = input["TaskExecutionArn"]?.string ?? ""
        let body = await runner.current(try existing(arn, .execution, "Task execution"))
        var out: [String: JSONValue] = [:]
        for m in ControlPlane.describedExecutionMembers { if let v = body[m] { out[m] = v } }
        return .object(out)
    }

    func listTaskExecutions(_ input: JSONValue) throws -> JSONValue {
        let task = input["TaskArn"]?.string
        if let task { _ = try existing(task, .task, "Task") }
        let (items, next) = try Pagination.page(store, .execution, parent: task, input: input)
        var out: JSONValue = ["TaskExecutions": .array(items.map { r in
            ["TaskExecutionArn": .string(r.arn), "Status": r.body["Status"] ?? .null, "TaskMode": r.body["TaskMode"] ?? "BASIC"]
        })]
        if let next { out["NextToken"] = .string(next) }
        return out
    }

    func cancelTaskExecution(_ input: JSONValue) async throws -> JSONValue {
        let arn = input["TaskExecutionArn"]?.string ?? ""
        let r = try existing(arn, .execution, "Task execution")
        if let status = TaskExecutionStatus(r.body), status.isTerminal {
            throw ServerError.invalid("Task execution \(arn) has already ended (\(status)) and cannot be cancelled.")
        }
        await runner.cancel(arn, reason: "the execution was cancelled")
        return [:]
    }

    func updateTaskExecution(_ input: JSONValue) async throws -> JSONValue {
        let arn = input["TaskExecutionArn"]?.string ?? ""
        let r = try existing(arn, .execution, "Task execution")
        if TaskExecutionStatus(r.body)?.isTerminal ?? false {
            throw ServerError.invalid("Task execution \(arn) has already ended and cannot be updated.")
        }
        let changed = input["Options"]?.object ?? [:]
        if changed.keys.contains(where: { $0 != "BytesPerSecond" }) {
            throw ServerError.invalid("UpdateTaskExecution can only change BytesPerSecond.")
        }
        let options = try TaskOptions.merged(r.body["Options"], input["Options"])
        try store.modify(arn) { $0["Options"] = options }
        let bps = options["BytesPerSecond"]?.int ?? -1
        await runner.setBandwidth(arn, bytesPerSecond: bps == -1 ? nil : bps)
        return [:]
    }
}
