import Glibc
import Synchronization

/// The names files are written under before their atomic rename (`.ferry-tmp-PID-N`), the
/// same in every location, so that a later run finds its own leftovers
/// (``Listing/staleTemporaries``).
public enum TemporaryName {
    public static let prefix: [UInt8] = Array(".ferry-tmp-".utf8)
    private static let counter = Atomic<Int>(0)

    /// A fresh temporary name in the directory of `path`.
    public static func beside(_ path: EntryPath) -> EntryPath {
        let n = counter.add(1, ordering: .relaxed).oldValue
        return path.parent.appending(prefix + Array("\(getpid())-\(n)".utf8))
    }

    public static func isTemporary<C: Collection>(_ name: C) -> Bool where C.Element == UInt8 { name.starts(with: prefix) }
}

extension Listing {
    /// The listing of `raw`, entries as a client of a file server read them: Ferry's own
    /// temporaries set aside, names that cannot be path components reported as unusable, the
    /// rest sorted by name bytes.
    public init(sorting raw: [Entry]) {
        var entries: [Entry] = [], temporaries: [[UInt8]] = [], unusable: [(name: String, reason: String)] = []
        for entry in raw {
            if TemporaryName.isTemporary(entry.name) {
                temporaries.append(entry.name)
            } else if !EntryPath.isSafeName(entry.name) {
                unusable.append((EntryPath.displayName(entry.name), "the name cannot be used as a path component"))
            } else {
                entries.append(entry)
            }
        }
        entries.sort { $0.name.lexicographicallyPrecedes($1.name) }
        self.init(entries: entries, staleTemporaries: temporaries, unusable: unusable)
    }
}

extension Extent {
    /// A file with no known holes: all of it is data (a client that cannot ask the server
    /// where the holes are).
    public static func wholeFile(size: Int64) -> [Extent] { size > 0 ? [Extent(offset: 0, length: size)] : [] }
}
