import NIOCore
import Synchronization

/// Bodies of small objects fetched while listing a directory the destination lacks
/// (``S3Location/listForCopying(_:reading:)``): a GET in place of the HEAD gives the metadata and
/// the bytes in one request, and the copy that follows takes the bytes from here instead
/// of asking again. Bounded: past ``budget`` bytes the oldest bodies are dropped (their
/// copy then GETs them), and a body leaves when it is taken.
final class PrefetchedBodies: Sendable {
    let budget: Int

    private struct State {
        var bodies: [String: (object: S3Object, body: ByteBuffer)] = [:]
        /// Keys in the order they came; a key may remain after its body was taken.
        var order: [String] = []
        var head = 0
        var bytes = 0
    }
    private let state = Mutex(State())

    init(budget: Int) {
        self.budget = budget
    }

    /// Keeps `body` of `key` as `object` describes it, dropping the oldest bodies to stay in budget.
    func put(_ key: String, object: S3Object, body: ByteBuffer) {
        guard body.readableBytes <= budget else { return }
        state.withLock { s in
            if let old = s.bodies.updateValue((object, body), forKey: key) { s.bytes -= old.body.readableBytes }
            s.order.append(key)
            s.bytes += body.readableBytes
            while s.bytes > budget, s.head < s.order.count {
                if let dropped = s.bodies.removeValue(forKey: s.order[s.head]) { s.bytes -= dropped.body.readableBytes }
                s.head += 1
            }
            // Forget keys dropped or taken once they are most of the queue.
            if s.order.count - s.head > 2 * s.bodies.count + 1024 || (s.head > 1024 && s.head * 2 > s.order.count) {
                s.order = s.order[s.head...].filter { s.bodies[$0] != nil }
                s.head = 0
            }
        }
    }

    /// The body kept for `key` (removed from here), if it is still held.
    func take(_ key: String) -> (object: S3Object, body: ByteBuffer)? {
        state.withLock { s in
            guard let kept = s.bodies.removeValue(forKey: key) else { return nil }
            s.bytes -= kept.body.readableBytes
            return kept
        }
    }

    /// Bytes held now.
    var heldBytes: Int { state.withLock { $0.bytes } }
    /// Keys still queued for dropping (some already taken), to check the queue stays bounded.
    var queuedKeys: Int { state.withLock { $0.order.count - $0.head } }
}
