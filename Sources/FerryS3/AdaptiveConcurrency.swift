import Synchronization

/// Limits requests in flight; halves the limit when the server throttles (SlowDown, 503)
/// and raises it by one after a run of successes, up to the configured maximum.
final class AdaptiveConcurrency: Sendable {
    private struct State {
        var limit: Int
        var inFlight = 0
        var successes = 0
        var waiters: [CheckedContinuation<Void, Never>] = []
    }
    private let state: Mutex<State>
    let maximum: Int
    let minimum: Int

    init(maximum: Int, minimum: Int = 2) {
        self.maximum = maximum
        self.minimum = min(minimum, maximum)
        state = Mutex(State(limit: maximum))
    }

    var currentLimit: Int { state.withLock { $0.limit } }

    func acquire() async {
        let admitted = state.withLock { s -> Bool in
            if s.inFlight < s.limit { s.inFlight += 1; return true }
            return false
        }
        if admitted { return }
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let resumeNow = state.withLock { s -> Bool in
                if s.inFlight < s.limit { s.inFlight += 1; return true }
                s.waiters.append(c)
                return false
            }
            if resumeNow { c.resume() }
        }
    }

    /// Ends one request; `throttled` lowers the limit.
    func release(throttled: Bool) {
        let wake: [CheckedContinuation<Void, Never>] = state.withLock { s in
            s.inFlight -= 1
            if throttled {
                s.limit = max(minimum, s.limit / 2)
                s.successes = 0
            } else {
                s.successes += 1
                if s.successes >= s.limit && s.limit < maximum { s.limit += 1; s.successes = 0 }
            }
            var wake: [CheckedContinuation<Void, Never>] = []
            while s.inFlight < s.limit, !s.waiters.isEmpty {
                s.inFlight += 1
                wake.append(s.waiters.removeFirst())
            }
            return wake
        }
        for c in wake { c.resume() }
    }
}
