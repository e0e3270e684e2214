import CFerry
import Crypto
import FerryCore

/// The SHA-256 of one block, or ``zero`` for a block that holds only zero bytes (never
/// hashed: holes and zero blocks are recognised, not read or sent).
public struct BlockHash: Hashable, Sendable, CustomStringConvertible {
    public var a: UInt64, b: UInt64, c: UInt64, d: UInt64

    public static let zero = BlockHash(a: 0, b: 0, c: 0, d: 0)

    public init(a: UInt64, b: UInt64, c: UInt64, d: UInt64) {
        self.a = a; self.b = b; self.c = c; self.d = d
    }

    /// From 32 raw bytes.
    public init(bytes: some Collection<UInt8>) {
        var words: [UInt64] = [0, 0, 0, 0]
        for (i, byte) in bytes.prefix(32).enumerated() { words[i / 8] = words[i / 8] << 8 | UInt64(byte) }
        self.init(a: words[0], b: words[1], c: words[2], d: words[3])
    }

    /// Bytes per page of the hash's zero-page map.
    static let page = 4096

    /// The hash of `data`: ``zero`` if every byte is zero, else the SHA-256 of an injective
    /// encoding that leaves zero pages out: the length (8 bytes, little-endian), a bitmap of
    /// the 4 KiB pages that hold data, then those pages. A sparse block costs only its
    /// data to hash, and equal hashes still mean equal bytes.
    ///
    /// `dataParts` (offsets within `data`), when given, says where the bytes can be non-zero
    /// (the rest was a hole and is zero): only pages touching them are examined.
    public static func of(_ data: UnsafeRawBufferPointer, dataParts: [Range<Int>]? = nil) -> BlockHash {
        let pages = (data.count + page - 1) / page
        var bitmap = [UInt8](repeating: 0, count: (pages + 7) / 8)
        var nonZero: [Range<Int>] = []
        func examine(_ p: Int) {
            let r = (p * page)..<min((p + 1) * page, data.count)
            guard !FileIO.isAllZero(UnsafeRawBufferPointer(rebasing: data[r])) else { return }
            bitmap[p / 8] |= 1 << UInt8(p % 8)
            if let last = nonZero.last, last.upperBound == r.lowerBound { nonZero[nonZero.count - 1] = last.lowerBound..<r.upperBound }
            else { nonZero.append(r) }
        }
        if let dataParts {
            var next = 0
            for part in dataParts where !part.isEmpty {
                for p in max(next, part.lowerBound / page)...((part.upperBound - 1) / page) { examine(p) }
                next = (part.upperBound - 1) / page + 1
            }
        } else {
            for p in 0..<pages { examine(p) }
        }
        if nonZero.isEmpty { return .zero }
        var sha = SHA256()
        withUnsafeBytes(of: UInt64(data.count).littleEndian) { sha.update(bufferPointer: $0) }
        bitmap.withUnsafeBytes { sha.update(bufferPointer: $0) }
        for r in nonZero { sha.update(bufferPointer: UnsafeRawBufferPointer(rebasing: data[r])) }
        return BlockHash(bytes: Array(sha.finalize()))
    }

    /// XXH3-128 of the parts of a block that were read, each with its offset and length:
    /// the cheap check of the consistency pass (did these bytes change between two reads),
    /// not a content address.
    static func quick(_ data: UnsafeRawBufferPointer, parts: [Range<Int>]) -> BlockHash {
        let state = cferry_xxh3_create()
        defer { cferry_xxh3_free(state) }
        for part in parts {
            var header = (UInt64(part.lowerBound).littleEndian, UInt64(part.count).littleEndian)
            withUnsafeBytes(of: &header) { cferry_xxh3_update(state, $0.baseAddress, $0.count) }
            cferry_xxh3_update(state, data.baseAddress! + part.lowerBound, part.count)
        }
        var hi: UInt64 = 0, lo: UInt64 = 0
        cferry_xxh3_digest(state, &hi, &lo)
        return BlockHash(a: hi, b: lo, c: 0, d: 0)
    }

    /// The 32 bytes, big-endian words.
    public var bytes: [UInt8] {
        [a, b, c, d].flatMap { w in (0..<8).map { UInt8(truncatingIfNeeded: w >> (56 - 8 * $0)) } }
    }

    /// Lower-case hex (the chunk object's name).
    public var description: String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(64)
        for byte in bytes { out.append(digits[Int(byte >> 4)]); out.append(digits[Int(byte & 15)]) }
        return String(decoding: out, as: UTF8.self)
    }

    /// From 64 hex digits, nil if not.
    public init?(hex: some StringProtocol) {
        let chars = Array(hex.utf8)
        guard chars.count == 64 else { return nil }
        var raw: [UInt8] = []
        for i in stride(from: 0, to: 64, by: 2) {
            guard let hi = BlockHash.nibble(chars[i]), let lo = BlockHash.nibble(chars[i + 1]) else { return nil }
            raw.append(hi << 4 | lo)
        }
        self.init(bytes: raw)
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case 48...57: c - 48
        case 97...102: c - 87
        default: nil
        }
    }
}
