import FerryCore
import FerryEngine
import FerryRemote
import FerryStore
import Foundation
import Logging

/// What one execution needs to run wherever it runs, the built-in agent or an agent
/// process: the task, the execution's options, filters and report settings, and both
/// locations' bodies. Sent to an agent as JSON inside its lease, with the locations'
/// secrets opened for this execution only (over mutual TLS; never written to its disk).
struct ExecutionJob: Sendable {
    var execution: String
    var task: String
    /// The task's body (SourceLocationArn, DestinationLocationArn).
    var taskBody: JSONValue
    /// The execution's body (Options, Includes, Excludes, TaskReportConfig, StartTime).
    var executionBody: JSONValue
    var source: JSONValue
    var destination: JSONValue
    /// When another agent serves the destination (agent to agent): its data endpoint
    /// (`host:port`) and the name it serves the location under for this execution.
    var destinationRemote: JSONValue?
    /// When several agents share the execution: this lease's share of the tree (`Id`,
    /// `Unit` of `Units`, `Phase` TRANSFER, DELETE or FINISH, and after the transfer round
    /// the `Depth` its shares cut the tree at; ``AgentHub/runPool``).
    var share: JSONValue?

    var json: JSONValue {
        var j: JSONValue = ["TaskExecutionArn": .string(execution), "TaskArn": .string(task), "Task": taskBody, "Execution": executionBody,
                            "Source": source, "Destination": destination]
        if let destinationRemote { j["DestinationRemote"] = destinationRemote }
        if let share { j["Share"] = share }
        return j
    }

    init(execution: String, task: String, taskBody: JSONValue, executionBody: JSONValue, source: JSONValue, destination: JSONValue) {
        self.execution = execution
        self.task = task
        self.taskBody = taskBody
        self.executionBody = executionBody
        self.source = source
        self.destination = destination
    }

    init(json: JSONValue) throws {
        guard let execution = json["TaskExecutionArn"]?.string, let task = json["TaskArn"]?.string,
              let source = json["Source"], let destination = json["Destination"] else {
            throw ServerError.invalid("a lease without its execution, task or locations")
        }
        self.init(execution: execution, task: task, taskBody: json["Task"] ?? [:], executionBody: json["Execution"] ?? [:],
                  source: source, destination: destination)
        destinationRemote = json["DestinationRemote"]
        share = json["Share"]
    }

    /// This lease's share of the tree: the finishing one, or one of `Units` at the depth
    /// given (once a share found it), else read from the source.
    func shareFilter(_ share: JSONValue, source: any Location) async throws -> Filters.Share {
        let count = Int(share["Units"]?.int ?? 1)
        if share["Phase"]?.string == AgentHub.Pool.finish {
            // Its one unit says nothing of the others' depth: it is given (the root alone else).
            return .finishing(depth: Int(share["Depth"]?.int ?? 1))
        }
        let depth = if let given = share["Depth"]?.int { Int(given) } else { try await Filters.Share.depth(of: source, count: count) }
        return Filters.Share(index: Int(share["Unit"]?.int ?? 0), count: count, depth: depth)
    }

    var logLevel: String { executionBody["Options"]?["LogLevel"]?.string ?? "OFF" }

    /// The engine of this execution with its locations opened and its report prepared.
    struct Prepared: Sendable {
        let engine: SyncEngine
        let opened: [ResolvedLocation]
        let report: ExecutionReport?

        func close() async {
            for o in opened { await o.close() }
        }
    }

    /// Opens both locations with `resolver` and builds the engine; `dataDirectory` holds
    /// the task report's files. Locations opened before a failure are closed.
    func prepare(resolver: LocationResolver, log: ExecutionLog, logger: Logger) async throws -> Prepared {
        var options = try TaskOptions.transferOptions(executionBody["Options"] ?? [:])
        var filters = try TaskOptions.filters(includes: executionBody["Includes"], excludes: executionBody["Excludes"])
        if let share {
            // Deletions wait for the DELETE round.
            if share["Phase"]?.string != AgentHub.Pool.delete && options.preserveDeletedFiles == .remove { options.preserveDeletedFiles = .preserve }
        }
        let descriptors = try TaskOptions.securityDescriptorCopy(executionBody["Options"] ?? [:])
        var opened: [ResolvedLocation] = []
        do {
            let sourceArn = taskBody["SourceLocationArn"]?.string ?? source["LocationArn"]?.string ?? ""
            let destinationArn = taskBody["DestinationLocationArn"]?.string ?? destination["LocationArn"]?.string ?? ""
            opened.append(try resolver.open(source, arn: sourceArn, asDestination: false, securityDescriptors: descriptors))
            if let remote = destinationRemote {
                opened.append(try await resolver.openRemote(endpoint: remote["Endpoint"]?.string ?? "", name: remote["Name"]?.string ?? "",
                                                            agent: remote["Agent"]?.string ?? "the destination's agent"))
            } else {
                opened.append(try resolver.open(destination, arn: destinationArn, asDestination: true, securityDescriptors: descriptors))
            }
            if let share { filters.share = try await shareFilter(share, source: opened[0].location) }
            var logger = logger
            logger[metadataKey: "execution.id"] = "\(execution)"
            // A share's report entries are its part of the execution's (the control plane
            // writes the report from every share's part).
            let report = try executionBody["TaskReportConfig"].map {
                try ExecutionReport(config: $0, dataDirectory: resolver.dataDirectory, task: task, execution: execution)
            }
            let engine = SyncEngine(SyncConfiguration(source: opened[0].location, destination: opened[1].location, options: options,
                                                      filters: filters, logger: logger, onItem: log.itemHandler),
                                    report: report?.sink ?? TaskReportSink(spoolDirectory: nil))
            return Prepared(engine: engine, opened: opened, report: report)
        } catch {
            let toClose = opened
            Task { for o in toClose { await o.close() } }
            throw error
        }
    }

    /// The task report's files for an execution that ended with `status`.
    func writeReport(_ report: ExecutionReport, result: ExecutionResult, status: TaskExecutionStatus) throws -> [(name: String, path: String)] {
        let header: JSONValue = [
            "AccountId": .string(ARNFactory().account), "TaskArn": .string(task), "TaskExecutionArn": .string(execution),
            "SourceLocationArn": taskBody["SourceLocationArn"] ?? .null,
            "DestinationLocationArn": taskBody["DestinationLocationArn"] ?? .null, "Status": status.json,
            "StartTime": executionBody["StartTime"] ?? .null, "EndTime": ControlPlane.now(), "Options": executionBody["Options"] ?? [:],
        ]
        return try report.write(result: result, header: header)
    }
}
