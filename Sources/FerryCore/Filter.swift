/// DataSync's SIMPLE_PATTERN filters: patterns joined by `|`, `*` matches any run of bytes
/// (including `/`), a leading `/` anchors a pattern at the location root, a pattern that
/// names a folder also matches everything below it, and matching is case-sensitive.
/// A pattern without a leading `/` matches at any depth (`*.tmp`, `.snapshot`).
public struct FilterRule: Sendable, Hashable {
    public struct Pattern: Sendable, Hashable {
        /// The pattern bytes without a leading `/` or trailing `/`.
        let body: [UInt8]
        let anchored: Bool
    }

    public let patterns: [Pattern]
    public let text: String

    /// Parses a filter string such as `/photos|*.tmp|/logs/*/old`.
    public init(_ text: String) throws(FerryError) {
        var patterns: [Pattern] = []
        for raw in text.split(separator: "|", omittingEmptySubsequences: false) {
            var bytes = Array(raw.utf8)
            if bytes.isEmpty {
                throw FerryError(.invalidFilter, "empty pattern in filter \"\(text)\": patterns are joined by a single |")
            }
            if bytes.contains(0) { throw FerryError(.invalidFilter, "filter \"\(text)\" contains a NUL byte") }
            let anchored = bytes.first == UInt8(ascii: "/")
            while bytes.first == UInt8(ascii: "/") { bytes.removeFirst() }
            while bytes.last == UInt8(ascii: "/") { bytes.removeLast() }
            if bytes.isEmpty {
                throw FerryError(.invalidFilter, "pattern \"\(raw)\" in filter \"\(text)\" names the location root; leave the filter out to include everything")
            }
            patterns.append(Pattern(body: bytes, anchored: anchored))
        }
        self.patterns = patterns
        self.text = text
    }

    /// Whether `path` (or a folder above it) matches one of the patterns.
    public func matches(_ path: EntryPath) -> Bool {
        let bytes = path.bytes
        if bytes.isEmpty { return false }
        for p in patterns where FilterRule.matches(p, bytes) { return true }
        return false
    }

    /// Whether a directory that does not match itself may still hold matching entries,
    /// so that an include filter must look inside it.
    public func mayMatchBelow(_ directory: EntryPath) -> Bool {
        if directory.isRoot { return true }
        var dir = directory.bytes
        dir.append(UInt8(ascii: "/"))
        for p in patterns {
            guard p.anchored else { return true }
            let literal = p.body.prefix { $0 != UInt8(ascii: "*") }
            let starred = literal.count < p.body.count
            if literal.starts(with: dir) { return true }
            if starred && dir.starts(with: literal) { return true }
        }
        return false
    }

    /// A pattern matches a path if it glob-matches the whole path or a prefix of it that ends
    /// at a component boundary; an unanchored one may also start at any component.
    static func matches(_ p: Pattern, _ path: [UInt8]) -> Bool {
        var starts = [0]
        if !p.anchored {
            for (i, b) in path.enumerated() where b == UInt8(ascii: "/") { starts.append(i + 1) }
        }
        for start in starts {
            var ends: [Int] = []
            for i in start..<path.count where path[i] == UInt8(ascii: "/") { ends.append(i) }
            ends.append(path.count)
            for end in ends where glob(p.body, path[start..<end]) { return true }
        }
        return false
    }

    /// `*`-only glob match of bytes (iterative, backtracking to the last star).
    static func glob(_ pattern: [UInt8], _ text: ArraySlice<UInt8>) -> Bool {
        let star = UInt8(ascii: "*")
        var p = 0, t = text.startIndex
        var starP = -1, starT = text.startIndex
        while t < text.endIndex {
            if p < pattern.count && pattern[p] == star {
                starP = p; starT = t; p += 1
            } else if p < pattern.count && pattern[p] == text[t] {
                p += 1; t += 1
            } else if starP >= 0 {
                p = starP + 1; starT += 1; t = starT
            } else {
                return false
            }
        }
        while p < pattern.count && pattern[p] == star { p += 1 }
        return p == pattern.count
    }
}

/// The include and exclude filters of a task or execution, and the share of the tree one
/// agent's lease covers when several agents run an execution.
public struct Filters: Sendable, Hashable {
    public var includes: FilterRule?
    public var excludes: FilterRule?
    /// Only the top-level names of this share are taken (the rest is other leases' and is
    /// neither copied nor deleted here).
    public var share: Share?

    public init(includes: FilterRule? = nil, excludes: FilterRule? = nil, share: Share? = nil) {
        self.includes = includes
        self.excludes = excludes
        self.share = share
    }

    /// One of `count` shares of a tree, by a hash of each top-level name (FNV-1a): every
    /// process, on any host, puts a name in the same share.
    public struct Share: Sendable, Hashable {
        public let index: Int
        public let count: Int

        public init(index: Int, count: Int) {
            self.index = index
            self.count = max(1, count)
        }

        /// Whether the top-level entry `name` is in this share.
        public func holds(_ name: some Collection<UInt8>) -> Bool {
            var h: UInt64 = 0xcbf2_9ce4_8422_2325
            for b in name {
                h ^= UInt64(b)
                h = h &* 0x100_0000_01b3
            }
            return Int(h % UInt64(count)) == index
        }
    }

    /// What to do with an entry at `path`.
    public enum Decision: Sendable { case take, skip, descendOnly }

    /// No rules: every entry is taken (its path need not be built to ask).
    public var takesEverything: Bool { includes == nil && excludes == nil && share == nil }

    /// Excluded entries are skipped (and never deleted); with includes, only matching entries
    /// are taken, and directories that may hold matches are descended into; top-level
    /// entries outside the share are skipped.
    public func decide(_ path: EntryPath, isDirectory: Bool) -> Decision {
        if let share, !path.isRoot {
            let bytes = path.bytes
            if !share.holds(bytes[..<(bytes.firstIndex(of: UInt8(ascii: "/")) ?? bytes.endIndex)]) { return .skip }
        }
        if let excludes, excludes.matches(path) { return .skip }
        guard let includes else { return .take }
        if includes.matches(path) { return .take }
        if isDirectory && includes.mayMatchBelow(path) { return .descendOnly }
        return .skip
    }
}
