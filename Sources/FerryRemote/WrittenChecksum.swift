import FerryCore
import Synchronization

/// The checksum of a file as it is written in order — the engine's kind (XXH3-128 of the
/// whole file, holes and the unwritten tail as zeros). Both ends of a remote write keep
/// one: the sender's travels with the commit and the destination commits only when its
/// own, over the bytes it wrote, is the same (end to end, and no read-back across the
/// link). A write that goes back over bytes already hashed leaves no usable checksum.
final class WrittenChecksum: @unchecked Sendable {
    // Under `lock`.
    private var hash: ChecksumState? = ChecksumState()
    private var end: Int64 = 0
    private let lock = Mutex(())

    /// Adds `bytes` written at `offset` (a gap since the last write counts as zeros).
    func add(_ bytes: UnsafeRawBufferPointer, at offset: Int64) {
        lock.withLock { _ in
            guard let hash else { return }
            guard offset >= end else {
                self.hash = nil
                return
            }
            if offset > end { hash.updateZeros(offset - end) }
            hash.update(bytes)
            end = offset + Int64(bytes.count)
        }
    }

    /// The checksum of a file of `size` bytes (nil when writes went back, or past `size`).
    func finish(size: Int64) -> ContentChecksum? {
        lock.withLock { _ in
            guard let hash, end <= size else { return nil }
            if size > end { hash.updateZeros(size - end) }
            self.hash = nil
            return hash.finalize()
        }
    }

    /// The checksum of `bytes`, a whole file.
    static func of(_ bytes: UnsafeRawBufferPointer) -> ContentChecksum {
        let hash = ChecksumState()
        hash.update(bytes)
        return hash.finalize()
    }
}

extension WireWriter {
    mutating func checksum(_ c: ContentChecksum) {
        u64(c.high)
        u64(c.low)
    }
}

extension WireReader {
    mutating func checksum() throws(RemoteError) -> ContentChecksum {
        let high = try u64()
        return ContentChecksum(high: high, low: try u64())
    }
}
