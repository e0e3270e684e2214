import FerryEngine
import FerryStore
import Foundation

/// Executions spread over several agents (a location naming several, as DataSync allows):
/// the tree is cut into `units` shares (``Filters/Share``: by a hash of each path's first
/// names, at a depth each share reads from the source, so that a narrow top still spreads),
/// each a lease row in the store (``Lease``) that an agent claims on its long poll, renews
/// with every progress call and ends with its result. An agent holds one share of an execution
/// at a time, so every agent that polls — one started mid-run too — gets work; a share
/// whose agent fell silent for the offline window goes to the next agent that polls, and
/// the execution fails only when none of its agents is left that long. Counters are the
/// sum of the ended shares' results (plus the running ones' live numbers meanwhile), so a
/// share run twice counts once. With PreserveDeletedFiles=REMOVE, deletions run as a
/// second round of shares, only after every share transferred without error. A last
/// share, the finishing one, then gives the directories every share wrote in (the root,
/// and those above the depth) their metadata. BytesPerSecond is divided among the shares
/// running.
extension AgentHub {
    struct Pool {
        let agents: Set<String>
        /// The execution's lease (secrets opened, memory only); each share's is added to it.
        let lease: JSONValue
        let units: Int
        /// Whether deletions wait for a second round.
        let deletes: Bool
        /// The agent serving the destination (agent to agent) and its command.
        let serve: (agent: String, command: JSONValue)?
        var phase = Pool.transfer
        /// The depth the shares cut the tree at, once one share found it: given to the shares
        /// leased after that (they need not read the source's top again) and to later rounds.
        var depth: Int?
        /// Live counters of the shares running, by lease id, and the agent running each.
        var live: [String: (agent: String, counters: JSONValue)] = [:]
        var cancel: String?
        var bytesPerSecond: Int64?
        var ending = Ending()
        var ended: Outcome? { ending.outcome }
        /// The counters of the shares that ended (summed when one ends, not at each progress call).
        var done = CounterSnapshot()
        /// Since when none of its agents was heard (nil: one was).
        var unattendedSince: Date?

        static let transfer = "TRANSFER"
        static let delete = "DELETE"
        static let finish = "FINISH"
    }

    /// How many shares an execution on `agents` agents is cut into: enough for a late
    /// agent to find work and for a lost one's share to be small.
    static func shares(forAgents agents: Int) -> Int { min(32, 4 * max(1, agents)) }

    /// Runs `execution` on every one of `agents` that polls, a share at a time, and waits
    /// for its end. Shares already in the store (a restarted control plane) are kept.
    func runPool(_ execution: String, agents: Set<String>, lease: JSONValue, deletes: Bool,
                 serve: (agent: String, command: JSONValue)?) async -> Outcome {
        var units = AgentHub.shares(forAgents: agents.count)
        var phase = Pool.transfer
        var depth: Int?
        do {
            let existing = try store.leases(of: execution)
            if existing.isEmpty {
                try store.addLeases(execution, units: units, phase: Pool.transfer)
            } else {
                units = existing[0].units
                for later in [Pool.delete, Pool.finish] where existing.contains(where: { $0.phase == later }) { phase = later }
                depth = try? AgentHub.depth(existing).get()
            }
        } catch {
            return .failed(code: "LaunchFailed", detail: "the execution's shares could not be stored: \(error)")
        }
        var pool = Pool(agents: agents, lease: lease, units: units, deletes: deletes, serve: serve)
        pool.phase = phase
        pool.depth = depth
        pool.bytesPerSecond = AgentHub.bytesPerSecond(lease["Execution"] ?? [:])
        pools[execution] = pool
        if let serve { command(serve.agent, serve.command) }
        logger.info("execution spread over agents", metadata: ["execution.id": "\(execution)", "shares": "\(units)", "agents": "\(agents.sorted())"])
        advance(execution)
        handOut()
        if let ended = pools[execution]?.ended {
            pools[execution] = nil
            return ended
        }
        return await withCheckedContinuation { pools[execution]?.ending.waiter = $0 }
    }

    /// Claims for `agent` a share of an execution it may run (none while it runs one of it).
    func claimShare(for agent: String) -> JSONValue? {
        let eligible = pools.filter { $0.value.agents.contains(agent) && $0.value.ended == nil && $0.value.cancel == nil }.keys.sorted()
        guard !eligible.isEmpty else { return nil }
        let now = Date().timeIntervalSince1970
        do {
            guard let share = try store.claimLease(for: agent, among: eligible, now: now, until: now + offlineAfter),
                  let pool = pools[share.execution] else { return nil }
            var lease = pool.lease
            lease["Share"] = ["Id": .string(share.id), "Unit": .number(Double(share.unit)), "Units": .number(Double(share.units)),
                              "Phase": .string(share.phase), "Attempt": .number(Double(share.attempts))]
            if let depth = pool.depth { lease["Share"]?["Depth"] = .number(Double(depth)) }
            logger.info("share leased", metadata: ["execution.id": "\(share.execution)", "agent": "\(agent)",
                                                   "share": "\(share.phase) \(share.unit + 1)/\(share.units)", "attempt": "\(share.attempts)"])
            return lease
        } catch {
            logger.error("could not claim a share", metadata: ["agent": "\(agent)", "error": "\(error)"])
            return nil
        }
    }

    /// The execution a share's lease id belongs to (`EXECUTION/phase-N`).
    static func execution(ofShare id: String) -> String {
        guard let slash = id.lastIndex(of: "/") else { return id }
        return String(id[..<slash])
    }

    /// A share's progress: its claim renewed, its live counters kept; what its agent must
    /// do. nil: the share is not the agent's any more (it lapsed and went to another).
    func shareProgress(_ id: String, from agent: String, _ report: JSONValue) -> JSONValue? {
        heard(agent)
        let execution = AgentHub.execution(ofShare: id)
        guard let pool = pools[execution], pool.ended == nil else { return nil }
        let now = Date().timeIntervalSince1970
        guard (try? store.renewLease(id, agent: agent, until: now + offlineAfter)) == true else { return nil }
        pools[execution]?.live[id] = (agent, report["Counters"] ?? [:])
        recordPoolProgress(execution, status: report["Status"]?.string)
        let running = max(1, pools[execution]?.live.count ?? 1)
        let bps = pool.bytesPerSecond.map { max(1, $0 / Int64(running)) } ?? -1
        return ["Cancel": pool.cancel.map { .string($0) } ?? .null, "BytesPerSecond": .number(Double(bps))]
    }

    /// A share's end, with the depth it cut the tree at and its part of the task report;
    /// false when it is not the agent's (then neither is counted).
    func shareFinished(_ id: String, from agent: String, _ outcome: Outcome, depth: Int?, report: JSONValue?, log: [String]) -> Bool {
        heard(agent)
        let execution = AgentHub.execution(ofShare: id)
        guard pools[execution]?.ended == nil else { return false }
        var end: JSONValue
        switch outcome {
        case .finished(let result, let cancelled, _, _):
            end = ["Result": ExecutionResultJSON.encode(result)]
            if let cancelled { end["Cancelled"] = .string(cancelled) }
        case .failed(let code, let detail):
            end = ["Error": ["Code": .string(code), "Detail": .string("on agent \(agent): \(detail)")]]
        case .detached:
            return false
        }
        if let depth { end["Depth"] = .number(Double(depth)) }
        guard (try? store.completeLease(id, agent: agent, result: end, report: report)) == true else { return false }
        if pools[execution]?.depth == nil { pools[execution]?.depth = depth }
        do {
            try store.appendLog(execution, log)
        } catch {
            logger.error("could not record an agent's log lines", metadata: ["execution.id": "\(execution)", "error": "\(error)"])
        }
        pools[execution]?.live[id] = nil
        advance(execution)
        handOut()  // the agent's next poll may take another share now
        return true
    }

    /// After a share ended: the counters so far, and when every share of the round is done,
    /// the next round (deletions, then the finishing share) or the execution's end.
    func advance(_ execution: String) {
        guard let pool = pools[execution], pool.ended == nil else { return }
        let leases: [Lease]
        do {
            leases = try store.leases(of: execution)
        } catch {
            logger.error("could not read an execution's shares", metadata: ["execution.id": "\(execution)", "error": "\(error)"])
            return
        }
        pools[execution]?.done = AgentHub.combinedCounters(leases)
        recordPoolProgress(execution, status: nil)
        if let reason = pool.cancel, !leases.contains(where: { $0.state == .claimed }) {
            endPool(execution, .failed(code: "Cancelled", detail: reason))
            return
        }
        guard leases.filter({ $0.phase == pool.phase }).allSatisfy({ $0.state == .done }) else { return }
        let ends = leases.compactMap { $0.result }
        if pool.phase == Pool.transfer {
            switch AgentHub.depth(leases) {
            case .success(let depth):
                pools[execution]?.depth = depth
                logger.info("transfer round ended", metadata: ["execution.id": "\(execution)", "depth": "\(depth.map(String.init) ?? "-")"])
            case .failure(let error):
                endPool(execution, .failed(code: "SourceChanged", detail: error.message))
                return
            }
        }
        let clean = ends.allSatisfy { $0["Error"] == nil && $0["Cancelled"] == nil && $0["Result"]?["Status"]?.string == "SUCCESS" }
        let ran = ends.allSatisfy { $0["Error"] == nil && $0["Cancelled"] == nil }
        let next: (phase: String, units: Int)? = switch pool.phase {
        case Pool.transfer where clean && pool.deletes: (Pool.delete, pool.units)
        case Pool.transfer where ran, Pool.delete where ran: (Pool.finish, 1)
        default: nil
        }
        guard let next else {
            endPool(execution, AgentHub.combined(leases))
            return
        }
        do {
            try store.addLeases(execution, units: next.units, phase: next.phase)
            pools[execution]?.phase = next.phase
            handOut()
        } catch {
            endPool(execution, .failed(code: "Error", detail: "the \(next.phase.lowercased()) round could not be stored: \(error)"))
        }
    }

    /// The depth the transfer round's shares cut the tree at: the same for all, or they
    /// read different trees (its top levels changed while they were listed).
    static func depth(_ leases: [Lease]) -> Result<Int?, ServerError> {
        let depths = Set(leases.filter { $0.phase == Pool.transfer }.compactMap { $0.result?["Depth"]?.int })
        guard depths.count <= 1 else {
            return .failure(ServerError.invalid("the shares of this execution found the source's top levels different (cut at depths \(depths.sorted().map(String.init).joined(separator: ", "))): they changed during the run; start the task again"))
        }
        return .success(depths.first.map { Int($0) })
    }

    /// The execution's counters: every ended share's, plus the live ones'; the status the
    /// latest report gave.
    func recordPoolProgress(_ execution: String, status: String?) {
        guard let pool = pools[execution] else { return }
        var total: JSONValue = ExecutionRunner.counterFields(pool.done)
        for running in pool.live.values { total = AgentHub.sum(total, running.counters) }
        do {
            try store.modify(execution) { body in
                guard let s = TaskExecutionStatus(body), !s.isTerminal, s != .cancelling else { return }
                for (k, v) in total.object ?? [:] { body[k] = v }
                if let status, TaskExecutionStatus(rawValue: status) != nil { body["Status"] = .string(status) }
            }
        } catch {
            logger.error("could not record an execution's progress", metadata: ["execution.id": "\(execution)", "error": "\(error)"])
        }
    }

    func endPool(_ execution: String, _ outcome: Outcome) {
        guard var pool = pools[execution], pool.ended == nil else { return }
        pools[execution] = pool.ending.settle(outcome) ? nil : pool
    }

    /// Ends pools none of whose agents was heard for the offline window; hands lapsed
    /// shares to waiting polls.
    func sweepPools() {
        let now = Date()
        for (execution, pool) in pools where pool.ended == nil {
            // A silent agent's live numbers are dropped: its share will run again elsewhere.
            pools[execution]?.live = pool.live.filter { isOnline($0.value.agent) }
            if pool.agents.contains(where: isOnline) {
                pools[execution]?.unattendedSince = nil
                continue
            }
            let since = pool.unattendedSince ?? now
            pools[execution]?.unattendedSince = since
            if now.timeIntervalSince(since) >= offlineAfter {
                endPool(execution, .failed(code: "AgentOffline",
                                           detail: "no agent of the location (\(pool.agents.sorted().joined(separator: ", "))) was heard from for \(Int(offlineAfter)) s; shares that ended are kept — start the task again when an agent is back"))
            }
        }
        if !pools.isEmpty { handOut() }
    }

    /// A cancel: no share is handed out any more; running ones stop at their next report.
    func cancelPool(_ execution: String, reason: String) {
        pools[execution]?.cancel = reason
        advance(execution)
    }

    /// `agent` restarted: the shares it held are free again, its live numbers dropped.
    func releaseShares(of agent: String) {
        do {
            try store.releaseLeases(of: agent)
        } catch {
            logger.error("could not give back a restarted agent's shares", metadata: ["agent": "\(agent)", "error": "\(error)"])
        }
        for (execution, pool) in pools { pools[execution]?.live = pool.live.filter { $0.value.agent != agent } }
    }

    // MARK: combining the shares' ends

    /// The shares' ends as one outcome: the first share that could not run fails it;
    /// otherwise one result (counters summed, durations the longest, the worst status).
    static func combined(_ leases: [Lease]) -> Outcome {
        let ends = leases.compactMap { $0.result }
        if let error = ends.first(where: { $0["Error"] != nil })?["Error"] {
            return .failed(code: error["Code"]?.string ?? "Error", detail: error["Detail"]?.string ?? "a share failed")
        }
        let transfers = results(leases, phase: Pool.transfer)
        let later = results(leases, phase: Pool.delete) + results(leases, phase: Pool.finish)
        guard var total = transfers.first else { return .failed(code: "Error", detail: "no share reported a result") }
        total.counters = combinedCounters(leases)
        for r in transfers.dropFirst() + later {
            total.prepareDuration = max(total.prepareDuration, r.prepareDuration)
            total.transferDuration = max(total.transferDuration, r.transferDuration)
            total.verifyDuration = max(total.verifyDuration, r.verifyDuration)
            total.totalDuration = max(total.totalDuration, r.totalDuration)
            if r.status == .error, total.status != .error {
                total.status = .error
                total.errorCode = r.errorCode
                total.errorDetail = r.errorDetail
            }
            for (mine, theirs) in [(\ExecutionResult.prepareStatus, r.prepareStatus), (\.transferStatus, r.transferStatus), (\.verifyStatus, r.verifyStatus)]
            where theirs == .error {
                total[keyPath: mine] = .error
            }
            total.problems += r.problems
            total.problemsNotListed += r.problemsNotListed
            total.deletionsSkippedForErrors += r.deletionsSkippedForErrors
        }
        let cancelled = ends.first(where: { $0["Cancelled"] != nil })?["Cancelled"]?.string
        // The task report is written from the shares' parts (``ExecutionRunner``).
        return .finished(total, cancelled: cancelled, reports: [], reportError: nil)
    }

    /// The counters of the ended shares: the transfer round's and the finishing share's
    /// summed (it counts the common directories), and of the deletion round (which lists
    /// again and finds nothing left to copy) only what it deleted or failed.
    static func combinedCounters(_ leases: [Lease]) -> CounterSnapshot {
        var total = CounterSnapshot()
        for c in (results(leases, phase: Pool.transfer) + results(leases, phase: Pool.finish)).map(\.counters) {
            total.estimatedFilesToTransfer += c.estimatedFilesToTransfer
            total.estimatedBytesToTransfer += c.estimatedBytesToTransfer
            total.estimatedFilesToDelete += c.estimatedFilesToDelete
            total.filesListedSource += c.filesListedSource
            total.filesListedDestination += c.filesListedDestination
            total.filesTransferred += c.filesTransferred
            total.bytesTransferred += c.bytesTransferred
            total.bytesWritten += c.bytesWritten
            total.bytesCompressed += c.bytesCompressed
            total.filesDeleted += c.filesDeleted
            total.filesSkipped += c.filesSkipped
            total.filesFailed += c.filesFailed
            total.filesVerified += c.filesVerified
            total.filesUnchanged += c.filesUnchanged
            total.verificationFailures += c.verificationFailures
            total.metadataNotStored += c.metadataNotStored
        }
        for c in results(leases, phase: Pool.delete).map(\.counters) {
            total.filesDeleted += c.filesDeleted
            total.filesFailed += c.filesFailed
        }
        return total
    }

    static func results(_ leases: [Lease], phase: String) -> [ExecutionResult] {
        leases.filter { $0.phase == phase && $0.state == .done }.compactMap { lease in
            lease.result?["Result"].flatMap { try? JSONDecoder().decode(ExecutionResult.self, from: $0.serialized()) }
        }
    }

    /// Two counter bodies added member by member (nested objects too).
    static func sum(_ a: JSONValue, _ b: JSONValue) -> JSONValue {
        if let x = a.number, let y = b.number { return .number(x + y) }
        guard let ao = a.object, let bo = b.object else { return a }
        return .object(ao.merging(bo) { sum($0, $1) })
    }
}
