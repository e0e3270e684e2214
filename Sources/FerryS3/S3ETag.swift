import Crypto
import FerryCore
import Foundation

/// What an S3 ETag says about an object's bytes, and the running check of bytes read in
/// order against it.
///
/// A single-part upload's ETag is the hex MD5 of the object. A multipart upload's is the
/// MD5 of the concatenated binary MD5s of its parts, followed by `-N` (N parts); checking it
/// needs the part boundaries, which `HeadObject?partNumber=1` gives (every part but the
/// last has the first part's size, as every common uploader does). Objects encrypted with
/// SSE-KMS or SSE-C have ETags that are not MD5s and cannot be checked this way.
struct S3ETag: Sendable, Equatable {
    /// The lower-case hex digest (without quotes and without `-N`).
    var digest: String
    /// The number of parts (nil: a single-part upload).
    var parts: Int?

    /// Parses `"0123…abcd"` or `"0123…abcd-12"`; nil for anything that is not MD5-shaped.
    /// (On UTF-8 bytes: every upload's answer is parsed, and Foundation's trimming and
    /// `Character` checks made this 3 % of an upload's CPU.)
    init?(_ header: String?) {
        guard let header else { return nil }
        let bytes = Array(header.utf8)
        func isPadding(_ b: UInt8) -> Bool { b == UInt8(ascii: "\"") || b == UInt8(ascii: " ") }
        var start = 0, end = bytes.count
        while start < end, isPadding(bytes[start]) { start += 1 }
        while end > start, isPadding(bytes[end - 1]) { end -= 1 }
        guard end - start >= 32 else { return nil }
        var hex: [UInt8] = []
        hex.reserveCapacity(32)
        for b in bytes[start..<start + 32] {
            switch b {
            case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "a")...UInt8(ascii: "f"): hex.append(b)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): hex.append(b + 32)
            default: return nil
            }
        }
        digest = String(decoding: hex, as: UTF8.self)
        let rest = bytes[(start + 32)..<end]
        if rest.isEmpty {
            parts = nil
        } else {
            guard rest.first == UInt8(ascii: "-"), let n = Int(String(decoding: rest.dropFirst(), as: UTF8.self)),
                  (1...10_000).contains(n)
            else { return nil }
            parts = n
        }
    }

    init(digest: String, parts: Int?) {
        self.digest = digest
        self.parts = parts
    }

    /// The ETag S3 gives an upload whose parts had these binary MD5s (concatenated, in
    /// part order): a single-part upload's is its MD5, a multipart one's the MD5 of the
    /// part MD5s with `-N`.
    init(partDigests: [UInt8], multipart parts: Int?) {
        self.init(digest: parts == nil ? partDigests.hexString : Array(Insecure.MD5.hash(data: partDigests)).hexString, parts: parts)
    }

    var description: String { digest + (parts.map { "-\($0)" } ?? "") }

    /// The ETag as an entry carries it.
    var tag: ContentTag {
        // `digest` is 32 hex digits (lower-case from the parser and `hexString`).
        let hex = Array(digest.utf8)
        func nibble(_ b: UInt8) -> UInt64 {
            UInt64(b >= UInt8(ascii: "a") ? b - UInt8(ascii: "a") + 10 : b >= UInt8(ascii: "A") ? b - UInt8(ascii: "A") + 10 : b - UInt8(ascii: "0"))
        }
        func word(_ from: Int) -> UInt64 { hex[from..<from + 16].reduce(0) { $0 << 4 | nibble($1) } }
        return ContentTag(high: word(0), low: word(16), parts: UInt32(parts ?? 0))
    }

    /// An ETag from an entry's tag.
    init(_ tag: ContentTag) {
        let bytes = withUnsafeBytes(of: tag.high.bigEndian, Array.init) + withUnsafeBytes(of: tag.low.bigEndian, Array.init)
        self.init(digest: bytes.hexString, parts: tag.parts == 0 ? nil : Int(tag.parts))
    }

    /// The sizes of the parts, given the size of the first part and of the object; nil when
    /// they cannot be uniform parts of that size.
    func partSizes(firstPart: Int64, objectSize: Int64) -> [Int64]? {
        guard let parts else { return [objectSize] }
        guard firstPart > 0, Int64(parts - 1) * firstPart < objectSize, Int64(parts) * firstPart >= objectSize else { return nil }
        return (0..<parts).map { $0 < parts - 1 ? firstPart : objectSize - Int64(parts - 1) * firstPart }
    }
}

/// Hashes bytes fed in order, part by part, and says whether they match an ``S3ETag``.
struct S3ETagChecker {
    let expected: S3ETag
    private let partSizes: [Int64]
    private var part = 0
    private var inPart: Int64 = 0
    private var md5 = Insecure.MD5()
    private var partDigests: [UInt8] = []
    /// Bytes fed so far (the offset the next bytes must start at).
    private(set) var fed: Int64 = 0

    init(expected: S3ETag, partSizes: [Int64]) {
        self.expected = expected
        self.partSizes = partSizes
    }

    var total: Int64 { partSizes.reduce(0, +) }

    /// Feeds the next bytes; every part they complete (an empty object's one empty part
    /// included, with no bytes at all) is closed with its MD5.
    mutating func feed(_ bytes: UnsafeRawBufferPointer) {
        var rest = bytes[...]
        while part < partSizes.count {
            let take = Int(min(Int64(rest.count), partSizes[part] - inPart))
            if take > 0 { md5.update(bufferPointer: UnsafeRawBufferPointer(rebasing: rest.prefix(take))) }
            inPart += Int64(take)
            fed += Int64(take)
            rest = rest.dropFirst(take)
            guard inPart == partSizes[part] else { break }
            partDigests += Array(md5.finalize())
            md5 = Insecure.MD5()
            part += 1
            inPart = 0
        }
    }

    /// The ETag the bytes fed produce (call once all ``total`` bytes were fed).
    func computed() -> S3ETag {
        S3ETag(partDigests: partDigests, multipart: expected.parts)
    }
}
