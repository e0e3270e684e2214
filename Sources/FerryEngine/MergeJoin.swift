import FerryCore
import Glibc

/// Pairs the entries of one directory's two listings by name, both sorted by name bytes
/// (rclone's `march`), with its defences: two entries of one name on a side (an object and
/// a prefix of one name in a bucket) are reported and one is kept; a listing out of order
/// is a fatal location error, never a silent mis-plan; a destination that is not
/// case-sensitive is matched by folded names. The planner and point-in-time verification
/// both walk a directory with it.
struct MergeJoin {
    enum Side: String, Sendable { case source, destination }

    /// An entry left out because its side lists another of the same name.
    struct Duplicate: Sendable {
        var side: Side
        var kept: Entry
        var dropped: Entry

        /// Why `dropped` was left out, naming both entries and which one was kept.
        var reason: String {
            let name = String(decoding: kept.name, as: UTF8.self)
            var text = "the \(side) lists both a \(kept.kind) and a \(dropped.kind) named \"\(name)\""
            if kept.kind == .directory || dropped.kind == .directory {
                text += " (in a bucket: the prefix \"\(name)/\" and the object \"\(name)\")"
            } else if kept.name != dropped.name {
                text = "the \(side) lists \"\(name)\" and \"\(String(decoding: dropped.name, as: UTF8.self))\", one name where case is not told apart"
            }
            return text + "; the \(kept.kind) was kept, the \(dropped.kind) was left out"
        }
    }

    private let source: [Entry]
    private let destination: [Entry]
    /// Names folded for a destination that is not case-sensitive (nil: the names themselves).
    private let sourceKeys: [[UInt8]]?
    private let destinationKeys: [[UInt8]]?
    private let directory: EntryPath
    private var i = 0, j = 0
    /// Entries left out, in the order met.
    private(set) var duplicates: [Duplicate] = []

    /// - Throws: a fatal ``FerryError`` when a listing is not sorted by name bytes.
    init(directory: EntryPath, source: [Entry], destination: [Entry], caseSensitive: Bool = true) throws(FerryError) {
        self.directory = directory
        if caseSensitive {
            self.source = source
            self.destination = destination
            sourceKeys = nil
            destinationKeys = nil
            return
        }
        try MergeJoin.checkOrder(source, .source, directory)
        try MergeJoin.checkOrder(destination, .destination, directory)
        let s = MergeJoin.foldedOrder(source), d = MergeJoin.foldedOrder(destination)
        self.source = s.map(\.entry)
        self.destination = d.map(\.entry)
        sourceKeys = s.map(\.key)
        destinationKeys = d.map(\.key)
    }

    /// The next name: its source entry, its destination entry (one may be nil); nil at the end.
    mutating func next() throws(FerryError) -> (source: Entry?, destination: Entry?)? {
        let haveSource = i < source.count, haveDestination = j < destination.count
        if !haveSource && !haveDestination { return nil }
        var takeSource = haveSource, takeDestination = haveDestination
        if haveSource && haveDestination {
            let c = MergeJoin.compare(sourceKey(i), destinationKey(j))
            takeSource = c <= 0
            takeDestination = c >= 0
        }
        var s: Entry?, d: Entry?
        if takeSource { s = try takeRun(.source) }
        if takeDestination { d = try takeRun(.destination, matching: s) }
        return (s, d)
    }

    private func sourceKey(_ k: Int) -> [UInt8] { sourceKeys?[k] ?? source[k].name }
    private func destinationKey(_ k: Int) -> [UInt8] { destinationKeys?[k] ?? destination[k].name }

    /// Takes the entries of one name on `side` (usually one) and chooses the one kept: a
    /// directory over other kinds (it may hold many entries), at the destination the kind
    /// of `matching` first (nothing is replaced needlessly), else the first listed.
    private mutating func takeRun(_ side: Side, matching: Entry? = nil) throws(FerryError) -> Entry {
        let entries = side == .source ? source : destination
        let start = side == .source ? i : j
        var end = start + 1
        let key = side == .source ? sourceKey(start) : destinationKey(start)
        while end < entries.count {
            let next = side == .source ? sourceKey(end) : destinationKey(end)
            let c = MergeJoin.compare(key, next)
            if c < 0 { break }
            if c > 0 {
                throw FerryError(
                    .fatal, "the \(side) listed \"\(String(decoding: next, as: UTF8.self))\" after \"\(String(decoding: key, as: UTF8.self))\" in \(directory): its listing is not sorted by name, and planning from it could copy or delete the wrong entries")
            }
            end += 1
        }
        if side == .source { i = end } else { j = end }
        if end == start + 1 { return entries[start] }
        let run = entries[start..<end]
        let kept = run.first { matching != nil && $0.kind == matching!.kind }
            ?? run.first { $0.kind == .directory } ?? run[start]
        var keptOnce = false
        for e in run {
            if !keptOnce && e == kept { keptOnce = true; continue }
            duplicates.append(Duplicate(side: side, kept: kept, dropped: e))
        }
        return kept
    }

    /// Byte order, as `memcmp` then length.
    static func compare(_ a: [UInt8], _ b: [UInt8]) -> Int {
        let n = min(a.count, b.count)
        let c = a.withUnsafeBufferPointer { pa in b.withUnsafeBufferPointer { pb in n == 0 ? 0 : memcmp(pa.baseAddress!, pb.baseAddress!, n) } }
        if c != 0 { return Int(c) }
        return a.count - b.count
    }

    private static func checkOrder(_ entries: [Entry], _ side: Side, _ directory: EntryPath) throws(FerryError) {
        for k in entries.indices.dropFirst() where compare(entries[k - 1].name, entries[k].name) > 0 {
            throw FerryError(
                .fatal, "the \(side) listed \"\(String(decoding: entries[k].name, as: UTF8.self))\" after \"\(String(decoding: entries[k - 1].name, as: UTF8.self))\" in \(directory): its listing is not sorted by name, and planning from it could copy or delete the wrong entries")
        }
    }

    /// Entries in the order of their folded names (then their bytes), with the keys.
    private static func foldedOrder(_ entries: [Entry]) -> [(key: [UInt8], entry: Entry)] {
        entries.map { (fold($0.name), $0) }.sorted { a, b in
            let c = compare(a.0, b.0)
            return c != 0 ? c < 0 : compare(a.1.name, b.1.name) < 0
        }
    }

    /// A name as a case-insensitive file system matches it (Unicode lowercase; bytes that
    /// are not UTF-8 as they are).
    static func fold(_ name: [UInt8]) -> [UInt8] {
        guard let text = String(validating: name, as: UTF8.self) else { return name }
        return Array(text.lowercased().utf8)
    }
}
