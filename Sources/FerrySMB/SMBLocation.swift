import CLibSMB
import FerryCore
import Glibc

/// A directory tree on an SMB share, reached by Ferry's own client (libsmbclient, no
/// mount): `smb://[domain;]user@host[:port]/share/path`.
///
/// What it keeps follows DataSync's SMB rules: access and modification times (to the
/// microsecond). Read by a POSIX or S3 destination it is default POSIX metadata
/// (65534:65534, 0755 directories, 0644 files); written from one, ownership is the SMB
/// user's and permissions are inherited from the parent, and a file's xattrs are reported
/// as not stored. Symlinks and hard links on the way to SMB end the task with an error
/// naming them. Between two shares, DOS attributes, creation times and (as
/// SecurityDescriptorCopyFlags asks) owners and DACLs go too (``NativeMetadataCopying``).
public struct SMBLocation: Location, SymlinkWriting, HardLinkWriting, TemporaryKeeping, ScopeTelling {
    public let client: SMBClient
    /// DataSync's default POSIX metadata for what comes from SMB.
    static let defaultOwner: UInt32 = 65534

    public init(client: SMBClient) { self.client = client }

    public var uri: String { client.display }

    public var capabilities: Capabilities {
        var c = Capabilities()
        c.setsMetadataInPlace = true
        c.atime = true
        c.caseSensitive = false
        c.mtimePrecisionNanoseconds = 1_000
        // One item per session: each carries one request at a time.
        c.itemsInFlight = client.workers.count
        return c
    }

    public var temporariesAreFiles: Bool { true }

    public var scope: LocationScope? {
        SMBLocation.scope(host: client.host, port: client.port, path: "/" + client.share + client.below, display: uri)
    }

    /// The tree at `/share/path` on `host`: the same server (by name, default port 445) and
    /// share, and a path within the other, overlap; names are compared without case.
    public static func scope(host: String, port: Int?, path: String, display: String) -> LocationScope {
        let parts = path.split(separator: "/").map { $0.lowercased() }
        return LocationScope(space: "smb://\(ThisHost.canonical(host)):\(port ?? 445)/\(parts.first ?? "")", components: Array(parts.dropFirst()), display: display)
    }

    func fail(_ operation: String, _ path: EntryPath?, _ e: Int32, _ detail: String = "") -> SMBError {
        SMBError(operation: operation, path: path, errno: e == 0 ? EIO : e, detail: detail, location: uri)
    }

    // MARK: Reading the tree

    public func list(_ directory: EntryPath) async throws -> Listing? {
        let url = client.url(directory)
        let (found, e) = await client.worker.run { ctx -> ([Entry], [([UInt8], UInt32)])? in
            guard let dir = smbc_getFunctionOpendir(ctx)!(ctx, url) else { return nil }
            defer { _ = smbc_getFunctionClosedir(ctx)!(ctx, dir) }
            var entries: [Entry] = []
            var directories: [([UInt8], UInt32)] = []
            var st = Glibc.stat()
            while let info = smbc_getFunctionReaddirPlus2(ctx)!(ctx, dir, &st) {
                guard let cName = info.pointee.name else { continue }
                let name = Array(UnsafeRawBufferPointer(start: cName, count: strlen(cName)))
                if name == [UInt8(ascii: ".")] || name == [UInt8(ascii: "."), UInt8(ascii: ".")] { continue }
                let entry = SMBLocation.entry(name: name, info.pointee, st)
                if entry.kind == .directory { directories.append((name, UInt32(info.pointee.attrs))) }
                entries.append(entry)
            }
            return (entries, directories)
        }
        guard let (raw, directories) = found else {
            if e == ENOENT || e == ENOTDIR { return nil }
            throw fail("opendir", directory, e)
        }
        client.noteDirectoryAttributes(directories.map { (directory.appending($0.0), $0.1) })
        return Listing(sorting: raw)
    }

    public func stat(_ path: EntryPath) async throws -> Entry? {
        let url = client.url(path)
        let (st, e) = await client.worker.run { ctx -> Glibc.stat? in
            var st = Glibc.stat()
            return smbc_getFunctionStat(ctx)!(ctx, url, &st) == 0 ? st : nil
        }
        guard let st else {
            if e == ENOENT || e == ENOTDIR { return nil }
            throw fail("stat", path, e)
        }
        return Entry(name: path.name, kind: st.st_mode & S_IFMT == S_IFDIR ? .directory : .file, metadata: SMBLocation.metadata(st))
    }

    public func openForReading(_ path: EntryPath, expected: Entry) async throws -> any EntryReader {
        let worker = client.worker
        let url = client.url(path)
        let (file, e) = await worker.run { ctx in Unchecked(smbc_getFunctionOpen(ctx)!(ctx, url, O_RDONLY, 0)) }
        guard let handle = file.value else { throw fail("open", path, e) }
        return SMBReader(location: self, worker: worker, handle: Unchecked(handle), path: path, metadata: expected.metadata)
    }

    // MARK: Writing the tree

    public func createFile(
        _ path: EntryPath, metadata: FileMetadata, attributes: [ExtendedAttribute]?, selection: MetadataSelection
    ) async throws -> any EntryWriter {
        let worker = client.worker
        let temporary = TemporaryName.beside(path)
        let url = client.url(temporary)
        let (file, e) = await worker.run { ctx in Unchecked(smbc_getFunctionOpen(ctx)!(ctx, url, O_WRONLY | O_CREAT | O_EXCL, 0o644)) }
        guard let handle = file.value else { throw fail("create", path, e) }
        return SMBWriter(location: self, worker: worker, handle: Unchecked(handle), path: path, temporary: temporary,
                         metadata: metadata, attributes: attributes ?? [], selection: selection)
    }

    public func makeDirectory(_ path: EntryPath) async throws {
        let url = client.url(path)
        let (status, e) = await client.worker.run { ctx in smbc_getFunctionMkdir(ctx)!(ctx, url, 0o755) }
        if status != 0 {
            if e == EEXIST, let existing = try await stat(path), existing.kind == .directory { return }
            throw fail("mkdir", path, e)
        }
    }

    public func setMetadata(_ path: EntryPath, kind: EntryKind, metadata: FileMetadata, selection: MetadataSelection) async throws {
        try await setTimes(client.url(path), path: path, metadata, selection, on: client.worker)
    }

    func setTimes(_ url: String, path: EntryPath, _ metadata: FileMetadata, _ selection: MetadataSelection, on worker: SMBWorker) async throws {
        guard selection.mtime || selection.atime else { return }
        let atime = selection.atime ? metadata.atime : metadata.mtime, mtime = metadata.mtime
        let (status, e) = await worker.run { ctx -> Int32 in
            var times = [timeval(tv_sec: Int(atime.seconds), tv_usec: Int(atime.nanoseconds / 1_000)),
                         timeval(tv_sec: Int(mtime.seconds), tv_usec: Int(mtime.nanoseconds / 1_000))]
            return smbc_getFunctionUtimes(ctx)!(ctx, url, &times)
        }
        if status != 0 { throw fail("utimes", path, e) }
    }

    public func remove(_ path: EntryPath, kind: EntryKind) async throws {
        if kind == .directory {
            if let listing = try await list(path) {
                for e in listing.entries { try await remove(path.appending(e.name), kind: e.kind) }
                for name in listing.staleTemporaries { try await removeTemporary(in: path, name: name) }
            }
            let url = client.url(path)
            let (status, e) = await client.worker.run { ctx in smbc_getFunctionRmdir(ctx)!(ctx, url) }
            if status != 0 { throw fail("rmdir", path, e) }
        } else {
            try await unlink(path, on: client.worker)
        }
    }

    func unlink(_ path: EntryPath, on worker: SMBWorker) async throws {
        let url = client.url(path)
        let (status, e) = await worker.run { ctx in SMBLocation.unlink(ctx, url) }
        if status != 0 && e != ENOENT { throw fail("unlink", path, e) }
    }

    /// Removes a file; a read-only one (its DOS attribute, copied from a source share) once
    /// the attribute is cleared.
    static func unlink(_ ctx: UnsafeMutablePointer<SMBCCTX>, _ url: String) -> Int32 {
        if smbc_getFunctionUnlink(ctx)!(ctx, url) == 0 { return 0 }
        guard errno != ENOENT else { return -1 }
        _ = setAttribute(ctx, url, "system.dos_attr.mode", "0x20")
        return smbc_getFunctionUnlink(ctx)!(ctx, url)
    }

    /// Moves `temporary` to `path`, replacing a file there.
    func rename(_ temporary: EntryPath, to path: EntryPath, on worker: SMBWorker) async throws {
        let from = client.url(temporary), to = client.url(path)
        let (status, e) = await worker.run { ctx -> Int32 in
            if smbc_getFunctionRename(ctx)!(ctx, from, ctx, to) == 0 { return 0 }
            guard errno == EEXIST else { return -1 }
            _ = SMBLocation.unlink(ctx, to)
            return smbc_getFunctionRename(ctx)!(ctx, from, ctx, to)
        }
        if status != 0 { throw fail("rename", path, e) }
    }

    /// DataSync's rule: a symlink on the way to SMB ends the task, named.
    public func makeSymlink(_ path: EntryPath, target: [UInt8], metadata: FileMetadata, selection: MetadataSelection) async throws {
        throw SMBError(.smbCannotHold, operation: "symlink", path: path, errno: 0,
                       detail: "an SMB share holds no symlinks; the task ends here (DataSync's rule); leave symlinks out with an exclude filter",
                       location: uri, retryClass: .fatal)
    }

    /// DataSync's rule: a hard link on the way to SMB ends the task, named.
    public func makeHardLink(_ path: EntryPath, to existing: EntryPath) async throws {
        throw SMBError(.smbCannotHold, operation: "link", path: path, errno: 0,
                       detail: "an SMB share holds no hard links (\(path) is linked to \(existing)); the task ends here (DataSync's rule)",
                       location: uri, retryClass: .fatal)
    }

    public func removeTemporary(in directory: EntryPath, name: [UInt8]) async throws {
        try await unlink(directory.appending(name), on: client.worker)
    }

    // MARK: Attributes as libsmbclient gives them

    static func metadata(_ st: Glibc.stat) -> FileMetadata {
        let directory = st.st_mode & S_IFMT == S_IFDIR
        return FileMetadata(
            permissions: directory ? 0o755 : 0o644, uid: defaultOwner, gid: defaultOwner,
            mtime: Timestamp(seconds: Int64(st.st_mtim.tv_sec), nanoseconds: Int32(st.st_mtim.tv_nsec)),
            atime: Timestamp(seconds: Int64(st.st_atim.tv_sec), nanoseconds: Int32(st.st_atim.tv_nsec)),
            ctime: Timestamp(seconds: Int64(st.st_ctim.tv_sec), nanoseconds: Int32(st.st_ctim.tv_nsec)),
            size: directory ? 0 : Int64(st.st_size))
    }

    static func entry(name: [UInt8], _ info: libsmb_file_info, _ st: Glibc.stat) -> Entry {
        var m = metadata(st)
        m.mtime = Timestamp(seconds: Int64(info.mtime_ts.tv_sec), nanoseconds: Int32(info.mtime_ts.tv_nsec))
        m.atime = Timestamp(seconds: Int64(info.atime_ts.tv_sec), nanoseconds: Int32(info.atime_ts.tv_nsec))
        m.ctime = Timestamp(seconds: Int64(info.ctime_ts.tv_sec), nanoseconds: Int32(info.ctime_ts.tv_nsec))
        let directory = info.attrs & 0x10 != 0
        if !directory { m.size = Int64(info.size) }
        return Entry(name: name, kind: directory ? .directory : .file, metadata: m)
    }
}
