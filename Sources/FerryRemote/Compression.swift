import CFerry
import FerryCore
import Synchronization

/// File data on the link: zstd (level 1) when it pays, raw when it does not. A chunk that
/// shrinks by less than a tenth is sent raw, and the sender then stops trying for a while
/// (``Compressor``), so incompressible data (media, archives, random bytes) costs one
/// probe in sixteen, not a compression per chunk.
public enum PackedData {
    static let raw: UInt8 = 0
    static let zstd: UInt8 = 1
    /// Chunks smaller than this go raw: a zstd frame's overhead is not worth it.
    static let smallest = 256
    /// zstd's fastest level with real gains on text; 200–500 MB/s a core here.
    static let level: Int32 = 1
}

/// Decides per sender whether to compress the next chunk, and counts the bytes that went
/// on the link for ``RemoteLocation/bytesOnLink``.
final class Compressor: Sendable {
    /// Chunks to send raw after one that did not compress, before probing again.
    static let backOff = 15
    private let skip = Atomic<Int>(0)

    /// Whether the next chunk is worth compressing (false while backing off).
    func shouldTry(_ count: Int) -> Bool {
        guard count >= PackedData.smallest else { return false }
        if skip.load(ordering: .relaxed) > 0 {
            skip.subtract(1, ordering: .relaxed)
            return false
        }
        return true
    }

    func didNotCompress() { skip.store(Compressor.backOff, ordering: .relaxed) }
}

extension WireWriter {
    /// Writes `bytes` as `[u8 form][uvarint length][data]`, compressed when `compressor`
    /// says so and it pays; returns the bytes the data took on the link.
    @discardableResult
    mutating func packed(_ bytes: UnsafeRawBufferPointer, _ compressor: Compressor?) -> Int {
        if let compressor, compressor.shouldTry(bytes.count), let base = bytes.baseAddress {
            let bound = cferry_zstd_bound(bytes.count)
            let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: bound, alignment: 16)
            defer { scratch.deallocate() }
            let n = cferry_zstd_compress(scratch.baseAddress, bound, base, bytes.count, PackedData.level)
            if n > 0 && n < bytes.count - bytes.count / 10 {
                u8(PackedData.zstd)
                uvarint(UInt64(bytes.count))
                data(UnsafeRawBufferPointer(rebasing: scratch[0..<n]))
                return n
            }
            compressor.didNotCompress()
        }
        u8(PackedData.raw)
        uvarint(UInt64(bytes.count))
        data(bytes)
        return bytes.count
    }

    mutating func packed(_ bytes: [UInt8], _ compressor: Compressor?) -> Int {
        bytes.withUnsafeBytes { packed($0, compressor) }
    }
}

extension WireReader {
    /// Reads what ``WireWriter/packed(_:_:)`` wrote into `out` (which must hold it);
    /// returns its length and the bytes it took on the link.
    mutating func unpack(into out: UnsafeMutableRawBufferPointer) throws(RemoteError) -> (count: Int, onLink: Int) {
        let form = try u8()
        let length = try uvarint()
        guard length <= UInt64(out.count) else { throw RemoteError.malformed("data of \(length) bytes where \(out.count) were asked") }
        let stored = try count()
        defer { at += stored }
        switch form {
        case PackedData.raw:
            guard stored == Int(length) else { throw RemoteError.malformed("raw data of \(stored) bytes said to be \(length)") }
            if stored > 0 { bytes.withUnsafeBytes { out.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[at..<(at + stored)])) } }
        case PackedData.zstd:
            let n = bytes.withUnsafeBytes { b in
                cferry_zstd_decompress(out.baseAddress, Int(length), b.baseAddress! + at, stored)
            }
            guard n == Int64(length) else { throw RemoteError.malformed("a compressed chunk that does not decompress to its \(length) bytes") }
        default:
            throw RemoteError.malformed("data in an unknown form \(form)")
        }
        return (Int(length), stored)
    }

    /// Reads what ``WireWriter/packed(_:_:)`` wrote into memory of its own, at most `limit`
    /// bytes (the caller deallocates it); the bytes it took on the link.
    mutating func unpacked(limit: Int) throws(RemoteError) -> (bytes: UnsafeMutableRawBufferPointer, onLink: Int) {
        var peek = self
        _ = try peek.u8()
        let length = try peek.uvarint()
        guard length <= UInt64(limit) else { throw RemoteError.malformed("data of \(length) bytes, more than the \(limit) allowed") }
        let out = UnsafeMutableRawBufferPointer.allocate(byteCount: max(Int(length), 1), alignment: 16)
        do {
            let (n, onLink) = try unpack(into: UnsafeMutableRawBufferPointer(rebasing: out[0..<Int(length)]))
            return (UnsafeMutableRawBufferPointer(rebasing: out[0..<n]), onLink)
        } catch {
            out.deallocate()
            throw error
        }
    }
}
