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
        /// Keys in the order they came, oldest first; a key may remain after its body was taken.
        var order = CircularBuffer<String>()
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
            if let old = s.bodies.updateValue((object, body), forKey: key) {
                s.bytes -= old.body.readableBytes
            } else {
                s.order.append(key)
            }
            s.bytes += body.readableBytes
            while s.bytes > budget, let oldest = s.order.popFirst() {
                if let dropped = s.bodies.removeValue(forKey: oldest) { s.bytes -= dropped.body.readableBytes }
            }
            // Forget taken keys once they are most of the queue.
            if s.order.count > 2 * s.bodies.count + 1024 {
                s.order = CircularBuffer(s.order.filter { s.bodies[$0] != nil })
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
    var queuedKeys: Int { state.withLock { $0.order.count } }
}
