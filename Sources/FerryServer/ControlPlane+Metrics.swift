import FerryStore
import Foundation

/// `GET /metrics`: Prometheus text with DataSync's metric names per execution (labelled by
/// task, execution and agent), plus server health.
extension ControlPlane {
    static let metricNames: [(String, String)] = [
        ("BytesTransferred", "BytesTransferred"), ("BytesWritten", "BytesWritten"), ("FilesTransferred", "FilesTransferred"),
        ("FilesPreparedSource", "FilesPrepared"), ("FilesVerifiedDestination", "FilesVerified"), ("FilesDeleted", "FilesDeleted"),
        ("FilesSkipped", "FilesSkipped"),
    ]

    public func metricsText() async -> String {
        var lines: [String] = ["# HELP ferry_up Whether the Ferry server is serving.", "# TYPE ferry_up gauge", "ferry_up 1"]
        var executions: [(resource: Store.Resource, body: JSONValue)] = []
        for e in (try? store.list(.execution, limit: Int.max)) ?? [] { executions.append((e, await runner.current(e))) }
        var byStatus: [String: Int] = [:]
        for e in executions { byStatus[e.body["Status"]?.string ?? "?", default: 0] += 1 }
        lines.append("# TYPE ferry_task_executions gauge")
        for (s, n) in byStatus.sorted(by: { $0.key < $1.key }) { lines.append("ferry_task_executions{status=\"\(s)\"} \(n)") }
        for (metric, field) in ControlPlane.metricNames {
            lines.append("# TYPE datasync_\(metric) gauge")
            for (e, body) in executions {
                let agent = e.body["Agent"]?.string ?? builtInAgentArn
                let labels = "task=\"\(e.parent ?? "")\",execution=\"\(e.arn)\",agent=\"\(agent)\""
                lines.append("datasync_\(metric){\(labels)} \(Int64(body[field]?.number ?? 0))")
            }
        }
        lines.append("# HELP ferry_agent_online Whether an agent was heard from within the offline window.")
        lines.append("# TYPE ferry_agent_online gauge")
        for agent in (try? store.list(.agent, limit: Int.max)) ?? [] {
            lines.append("ferry_agent_online{agent=\"\(agent.arn)\"} \(await agentStatus(agent.arn) == "ONLINE" ? 1 : 0)")
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
