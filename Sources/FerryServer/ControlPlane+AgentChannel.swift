import FerryEngine
import FerryStore
import Foundation

/// The agents' channel, `POST /agent/v1/OPERATION` on the HTTPS port, every call by the
/// agent its client certificate names (``AgentAuthority``): `heartbeat` (version), `lease`
/// (a long poll for the next execution), `progress` (status, counters and log lines of a
/// running execution; answered with cancel and BytesPerSecond), `finish` (its result and
/// task report). The agent always calls out; the control plane never dials an agent.
extension ControlPlane {
    /// How long a `lease` poll may wait at most, in seconds.
    static let longestLeasePoll: Double = 60

    func agentCall(_ operation: String, agent: String, serial: String, input: JSONValue) async throws -> JSONValue {
        guard let r = try store.get(agent), r.kind == .agent, r.body["CertificateSerial"]?.string == serial else {
            throw ServerError(type: "AgentDeleted", status: 403,
                              message: "agent \(agent) was deleted from this control plane, and its certificate is no longer accepted; remove the agent's data directory and activate it again")
        }
        switch operation {
        case "heartbeat":
            await hub.heard(agent, version: input["Version"]?.string, capacity: input["Capacity"], dataEndpoint: input["DataEndpoint"]?.string,
                            instance: input["Instance"]?.string)
            return ["OfflineAfterSeconds": .number(hub.offlineAfter)]
        case "lease":
            let wait = min(max(input["WaitSeconds"]?.number ?? 20, 0), ControlPlane.longestLeasePoll)
            return await hub.nextLease(for: agent, wait: .milliseconds(Int64(wait * 1000))) ?? ["Lease": .null]
        case "progress":
            let execution = input["TaskExecutionArn"]?.string ?? ""
            let directives = if let share = input["ShareId"]?.string {
                await hub.shareProgress(share, from: agent, input)
            } else {
                await hub.progress(execution, from: agent, input)
            }
            guard let directives else { throw ControlPlane.notYours(input["ShareId"]?.string ?? execution, agent) }
            return directives
        case "finish":
            let execution = input["TaskExecutionArn"]?.string ?? ""
            let log = input["Log"]?.array?.compactMap(\.string) ?? []
            let outcome = try ControlPlane.outcome(input)
            let taken = if let share = input["ShareId"]?.string {
                await hub.shareFinished(share, from: agent, outcome, depth: input["Depth"]?.int.map { Int($0) },
                                          report: input["ReportParts"], log: log)
            } else {
                await hub.finished(execution, from: agent, outcome, log: log)
            }
            guard taken else { throw ControlPlane.notYours(input["ShareId"]?.string ?? execution, agent) }
            return [:]
        default:
            throw ServerError(type: "UnknownOperationException", status: 404, message: "the agents' channel has no operation \(operation)")
        }
    }

    static func notYours(_ execution: String, _ agent: String) -> ServerError {
        ServerError(type: "UnknownExecution", status: 404,
                    message: "execution \(execution) is not running on agent \(agent) (it ended here, or was given to another agent)")
    }

    /// A `finish` call's outcome: `Error {Code, Detail}`, or `Result` (the engine's
    /// ExecutionResult), `Cancelled`, `Reports [{Name, File, Content (base64)}]`, `ReportError`.
    static func outcome(_ input: JSONValue) throws -> AgentHub.Outcome {
        if let error = input["Error"] {
            return .failed(code: error["Code"]?.string ?? "Error", detail: error["Detail"]?.string ?? "the agent gave no detail")
        }
        guard let result = input["Result"] else { throw ServerError.invalid("a finish call carries Result or Error") }
        let decoded: ExecutionResult
        do {
            decoded = try JSONDecoder().decode(ExecutionResult.self, from: result.serialized())
        } catch {
            throw ServerError.invalid("the agent's Result cannot be read: \(error)")
        }
        let reports = (input["Reports"]?.array ?? []).compactMap { r -> (name: String, file: String, content: Data)? in
            guard let name = r["Name"]?.string, let file = r["File"]?.string, let content = r["Content"]?.string.flatMap({ Data(base64Encoded: $0) })
            else { return nil }
            return (name, file, content)
        }
        return .finished(decoded, cancelled: input["Cancelled"]?.string, reports: reports, reportError: input["ReportError"]?.string)
    }
}
