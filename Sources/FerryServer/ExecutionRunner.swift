import FerryCore
import FerryEngine
import FerryS3
import FerryStore
import Foundation
import Logging
import Synchronization

/// Runs task executions on the built-in agent: one execution per task at a time, the
/// others QUEUED in start order (TaskQueueing); status moves QUEUED → LAUNCHING →
/// PREPARING → TRANSFERRING → VERIFYING → SUCCESS | ERROR as the engine's phases move;
/// live counters come from the running engine; cancel goes through CANCELLING to ERROR.
/// Every state change is written to the store, so a restart finds no execution stuck.
actor ExecutionRunner {
    let store: Store
    let logger: Logger
    /// The agents of the control plane: executions of locations that name one run there.
    let hub: AgentHub
    let builtInAgent: String
    private var resolver: LocationResolver?

    private struct Running {
        var task: Task<Void, Never>?
        var engine: SyncEngine?
        var cancelReason: String?
    }
    private var running: [String: Running] = [:]
    private var queued: [String: [String]] = [:]
    private var activeByTask: [String: String] = [:]
    private var idleWaiters: [String: [CheckedContinuation<Void, Never>]] = [:]

    init(store: Store, hub: AgentHub, builtInAgent: String, logger: Logger) {
        self.store = store
        self.hub = hub
        self.builtInAgent = builtInAgent
        self.logger = logger
    }

    func attach(resolver: LocationResolver) { self.resolver = resolver }

    /// After a restart: executions that were running here end in ERROR with the reason;
    /// queued ones, and ones offered to agents but not taken, are queued again in their
    /// order; ones an agent holds wait for the agent's report.
    func recover() throws {
        for e in try store.list(.execution, limit: Int.max) {
            let status = TaskExecutionStatus(e.body)
            if e.body["Pool"]?.bool == true, let status, !status.isTerminal, let task = e.parent {
                // Spread over several agents: its shares are in the store; run it again to
                // hand out what is left and take the ends of what runs.
                activeByTask[task] = e.arn
                running[e.arn] = Running()
                running[e.arn]?.task = Task { await self.run(e.arn, task: task) }
            } else if let agent = e.body["Agent"]?.string, let status, !status.isTerminal, let task = e.parent {
                activeByTask[task] = e.arn
                running[e.arn] = Running()
                let bps = AgentHub.bytesPerSecond(e.body)
                running[e.arn]?.task = Task { await self.reattach(e.arn, task: task, agent: agent, phase: status.rawValue, bytesPerSecond: bps) }
            } else if status == .queued || (status == .launching && e.body["Remote"]?.bool == true) {
                enqueue(e.arn, task: e.parent ?? "")
            } else if !(status?.isTerminal ?? false) {
                try finish(e.arn, status: .error, errorCode: "ServerRestarted",
                           detail: "the Ferry server stopped while this execution was \(status?.rawValue ?? "in an unknown state"); nothing was left under a final name — start the task again to finish the transfer")
                logger.warning("execution ended by a restart", metadata: ["execution.id": "\(e.arn)", "status": "\(status?.rawValue ?? "?")"])
            }
        }
    }

    func enqueue(_ execution: String, task: String) {
        queued[task, default: []].append(execution)
        pump(task)
    }

    private func pump(_ task: String) {
        guard activeByTask[task] == nil, var q = queued[task], !q.isEmpty else {
            if activeByTask[task] == nil { for w in idleWaiters.removeValue(forKey: task) ?? [] { w.resume() } }
            return
        }
        let next = q.removeFirst()
        queued[task] = q
        activeByTask[task] = next
        running[next] = Running()
        running[next]?.task = Task { await self.run(next, task: task) }
    }

    /// An execution as it stands now: its stored body with, while it runs, the live status
    /// and counters of its engine laid over it.
    func current(_ execution: Store.Resource) -> JSONValue {
        guard let r = running[execution.arn] else { return execution.body }
        if r.cancelReason != nil { return execution.body.merging(["Status": TaskExecutionStatus.cancelling.json]) { $1 } }
        guard let engine = r.engine else { return execution.body }
        return execution.body.merging(ExecutionRunner.liveFields(engine)) { $1 }
    }

    /// A running engine's status and counters in DescribeTaskExecution's members.
    static func liveFields(_ engine: SyncEngine) -> [String: JSONValue] {
        var status = TaskExecutionStatus(rawValue: engine.counters.currentPhase.description) ?? .verifying
        if status.isTerminal { status = .verifying }  // the store says the end
        let live = counterFields(engine.counters.snapshot()).object ?? [:]
        return live.merging(["Status": status.json]) { $1 }
    }

    /// Runs the engine, writing its status and counters to the store every two seconds, so
    /// a server killed meanwhile knows which phase the execution had reached.
    private func runPersistingProgress(_ execution: String, _ engine: SyncEngine) async -> ExecutionResult {
        let store = self.store
        let logger = self.logger
        return await withTaskGroup(of: ExecutionResult?.self) { group in
            group.addTask { await engine.run() }
            group.addTask {
                while !Task.isCancelled {
                    try? await Task.sleep(for: .seconds(2))
                    if Task.isCancelled { break }
                    ExecutionRunner.bestEffort("the execution's progress", execution, logger) {
                        _ = try store.modify(execution) { body in
                            if let status = TaskExecutionStatus(body), !status.isTerminal, status != .cancelling {
                                body = body.merging(ExecutionRunner.liveFields(engine)) { $1 }
                            }
                        }
                    }
                }
                return nil
            }
            var result: ExecutionResult?
            while let r = await group.next() {
                if let r {
                    result = r
                    group.cancelAll()
                }
            }
            return result!
        }
    }

    static func counterFields(_ c: CounterSnapshot) -> JSONValue {
        [
            "EstimatedFilesToTransfer": .number(Double(c.estimatedFilesToTransfer)),
            "EstimatedBytesToTransfer": .number(Double(c.estimatedBytesToTransfer)),
            "EstimatedFilesToDelete": .number(Double(c.estimatedFilesToDelete)),
            "FilesTransferred": .number(Double(c.filesTransferred)), "BytesTransferred": .number(Double(c.bytesTransferred)),
            "BytesWritten": .number(Double(c.bytesWritten)), "BytesCompressed": .number(Double(c.bytesCompressed)),
            "FilesDeleted": .number(Double(c.filesDeleted)),
            "FilesSkipped": .number(Double(c.filesSkipped)), "FilesVerified": .number(Double(c.filesVerified)),
            "FilesPrepared": .number(Double(c.filesListedSource)),
            "FilesListed": ["AtSource": .number(Double(c.filesListedSource)), "AtDestinationForDelete": .number(Double(c.filesListedDestination))],
            "FilesFailed": ["Transfer": .number(Double(c.filesFailed)), "Verify": .number(Double(c.verificationFailures))],
        ]
    }

    func cancel(_ execution: String, reason: String) {
        if let task = queued.first(where: { $0.value.contains(execution) })?.key {
            queued[task]?.removeAll { $0 == execution }
            ExecutionRunner.bestEffort("the cancelled execution's end", execution, logger) {
                try finish(execution, status: .error, errorCode: "Cancelled", detail: reason)
            }
            pump(task)
            return
        }
        guard running[execution] != nil else { return }
        running[execution]?.cancelReason = reason
        ExecutionRunner.bestEffort("the CANCELLING status", execution, logger) { _ = try store.modify(execution) { $0["Status"] = TaskExecutionStatus.cancelling.json } }
        if running[execution]?.engine == nil {
            let hub = self.hub
            Task { await hub.cancel(execution, reason: reason) }
        }
        running[execution]?.task?.cancel()
    }

    func setBandwidth(_ execution: String, bytesPerSecond: Int64?) async {
        running[execution]?.engine?.updateBandwidth(bytesPerSecond)
        await hub.setBandwidth(execution, bytesPerSecond)
    }

    func waitIdle(task: String) async {
        if activeByTask[task] == nil && (queued[task] ?? []).isEmpty { return }
        await withCheckedContinuation { idleWaiters[task, default: []].append($0) }
    }

    func shutdown() async {
        await hub.shutdown()
        let tasks = running.values.compactMap(\.task)
        for (arn, _) in running { running[arn]?.cancelReason = running[arn]?.cancelReason ?? "the server is shutting down" }
        for t in tasks { t.cancel() }
        for t in tasks { await t.value }
    }

    private func register(_ execution: String, engine: SyncEngine) -> Bool {
        running[execution]?.engine = engine
        return running[execution]?.cancelReason == nil
    }

    private func ended(_ execution: String, task: String) {
        running[execution] = nil
        activeByTask[task] = nil
        pump(task)
    }

    /// Whether `task` has an execution running or queued (DescribeTask's RUNNING, QUEUED).
    func state(of task: String) -> TaskExecutionStatus? {
        if activeByTask[task] != nil { return .launching }
        return (queued[task] ?? []).isEmpty ? nil : .queued
    }

    private func cancelReason(_ execution: String) -> String? { running[execution]?.cancelReason }

    /// One execution from LAUNCHING to its end: on an agent of its locations when they
    /// name any, else here on the built-in agent.
    private func run(_ execution: String, task: String) async {
        do {
            try store.modify(execution) { $0["Status"] = TaskExecutionStatus.launching.json; $0["LaunchTime"] = ControlPlane.now() }
            guard let taskBody = try store.get(task)?.body, let body = try store.get(execution)?.body, let resolver else {
                throw ServerError.internalError("the task or execution vanished")
            }
            func location(_ member: String) throws -> JSONValue {
                let arn = taskBody[member]?.string ?? ""
                guard let r = try store.get(arn), r.kind == .location else { throw ServerError.notFound("Location", arn) }
                return r.body
            }
            let job = ExecutionJob(execution: execution, task: task, taskBody: taskBody, executionBody: body,
                                   source: try location("SourceLocationArn"), destination: try location("DestinationLocationArn"))
            let sourceAgents = ControlPlane.remoteAgents(job.source, builtIn: builtInAgent)
            let destinationAgents = ControlPlane.remoteAgents(job.destination, builtIn: builtInAgent)
            let agents = sourceAgents.union(destinationAgents)
            if !sourceAgents.isEmpty && !destinationAgents.isEmpty && sourceAgents.isDisjoint(with: destinationAgents) {
                try await runAgentToAgent(job, from: sourceAgents, to: destinationAgents.sorted(), resolver: resolver)
            } else if agents.isEmpty {
                try await runHere(job, resolver: resolver)
            } else {
                // Agents that reach both ends: those of the source and the destination both name.
                let both = sourceAgents.isEmpty || destinationAgents.isEmpty ? agents : sourceAgents.intersection(destinationAgents)
                try await runOnAgents(job, agents: both, resolver: resolver)
            }
        } catch {
            let reason = cancelReason(execution)
            let detail = reason ?? ((error as? ServerError)?.message ?? "\(error)")
            ExecutionRunner.bestEffort("the failed execution's end", execution, logger) {
                try finish(execution, status: .error, errorCode: reason == nil ? "LaunchFailed" : "Cancelled", detail: detail)
            }
            ExecutionRunner.bestEffort("the execution's log", execution, logger) {
                try store.appendLog(execution, ["[ERROR] Execution \(execution) failed: \(detail)"])
            }
            logger.error("execution failed", metadata: ["execution.id": "\(execution)", "error": "\(detail)"])
        }
        resolver?.metadataCache?.flush()
        ended(execution, task: task)
    }

    /// Source and destination on different agents: an ONLINE agent of the destination
    /// serves it under a name made for this execution, and an agent of the source runs the
    /// engine against it over their direct connection; the data never passes through here.
    private func runAgentToAgent(_ job: ExecutionJob, from sources: Set<String>, to destinations: [String], resolver: LocationResolver) async throws {
        guard let server = await hub.firstOnline(destinations) else {
            throw ServerError.invalid("no agent of the destination location is ONLINE (\(destinations.joined(separator: ", ")))")
        }
        guard let endpoint = try store.get(server)?.body["DataEndpoint"]?.string else {
            throw ServerError.invalid("agent \(server) of the destination location has no data port (it was activated by an older control plane, or has not sent a heartbeat since it started); activate it again or wait a heartbeat")
        }
        let name = ControlPlane.randomHex(bytes: 24)
        try store.modify(job.execution) { $0["ServedBy"] = ["Agent": .string(server), "Name": .string(name)] }
        let serve: JSONValue = ["Serve": ["Name": .string(name), "Location": try resolver.revealed(job.destination), "AsDestination": true,
                                          "Options": job.executionBody["Options"] ?? [:]]]
        try await runOnAgents(job, agents: sources, resolver: resolver,
                              destinationRemote: ["Agent": .string(server), "Endpoint": .string(endpoint), "Name": .string(name)],
                              serve: (server, serve))
    }

    /// Offers the execution to `agents` with its locations' secrets opened (the destination
    /// as a name another agent serves, without its secrets, when `destinationRemote` is
    /// given) and records how it ended.
    private func runOnAgents(_ job: ExecutionJob, agents: Set<String>, resolver: LocationResolver, destinationRemote: JSONValue? = nil,
                             serve: (agent: String, command: JSONValue)? = nil) async throws {
        try store.modify(job.execution) { $0["Remote"] = true }
        var lease = job
        lease.source = try resolver.revealed(job.source)
        if let destinationRemote {
            for m in ControlPlane.secretMembers { lease.destination[m] = nil }  // the source's agent needs none of them
            lease.destinationRemote = destinationRemote
        } else {
            lease.destination = try resolver.revealed(job.destination)
        }
        let outcome: AgentHub.Outcome
        if agents.count > 1 {
            // Several agents: the execution spread over all of them, a share each.
            try store.modify(job.execution) { $0["Pool"] = true }
            let deletes = (try TaskOptions.transferOptions(job.executionBody["Options"] ?? [:])).preserveDeletedFiles == .remove
            outcome = await hub.runPool(job.execution, agents: agents, lease: lease.json, deletes: deletes, serve: serve)
            if case .detached = outcome { return }
            let parts = Result { try store.leaseReports(of: job.execution) }
            try? store.removeLeases(of: job.execution)
            try await record(outcome, job: job, reportParts: parts)
        } else {
            outcome = await hub.run(job.execution, agents: agents, lease: lease.json, serve: serve)
            try await record(outcome, job: job)
        }
    }

    /// After a restart, an execution an agent holds: waits for the agent's report.
    private func reattach(_ execution: String, task: String, agent: String, phase: String, bytesPerSecond: Int64?) async {
        let servedBy = (try? store.get(execution))??.body["ServedBy"]?["Agent"]?.string
        let outcome = await hub.reattach(execution, agent: agent, servedBy: servedBy, phase: phase, bytesPerSecond: bytesPerSecond)
        do {
            guard let taskBody = try store.get(task)?.body, let body = try store.get(execution)?.body else {
                throw ServerError.internalError("the task or execution vanished")
            }
            try await record(outcome, job: ExecutionJob(execution: execution, task: task, taskBody: taskBody, executionBody: body,
                                                        source: [:], destination: [:]))
        } catch {
            ExecutionRunner.bestEffort("the failed execution's end", execution, logger) {
                try finish(execution, status: .error, errorCode: "Error", detail: "\(error)")
            }
        }
        ended(execution, task: task)
    }

    /// Runs the engine in this process.
    private func runHere(_ job: ExecutionJob, resolver: LocationResolver) async throws {
        let execution = job.execution
        let log = ExecutionLog(store: store, execution: execution, level: job.logLevel)
        log.basic("[INFO] Execution \(execution) started: \(job.taskBody["SourceLocationArn"]?.string ?? "") -> \(job.taskBody["DestinationLocationArn"]?.string ?? "")")
        let prepared = try await job.prepare(resolver: resolver, log: log, logger: logger)
        defer { Task { await prepared.close() } }
        guard register(execution, engine: prepared.engine) else { throw CancellationError() }
        let result = await runPersistingProgress(execution, prepared.engine)
        log.flush()
        let reason = cancelReason(execution)
        let status: TaskExecutionStatus = reason == nil && result.outcome == .success ? .success : .error
        if let report = prepared.report {
            try await deliverReport(execution, log: log, resolver: resolver) {
                (report, try job.writeReport(report, result: result, status: status))
            }
        }
        try end(job, result: result, cancelled: reason, log: log)
        log.flush()
    }

    /// The terminal state of a finished run, its log line included.
    private func end(_ job: ExecutionJob, result: ExecutionResult, cancelled reason: String?, log: ExecutionLog) throws {
        let execution = job.execution
        if let reason {
            try finish(execution, status: .error, errorCode: "Cancelled", detail: reason, result: result)
            log.basic("[INFO] Execution \(execution) cancelled: \(reason)")
        } else {
            let status: TaskExecutionStatus = result.outcome == .success ? .success : .error
            try finish(execution, status: status, errorCode: result.errorCode, detail: result.errorDetail, result: result)
            log.basic("[INFO] Execution \(execution) ended \(status)\(result.errorDetail.map { ": \($0)" } ?? "")")
        }
    }

    /// Uploads the task report `write` produced (its files, written where `report` keeps
    /// them) and records ReportResult, with a log line when it failed.
    private func deliverReport(_ execution: String, log: ExecutionLog, resolver: LocationResolver,
                               _ write: () throws -> (report: ExecutionReport, files: [(name: String, path: String)])) async throws {
        var reportResult: JSONValue
        do {
            let written = try write()
            reportResult = await written.report.deliver(written.files, s3Endpoint: resolver.s3Endpoint)
        } catch {
            reportResult = ["Status": "ERROR", "ErrorCode": "ReportWriteFailed", "ErrorDetail": .string("\(error)")]
        }
        if reportResult["Status"]?.string != "SUCCESS" {
            log.basic("[ERROR] Task report: \(reportResult["ErrorDetail"]?.string ?? "failed")")
        }
        try store.modify(execution) { $0["ReportResult"] = reportResult }
    }

    /// Records how an agent's execution ended: its result and report, or the failure; the
    /// agent that served its destination (agent to agent) stops serving it. A control plane
    /// stopping (`detached`) records nothing: the agents carry on.
    /// An execution spread over agents brings its shares' parts of the task report, which
    /// are written into one here.
    private func record(_ outcome: AgentHub.Outcome, job: ExecutionJob, reportParts: Result<[JSONValue], any Error>? = nil) async throws {
        let execution = job.execution
        if case .detached = outcome { return }
        if let served = try store.get(execution)?.body["ServedBy"], let server = served["Agent"]?.string, let name = served["Name"]?.string {
            await hub.command(server, ["Withdraw": .string(name)])
        }
        let log = ExecutionLog(store: store, execution: execution, level: job.logLevel)
        switch outcome {
        case .detached:
            break  // returned above
        case .failed(let code, let detail):
            try finish(execution, status: .error, errorCode: code, detail: detail)
            log.basic("[ERROR] Execution \(execution) failed: \(detail)")
        case .finished(let result, let cancelled, let reports, let reportError):
            if let config = job.executionBody["TaskReportConfig"], let resolver {
                try await deliverReport(execution, log: log, resolver: resolver) {
                    let report = try ExecutionReport(config: config, dataDirectory: resolver.dataDirectory, task: job.task, execution: execution)
                    if let reportError { throw ServerError.internalError(reportError) }
                    if let reportParts {
                        for part in try reportParts.get() {
                            for category in ReportCategory.allCases {
                                guard let lines = part[category.rawValue]?.string.flatMap({ Data(base64Encoded: $0) }) else { continue }
                                report.sink.appendSpooled(lines, to: category)
                            }
                        }
                        let status: TaskExecutionStatus = cancelled == nil && result.outcome == .success ? .success : .error
                        return (report, try job.writeReport(report, result: result, status: status))
                    }
                    let files = try reports.map { r in
                        let path = report.directory + "/" + (r.file as NSString).lastPathComponent
                        try PrivateFile.write(path, [UInt8](r.content))
                        return (name: r.name, path: path)
                    }
                    return (report, files)
                }
            }
            try end(job, result: result, cancelled: cancelled, log: log)
        }
        log.flush()
    }

    /// A store write that must not stop what calls it (progress, a cancel request, the end
    /// of a failed execution): a failure is logged with what could not be recorded.
    static func bestEffort(_ what: String, _ execution: String, _ logger: Logger, _ write: () throws -> Void) {
        do {
            try write()
        } catch {
            logger.error("could not record \(what)", metadata: ["execution.id": "\(execution)", "error": "\(error)"])
        }
    }

    /// Writes the terminal state: status, Result, counters, EndTime.
    private func finish(_ execution: String, status: TaskExecutionStatus, errorCode: String?, detail: String?, result: ExecutionResult? = nil) throws {
        try store.modify(execution) { b in
            b["Status"] = status.json
            b["EndTime"] = ControlPlane.now()
            var r: JSONValue = b["Result"] ?? [:]
            if let result {
                for (k, v) in ExecutionRunner.counterFields(result.counters).object ?? [:] { b[k] = v }
                r["PrepareDuration"] = .number(Double(result.prepareDuration))
                r["PrepareStatus"] = .string(result.prepareStatus.rawValue)
                r["TransferDuration"] = .number(Double(result.transferDuration))
                r["TransferStatus"] = .string(result.transferStatus.rawValue)
                r["VerifyDuration"] = .number(Double(result.verifyDuration))
                r["VerifyStatus"] = .string(result.verifyStatus.rawValue)
                r["TotalDuration"] = .number(Double(result.totalDuration))
            } else {
                for phase in ["PrepareStatus", "TransferStatus", "VerifyStatus"] where r[phase]?.string == "PENDING" { r[phase] = "ERROR" }
                if b["ReportResult"]?["Status"]?.string == "PENDING" {
                    b["ReportResult"] = ["Status": "ERROR", "ErrorCode": .string(errorCode ?? "Error"),
                                         "ErrorDetail": "no task report: the execution did not run to its end"]
                }
            }
            if status == .error {
                r["ErrorCode"] = .string(errorCode ?? "Error")
                r["ErrorDetail"] = .string(detail ?? "the execution failed")
            }
            b["Result"] = r
        }
    }
}

extension JSONValue {
    func merging(_ other: [String: JSONValue], _ combine: (JSONValue, JSONValue) -> JSONValue) -> JSONValue {
        .object((object ?? [:]).merging(other, uniquingKeysWith: combine))
    }
}
