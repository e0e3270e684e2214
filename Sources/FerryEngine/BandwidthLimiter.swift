import FerryCore
import Synchronization

/// A token bucket shared by all workers (DataSync's BytesPerSecond). A caller takes
/// tokens for the bytes it is about to write and sleeps while the bucket is in debt.
public final class BandwidthLimiter: Sendable {
    private struct State {
        var rate: Double
        var tokens: Double
        var last: ContinuousClock.Instant
    }
    private let state: Mutex<State>
    private let clock = ContinuousClock()
    /// Whether a rate is set: without one, ``acquire(_:)`` returns at once, taking no lock
    /// (every worker calls it for every chunk; the shared lock was contended).
    private let limited: Atomic<Bool>

    /// `bytesPerSecond`: the sustained rate; bursts up to a quarter second of it. nil: no
    /// limit (until ``setRate(_:)`` sets one).
    public init(bytesPerSecond: Int64?) {
        state = Mutex(State(rate: bytesPerSecond.map(Double.init) ?? .infinity, tokens: 0, last: ContinuousClock.now))
        limited = Atomic(bytesPerSecond != nil)
    }

    /// Changes the rate for all workers from now on (nil: no limit).
    public func setRate(_ bytesPerSecond: Int64?) {
        state.withLock { s in
            s.rate = bytesPerSecond.map(Double.init) ?? .infinity
            // Set under the lock, so a worker that sees the flag finds the rate.
            limited.store(bytesPerSecond != nil, ordering: .releasing)
        }
    }

    /// Whether a rate is set now.
    public var isLimited: Bool { limited.load(ordering: .acquiring) }

    /// Takes `bytes` tokens; sleeps as long as the bucket needs to refill.
    public func acquire(_ bytes: Int) async throws {
        guard isLimited else { return }
        let wait: Double = state.withLock { s in
            let now = clock.now
            let elapsed = now - s.last
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
            s.last = now
            s.tokens = min(s.tokens + seconds * s.rate, s.rate / 4)
            s.tokens -= Double(bytes)
            return s.tokens < 0 ? -s.tokens / s.rate : 0
        }
        if wait > 0 {
            try await Task.sleep(for: .nanoseconds(Int64(wait * 1e9)))
        }
    }
}

/// A reader whose bytes count against the bandwidth limit as they are read
/// (``SyncEngine/limited(_:)``): the copy's source reads, and those of a content
/// comparison, which move data from the source as a copy's do.
struct LimitedReader: EntryReader {
    let base: any EntryReader
    let limiter: BandwidthLimiter

    var metadata: FileMetadata { base.metadata }
    func dataExtents() async throws -> [Extent] { try await base.dataExtents() }
    func extendedAttributes() async throws -> [ExtendedAttribute] { try await base.extendedAttributes() }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) async throws -> Int {
        let n = try await base.read(into: buffer, at: offset)
        if n > 0 { try await limiter.acquire(n) }
        return n
    }

    func close() async throws -> FileMetadata { try await base.close() }
}
