import FerryCore

extension Filters.Share {
    /// How deep a tree is cut among `count` shares (several agents per execution), read
    /// from the source: the top level when it has at least `2 × count` entries, else one
    /// level deeper (its files still count), and so on down to `maxDepth`. A tree whose
    /// files all sit under one or two directories, or one huge directory below the top, is
    /// still spread. Only directories above the chosen depth are listed — few, as a level is
    /// only gone below when it is narrow — and every share lists the same ones, so each
    /// finds the same depth unless the source's top levels change meanwhile (the control
    /// plane compares the depths the shares report).
    public static func depth(of source: any Location, count: Int, maxDepth: Int = 4) async throws -> Int {
        let wanted = 2 * max(1, count)
        var level: [EntryPath] = [.root]
        var filesAbove = 0
        for depth in 1...maxDepth {
            // Up to 16 at a time; a directory gone meanwhile is left out.
            let listings = try await boundedConcurrentMap(level, limit: 16) { directory in (directory, try await source.list(directory)?.entries ?? []) }
            var units = filesAbove
            var next: [EntryPath] = []
            for (directory, entries) in listings {
                units += entries.count
                for e in entries {
                    if e.kind == .directory { next.append(directory.appending(e.name)) } else { filesAbove += 1 }
                }
            }
            if units >= wanted || next.isEmpty || depth == maxDepth { return depth }
            level = next.sorted()
        }
        return maxDepth
    }
}
