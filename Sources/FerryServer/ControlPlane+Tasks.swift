import FerryCore
import FerryStore
import Foundation

/// CreateTask, DescribeTask, UpdateTask, ListTasks, DeleteTask.
extension ControlPlane {
    func createTask(_ input: JSONValue) throws -> JSONValue {
        let source = input["SourceLocationArn"]?.string ?? ""
        let destination = input["DestinationLocationArn"]?.string ?? ""
        let sourceBody = try existing(source, .location, "Location").body
        let destinationBody = try existing(destination, .location, "Location").body
        if source == destination { throw ServerError.invalid("The source and destination locations must differ.") }
        do {
            try LocationScope.checkDisjoint(source: LocationResolver.scope(sourceBody, s3Endpoint: s3Endpoint),
                                            destination: LocationResolver.scope(destinationBody, s3Endpoint: s3Endpoint))
        } catch {
            throw ServerError.invalid("Source location \(source) and destination location \(destination): \(error.message).")
        }
        _ = try TaskOptions.filters(includes: input["Includes"], excludes: input["Excludes"])
        let arn = arns.task()
        var body = input
        body["Tags"] = nil
        body["TaskArn"] = .string(arn)
        body["Status"] = "AVAILABLE"
        body["Options"] = try TaskOptions.merged(nil, input["Options"])
        body["Includes"] = input["Includes"] ?? []
        body["Excludes"] = input["Excludes"] ?? []
        body["TaskMode"] = input["TaskMode"] ?? "BASIC"
        body["CreationTime"] = ControlPlane.now()
        if let schedule = input["Schedule"] {
            guard !(schedule["ScheduleExpression"]?.string ?? "").isEmpty else {
                throw ServerError.invalid("Invalid ScheduleExpression: it must not be empty.")
            }
            try validateSchedule(schedule)
            ControlPlane.storedSchedule(schedule, into: &body)
        }
        try store.insert(arn: arn, kind: .task, body: body)
        try storeTags(arn, input)
        reschedule(arn)
        return ["TaskArn": .string(arn)]
    }

    static let describedTaskMembers = [
        "TaskArn", "Status", "Name", "CurrentTaskExecutionArn", "SourceLocationArn", "DestinationLocationArn",
        "CloudWatchLogGroupArn", "SourceNetworkInterfaceArns", "DestinationNetworkInterfaceArns", "Options", "Excludes",
        "Schedule", "ErrorCode", "ErrorDetail", "CreationTime", "Includes", "ManifestConfig", "TaskReportConfig",
        "ScheduleDetails", "TaskMode",
    ]

    /// DataSync's TaskStatus: RUNNING or QUEUED while an execution is; UNAVAILABLE while a
    /// location of it has no agent ONLINE (an execution cannot start); else AVAILABLE.
    func taskStatus(_ task: Store.Resource) async -> String {
        if let state = await runner.state(of: task.arn) { return state == .queued ? "QUEUED" : "RUNNING" }
        return await offlineAgents(of: task.body).isEmpty ? "AVAILABLE" : "UNAVAILABLE"
    }

    /// The OFFLINE agents that keep a task from running: a location's only agent, or every
    /// agent of a location that names several (one of them online is enough: the execution
    /// is spread over those that are).
    func offlineAgents(of task: JSONValue) async -> [String] {
        var offline = Set<String>()
        for member in ["SourceLocationArn", "DestinationLocationArn"] {
            guard let location = try? store.get(task[member]?.string ?? "")?.body else { continue }
            var down: [String] = []
            let agents = ControlPlane.remoteAgents(location, builtIn: builtInAgentArn)
            for agent in agents.sorted() where !(await hub.isOnline(agent)) { down.append(agent) }
            if down.count == agents.count { offline.formUnion(down) }
        }
        return offline.sorted()
    }

    func describeTask(_ input: JSONValue) async throws -> JSONValue {
        let r = try existing(input["TaskArn"]?.string ?? "", .task, "Task")
        var out: [String: JSONValue] = [:]
        for m in ControlPlane.describedTaskMembers { if let v = r.body[m] { out[m] = v } }
        out["Status"] = .string(await taskStatus(r))
        out["SourceNetworkInterfaceArns"] = out["SourceNetworkInterfaceArns"] ?? []
        out["DestinationNetworkInterfaceArns"] = out["DestinationNetworkInterfaceArns"] ?? []
        return .object(out)
    }

    func updateTask(_ input: JSONValue) throws -> JSONValue {
        let arn = input["TaskArn"]?.string ?? ""
        let r = try existing(arn, .task, "Task")
        let options = try TaskOptions.merged(r.body["Options"], input["Options"])
        _ = try TaskOptions.filters(includes: input["Includes"] ?? r.body["Includes"], excludes: input["Excludes"] ?? r.body["Excludes"])
        try validateSchedule(input["Schedule"])
        try store.modify(arn) { body in
            for (k, v) in input.object ?? [:] where k != "TaskArn" && k != "Options" && k != "Schedule" { body[k] = v }
            body["Options"] = options
            // An empty ScheduleExpression removes the schedule (DataSync's way).
            if let schedule = input["Schedule"] { ControlPlane.storedSchedule(schedule, into: &body) }
        }
        reschedule(arn)
        return [:]
    }

    func listTasks(_ input: JSONValue) async throws -> JSONValue {
        let filters = input["Filters"]?.array ?? []
        let (items, next) = try Pagination.page(store, .task, input: input) { r in
            filters.allSatisfy { f in
                let field: String
                switch f["Name"]?.string {
                case "LocationId": field = (r.body["SourceLocationArn"]?.string ?? "") + " " + (r.body["DestinationLocationArn"]?.string ?? "")
                case "CreationTime": field = "\(Int64(r.body["CreationTime"]?.number ?? 0))"
                default: return true
                }
                let values = f["Values"]?.array?.compactMap(\.string) ?? []
                if f["Name"]?.string == "LocationId" {
                    let hit = values.contains { field.contains($0) }
                    return f["Operator"]?.string == "NotEquals" ? !hit : hit
                }
                return ControlPlane.apply(f["Operator"]?.string ?? "Equals", field, values)
            }
        }
        var tasks: [JSONValue] = []
        for r in items {
            tasks.append(["TaskArn": r.body["TaskArn"] ?? .null, "Status": .string(await taskStatus(r)), "Name": r.body["Name"] ?? .null,
                          "TaskMode": r.body["TaskMode"] ?? "BASIC"])
        }
        var out: JSONValue = ["Tasks": .array(tasks)]
        if let next { out["NextToken"] = .string(next) }
        return out
    }

    func deleteTask(_ input: JSONValue) async throws -> JSONValue {
        let arn = input["TaskArn"]?.string ?? ""
        _ = try existing(arn, .task, "Task")
        // DataSync cancels what runs and deletes the task with its history.
        for e in try store.list(.execution, parent: arn, limit: Int.max) {
            await runner.cancel(e.arn, reason: "the task was deleted")
        }
        await runner.waitIdle(task: arn)
        for e in try store.list(.execution, parent: arn, limit: Int.max) { try store.delete(e.arn) }
        try store.delete(arn)
        reschedule(arn)
        return [:]
    }
}
