import Foundation

/// The ranges of an image that changed since the last sync, from outside Ferry: the JSON
/// of `rbd diff --format json` (`[{"offset":0,"length":4096,"exists":"true"},…]`) or a
/// plain list of `offset,length` lines (what VMware's QueryChangedDiskAreas gives).
public enum ChangedExtents {
    /// Parses a change list; errors name the file and the line or element.
    public static func parse(_ bytes: [UInt8], file: String) throws(BlockError) -> [Range<Int64>] {
        let text = String(decoding: bytes, as: UTF8.self)
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if trimmed.hasPrefix("[") { return try parseJSON(Data(bytes), file: file) }
        var extents: [Range<Int64>] = []
        for (number, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = rawLine.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
            let fields = line.split(whereSeparator: { $0 == "," || $0 == " " || $0 == "\t" || $0 == "\r" }).map(String.init)
            if fields.isEmpty { continue }
            guard fields.count == 2, let offset = Int64(fields[0]), let length = Int64(fields[1]) else {
                throw BlockError(.badChangeList, "\(file), line \(number + 1): expected \"offset,length\" in bytes, found \"\(rawLine)\"")
            }
            extents.append(try range(offset, length, "\(file), line \(number + 1)"))
        }
        return merged(extents)
    }

    private static func parseJSON(_ data: Data, file: String) throws(BlockError) -> [Range<Int64>] {
        let any: Any
        do { any = try JSONSerialization.jsonObject(with: data) } catch {
            throw BlockError(.badChangeList, "\(file): not valid JSON (\(error.localizedDescription))")
        }
        guard let items = any as? [Any] else { throw BlockError(.badChangeList, "\(file): expected a JSON array of {offset, length}") }
        var extents: [Range<Int64>] = []
        for (i, item) in items.enumerated() {
            guard let object = item as? [String: Any], let offset = integer(object["offset"]), let length = integer(object["length"]) else {
                throw BlockError(.badChangeList, "\(file), element \(i): expected {\"offset\": N, \"length\": N}")
            }
            extents.append(try range(offset, length, "\(file), element \(i)"))
        }
        return merged(extents)
    }

    private static func integer(_ value: Any?) -> Int64? {
        if let n = value as? NSNumber { return Int64(exactly: n.doubleValue) ?? n.int64Value }
        if let s = value as? String { return Int64(s) }
        return nil
    }

    private static func range(_ offset: Int64, _ length: Int64, _ at: String) throws(BlockError) -> Range<Int64> {
        guard offset >= 0, length >= 0, offset <= Int64.max - length else {
            throw BlockError(.badChangeList, "\(at): offset \(offset) and length \(length) must be non-negative and not overflow")
        }
        return offset..<(offset + length)
    }

    /// Sorted, with overlapping and touching ranges joined.
    static func merged(_ extents: [Range<Int64>]) -> [Range<Int64>] {
        var out: [Range<Int64>] = []
        for r in extents.filter({ !$0.isEmpty }).sorted(by: { $0.lowerBound < $1.lowerBound }) {
            if let last = out.last, r.lowerBound <= last.upperBound {
                out[out.count - 1] = last.lowerBound..<max(last.upperBound, r.upperBound)
            } else {
                out.append(r)
            }
        }
        return out
    }

    /// The indexes of the blocks that `extents` touch, below `blockCount`.
    public static func blocks(_ extents: [Range<Int64>], blockSize: Int, blockCount: Int) -> [Int] {
        var out: [Int] = []
        var next = 0
        for r in extents {
            let first = max(Int(r.lowerBound / Int64(blockSize)), next)
            let last = min(Int((r.upperBound - 1) / Int64(blockSize)), blockCount - 1)
            if first <= last { out.append(contentsOf: first...last); next = last + 1 }
        }
        return out
    }
}
