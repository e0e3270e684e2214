import CFerry
import FerryCore
import Synchronization

/// The block hashes of the copy a serving location already holds of a file (XXH3-64 per
/// block at fixed offsets), with which a ``RemoteWriter`` sends only the blocks that differ
/// and asks the server to keep the others from that copy (``RemoteOperation/keep``). A
/// wrong match costs nothing but a retry: the commit still checks the XXH3-128 of the whole
/// result against the sender's.
struct DeltaSignature: Sendable {
    let blockSize: Int
    /// The old copy's size (its last block may be short).
    let size: Int64
    let hashes: [UInt64]

    /// Blocks of about √size bytes (rsync's rule) as a power of two from 4 KiB to 1 MiB, so
    /// that blocks never straddle the engine's 1 MiB reads: a 512 MiB file has 16,384 blocks
    /// of 32 KiB and a signature of 128 KiB.
    static func blockSize(for size: Int64) -> Int {
        var b = 4096
        while b < (1 << 20), Int64(b) * Int64(b) < size { b <<= 1 }
        return b
    }

    /// A block size read off the wire: a power of two from 4 KiB to 1 MiB, as ``blockSize(for:)`` makes.
    static func blockSize(_ r: inout WireReader) throws(RemoteError) -> Int {
        let b = try r.uvarint()
        guard b >= 4096, b <= 1 << 20, b & (b - 1) == 0 else { throw RemoteError.malformed("a delta block size of \(b)") }
        return Int(b)
    }

    static func hash(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        cferry_xxh3_64(bytes.baseAddress, bytes.count)
    }

    /// Whether `bytes`, the new file's bytes at `offset`, are exactly one whole block of the
    /// old copy at the same offset.
    func matches(_ bytes: UnsafeRawBufferPointer, at offset: Int64) -> Bool {
        guard offset % Int64(blockSize) == 0 else { return false }
        let index = Int(offset / Int64(blockSize))
        guard index < hashes.count, Int64(bytes.count) == min(Int64(blockSize), size - offset) else { return false }
        return DeltaSignature.hash(bytes) == hashes[index]
    }

    /// The signature of what `reader` holds, read block by block in 1 MiB reads.
    static func of(_ reader: any EntryReader, blockSize: Int) async throws -> DeltaSignature {
        let size = reader.metadata.size
        let chunk = max(blockSize, 1 << 20)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 16)
        defer { buffer.deallocate() }
        var hashes: [UInt64] = []
        hashes.reserveCapacity(Int((size + Int64(blockSize) - 1) / Int64(blockSize)))
        var offset: Int64 = 0
        while offset < size {
            let want = Int(min(Int64(chunk), size - offset))
            let n = try await readFully(reader, into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<want]), at: offset)
            var i = 0
            while i < n {
                let len = min(blockSize, n - i)
                hashes.append(hash(UnsafeRawBufferPointer(rebasing: buffer[i..<(i + len)])))
                i += len
            }
            if n < want { return DeltaSignature(blockSize: blockSize, size: offset + Int64(n), hashes: hashes) }
            offset += Int64(n)
        }
        return DeltaSignature(blockSize: blockSize, size: size, hashes: hashes)
    }

    /// Reads until `buffer` is full or the file ends; the count read.
    static func readFully(_ reader: any EntryReader, into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) async throws -> Int {
        var done = 0
        while done < buffer.count {
            let n = try await reader.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[done...]), at: offset + Int64(done))
            if n == 0 { break }
            done += n
        }
        return done
    }

    func write(_ w: inout WireWriter) {
        w.uvarint(UInt64(blockSize))
        w.varint(size)
        w.uvarint(UInt64(hashes.count))
        for h in hashes { w.u64(h) }
    }

    init(blockSize: Int, size: Int64, hashes: [UInt64]) {
        self.blockSize = blockSize
        self.size = size
        self.hashes = hashes
    }

    init(_ r: inout WireReader) throws(RemoteError) {
        blockSize = try DeltaSignature.blockSize(&r)
        size = try r.varint()
        let n = try r.uvarint()
        guard n <= UInt64(max(0, size)) / UInt64(blockSize) + 1 else { throw RemoteError.malformed("\(n) block hashes for a file of \(size) bytes") }
        var hashes: [UInt64] = []
        hashes.reserveCapacity(Int(n))
        for _ in 0..<n { hashes.append(try r.u64()) }
        self.hashes = hashes
    }
}

/// A writer's old copy at the serving side: what ``RemoteOperation/keep`` copies from.
final class DeltaBase: Sendable {
    let reader: any EntryReader
    let signature: DeltaSignature

    init(reader: any EntryReader, signature: DeltaSignature) {
        self.reader = reader
        self.signature = signature
    }

    /// Copies `length` bytes at `offset` of the old copy to `served` at the same offset
    /// (fed to its checksum like any write), in reads of up to 1 MiB.
    func keep(_ offset: Int64, _ length: Int64, into served: ServedWriter) async throws {
        let chunk = Int(min(length, 1 << 20))
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(chunk, 1), alignment: 16)
        defer { buffer.deallocate() }
        var done: Int64 = 0
        while done < length {
            let want = Int(min(Int64(chunk), length - done))
            let n = try await DeltaSignature.readFully(reader, into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<want]), at: offset + done)
            guard n == want else {
                throw RemoteError(.checksumMismatch, "the destination's copy changed while it was being rewritten (it ended at \(offset + done + Int64(n)))",
                                  path: served.path, retryClass: .itemFailed)
            }
            let bytes = UnsafeRawBufferPointer(rebasing: buffer[0..<n])
            served.written.add(bytes, at: offset + done)
            try await served.writer.write(bytes, at: offset + done)
            done += Int64(n)
        }
    }

    private let closed = Atomic(false)

    /// Closes the old copy (once: a commit closes it, and an abort after a failed commit again).
    func close() async {
        guard !closed.exchange(true, ordering: .relaxed) else { return }
        _ = try? await reader.close()
    }
}
