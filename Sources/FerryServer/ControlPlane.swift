import FerryCore
import FerryS3
import FerryStore
import Foundation
import Logging
import Synchronization

/// The DataSync control plane: validates each call against DataSync's model, keeps
/// agents, locations, tasks and executions in the ``Store``, and hands executions to the
/// ``ExecutionRunner``. Transport-free: ``DataSyncServer`` feeds it authenticated calls.
public final class ControlPlane: Sendable {
    public let store: Store
    let arns: ARNFactory
    let runner: ExecutionRunner
    /// The agents: who is online, what they were leased, what they report.
    let hub: AgentHub
    /// How long an activation key may wait for CreateAgent (DataSync: 30 minutes).
    let activationLifetime: TimeInterval
    let logger: Logger
    /// The built-in agent, which runs executions in this process.
    public let builtInAgentArn: String
    /// Where `create-location-s3` buckets are served (nil: AWS).
    let s3Endpoint: S3Configuration.Overrides
    let dataDirectory: String
    /// Seals location secrets before they are stored.
    let secrets: SecretBox
    /// The shortest schedule interval accepted (DataSync: one hour).
    let minimumScheduleInterval: TimeInterval
    /// Each scheduled task's next firing.
    let scheduleDue = Mutex<[String: Date]>([:])

    public init(dataDirectory: String, region: String = "us-east-1", s3Endpoint: S3Configuration.Overrides = .init(),
                minimumScheduleInterval: TimeInterval = 3600, agentOfflineAfter: TimeInterval = 300,
                activationLifetime: TimeInterval = 1800, logger: Logger = Logger(label: "ferry.server")) async throws {
        self.dataDirectory = dataDirectory
        self.minimumScheduleInterval = minimumScheduleInterval
        self.activationLifetime = activationLifetime
        store = try Store(directory: dataDirectory)
        secrets = try SecretBox(dataDirectory: dataDirectory)
        arns = ARNFactory(region: region)
        self.s3Endpoint = s3Endpoint
        self.logger = logger
        if let agent = try store.list(.agent, limit: 1).first {
            builtInAgentArn = agent.arn
        } else {
            builtInAgentArn = arns.agent()
            try store.insert(arn: builtInAgentArn, kind: .agent, body: [
                "AgentArn": .string(builtInAgentArn), "Name": "ferry-built-in", "Status": "ONLINE",
                "CreationTime": .number(Date().timeIntervalSince1970.rounded()), "EndpointType": "PUBLIC",
                "Platform": ["Version": "ferry"],
            ])
        }
        hub = AgentHub(store: store, offlineAfter: agentOfflineAfter, logger: logger)
        runner = ExecutionRunner(store: store, hub: hub, builtInAgent: builtInAgentArn, logger: logger)
        let cache: S3MetadataCache?
        do {
            cache = try S3MetadataCache(directory: dataDirectory + "/cache")
        } catch {
            logger.warning("the S3 metadata cache cannot be used; every object will be read with a HEAD", metadata: ["error": "\(error)"])
            cache = nil
        }
        await runner.attach(resolver: LocationResolver(store: store, s3Endpoint: s3Endpoint, dataDirectory: dataDirectory, metadataCache: cache,
                                                      secrets: secrets))
        try await runner.recover()
        try loadSchedules()
    }

    /// Runs one API call: `operation` is the part after `FmrsService.`.
    public func handle(operation: String, input: JSONValue) async throws -> JSONValue {
        try DataSyncModel.shared.validate(operation: operation, input: input)
        switch operation {
        case "CreateLocationNfs": return try createLocationNfs(input)
        case "CreateLocationObjectStorage": return try createLocationObjectStorage(input)
        case "CreateLocationS3": return try createLocationS3(input)
        case "CreateLocationSmb": return try createLocationSmb(input)
        case "DescribeLocationNfs": return try describeLocation(input, type: "NFS")
        case "DescribeLocationObjectStorage": return try describeLocation(input, type: "OBJECT_STORAGE")
        case "DescribeLocationS3": return try describeLocation(input, type: "S3")
        case "DescribeLocationSmb": return try describeLocation(input, type: "SMB")
        case "UpdateLocationNfs": return try updateLocation(input, type: "NFS")
        case "UpdateLocationObjectStorage": return try updateLocation(input, type: "OBJECT_STORAGE")
        case "UpdateLocationS3": return try updateLocation(input, type: "S3")
        case "UpdateLocationSmb": return try updateLocation(input, type: "SMB")
        case "ListLocations": return try listLocations(input)
        case "DeleteLocation": return try deleteLocation(input)
        case "CreateTask": return try createTask(input)
        case "DescribeTask": return try await describeTask(input)
        case "UpdateTask": return try updateTask(input)
        case "ListTasks": return try await listTasks(input)
        case "DeleteTask": return try await deleteTask(input)
        case "StartTaskExecution": return try await startTaskExecution(input)
        case "DescribeTaskExecution": return try await describeTaskExecution(input)
        case "ListTaskExecutions": return try listTaskExecutions(input)
        case "CancelTaskExecution": return try await cancelTaskExecution(input)
        case "UpdateTaskExecution": return try await updateTaskExecution(input)
        case "CreateAgent": return try await createAgent(input)
        case "UpdateAgent": return try updateAgent(input)
        case "DeleteAgent": return try await deleteAgent(input)
        case "ListAgents": return try await listAgents(input)
        case "DescribeAgent": return try await describeAgent(input)
        case "TagResource": return try tagResource(input)
        case "UntagResource": return try untagResource(input)
        case "ListTagsForResource": return try listTagsForResource(input)
        default:
            for verb in ["CreateLocation", "DescribeLocation", "UpdateLocation"] where operation.hasPrefix(verb) {
                throw ServerError.invalid("\(operation.dropFirst(verb.count)) locations are not supported by Ferry yet; supported: NFS, SMB, ObjectStorage and S3.",
                                          errorCode: "UnsupportedOperation")
            }
            throw ServerError.invalid("\(operation) is not supported by Ferry yet.", errorCode: "UnsupportedOperation")
        }
    }

    /// Stops running executions (they end in ERROR and are recovered on the next start).
    public func shutdown() async {
        await runner.shutdown()
    }

    /// An execution's log lines, named by its task and execution ids (`task-…`, `exec-…`).
    func logLines(task: String, execution: String) throws -> [String] {
        let arn = "arn:aws:datasync:\(arns.region):\(arns.account):task/\(task)/execution/\(execution)"
        guard arn.range(of: #"task/task-[0-9a-f]{17}/execution/exec-[0-9a-f]{17}$"#, options: .regularExpression) != nil else {
            throw ServerError.invalid("The log path must be /logs/task-ID/exec-ID (ids of 17 hexadecimal digits).")
        }
        _ = try existing(arn, .execution, "Task execution")
        return try store.logs(arn)
    }

    static func now() -> JSONValue { .number(Date().timeIntervalSince1970.rounded()) }

    /// `Tags` of a create call, stored for `arn`.
    func storeTags(_ arn: String, _ input: JSONValue) throws {
        let tags = (input["Tags"]?.array ?? []).compactMap { t -> (key: String, value: String)? in
            guard let k = t["Key"]?.string else { return nil }
            return (k, t["Value"]?.string ?? "")
        }
        try store.tag(arn, tags)
    }

    /// The resource under `arn` of `kind`, or DataSync's "not found".
    /// (An agent's is "Agent … does not exist.", the wording Terraform waits for.)
    func existing(_ arn: String, _ kind: Store.Kind, _ what: String) throws -> Store.Resource {
        guard let r = try store.get(arn), r.kind == kind else {
            if kind == .agent { throw ServerError.invalid("Agent \(arn) does not exist.") }
            throw ServerError.notFound(what, arn)
        }
        return r
    }
}
