import FerryCore

/// Collects the sorted runs ``Location/listInRuns(_:runSize:_:)`` delivers for one side of a
/// directory: one run is kept in memory as it is (every directory up to the run size);
/// from the second on, runs go to a spill file in `spillDirectory` and are merged when read.
final class ListingCollector: @unchecked Sendable {
    let spillDirectory: String
    private(set) var first: [Entry]?
    private(set) var spool: EntrySpool?
    /// Entries collected, in memory or spilled.
    var entries: [Entry] { first ?? [] }

    init(spillDirectory: String) { self.spillDirectory = spillDirectory }

    func add(_ run: [Entry]) throws(FerryError) {
        if spool == nil, first == nil { first = run; return }
        if spool == nil {
            spool = try EntrySpool(directory: spillDirectory)
            try spool!.append(run: first!)
            first = nil
        }
        try spool!.append(run: run)
    }

    /// How many entries were collected.
    var count: Int { spool?.count ?? first?.count ?? 0 }
}

/// Merges the sorted runs of a spool with a binary heap of the runs' next entries.
final class RunMerger {
    private var readers: [EntrySpool.RunReader]
    private var heads: [Entry?]
    /// Run indices ordered by their head's name (a min-heap).
    private var heap: [Int] = []

    init(_ spool: EntrySpool) throws(FerryError) {
        readers = (0..<spool.runs.count).map { spool.reader($0) }
        heads = []
        for i in readers.indices {
            heads.append(try readers[i].next())
            if heads[i] != nil { push(i) }
        }
    }

    func peekName() -> [UInt8]? { heap.first.flatMap { heads[$0]?.name } }

    func next() throws(FerryError) -> Entry? {
        guard let top = heap.first else { return nil }
        let e = heads[top]
        heads[top] = try readers[top].next()
        if heads[top] == nil {
            heap[0] = heap[heap.count - 1]
            heap.removeLast()
        }
        if !heap.isEmpty { siftDown(0) }
        return e
    }

    private func less(_ a: Int, _ b: Int) -> Bool {
        let c = byteOrder(heads[a]!.name, heads[b]!.name)
        return c < 0 || c == 0 && a < b  // equal names: the earlier run first (stable)
    }

    private func push(_ run: Int) {
        heap.append(run)
        var i = heap.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            if !less(heap[i], heap[parent]) { break }
            heap.swapAt(i, parent)
            i = parent
        }
    }

    private func siftDown(_ start: Int) {
        var i = start
        while true {
            let l = 2 * i + 1, r = l + 1
            var smallest = i
            if l < heap.count && less(heap[l], heap[smallest]) { smallest = l }
            if r < heap.count && less(heap[r], heap[smallest]) { smallest = r }
            if smallest == i { return }
            heap.swapAt(i, smallest)
            i = smallest
        }
    }
}

/// Either side's cursor, in memory or merged from a spill file.
enum AnyCursor: EntryCursor {
    case array(ArrayCursor)
    case spilled(SpilledCursor)

    /// The cursors of a directory's two collected sides. Names are folded for a destination
    /// that is not case-sensitive only where both sides are in memory: a spilled side's runs
    /// are sorted by the names themselves, and both sides must use one order.
    static func pair(
        _ source: ListingCollector, _ destination: ListingCollector, caseSensitive: Bool, directory: EntryPath
    ) throws(FerryError) -> (source: AnyCursor, destination: AnyCursor) {
        let fold = !caseSensitive && source.spool == nil && destination.spool == nil
        func cursor(_ side: ListingCollector, _ name: DuplicateName.Side) throws(FerryError) -> AnyCursor {
            if let spool = side.spool { return .spilled(try SpilledCursor(spool)) }
            return .array(try ArrayCursor(side.entries, caseSensitive: !fold, side: name, directory: directory))
        }
        return (try cursor(source, .source), try cursor(destination, .destination))
    }

    /// The newest mtime by ``NewestMtime``'s rule: of the entries read so far when spilled.
    func newest(of collected: ListingCollector) -> Timestamp? {
        if case .spilled(let c) = self { return c.newest.value }
        return NewestMtime.of(collected.entries)
    }

    func peekKey() -> [UInt8]? {
        switch self {
        case .array(let a): a.peekKey()
        case .spilled(let s): s.peekKey()
        }
    }

    mutating func next() throws(FerryError) -> Entry? {
        switch self {
        case .array(var a):
            let e = try a.next()
            self = .array(a)
            return e
        case .spilled(let s):
            return try s.next()
        }
    }
}

/// The rest of a huge directory's plan: the join over its spilled listings, planned a part
/// at a time as the scheduler takes the items (one part's items in memory, not the
/// directory's). Used by one task at a time.
final class PlanCursor: @unchecked Sendable {
    var join: MergeJoin<AnyCursor, AnyCursor>
    private let source: AnyCursor
    private let collected: ListingCollector

    init(directory: EntryPath, source: ListingCollector, destination: ListingCollector, caseSensitive: Bool) throws(FerryError) {
        let (s, d) = try AnyCursor.pair(source, destination, caseSensitive: caseSensitive, directory: directory)
        self.source = s
        collected = source
        join = MergeJoin(directory: directory, source: s, destination: d)
    }

    /// The newest mtime of the source entries read so far (all of them, in memory).
    var newest: Timestamp? { source.newest(of: collected) }
}
