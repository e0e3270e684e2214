import Synchronization

/// Lets one NFSv4.0 OPEN or CLOSE at a time through a connection: v4.0 numbers each
/// open-owner's requests (seqid), and libnfs 4.0 keeps one open-owner per connection
/// without ordering them itself, so two at once fail with NFS4ERR_BAD_SEQID. READs and
/// WRITEs (by stateid) and everything else stay concurrent.
final class OpenGate: Sendable {
    private struct State {
        var busy = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }
    private let state = Mutex(State())

    func enter() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let now = state.withLock { s -> Bool in
                if s.busy { s.waiters.append(c); return false }
                s.busy = true
                return true
            }
            if now { c.resume() }
        }
    }

    func leave() {
        let next = state.withLock { s -> CheckedContinuation<Void, Never>? in
            if s.waiters.isEmpty { s.busy = false; return nil }
            return s.waiters.removeFirst()
        }
        next?.resume()
    }

    /// Runs `body` alone among the gate's callers.
    func run<T>(_ body: () async throws -> T) async throws -> T {
        await enter()
        defer { leave() }
        return try await body()
    }
}
