import FerryCore
import Glibc

/// Pairs the entries of one directory's two listings by name, both sorted by name bytes
/// (rclone's `march`), with its defences: two entries of one name on a side (an object and
/// a prefix of one name in a bucket) are reported and one is kept; a listing out of order
/// is a fatal location error, never a silent mis-plan; a destination that is not
/// case-sensitive is matched by folded names. The planner and point-in-time verification
/// both walk a directory with it.
struct MergeJoin<S: EntryCursor, D: EntryCursor> {
    private var source: S
    private var destination: D
    private let directory: EntryPath
    /// Entries left out, in the order met.
    private(set) var duplicates: [DuplicateName] = []

    init(directory: EntryPath, source: S, destination: D) {
        self.directory = directory
        self.source = source
        self.destination = destination
    }

    /// The duplicates met since the last call (a plan in parts reports each part's).
    mutating func takeDuplicates() -> [DuplicateName] {
        defer { duplicates = [] }
        return duplicates
    }

    /// The next name: its source entry, its destination entry (one may be nil); nil at the end.
    mutating func next() throws(FerryError) -> (source: Entry?, destination: Entry?)? {
        let a = source.peekKey(), b = destination.peekKey()
        if a == nil && b == nil { return nil }
        var takeSource = a != nil, takeDestination = b != nil
        if let a, let b {
            let c = byteOrder(a, b)
            takeSource = c <= 0
            takeDestination = c >= 0
        }
        var s: Entry?, d: Entry?
        if takeSource { s = try MergeJoin.takeRun(&source, key: a!, .source, directory, &duplicates) }
        if takeDestination { d = try MergeJoin.takeRun(&destination, key: b!, .destination, directory, &duplicates, matching: s) }
        return (s, d)
    }

    /// Takes the entries of one name on `side` (usually one) and chooses the one kept: a
    /// directory over other kinds (it may hold many entries), at the destination the kind
    /// of `matching` first (nothing is replaced needlessly), else the first listed.
    @inline(__always)
    private static func takeRun<C: EntryCursor>(
        _ cursor: inout C, key: [UInt8], _ side: DuplicateName.Side, _ directory: EntryPath, _ duplicates: inout [DuplicateName],
        matching: Entry? = nil
    ) throws(FerryError) -> Entry {
        let first = try cursor.next()!
        guard var following = cursor.peekKey() else { return first }
        var c = compare(key, following)
        if c < 0 { return first }
        var run = [first]
        while true {
            if c > 0 { throw FerryError.unsorted(side, directory, key, before: following) }
            run.append(try cursor.next()!)
            guard let after = cursor.peekKey() else { break }
            following = after
            c = compare(key, following)
            if c < 0 { break }
        }
        let kept = run.first { matching != nil && $0.kind == matching!.kind } ?? run.first { $0.kind == .directory } ?? run[0]
        var keptOnce = false
        for e in run {
            if !keptOnce && e == kept { keptOnce = true; continue }
            duplicates.append(DuplicateName(side: side, kept: kept, dropped: e))
        }
        return kept
    }

    /// Byte order, as `memcmp` then length.
    static func compare(_ a: [UInt8], _ b: [UInt8]) -> Int { byteOrder(a, b) }
}

/// Byte order, as `memcmp` then length.
@inline(__always)
func byteOrder(_ a: [UInt8], _ b: [UInt8]) -> Int {
    let n = min(a.count, b.count)
    let c = a.withUnsafeBufferPointer { pa in b.withUnsafeBufferPointer { pb in n == 0 ? 0 : memcmp(pa.baseAddress!, pb.baseAddress!, n) } }
    if c != 0 { return Int(c) }
    return a.count - b.count
}

extension FerryError {
    /// A listing that named `name` before `later`, which sorts before it: planning from it
    /// could copy or delete the wrong entries.
    static func unsorted(_ side: DuplicateName.Side, _ directory: EntryPath, _ name: [UInt8], before later: [UInt8]) -> FerryError {
        FerryError(.fatal, "the \(side) listed \"\(String(decoding: later, as: UTF8.self))\" after \"\(String(decoding: name, as: UTF8.self))\" in \(directory): its listing is not sorted by name, and planning from it could copy or delete the wrong entries")
    }
}

/// An entry left out because its side lists another of the same name.
struct DuplicateName: Sendable {
    enum Side: String, Sendable { case source, destination }
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

/// One side of a directory in name order, read one entry at a time.
protocol EntryCursor {
    /// The next entry's key (its name, or its folded name), without taking it.
    func peekKey() -> [UInt8]?
    mutating func next() throws(FerryError) -> Entry?
}

/// A listing in memory. For a destination that is not case-sensitive, in the order of
/// the folded names, which are its keys.
struct ArrayCursor: EntryCursor {
    private let entries: [Entry]
    private let keys: [[UInt8]]?
    private var i = 0

    init(_ entries: [Entry]) { self.init(entries: entries, keys: nil) }

    private init(entries: [Entry], keys: [[UInt8]]?) {
        self.entries = entries
        self.keys = keys
    }

    /// Folded for a destination that is not case-sensitive; the listing's order is checked
    /// first, as the join would check it.
    init(_ entries: [Entry], caseSensitive: Bool, side: DuplicateName.Side, directory: EntryPath) throws(FerryError) {
        guard !caseSensitive else { self.init(entries); return }
        for k in entries.indices.dropFirst() where byteOrder(entries[k - 1].name, entries[k].name) > 0 {
            throw FerryError.unsorted(side, directory, entries[k - 1].name, before: entries[k].name)
        }
        let folded = entries.map { (ArrayCursor.fold($0.name), $0) }.sorted { a, b in
            let c = byteOrder(a.0, b.0)
            return c != 0 ? c < 0 : byteOrder(a.1.name, b.1.name) < 0
        }
        self.init(entries: folded.map(\.1), keys: folded.map(\.0))
    }

    func peekKey() -> [UInt8]? {
        guard i < entries.count else { return nil }
        return keys?[i] ?? entries[i].name
    }

    mutating func next() throws(FerryError) -> Entry? {
        guard i < entries.count else { return nil }
        i += 1
        return entries[i - 1]
    }

    /// A name as a case-insensitive file system matches it (Unicode lowercase; bytes that
    /// are not UTF-8 as they are).
    static func fold(_ name: [UInt8]) -> [UInt8] {
        guard let text = String(validating: name, as: UTF8.self) else { return name }
        return Array(text.lowercased().utf8)
    }
}

/// A huge listing merged from the sorted runs of its spill file (case-sensitive keys only).
final class SpilledCursor: EntryCursor {
    private let merger: RunMerger
    /// The newest mtime read so far (``NewestMtime``).
    private(set) var newest = NewestMtime()

    init(_ spool: EntrySpool) throws(FerryError) {
        merger = try RunMerger(spool)
    }

    func peekKey() -> [UInt8]? { merger.peekName() }

    func next() throws(FerryError) -> Entry? {
        guard let e = try merger.next() else { return nil }
        newest.note(e)
        return e
    }
}
