import CFerry
import FerryCore
import Glibc
import Synchronization

private let temporaryCounter = Atomic<UInt64>(0)
/// `.ferry-tmp-<pid>-`, computed once.
private let temporaryStem: [UInt8] = POSIXLocation.temporaryPrefix + Array("\(getpid())-".utf8)

extension POSIXLocation {
    /// A fresh temporary name `.ferry-tmp-<pid>-<n>`, n a counter in base 16 written with
    /// the letters a–p, least significant first (hidden from listings, removed if left over).
    func temporaryName() -> [UInt8] {
        let n = temporaryCounter.add(1, ordering: .relaxed).newValue
        var name = temporaryStem
        var digits = n
        repeat {
            name.append(UInt8(ascii: "a") + UInt8(digits & 15))
            digits >>= 4
        } while digits > 0
        return name
    }

    /// Whether `name` is one of Ferry's temporary names exactly: the prefix, a process id,
    /// `-`, then letters a–p (``temporaryName()``). Only those are hidden from listings and
    /// removed as leftovers; a file of the user's that merely starts with the prefix
    /// (`.ferry-tmp-notes`) is an entry like any other.
    static func isTemporaryName(_ name: UnsafeBufferPointer<UInt8>) -> Bool {
        let prefix = temporaryPrefix
        guard name.count > prefix.count + 2, memcmp(name.baseAddress!, prefix, prefix.count) == 0 else { return false }
        var i = prefix.count
        while i < name.count, name[i] >= UInt8(ascii: "0"), name[i] <= UInt8(ascii: "9") { i += 1 }
        guard i > prefix.count, i < name.count - 1, name[i] == UInt8(ascii: "-") else { return false }
        return name[(i + 1)...].allSatisfy { $0 >= UInt8(ascii: "a") && $0 <= UInt8(ascii: "p") }
    }

    public func createFile(
        _ path: EntryPath, metadata: FileMetadata, attributes: [ExtendedAttribute]?, selection: MetadataSelection
    ) async throws -> any EntryWriter {
        let parent = try parentDirectory(of: path, operation: "open directory")
        let (fd, temporaryName) = try createTemporary(in: parent, path, metadata: metadata, selection: selection)
        return POSIXWriter(parent: parent, file: FileDescriptor(fd), temporaryName: temporaryName, path: path, location: self,
                           metadata: metadata, attributes: self.attributes(attributes, in: parent, selection: selection),
                           selection: selection)
    }

    /// The extended attributes a new file in `parent` gets at commit: a file created under a
    /// default ACL inherits an access ACL, so a source without attributes then needs the
    /// attributes replaced by none.
    func attributes(_ attributes: [ExtendedAttribute]?, in parent: FileDescriptor, selection: MetadataSelection) -> [ExtendedAttribute]? {
        attributes == nil && selection.extendedAttributes && parent.hasDefaultACL ? [] : attributes
    }

    /// Creates the file that ``commit(_:in:temporaryName:_:metadata:attributes:selection:)``
    /// puts at `path`: an unnamed inode (temporaryName nil), linked into place at commit, so
    /// one directory change instead of two (create, rename), and nothing to clean up if the
    /// process dies. No one can open it before then, so it is created with its final
    /// permission bits (commit then finds them in place, one fchmod fewer). Where the file
    /// system has no `O_TMPFILE`, a named temporary, 0600 until commit.
    func createTemporary(
        in parent: FileDescriptor, _ path: EntryPath, metadata: FileMetadata, selection: MetadataSelection
    ) throws(LocalError) -> (fd: Int32, temporaryName: [UInt8]?) {
        if anonymousFiles.usable(in: parent.fd) {
            let mode = selection.permissions ? mode_t(metadata.permissions & 0o777) : 0o600
            let fd = openat(parent.fd, ".", cferry_O_TMPFILE | O_RDWR | O_CLOEXEC | cferry_O_NOATIME, mode)
            if fd >= 0 { return (fd, nil) }
        }
        let tmp = temporaryName()
        let fd = Sys.withCString(tmp) { openat(parent.fd, $0, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | cferry_O_NOATIME, 0o600) }
        if fd < 0 { throw fail("create temporary file", path) }
        return (fd, tmp)
    }

    /// Applies `metadata` and `attributes` to the written file `fd` from
    /// ``createTemporary(in:_:metadata:selection:)`` and puts it at `path` in `parent`:
    /// links the unnamed inode (or renames the temporary) over whatever is there.
    /// - Returns: for an unnamed inode, its `fstat` after the last change of its metadata
    ///   (see ``POSIXMetadata/apply(fd:metadata:selection:attributes:location:path:checkAfter:)``).
    @discardableResult
    func commit(
        _ fd: Int32, in parent: FileDescriptor, temporaryName: [UInt8]?, _ path: EntryPath, metadata: FileMetadata,
        attributes: [ExtendedAttribute]?, selection: MetadataSelection
    ) throws(LocalError) -> Glibc.stat? {
        let applied = try POSIXMetadata.apply(
            fd: fd, metadata: metadata, selection: selection, attributes: attributes, location: self, path: path,
            checkAfter: temporaryName == nil)
        if let temporaryName {
            try rename(temporaryName, in: parent, to: path)
        } else if anonymousFiles.link(fd, into: parent.fd, name: path.lastComponent) != 0 {
            // A file is there already: link under a temporary name, then rename over it.
            guard errno == EEXIST else { throw fail("linkat", path) }
            let tmp = self.temporaryName()
            if anonymousFiles.link(fd, into: parent.fd, name: tmp[...]) != 0 { throw fail("linkat", path) }
            do {
                try rename(tmp, in: parent, to: path)
            } catch {
                _ = Sys.withCString(tmp) { unlinkat(parent.fd, $0, 0) }
                throw error
            }
        }
        return applied
    }

    private func rename(_ temporary: [UInt8], in parent: FileDescriptor, to path: EntryPath) throws(LocalError) {
        let renamed = Sys.withCString(temporary) { tmp in
            Sys.withCString(path.lastComponent) { renameat(parent.fd, tmp, parent.fd, $0) }
        }
        if renamed != 0 { throw fail("renameat", path) }
    }

    public func makeDirectory(_ path: EntryPath) async throws {
        if path.isRoot { return }
        let parent = try parentDirectory(of: path, operation: "open directory")
        try Sys.withCString(path.name) { (name) throws(LocalError) in
            if mkdirat(parent.fd, name, 0o700) == 0 { return }
            let e = errno
            if e == EEXIST, let st = Sys.lstatAt(parent.fd, name), Sys.kind(UInt32(st.st_mode)) == .directory { return }
            throw fail("mkdirat", path, e)
        }
    }

    /// Creates an entry under a temporary name with `make`, applies metadata by name, then
    /// renames it over `path`.
    private func placeByName(
        _ path: EntryPath, operation: String, metadata: FileMetadata?, selection: MetadataSelection, isSymlink: Bool,
        make: (Int32, UnsafePointer<CChar>) -> Int32
    ) throws(LocalError) {
        let parent = try parentDirectory(of: path, operation: operation)
        let tmp = temporaryName()
        try Sys.withCString(tmp) { (ctmp) throws(LocalError) in
            if make(parent.fd, ctmp) != 0 { throw fail(operation, path) }
            do throws(LocalError) {
                if let metadata {
                    try applyByName(parent.fd, ctmp, path, metadata: metadata, selection: selection, isSymlink: isSymlink)
                }
                let r = Sys.withCString(path.name) { renameat(parent.fd, ctmp, parent.fd, $0) }
                if r != 0 { throw fail("renameat", path) }
                // rename(2) of one hard link onto another of the same inode does nothing.
                _ = unlinkat(parent.fd, ctmp, 0)
            } catch {
                _ = unlinkat(parent.fd, ctmp, 0)
                throw error
            }
        }
    }

    /// `fchownat`/`fchmodat`/`utimensat` on a name in `dirfd`, never following a symlink.
    func applyByName(
        _ dirfd: Int32, _ name: UnsafePointer<CChar>, _ path: EntryPath, metadata: FileMetadata,
        selection: MetadataSelection, isSymlink: Bool
    ) throws(LocalError) {
        if selection.uid || selection.gid {
            let uid = selection.uid ? metadata.uid : UInt32.max
            let gid = selection.gid ? metadata.gid : UInt32.max
            if fchownat(dirfd, name, uid, gid, AT_SYMLINK_NOFOLLOW) != 0 { throw fail("fchownat", path) }
        }
        if selection.permissions && !isSymlink {
            if fchmodat(dirfd, name, mode_t(metadata.permissions), 0) != 0 { throw fail("fchmodat", path) }
        }
        if selection.mtime || selection.atime {
            if Sys.withTimes(metadata, selection) { utimensat(dirfd, name, $0, AT_SYMLINK_NOFOLLOW) } != 0 { throw fail("utimensat", path) }
        }
    }

    public func makeSymlink(_ path: EntryPath, target: [UInt8], metadata: FileMetadata, selection: MetadataSelection) async throws {
        try Sys.withCString(target) { (ctarget) throws(LocalError) in
            try placeByName(path, operation: "symlinkat", metadata: metadata, selection: selection, isSymlink: true) {
                symlinkat(ctarget, $0, $1)
            }
        }
    }

    public func makeHardLink(_ path: EntryPath, to existing: EntryPath) async throws {
        let existingParent = try parentDirectory(of: existing, operation: "open directory")
        try Sys.withCString(existing.name) { (cexisting) throws(LocalError) in
            try placeByName(path, operation: "linkat", metadata: nil, selection: .all, isSymlink: false) {
                linkat(existingParent.fd, cexisting, $0, $1, 0)
            }
        }
    }

    public func makeSpecial(_ path: EntryPath, kind: EntryKind, metadata: FileMetadata, selection: MetadataSelection) async throws {
        let mode = mode_t(kind.modeTypeBits | (metadata.permissions & 0o777))
        try placeByName(path, operation: "mknodat", metadata: metadata, selection: selection, isSymlink: false) {
            mknodat($0, $1, mode, dev_t(metadata.deviceNumber))
        }
    }

    public func setMetadata(_ path: EntryPath, kind: EntryKind, metadata: FileMetadata, selection: MetadataSelection) async throws {
        if path.isRoot {
            try POSIXMetadata.apply(fd: root.fd, metadata: metadata, selection: selection, attributes: nil, location: self, path: path)
            return
        }
        let parent = try parentDirectory(of: path, operation: "open directory")
        try Sys.withCString(path.name) { (name) throws(LocalError) in
            try applyByName(parent.fd, name, path, metadata: metadata, selection: selection, isSymlink: kind == .symlink)
        }
    }

    public func setExtendedAttributes(_ path: EntryPath, kind: EntryKind, _ attributes: [ExtendedAttribute]) async throws {
        guard kind != .symlink else { return }
        if kind.isSpecial {
            try withEntryPath(path, operation: "lsetxattr") { (target) throws(LocalError) in
                try POSIXMetadata.replaceAttributes(target, attributes, location: self, path: path)
            }
            return
        }
        let fd = open(path, O_RDONLY | O_NOFOLLOW | (kind == .directory ? O_DIRECTORY : 0) | cferry_O_NOATIME)
        if fd < 0 { throw fail("open", path) }
        let handle = FileDescriptor(fd)
        // Setting xattrs moves ctime only; mtime/atime are left as they are.
        try POSIXMetadata.replaceAttributes(.descriptor(handle.fd), attributes, location: self, path: path)
    }

    public func remove(_ path: EntryPath, kind: EntryKind) async throws {
        guard !path.isRoot else { throw LocalError(.unsafePath, operation: "remove", path: path, errno: EINVAL, root: rootPath) }
        let parent = try parentDirectory(of: path, operation: "open directory")
        directories.invalidate(path)
        try removeEntry(parent: parent.fd, name: path.name, path: path, isDirectory: kind == .directory)
    }

    /// Removes `name` in `parent`; a directory is emptied first (depth first, by descriptor).
    private func removeEntry(parent: Int32, name: [UInt8], path: EntryPath, isDirectory: Bool) throws(LocalError) {
        try Sys.withCString(name) { (cname) throws(LocalError) in
            if !isDirectory {
                if unlinkat(parent, cname, 0) == 0 || errno == ENOENT { return }
                if errno != EISDIR { throw fail("unlinkat", path) }
            }
            let fd = cferry_openat_beneath(parent, cname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0, 0)
            if fd < 0 {
                if errno == ENOENT { return }
                if errno == ENOTDIR || errno == ELOOP {
                    if unlinkat(parent, cname, 0) == 0 { return }
                }
                throw fail("open directory", path)
            }
            guard let dir = fdopendir(fd) else { _ = Glibc.close(fd); throw fail("fdopendir", path) }
            var children: [([UInt8], Bool)] = []
            while let dent = readdir(dir) {
                let child: [UInt8] = withUnsafeBytes(of: dent.pointee.d_name) { raw in
                    let b = raw.bindMemory(to: UInt8.self)
                    return Array(b[..<(b.firstIndex(of: 0) ?? b.count)])
                }
                if child == [46] || child == [46, 46] { continue }
                children.append((child, dent.pointee.d_type == UInt8(DT_DIR)))
            }
            let dirfd = dirfd(dir)
            do throws(LocalError) {
                for (child, isDir) in children {
                    try removeEntry(parent: dirfd, name: child, path: path.appending(child), isDirectory: isDir)
                }
            } catch {
                closedir(dir)
                throw error
            }
            closedir(dir)
            if unlinkat(parent, cname, AT_REMOVEDIR) != 0 && errno != ENOENT { throw fail("unlinkat", path) }
        }
    }

    public func removeTemporary(in directory: EntryPath, name: [UInt8]) async throws {
        let fd = try self.directory(directory, operation: "open directory").fd
        if Sys.withCString(name, { unlinkat(fd, $0, 0) }) != 0 && errno != ENOENT {
            throw fail("unlinkat", directory.appending(name))
        }
    }
}

/// Whether this file system lets Ferry create `O_TMPFILE` files and link them into place
/// (tmpfs, ext4, xfs, btrfs do; NFS and FUSE mostly do not), and how: `linkat(fd, "",
/// AT_EMPTY_PATH)` where the process may (CAP_DAC_READ_SEARCH, e.g. root), otherwise through
/// `/proc/self/fd/N` with AT_SYMLINK_FOLLOW (a procfs path lookup per file, ~half the cost of
/// the link in `perf`). Probed once per location, in the first directory written, with a
/// file that is linked and removed again.
final class AnonymousFiles: Sendable {
    private enum Mode: Int8 { case unknown = 0, emptyPath = 2, procPath = 1, unusable = -1 }
    private let state = Atomic<Int8>(Mode.unknown.rawValue)

    func usable(in directory: Int32) -> Bool {
        mode(in: directory) != .unusable
    }

    private func mode(in directory: Int32) -> Mode {
        let known = Mode(rawValue: state.load(ordering: .relaxed)) ?? .unknown
        guard known == .unknown else { return known }
        let found = AnonymousFiles.probe(directory)
        state.store(found.rawValue, ordering: .relaxed)
        return found
    }

    private static func probe(_ directory: Int32) -> Mode {
        for mode in [Mode.emptyPath, .procPath] {
            let fd = openat(directory, ".", cferry_O_TMPFILE | O_WRONLY | O_CLOEXEC, 0o600)
            guard fd >= 0 else { return .unusable }
            defer { close(fd) }
            let name = Array(".ferry-probe-\(getpid())-\(UInt32.random(in: 0..<UInt32.max))".utf8)
            if link(fd, into: directory, name: name[...], mode: mode) == 0 {
                _ = Sys.withCString(name) { unlinkat(directory, $0, 0) }
                return mode
            }
        }
        return .unusable
    }

    /// `linkat` of an open unnamed file into `directory` as `name`, the way the probe found;
    /// 0 or -1 with errno.
    func link(_ fd: Int32, into directory: Int32, name: ArraySlice<UInt8>) -> Int32 {
        AnonymousFiles.link(fd, into: directory, name: name, mode: mode(in: directory))
    }

    private static func link(_ fd: Int32, into directory: Int32, name: ArraySlice<UInt8>, mode: Mode) -> Int32 {
        Sys.withCString(name) { target in
            if mode == .emptyPath { return linkat(fd, "", directory, target, cferry_AT_EMPTY_PATH) }
            return linkat(AT_FDCWD, "/proc/self/fd/\(fd)", directory, target, AT_SYMLINK_FOLLOW)
        }
    }
}
