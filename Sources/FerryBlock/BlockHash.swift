import Crypto

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

    /// The hash of `data`: ``zero`` if every byte is zero, else its SHA-256.
    public static func of(_ data: UnsafeRawBufferPointer) -> BlockHash {
        if isZero(data) { return .zero }
        return BlockHash(bytes: Array(SHA256.hash(data: data)))
    }

    /// Whether every byte is zero (eight bytes at a time).
    public static func isZero(_ data: UnsafeRawBufferPointer) -> Bool {
        let words = data.count / 8
        if words > 0 {
            let w = UnsafeRawBufferPointer(rebasing: data[..<(words * 8)]).bindMemory(to: UInt64.self)
            var i = 0
            while i < words {
                if w[i] != 0 { return false }
                i += 1
            }
        }
        for i in (words * 8)..<data.count where data[i] != 0 { return false }
        return true
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
