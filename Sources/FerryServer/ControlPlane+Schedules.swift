import FerryStore
import Foundation

/// Task schedules that really fire. Each task with an ENABLED schedule has its next firing
/// time in ``ControlPlane/scheduleDue``; ``runSchedules()`` checks it every second and
/// starts an execution when it is due. A rate schedule counts from when it was set (or last
/// fired); a cron schedule fires at its next matching UTC minute. Firings missed while the
/// server was down are not caught up (EventBridge's behaviour); a firing that finds the
/// task still running or queued is skipped and logged, so schedules never pile up.
extension ControlPlane {
    /// The private body field holding when a schedule was set or last fired (epoch seconds).
    static let scheduleAnchor = "_ScheduleAnchor"

    /// Validates a Schedule member of CreateTask/UpdateTask against the expression grammar
    /// and the minimum interval.
    func validateSchedule(_ schedule: JSONValue?) throws {
        guard let expression = schedule?["ScheduleExpression"]?.string, !expression.isEmpty else { return }
        try Schedule(expression).requireInterval(atLeast: minimumScheduleInterval)
    }

    /// The stored form of a Schedule member: expression and status, with the time it was set.
    static func storedSchedule(_ schedule: JSONValue, into body: inout JSONValue) {
        let expression = schedule["ScheduleExpression"]?.string ?? ""
        if expression.isEmpty {
            body["Schedule"] = nil
            body["ScheduleDetails"] = nil
            body[scheduleAnchor] = nil
            return
        }
        let status = schedule["Status"]?.string ?? "ENABLED"
        let changed = body["Schedule"]?["ScheduleExpression"]?.string != expression || body["Schedule"]?["Status"]?.string != status
        body["Schedule"] = ["ScheduleExpression": .string(expression), "Status": .string(status)]
        if changed {
            body["ScheduleDetails"] = status == "DISABLED" ? ["StatusUpdateTime": now(), "DisabledBy": "USER"] : ["StatusUpdateTime": now()]
            body[scheduleAnchor] = now()
        }
    }

    /// Recomputes the next firing of one task (after a create, update, delete or firing).
    func reschedule(_ arn: String, now: Date = Date()) {
        let body = try? store.get(arn)?.body
        let next = body.flatMap { ControlPlane.nextFiring($0, now: now) }
        scheduleDue.withLock { $0[arn] = next }
    }

    /// Loads every task's next firing (at start).
    func loadSchedules(now: Date = Date()) throws {
        var due: [String: Date] = [:]
        var after: Int64 = 0
        while true {
            let page = try store.list(.task, after: after, limit: 1000)
            for t in page { due[t.arn] = ControlPlane.nextFiring(t.body, now: now) }
            guard let last = page.last, page.count == 1000 else { break }
            after = last.sequence
        }
        scheduleDue.withLock { $0 = due }
    }

    static func nextFiring(_ body: JSONValue, now: Date) -> Date? {
        guard let s = body["Schedule"], s["Status"]?.string != "DISABLED",
              let expression = s["ScheduleExpression"]?.string, let schedule = try? Schedule(expression) else { return nil }
        switch schedule.kind {
        case .rate(let seconds):
            let anchor = body[scheduleAnchor]?.number ?? body["CreationTime"]?.number ?? now.timeIntervalSince1970
            let elapsed = max(0, now.timeIntervalSince1970 - anchor)
            let periods = (elapsed / Double(seconds)).rounded(.down) + 1
            return Date(timeIntervalSince1970: anchor + periods * Double(seconds))
        case .cron:
            return schedule.next(after: now)
        }
    }

    /// Fires the schedules that are due; runs until cancelled.
    func runSchedules() async {
        while !Task.isCancelled {
            await fireDueSchedules(now: Date())
            try? await Task.sleep(for: .seconds(1))
        }
    }

    func fireDueSchedules(now: Date) async {
        let due = scheduleDue.withLock { d -> [String] in
            let arns = d.filter { $0.value <= now }.map(\.key)
            for a in arns { d[a] = nil }
            return arns
        }
        for arn in due.sorted() {
            do {
                guard try store.get(arn) != nil else { continue }
                _ = try store.modify(arn) { $0[ControlPlane.scheduleAnchor] = .number(now.timeIntervalSince1970.rounded()) }
                let active = try store.list(.execution, parent: arn, limit: Int.max)
                    .first { !(TaskExecutionStatus($0.body)?.isTerminal ?? false) }
                if let active {
                    logger.warning("scheduled run skipped: the task is still running", metadata: ["task": "\(arn)", "execution.id": "\(active.arn)"])
                } else {
                    let started = try await startTaskExecution(["TaskArn": .string(arn)])
                    logger.info("scheduled run started", metadata: ["task": "\(arn)", "execution.id": "\(started["TaskExecutionArn"]?.string ?? "")"])
                }
            } catch {
                logger.error("scheduled run failed to start", metadata: ["task": "\(arn)", "error": "\(error)"])
            }
            reschedule(arn, now: now)
        }
    }
}
