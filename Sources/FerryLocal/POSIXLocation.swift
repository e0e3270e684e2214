import CFerry
import FerryCore
import Glibc

/// A POSIX file-system tree (local disk, NFS/EFS/Lustre mount) as a Ferry location.
///
/// Every path is resolved from a descriptor of the root with `openat2(2)` and
/// `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`, and the final component is handled with
/// `*at` calls and `AT_SYMLINK_NOFOLLOW`: a symlink inside the tree is never followed, so
/// nothing is read or written outside the root.
public struct POSIXLocation: Location, SymlinkWriting, HardLinkWriting, SpecialFileWriting, ExtendedAttributeStoring,
    RunListing, DirectCopying, TemporaryKeeping, ScopeTelling, MetadataLimiting {
    /// The root directory as given (for messages and the URI).
    public let rootPath: String
    let root: FileDescriptor
    let directories = DirectoryCache()
    /// Whether new files can be written as unnamed `O_TMPFILE` inodes (learned once).
    let anonymousFiles = AnonymousFiles()

    public var uri: String { "file://" + rootPath }

    /// Owners this process may not set (see ``OwnershipRights``).
    public func metadataWithheld(_ metadata: FileMetadata, kind: EntryKind, selection: MetadataSelection) -> MetadataWithheld? {
        OwnershipRights.current.withheld(metadata, selection: selection)
    }

    /// The root as `realpath(3)` resolved it when the location was opened.
    public var scope: LocationScope? { LocationScope.posix(rootPath) }

    /// Leftover temporaries are files of the listed directory (``isTemporaryName(_:)``).
    public var temporariesAreFiles: Bool { true }

    public var capabilities: Capabilities {
        var c = Capabilities.everything
        c.neverSuspends = true
        return c
    }

    /// Prefix of the temporary names files are written under before they are renamed.
    static let temporaryPrefix = TemporaryName.prefix

    /// Opens the tree at `path`; with `create`, missing directories are made (like `mkdir -p`).
    public init(path: String, create: Bool = false) throws {
        var p = path
        while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
        if p.isEmpty { p = "." }
        if create {
            POSIXLocation.makeDirectories(p)
        }
        let fd = Glibc.open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd < 0 {
            let e = errno
            throw LocalError(e == ENOENT ? .rootMissing : .syscallFailed, operation: "open", path: nil, errno: e, root: p)
        }
        if let resolved = realpath(p, nil) {
            p = String(cString: resolved)
            free(resolved)
        }
        self.rootPath = p
        self.root = FileDescriptor(fd)
    }

    private static func makeDirectories(_ path: String) {
        var prefix = path.hasPrefix("/") ? "/" : ""
        for component in path.split(separator: "/") {
            prefix += component
            _ = mkdir(prefix, 0o755)
            prefix += "/"
        }
    }

    func fail(_ op: String, _ path: EntryPath?, _ e: Int32 = errno) -> LocalError {
        LocalError(operation: op, path: path, errno: e, root: rootPath)
    }

    /// Opens `path` beneath the root with `flags`; never follows a symlink on the way.
    func open(_ path: EntryPath, _ flags: Int32, mode: UInt32 = 0) -> Int32 {
        Sys.withCString(path.bytes) { cferry_openat_beneath(root.fd, $0, flags, mode, 0) }
    }

    /// A descriptor of the directory holding `path` (`O_PATH`), for `*at` calls on its name.
    func parentDirectory(of path: EntryPath, operation: String) throws(LocalError) -> FileDescriptor {
        try directory(path.parent, operation: operation, for: path)
    }

    /// Runs `body` with `path` named through its parent's descriptor (`/proc/self/fd/P/name`),
    /// for the `l…xattr` calls on a FIFO or device node: opening one could block or reach the
    /// device. The parent was opened beneath the root, and the last component is not followed.
    func withEntryPath<R>(
        _ path: EntryPath, operation: String, _ body: (XattrTarget) throws(LocalError) -> R
    ) throws(LocalError) -> R {
        let parent = try parentDirectory(of: path, operation: operation)
        return try withExtendedLifetime(parent) { () throws(LocalError) -> R in
            try Sys.withCString(Array("/proc/self/fd/\(parent.fd)/".utf8) + path.name) { (name) throws(LocalError) in
                try body(.path(name))
            }
        }
    }

    /// An `O_PATH` descriptor of `directory`, from the cache or opened beneath the root.
    func directory(_ directory: EntryPath, operation: String, for path: EntryPath? = nil) throws(LocalError) -> FileDescriptor {
        if directory.isRoot { return root }
        if let cached = directories.get(directory) { return cached }
        let fd = open(directory, cferry_O_PATH | O_DIRECTORY)
        if fd < 0 { throw fail(operation, path ?? directory) }
        let handle = FileDescriptor(fd)
        directories.put(directory, handle)
        return handle
    }

    public func list(_ directory: EntryPath) async throws -> Listing? {
        try listSync(directory)
    }

    /// Reads names with `readdir` until `runSize` are held, then sorts and stats them and
    /// hands them on: memory holds one run, whatever the directory's size.
    public func listInRuns(_ directory: EntryPath, runSize: Int, _ deliver: ([Entry]) throws -> Void) async throws -> Listing? {
        try listSync(directory, runSize: runSize, deliver)
    }

    func listSync(_ directory: EntryPath) throws -> Listing? {
        var all: [Entry] = []
        guard var listing = try listSync(directory, runSize: .max, { all = $0 }) else { return nil }
        listing.entries = all
        return listing
    }

    func listSync(_ directory: EntryPath, runSize: Int, _ deliver: ([Entry]) throws -> Void) throws -> Listing? {
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
        if fd < 0 {
            let e = errno
            if e == ENOENT || e == ENOTDIR || e == ELOOP || e == EXDEV { return nil }
            throw fail("open directory", directory, e)
        }
        guard let dir = fdopendir(fd) else {
            let e = errno
            _ = Glibc.close(fd)
            throw fail("fdopendir", directory, e)
        }
        defer { closedir(dir) }
        var names = SortedNames()
        var temporaries: [[UInt8]] = []
        var delivered = false
        while true {
            errno = 0
            guard let dent = readdir(dir) else {
                if errno != 0 { throw fail("readdir", directory) }
                break
            }
            withUnsafeBytes(of: &dent.pointee.d_name) { raw in
                let name = raw.baseAddress!.assumingMemoryBound(to: UInt8.self)
                let count = strnlen(raw.baseAddress!.assumingMemoryBound(to: CChar.self), raw.count)
                if name[0] == 46 && (count == 1 || count == 2 && name[1] == 46) { return }  // "." and ".."
                let bytes = UnsafeBufferPointer(start: name, count: count)
                if name[0] == 46 && POSIXLocation.isTemporaryName(bytes) {
                    temporaries.append(Array(bytes))
                    return
                }
                names.append(name, count: count)
            }
            if names.count >= runSize {
                try deliver(POSIXLocation.entries(of: &names, in: fd))
                names = SortedNames()
                delivered = true
            }
        }
        if names.count > 0 || !delivered { try deliver(POSIXLocation.entries(of: &names, in: fd)) }
        return Listing(entries: [], staleTemporaries: temporaries)
    }

    /// Sorts `names` and stats each in the directory `fd` (a name gone meanwhile is left out).
    static func entries(of names: inout SortedNames, in fd: Int32) -> [Entry] {
        names.sort()
        var entries: [Entry] = []
        entries.reserveCapacity(names.count)
        names.forEach { name in
            // `name` is followed by its NUL in the buffer.
            let cname = UnsafeRawPointer(name.baseAddress!).assumingMemoryBound(to: CChar.self)
            guard let st = Sys.lstatAt(fd, cname), let kind = Sys.kind(UInt32(st.st_mode)) else { return }
            var target: [UInt8]?
            if kind == .symlink {
                target = Sys.readLink(fd, cname, sizeHint: Int(st.st_size))
                if target == nil { return }
            }
            entries.append(Entry(name: Array(name), kind: kind, metadata: Sys.metadata(st), symlinkTarget: target))
        }
        return entries
    }

    public func stat(_ path: EntryPath) async throws -> Entry? {
        try statSync(path)
    }

    func statSync(_ path: EntryPath) throws(LocalError) -> Entry? {
        if path.isRoot {
            var st = Glibc.stat()
            guard fstat(root.fd, &st) == 0 else { throw fail("fstat", path) }
            return Entry(name: [], kind: .directory, metadata: Sys.metadata(st))
        }
        let parent: FileDescriptor
        do {
            parent = try directory(path.parent, operation: "open directory")
        } catch {
            if error.errno == ENOENT || error.errno == ENOTDIR || error.errno == ELOOP { return nil }
            throw error
        }
        let parentFD = parent.fd
        let name = path.name
        return try Sys.withCString(name) { (cname) throws(LocalError) -> Entry? in
            guard let st = Sys.lstatAt(parentFD, cname) else {
                if errno == ENOENT { return nil }
                throw fail("fstatat", path)
            }
            guard let kind = Sys.kind(UInt32(st.st_mode)) else { return nil }
            let target = kind == .symlink ? Sys.readLink(parentFD, cname, sizeHint: Int(st.st_size)) : nil
            return Entry(name: name, kind: kind, metadata: Sys.metadata(st), symlinkTarget: target)
        }
    }

    /// Opens with `O_NOFOLLOW | O_NOATIME | O_NONBLOCK` (a FIFO swapped in for the file
    /// cannot block the open) and no `fstat`: the reader reports the listed metadata, and
    /// ``EntryReader/close()`` stats the descriptor, so a changed or replaced file shows there.
    public func openForReading(_ path: EntryPath, expected: Entry) async throws -> any EntryReader {
        let parent = try parentDirectory(of: path, operation: "open directory")
        let fd = try openFile(in: parent, path)
        return POSIXReader(fd: FileDescriptor(fd), metadata: expected.metadata, path: path, location: self)
    }

    /// Opens the file `path` in `parent` to read it: `O_NOATIME` (the atime stays as it
    /// was) where the process may, never following a symlink.
    func openFile(in parent: FileDescriptor, _ path: EntryPath) throws(LocalError) -> Int32 {
        let fd = Sys.withCString(path.lastComponent) { name in
            var fd = openat(parent.fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | cferry_O_NOATIME)
            if fd < 0 && errno == EPERM {
                // O_NOATIME needs ownership or CAP_FOWNER; read without it.
                fd = openat(parent.fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
            }
            return fd
        }
        if fd < 0 { throw fail("open", path) }
        return fd
    }

    /// `fstat` of an open regular file, to compare with what it was before a read (something
    /// that is not a regular file is an error here).
    func metadataOfOpenFile(_ fd: Int32, _ path: EntryPath) throws(LocalError) -> FileMetadata {
        var st = Glibc.stat()
        guard fstat(fd, &st) == 0 else { throw fail("fstat", path) }
        guard Sys.kind(UInt32(st.st_mode)) == .file else {
            throw LocalError(operation: "read", path: path, errno: EINVAL, root: rootPath)
        }
        return Sys.metadata(st)
    }

    public func directCopier(to destination: any Location) -> (any DirectFileCopier)? {
        guard let destination = destination as? POSIXLocation else { return nil }
        return POSIXDirectCopier(from: self, to: destination)
    }

    public func extendedAttributes(_ path: EntryPath, kind: EntryKind) async throws -> [ExtendedAttribute] {
        guard kind != .symlink else { return [] }
        if kind.isSpecial {
            return try withEntryPath(path, operation: "llistxattr") { (target) throws(LocalError) in
                guard let attrs = Sys.xattrs(target) else { throw fail("llistxattr", path) }
                return attrs
            }
        }
        let fd = open(path, O_RDONLY | O_NOFOLLOW | (kind == .directory ? O_DIRECTORY : 0) | cferry_O_NOATIME)
        if fd < 0 { throw fail("open", path) }
        let handle = FileDescriptor(fd)
        guard let attrs = Sys.xattrs(fd: handle.fd) else { throw fail("flistxattr", path) }
        return attrs
    }
}
