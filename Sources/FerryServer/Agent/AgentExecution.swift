import FerryEngine
import FerryS3
import FerryStore
import Foundation
import Logging
import NIOSSL
import Synchronization

/// One execution leased to this agent: the locations opened from the lease (secrets held
/// in memory only), the engine run here, progress (status, counters, log lines) sent every
/// two seconds and answered with cancel and BytesPerSecond, and at the end the result and
/// the task report's files sent until the control plane takes them. A control plane that
/// cannot be reached does not stop the run: progress waits, and the end is sent when it
/// answers again.
struct AgentExecution: Sendable {
    let lease: JSONValue
    let agent: String
    let client: ControlPlaneClient
    let dataDirectory: String
    let logger: Logger
    /// What reaches a location another agent serves (agent to agent).
    let peerTLS: TLSConfiguration?
    /// The agent's `--local-root` directories (``LocationResolver/localRoots``).
    let localRoots: [String]

    init(lease: JSONValue, agent: String, client: ControlPlaneClient, dataDirectory: String, peerTLS: TLSConfiguration?,
         localRoots: [String], logger: Logger) {
        self.lease = lease
        self.localRoots = localRoots
        self.peerTLS = peerTLS
        self.agent = agent
        self.client = client
        self.dataDirectory = dataDirectory
        self.logger = logger
    }

    var arn: String { lease["TaskExecutionArn"]?.string ?? "" }

    /// How often progress is sent.
    static let progressInterval = Duration.seconds(2)

    func run() async {
        var logger = self.logger
        logger[metadataKey: "execution.id"] = "\(arn)"
        let lines = Shared<[String]>([])
        let job: ExecutionJob
        do {
            job = try ExecutionJob(json: lease)
        } catch {
            await finish(["Error": ["Code": "LaunchFailed", "Detail": JSONValue.string("the lease cannot be read: \(error)")]], lines: lines)
            return
        }
        let log = ExecutionLog(level: job.logLevel) { new in lines.withLock { $0 += new } }
        let part = job.share.map { " (share \(($0["Unit"]?.int ?? 0) + 1) of \($0["Units"]?.int ?? 1), \($0["Phase"]?.string ?? ""))" } ?? ""
        log.basic("[INFO] Execution \(arn) started on agent \(agent)\(part): \(job.taskBody["SourceLocationArn"]?.string ?? "") -> \(job.taskBody["DestinationLocationArn"]?.string ?? "")")
        let resolver = LocationResolver(store: nil, s3Endpoint: S3Configuration.Overrides(), dataDirectory: dataDirectory,
                                        metadataCache: nil, secrets: nil, peerTLS: peerTLS, localRoots: localRoots)
        let prepared: ExecutionJob.Prepared
        do {
            prepared = try await job.prepare(resolver: resolver, log: log, logger: logger)
        } catch {
            let detail = (error as? ServerError)?.message ?? "\(error)"
            log.basic("[ERROR] Execution \(arn) failed on agent \(agent): \(detail)")
            log.flush()
            await finish(["Error": ["Code": "LaunchFailed", "Detail": JSONValue.string("on agent \(agent): \(detail)")]], lines: lines)
            return
        }
        let engine = prepared.engine
        let cancelled = Shared<String?>(nil)
        let running = Task { await engine.run() }
        let reporter = Task {
            var bandwidth = AgentHub.bytesPerSecond(job.executionBody) ?? -1
            while !Task.isCancelled {
                try? await Task.sleep(for: AgentExecution.progressInterval)
                if Task.isCancelled { break }
                log.flush()
                let sending = lines.withLock { $0 }
                let live = ExecutionRunner.liveFields(engine)
                var counters = live
                counters["Status"] = nil
                do {
                    var report: JSONValue = ["TaskExecutionArn": .string(arn), "Status": live["Status"] ?? .null,
                                             "Counters": .object(counters), "Log": .array(sending.map { .string($0) })]
                    if let share = job.share?["Id"] { report["ShareId"] = share }
                    let answer = try await client.call("progress", report)
                    lines.withLock { $0.removeFirst(min(sending.count, $0.count)) }
                    if let reason = answer["Cancel"]?.string, cancelled.withLock({ $0 }) == nil {
                        cancelled.withLock { $0 = reason }
                        running.cancel()
                    }
                    if let bps = answer["BytesPerSecond"]?.int, bps != bandwidth {
                        bandwidth = bps
                        engine.updateBandwidth(bps < 0 ? nil : bps)
                    }
                } catch let e as ControlPlaneClient.CallError where e.status == 404 || e.status == 403 {
                    // The control plane ended this execution (its agent was taken for lost).
                    logger.warning("the control plane no longer runs this execution here; stopping it", metadata: ["error": "\(e)"])
                    cancelled.withLock { $0 = "the control plane ended this execution: \(e.message)" }
                    running.cancel()
                    break
                } catch {
                    continue  // the control plane is away: the run goes on, progress waits
                }
            }
        }
        let result = await running.value
        reporter.cancel()
        await prepared.close()
        log.flush()
        let reason = cancelled.withLock { $0 }
        if reason?.hasPrefix("the control plane ended") ?? false { return }
        var end: JSONValue = ["Result": ExecutionResultJSON.encode(result)]
        if let reason { end["Cancelled"] = .string(reason) }
        // The depth this share cut the tree at: the control plane checks every share found the same.
        if let depth = engine.configuration.filters.share?.depth { end["Depth"] = .number(Double(depth)) }
        if let report = prepared.report, job.share != nil {
            // A share sends its entries; the control plane writes the execution's report.
            end["ReportParts"] = .object(Dictionary(uniqueKeysWithValues: report.sink.takeSpooled().map {
                ($0.key.rawValue, JSONValue.string($0.value.base64EncodedString()))
            }))
            try? FileManager.default.removeItem(atPath: report.directory)
        } else if let report = prepared.report {
            let status: TaskExecutionStatus = reason == nil && result.outcome == .success ? .success : .error
            do {
                let files = try job.writeReport(report, result: result, status: status)
                var sent: [JSONValue] = []
                for f in files {
                    guard let data = FileManager.default.contents(atPath: f.path) else { throw ServerError.internalError("cannot read \(f.path)") }
                    sent.append(["Name": .string(f.name), "File": .string((f.path as NSString).lastPathComponent), "Content": .string(data.base64EncodedString())])
                }
                end["Reports"] = .array(sent)
                try? FileManager.default.removeItem(atPath: report.directory)
            } catch {
                end["ReportError"] = .string("the agent could not write the task report: \(error)")
            }
        }
        await finish(end, lines: lines)
    }

    /// Sends the end (with the log lines not yet sent) until the control plane takes it or
    /// says it is not this agent's.
    private func finish(_ end: JSONValue, lines: Shared<[String]>) async {
        var body = end
        body["TaskExecutionArn"] = .string(arn)
        if let share = lease["Share"]?["Id"] { body["ShareId"] = share }
        body["Log"] = .array(lines.value.map { JSONValue.string($0) })
        while !Task.isCancelled {
            do {
                _ = try await client.call("finish", body, timeout: .seconds(120))
                return
            } catch let e as ControlPlaneClient.CallError where e.status != 0 && e.status < 500 {
                logger.error("the control plane refused this execution's end", metadata: ["execution.id": "\(arn)", "error": "\(e)"])
                return
            } catch {
                try? await Task.sleep(for: .seconds(2))
            }
        }
    }
}

/// ExecutionResult as the JSON the `finish` call carries.
enum ExecutionResultJSON {
    static func encode(_ result: ExecutionResult) -> JSONValue {
        (try? JSONValue.parse(JSONEncoder().encode(result))) ?? .null
    }
}
