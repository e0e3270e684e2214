import FerryEngine
import FerryStore
import Foundation
import Logging

/// The control plane's side of its agents: when each was last heard from (ONLINE or
/// OFFLINE), the executions offered to them (handed out on their long polls), and the
/// executions they run: progress written to the store, cancel and BytesPerSecond passed
/// back, the end awaited, and an agent silent for longer than the offline window ending
/// its execution in ERROR. Which agent holds an execution is written in the execution's
/// row when the agent takes it (`Agent`), so a restarted control plane waits for the same
/// agent to report instead of failing what it runs.
actor AgentHub {
    /// How an execution given to an agent ended, as the runner records it.
    enum Outcome: Sendable {
        /// The agent ran it: the engine's result, a cancel reason, the task report's files.
        case finished(ExecutionResult, cancelled: String?, reports: [(name: String, file: String, content: Data)], reportError: String?)
        /// It could not run or the agent was lost: DataSync's ErrorCode and ErrorDetail.
        case failed(code: String, detail: String)
        /// The control plane is stopping; the agent goes on and reports to the next one.
        case detached
    }

    let store: Store
    let logger: Logger
    /// Silence after which an agent is OFFLINE (DataSync: five minutes).
    let offlineAfter: TimeInterval
    private let started = Date()
    private var lastSeen: [String: Date] = [:]
    /// What was last written to each agent's row, and when: a call writes again only after
    /// 10 s, or when the version or data endpoint it brings differs.
    private var persisted: [String: (at: Date, version: String?, dataEndpoint: String?)] = [:]
    /// Each agent's process, as its heartbeats name it: a new one means it restarted.
    private var instances: [String: String] = [:]

    private struct Offer {
        let execution: String
        let agents: Set<String>
        let lease: JSONValue
        let since: Date
    }
    private var offers: [Offer] = []
    /// Commands waiting for an agent's next poll (serve a location to another agent, stop).
    private var commands: [String: [JSONValue]] = [:]
    private var polls: [String: [(id: UUID, continuation: CheckedContinuation<JSONValue?, Never>)]] = [:]

    private struct Remote {
        var agent: String?
        /// The agent serving the destination to `agent` (agent to agent).
        var servedBy: String?
        /// The command that has `servedBy` serve the destination (sent again when it restarts).
        var serve: JSONValue?
        /// What was offered (offered again when the agent running it restarts).
        var offer: Offer?
        var cancel: String?
        var bytesPerSecond: Int64?
        var phase = "LAUNCHING"
        var ending = Ending()
        var ended: Outcome? { ending.outcome }
    }
    private var remotes: [String: Remote] = [:]

    /// How an execution the hub runs ended, for the runner that waits on it: handed over at
    /// once when the runner already waits, kept until it asks otherwise.
    struct Ending {
        private(set) var outcome: Outcome?
        var waiter: CheckedContinuation<Outcome, Never>?

        /// Records `outcome`; true when a waiter took it (the hub may forget the execution).
        mutating func settle(_ o: Outcome) -> Bool {
            outcome = o
            guard let w = waiter else { return false }
            waiter = nil
            w.resume(returning: o)
            return true
        }
    }
    /// Executions spread over several agents (``runPool``).
    var pools: [String: Pool] = [:]

    init(store: Store, offlineAfter: TimeInterval, logger: Logger) {
        self.store = store
        self.offlineAfter = offlineAfter
        self.logger = logger
        for a in (try? store.list(.agent, limit: Int.max)) ?? [] {
            if let t = a.body["LastConnectionTime"]?.number { lastSeen[a.arn] = Date(timeIntervalSince1970: t) }
        }
    }

    // MARK: agents

    /// An agent called: it is ONLINE from now. Written to the store at most every 10 s.
    /// A heartbeat's `version`, `capacity` and data endpoint are written with it; its
    /// `instance` tells a restarted agent (``restarted(_:)``).
    func heard(_ agent: String, version: String? = nil, capacity: JSONValue? = nil, dataEndpoint: String? = nil, instance: String? = nil) {
        let now = Date()
        lastSeen[agent] = now
        if let instance {
            if let before = instances[agent], before != instance { restarted(agent) }
            instances[agent] = instance
        }
        let last = persisted[agent]
        let changed = (version != nil && version != last?.version) || (dataEndpoint != nil && dataEndpoint != last?.dataEndpoint)
        if changed || now.timeIntervalSince(last?.at ?? .distantPast) >= 10 {
            persisted[agent] = (now, version ?? last?.version, dataEndpoint ?? last?.dataEndpoint)
            do {
                try store.modify(agent) { body in
                    body["LastConnectionTime"] = .number(now.timeIntervalSince1970.rounded())
                    if let version { body["Platform"] = ["Version": .string(version)] }
                    if let capacity { body["Capacity"] = capacity }
                    if let dataEndpoint { body["DataEndpoint"] = .string(dataEndpoint) }
                }
            } catch {
                logger.error("could not record an agent's connection", metadata: ["agent": "\(agent)", "error": "\(error)"])
            }
        }
    }

    func isOnline(_ agent: String) -> Bool {
        guard let seen = lastSeen[agent] else { return false }
        return Date().timeIntervalSince(seen) < offlineAfter
    }

    func lastConnection(_ agent: String) -> Date? { lastSeen[agent] }

    func forget(_ agent: String) {
        lastSeen[agent] = nil
        for p in polls.removeValue(forKey: agent) ?? [] { p.continuation.resume(returning: nil) }
    }

    /// A new process of `agent` called (it restarted within the offline window): what it
    /// served to other agents it serves again under the same names (their connections
    /// come back and go on), and what it ran is offered again from the start (a run moves
    /// only what is not yet at the destination).
    private func restarted(_ agent: String) {
        // Long polls still waiting may be the old process's, whose connections are gone:
        // what they were handed would be lost. They end empty (a live one polls again).
        for p in polls.removeValue(forKey: agent) ?? [] { p.continuation.resume(returning: nil) }
        releaseShares(of: agent)
        for pool in pools.values where pool.ended == nil {
            if let serve = pool.serve, serve.agent == agent { command(agent, serve.command) }
        }
        for (execution, r) in remotes where r.ended == nil {
            if r.servedBy == agent, let serve = r.serve {
                logger.warning("agent restarted: serving the destination again", metadata: ["execution.id": "\(execution)", "agent": "\(agent)"])
                command(agent, serve)
            }
            if r.agent == agent, let offer = r.offer {
                logger.warning("agent restarted: offering its execution again", metadata: ["execution.id": "\(execution)", "agent": "\(agent)"])
                remotes[execution]?.agent = nil
                offers.append(Offer(execution: execution, agents: offer.agents, lease: offer.lease, since: Date()))
            }
        }
        handOut()
    }

    // MARK: executions

    /// Offers `lease` to the first of `agents` that polls, and waits for how it ends;
    /// `serve` first has the agent that serves the destination do so (agent to agent).
    func run(_ execution: String, agents: Set<String>, lease: JSONValue, serve: (agent: String, command: JSONValue)? = nil) async -> Outcome {
        let offer = Offer(execution: execution, agents: agents, lease: lease, since: Date())
        remotes[execution] = Remote(servedBy: serve?.agent, serve: serve?.command, offer: offer,
                                    bytesPerSecond: AgentHub.bytesPerSecond(lease["Execution"] ?? [:]))
        if let serve { command(serve.agent, serve.command) }
        offers.append(offer)
        handOut()
        return await wait(execution)
    }

    /// After a restart: `execution` runs on `agent`; waits for its report.
    func reattach(_ execution: String, agent: String, servedBy: String?, phase: String, bytesPerSecond: Int64?) async -> Outcome {
        remotes[execution] = Remote(agent: agent, servedBy: servedBy, bytesPerSecond: bytesPerSecond, phase: phase)
        return await wait(execution)
    }

    /// An execution body's BytesPerSecond (nil: no limit).
    static func bytesPerSecond(_ execution: JSONValue) -> Int64? {
        let bps = execution["Options"]?["BytesPerSecond"]?.int ?? -1
        return bps < 0 ? nil : bps
    }

    private func wait(_ execution: String) async -> Outcome {
        if let ended = remotes[execution]?.ended {
            remotes[execution] = nil
            return ended
        }
        return await withCheckedContinuation { remotes[execution]?.ending.waiter = $0 }
    }

    private func end(_ execution: String, _ outcome: Outcome) {
        guard var r = remotes[execution], r.ended == nil else { return }
        offers.removeAll { $0.execution == execution }
        remotes[execution] = r.ending.settle(outcome) ? nil : r
    }

    /// Queues `command` for `agent`'s next poll.
    func command(_ agent: String, _ command: JSONValue) {
        if let i = polls[agent]?.indices.first {
            polls[agent]!.remove(at: i).continuation.resume(returning: ["Command": command])
        } else {
            commands[agent, default: []].append(command)
        }
    }

    /// The first of `agents` (in order) that is ONLINE.
    func firstOnline(_ agents: [String]) -> String? { agents.first(where: isOnline) }

    /// An agent's long poll: `{"Command": …}` or `{"Lease": …}` for it, or nil after `wait`.
    func nextLease(for agent: String, wait: Duration) async -> JSONValue? {
        heard(agent)
        if var queued = commands[agent], !queued.isEmpty {
            let first = queued.removeFirst()
            commands[agent] = queued.isEmpty ? nil : queued
            return ["Command": first]
        }
        if let lease = claim(for: agent) { return ["Lease": lease] }
        let id = UUID()
        let timer = Task { [weak self] in
            try? await Task.sleep(for: wait)
            await self?.expirePoll(agent, id)
        }
        defer { timer.cancel() }
        return await withCheckedContinuation { polls[agent, default: []].append((id, $0)) }
    }

    private func expirePoll(_ agent: String, _ id: UUID) {
        guard let i = polls[agent]?.firstIndex(where: { $0.id == id }) else { return }
        polls[agent]!.remove(at: i).continuation.resume(returning: nil)
    }

    func handOut() {
        for (agent, waiting) in polls where !waiting.isEmpty {
            guard let lease = claim(for: agent) else { continue }
            polls[agent]!.removeFirst().continuation.resume(returning: ["Lease": lease])
        }
    }

    /// Takes the oldest offer `agent` may run, recording in the execution's row that the
    /// agent holds it.
    private func claim(for agent: String) -> JSONValue? {
        guard let i = offers.firstIndex(where: { $0.agents.contains(agent) }) else { return claimShare(for: agent) }
        let offer = offers.remove(at: i)
        do {
            try store.modify(offer.execution) { $0["Agent"] = .string(agent) }
        } catch {
            end(offer.execution, .failed(code: "LaunchFailed", detail: "the execution could not be given to agent \(agent): \(error)"))
            return nil
        }
        remotes[offer.execution]?.agent = agent
        logger.info("execution leased", metadata: ["execution.id": "\(offer.execution)", "agent": "\(agent)"])
        return offer.lease
    }

    /// An agent's progress report: status and counters stored, log lines appended; what
    /// the agent must do (cancel, a new BytesPerSecond). nil: the execution is not the
    /// agent's (ended here meanwhile, or never its own), and the agent should stop it.
    func progress(_ execution: String, from agent: String, _ report: JSONValue) -> JSONValue? {
        heard(agent)
        guard let r = remotes[execution], r.agent == agent, r.ended == nil else { return nil }
        if let status = report["Status"]?.string { remotes[execution]?.phase = status }
        do {
            try store.modify(execution) { body in
                guard let status = TaskExecutionStatus(body), !status.isTerminal, status != .cancelling else { return }
                for (k, v) in report["Counters"]?.object ?? [:] { body[k] = v }
                if let s = report["Status"]?.string, TaskExecutionStatus(rawValue: s) != nil { body["Status"] = .string(s) }
            }
            try store.appendLog(execution, report["Log"]?.array?.compactMap(\.string) ?? [])
        } catch {
            logger.error("could not record an agent's progress", metadata: ["execution.id": "\(execution)", "error": "\(error)"])
        }
        return ["Cancel": r.cancel.map { .string($0) } ?? .null, "BytesPerSecond": .number(Double(r.bytesPerSecond ?? -1))]
    }

    /// The agent's end of an execution; false when it is not the agent's.
    func finished(_ execution: String, from agent: String, _ outcome: Outcome, log: [String]) -> Bool {
        heard(agent)
        guard let r = remotes[execution], r.agent == agent else { return false }
        do {
            try store.appendLog(execution, log)
        } catch {
            logger.error("could not record an agent's log lines", metadata: ["execution.id": "\(execution)", "error": "\(error)"])
        }
        end(execution, outcome)
        return true
    }

    /// CancelTaskExecution: an offer not yet taken ends now; a running one is cancelled by
    /// its agent at its next report.
    func cancel(_ execution: String, reason: String) {
        if pools[execution] != nil { return cancelPool(execution, reason: reason) }
        guard let r = remotes[execution] else { return }
        if r.agent == nil {
            end(execution, .failed(code: "Cancelled", detail: reason))
        } else {
            remotes[execution]?.cancel = reason
        }
    }

    func setBandwidth(_ execution: String, _ bytesPerSecond: Int64?) {
        remotes[execution]?.bytesPerSecond = bytesPerSecond
        pools[execution]?.bytesPerSecond = bytesPerSecond
    }

    func isRemote(_ execution: String) -> Bool { remotes[execution] != nil || pools[execution] != nil }

    /// Ends executions whose agent fell silent for the offline window, and offers no
    /// agent of which has called for as long.
    func sweep() {
        let now = Date()
        for (execution, r) in remotes where r.ended == nil && r.agent != nil {
            // The agent running the engine, and the one serving it the destination.
            for (agent, role) in [(r.agent, "running it"), (r.servedBy, "serving its destination")] {
                guard let agent else { continue }
                let seen = max(lastSeen[agent] ?? started, started)
                guard now.timeIntervalSince(seen) >= offlineAfter else { continue }
                let name = (try? store.get(agent))?.body["Name"]?.string.map { "\($0) (\(agent))" } ?? agent
                end(execution, .failed(code: "AgentOffline",
                                       detail: "agent \(name), \(role), was not heard from for \(Int(offlineAfter)) s while the execution was \(r.phase); nothing was left under a final name — start the task again when the agent is back"))
                break
            }
        }
        for o in offers where now.timeIntervalSince(o.since) >= offlineAfter && !o.agents.contains(where: isOnline) {
            end(o.execution, .failed(code: "AgentOffline",
                                     detail: "no agent of the task's locations (\(o.agents.sorted().joined(separator: ", "))) came online within \(Int(offlineAfter)) s"))
        }
        sweepPools()
    }

    /// The sweep, every second (or sooner for short test windows) until cancelled.
    func runSweeps() async {
        let every = Duration.milliseconds(Int64(max(100, min(1000, offlineAfter * 100))))
        while !Task.isCancelled {
            try? await Task.sleep(for: every)
            sweep()
        }
    }

    /// The control plane stops: every wait ends detached (the agents carry on).
    func shutdown() {
        for (execution, _) in remotes { end(execution, .detached) }
        for (execution, _) in pools { endPool(execution, .detached) }
        for (_, waiting) in polls { for p in waiting { p.continuation.resume(returning: nil) } }
        polls = [:]
    }
}
