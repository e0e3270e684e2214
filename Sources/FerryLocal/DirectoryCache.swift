import FerryCore
import Synchronization

/// Open `O_PATH` descriptors of recently used directories, keyed by path, so that work on
/// many files of one directory resolves the directory once (one `openat2` instead of one
/// per file) and then names only the last component. Descriptors are reference-counted
/// (``FileDescriptor``): one evicted while in use stays open until its user is done.
/// Removing a directory through the location invalidates it and everything below it.
final class DirectoryCache: Sendable {
    private let entries = Mutex<[EntryPath: FileDescriptor]>([:])
    let capacity: Int

    init(capacity: Int = 256) { self.capacity = capacity }

    func get(_ path: EntryPath) -> FileDescriptor? {
        entries.withLock { $0[path] }
    }

    func put(_ path: EntryPath, _ fd: FileDescriptor) {
        entries.withLock { map in
            if map.count >= capacity { map.remove(at: map.startIndex) }
            map[path] = fd
        }
    }

    /// Forgets `path` and every directory below it.
    func invalidate(_ path: EntryPath) {
        entries.withLock { map in
            if path.isRoot { map.removeAll(); return }
            let prefix = path.bytes + [UInt8(ascii: "/")]
            for key in map.keys where key == path || key.bytes.starts(with: prefix) {
                map[key] = nil
            }
        }
    }
}
