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
    /// Only the entries of this share are taken (the rest is other leases' and is neither
    /// copied nor deleted here).
    public var share: Share?

    public init(includes: FilterRule? = nil, excludes: FilterRule? = nil, share: Share? = nil) {
        self.includes = includes
        self.excludes = excludes
        self.share = share
    }

    /// One of `count` shares of a tree (several agents per execution): an entry belongs to
    /// the share its path's first `depth` names hash to (FNV-1a), so every process, on any
    /// host, places a name the same way. Directories above `depth` are common to every
    /// share: each makes and descends into them, and the finishing share (`count` 0, run
    /// after all others) gives them — and the root — their metadata, once nothing is
    /// written in them any more.
    public struct Share: Sendable, Hashable {
        public let index: Int
        /// How many shares the tree is cut into; 0 for the finishing share.
        public let count: Int
        /// How many leading names of a path place it (1: the top-level name).
        public var depth: Int

        public init(index: Int, count: Int, depth: Int = 1) {
            self.index = index
            self.count = max(1, count)
            self.depth = max(1, depth)
        }

        private init(finishingAt depth: Int) {
            index = 0
            count = 0
            self.depth = max(1, depth)
        }

        /// The share that runs last and takes only the directories above `depth` (and the
        /// root): their metadata, applied after every other share's writes in them.
        public static func finishing(depth: Int) -> Share { Share(finishingAt: depth) }

        public var isFinishing: Bool { count == 0 }

        /// Where an entry stands for this share.
        public enum Place: Sendable { case mine, others, common }

        public func place(_ path: EntryPath, isDirectory: Bool) -> Place {
            let above = isDirectory && path.depth < depth
            if isFinishing { return above ? .mine : .others }
            if above { return .common }
            return holds(path.bytes) ? .mine : .others
        }

        /// Whether the entry at `path` (its bytes) is this share's by the hash of its first
        /// `depth` names (a common directory is placed too: the share that removes it when
        /// only the destination has it).
        public func holds(_ path: some Collection<UInt8>) -> Bool {
            guard count > 0 else { return false }
            var h: UInt64 = 0xcbf2_9ce4_8422_2325
            var names = 1
            for b in path {
                if b == UInt8(ascii: "/") {
                    if names == depth { break }
                    names += 1
                }
                h ^= UInt64(b)
                h = h &* 0x100_0000_01b3
            }
            return Int(h % UInt64(count)) == index
        }
    }

    /// What to do with an entry at `path`: `common` is a directory above a share's depth
    /// that every share descends into and none gives its metadata.
    public enum Decision: Sendable { case take, skip, descendOnly, common }

    /// No rules: every entry is taken (its path need not be built to ask).
    public var takesEverything: Bool { includes == nil && excludes == nil && share == nil }

    /// Excluded entries are skipped (and never deleted); with includes, only matching entries
    /// are taken, and directories that may hold matches are descended into; entries of
    /// other shares are skipped.
    public func decide(_ path: EntryPath, isDirectory: Bool) -> Decision {
        var common = false
        if let share, !path.isRoot {
            switch share.place(path, isDirectory: isDirectory) {
            case .others: return .skip
            case .common: common = true
            case .mine: break
            }
        }
        if let excludes, excludes.matches(path) { return .skip }
        guard let includes else { return common ? .common : .take }
        if includes.matches(path) { return common ? .common : .take }
        if isDirectory && includes.mayMatchBelow(path) { return common ? .common : .descendOnly }
        return .skip
    }

    /// Whether an entry only the destination has, decided `decision`, is removed here (with
    /// PreserveDeletedFiles=REMOVE): a common directory by the one share it hashes to.
    public func removes(_ path: EntryPath, _ decision: Decision) -> Bool {
        decision == .take || decision == .common && share?.holds(path.bytes) == true
    }

    /// Whether other shares of the tree may be writing in `directory` while this one runs
    /// (the root and the common directories, for every share but the finishing one).
    public func writtenByOtherShares(_ directory: EntryPath) -> Bool {
        guard let share, !share.isFinishing else { return false }
        return directory.depth < share.depth
    }

    /// Whether this run gives the root its metadata: every run but the shares of a tree
    /// other than the finishing one.
    public var ownsRoot: Bool { share?.isFinishing ?? true }
}
