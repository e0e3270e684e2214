import Synchronization

/// A fact about the server learned once a run by the first caller that needs it; callers
/// that come while it is being learned wait for that answer instead of asking too. A failed
/// attempt is not kept: the next caller asks again.
final class LearnedOnce<Value: Sendable>: Sendable {
    private let state = Mutex<(known: Value?, running: Task<Value, any Error>?)>((nil, nil))

    /// The answer, once learned.
    var known: Value? { state.withLock { $0.known } }

    /// The answer, learned now with `learn` if nobody has yet. `learnedHere` is true for the
    /// one call whose `learn` gave it.
    func value(_ learn: @escaping @Sendable () async throws -> Value) async throws -> (value: Value, learnedHere: Bool) {
        let (task, started): (Task<Value, any Error>?, Bool) = state.withLock { s in
            if s.known != nil { return (nil, false) }
            if let running = s.running { return (running, false) }
            let t = Task { try await learn() }
            s.running = t
            return (t, true)
        }
        guard let task else { return (state.withLock { $0.known! }, false) }
        do {
            let v = try await task.value
            state.withLock { s in
                s.known = v
                if s.running == task { s.running = nil }
            }
            return (v, started)
        } catch {
            state.withLock { if $0.running == task { $0.running = nil } }
            throw error
        }
    }
}
