import CLibNFS
import FerryCore
import Glibc

/// A directory tree on an NFS server, reached by Ferry's own client (libnfs, no mount):
/// `nfs://host[:port]/export/path`. Keeps mode, owner, times, symlinks, hard links, FIFOs
/// and devices, and leaves holes unwritten. Times are set in microseconds (libnfs's
/// `utimes`); NFSv3 and v4.0 have no extended attributes, so a source's are reported per
/// file as not stored.
public struct NFSLocation: Location, SymlinkWriting, HardLinkWriting, SpecialFileWriting, TemporaryKeeping, ScopeTelling,
    MetadataLimiting {
    public let client: NFSClient

    public init(client: NFSClient) { self.client = client }

    public var uri: String { client.server + client.mountedPath + String(decoding: client.below, as: UTF8.self) }

    public var capabilities: Capabilities {
        var c = Capabilities.everything
        c.reportsExtents = false
        c.mtimePrecisionNanoseconds = 1_000
        // A file is some 26 round trips (LOOKUPs, CREATE, WRITE, SETATTRs, RENAME, the
        // read-back): 128 files at once, not 16, keep a server 10 ms away busy (measured:
        // 596 files/s against 62, near the CPU bound; docs/PERFORMANCE.md).
        c.itemsInFlight = 128
        return c
    }

    public var temporariesAreFiles: Bool { true }

    /// NFSv3 times are unsigned 32-bit seconds: an mtime or atime before 1970 or after
    /// 2106 cannot be held there.
    public func metadataWithheld(_ metadata: FileMetadata, kind: EntryKind, selection: MetadataSelection) -> MetadataWithheld? {
        if kind == .symlink && !client.symlinkTimesKept && (selection.mtime || selection.atime) {
            return MetadataWithheld(uid: false, gid: false, times: true,
                                    reason: "a symlink's times (this NFS server does not set them: tried when the location was opened)")
        }
        let range: ClosedRange<Int64> = 0...Int64(UInt32.max)
        var out: [String] = []
        if selection.mtime && !range.contains(metadata.mtime.seconds) { out.append("mtime \(metadata.mtime)") }
        if selection.atime && !range.contains(metadata.atime.seconds) { out.append("atime \(metadata.atime)") }
        guard !out.isEmpty else { return nil }
        return MetadataWithheld(uid: false, gid: false, times: true,
                                reason: out.joined(separator: ", ") + " (NFSv3 holds times from 1970 to 2106 only)")
    }

    public var scope: LocationScope? {
        NFSLocation.scope(host: client.host, port: client.port, path: client.mountedPath + String(decoding: client.below, as: UTF8.self), display: uri)
    }

    /// The tree at `path` on `host`: the same server (by name, default port 2049) and a
    /// path within the other overlap.
    public static func scope(host: String, port: Int?, path: String, display: String) -> LocationScope {
        LocationScope(space: "nfs://\(ThisHost.canonical(host)):\(port ?? 2049)", components: path.split(separator: "/").map(String.init), display: display)
    }

    func fail(_ failure: NFSFailure, _ operation: String, _ path: EntryPath?) -> NFSError {
        NFSError(failure, operation: operation, path: path, location: uri)
    }

    /// Runs one libnfs call on `connection` (the next one when nil) and maps its failure.
    /// A call of its own (no `connection` given) whose connection broke under it is made once
    /// more on the next one (a broken connection is replaced by a new mount): the server
    /// may drop a connection under load, and a lost directory would cost its whole subtree.
    /// Calls that hold a file's connection fail, and the engine tries the file again.
    func call<T: Sendable>(
        _ operation: String, _ path: EntryPath?, on connection: NFSConnection? = nil, _ start: @escaping NFSConnection.Start,
        finish: @escaping @Sendable (OpaquePointer, Int32, UnsafeMutableRawPointer?) -> T
    ) async throws -> T {
        var again = connection == nil
        while true {
            let result: Result<T, NFSFailure> = await {
                do throws(NFSFailure) { return .success(try await (connection ?? client.connection).call(start, finish: finish)) } catch { return .failure(error) }
            }()
            switch result {
            case .success(let value): return value
            case .failure(let failure):
                if again, NFSConnection.breaks(failure.errno, failure.message) {
                    again = false
                    continue
                }
                throw fail(failure, operation, path)
            }
        }
    }

    /// A call whose answer is only its status.
    func call(_ operation: String, _ path: EntryPath?, on connection: NFSConnection? = nil, _ start: @escaping NFSConnection.Start) async throws {
        try await call(operation, path, on: connection, start) { _, _, _ in () }
    }

    // MARK: Reading the tree

    public func list(_ directory: EntryPath) async throws -> Listing? {
        let p = client.cPath(directory)
        let raw: [Entry]
        do {
            raw = try await call("opendir", directory, { ctx, cb, token in p.withUnsafeBufferPointer { nfs_opendir_async(ctx, $0.baseAddress, cb, token) } }) { ctx, _, data in
                let dir = OpaquePointer(data)
                var entries: [Entry] = []
                while let e = nfs_readdir(ctx, dir) {
                    let d = e.pointee
                    guard let cName = d.name else { continue }
                    let name = Array(UnsafeRawBufferPointer(start: cName, count: strlen(cName)))
                    if name == [UInt8(ascii: ".")] || name == [UInt8(ascii: "."), UInt8(ascii: ".")] { continue }
                    entries.append(NFSLocation.entry(name: name, d))
                }
                nfs_closedir(ctx, dir)
                return entries
            }
        } catch let error as NFSError where error.errno == ENOENT || error.errno == ENOTDIR {
            return nil
        }
        var listing = Listing(sorting: raw)
        // Symlink targets: one READLINK each, all in flight at once.
        let targets = try await withThrowingTaskGroup(of: (Int, [UInt8]).self) { group in
            for (i, e) in listing.entries.enumerated() where e.kind == .symlink {
                group.addTask { (i, try await readLink(directory.appending(e.name), size: e.metadata.size)) }
            }
            return try await group.reduce(into: [(Int, [UInt8])]()) { $0.append($1) }
        }
        for (i, target) in targets { listing.entries[i].symlinkTarget = target }
        return listing
    }

    public func stat(_ path: EntryPath) async throws -> Entry? {
        let p = client.cPath(path)
        let found: Entry
        do {
            found = try await call("lstat", path, { ctx, cb, token in p.withUnsafeBufferPointer { nfs_lstat64_async(ctx, $0.baseAddress, cb, token) } }) { _, _, data in
                NFSLocation.entry(name: path.name, data!.assumingMemoryBound(to: nfs_stat_64.self).pointee)
            }
        } catch let error as NFSError where error.errno == ENOENT || error.errno == ENOTDIR {
            return nil
        }
        var entry = found
        if entry.kind == .symlink { entry.symlinkTarget = try await readLink(path, size: entry.metadata.size) }
        return entry
    }

    /// A symlink's target, no longer than the `size` its attributes give (a READLINK answer
    /// need not end in NUL; libnfs 4.0's NFSv4 one was seen not to).
    func readLink(_ path: EntryPath, size: Int64) async throws -> [UInt8] {
        let p = client.cPath(path)
        return try await call("readlink", path, { ctx, cb, token in p.withUnsafeBufferPointer { nfs_readlink_async(ctx, $0.baseAddress, cb, token) } }) { _, _, data in
            let target = data!.assumingMemoryBound(to: CChar.self)
            let n = size > 0 ? strnlen(target, Int(size)) : strlen(target)
            return Array(UnsafeRawBufferPointer(start: target, count: n))
        }
    }

    public func openForReading(_ path: EntryPath, expected: Entry) async throws -> any EntryReader {
        let connection = client.connection
        let p = client.cPath(path)
        let handle = try await call("open", path, on: connection, { ctx, cb, token in
            p.withUnsafeBufferPointer { nfs_open_async(ctx, $0.baseAddress, O_RDONLY, cb, token) }
        }) { _, _, data in Unchecked(OpaquePointer(data!)) }
        return NFSReader(location: self, connection: connection, handle: handle, path: path, metadata: expected.metadata)
    }

    // MARK: Writing the tree

    public func createFile(
        _ path: EntryPath, metadata: FileMetadata, attributes: [ExtendedAttribute]?, selection: MetadataSelection
    ) async throws -> any EntryWriter {
        let connection = client.connection
        let temporary = TemporaryName.beside(path)
        let p = client.cPath(temporary)
        let handle = try await call("create", path, on: connection, { ctx, cb, token in
            p.withUnsafeBufferPointer { nfs_create_async(ctx, $0.baseAddress, O_WRONLY | O_CREAT | O_EXCL, 0o600, cb, token) }
        }) { _, _, data in Unchecked(OpaquePointer(data!)) }
        return NFSWriter(location: self, connection: connection, handle: handle, path: path, temporary: temporary,
                         metadata: metadata, attributes: attributes ?? [], selection: selection)
    }

    public func makeDirectory(_ path: EntryPath) async throws {
        let p = client.cPath(path)
        do {
            try await call("mkdir", path) { ctx, cb, token in p.withUnsafeBufferPointer { nfs_mkdir2_async(ctx, $0.baseAddress, 0o700, cb, token) } }
        } catch let error as NFSError where error.errno == EEXIST {
            guard let existing = try await stat(path), existing.kind == .directory else { throw error }
        }
    }

    public func setMetadata(_ path: EntryPath, kind: EntryKind, metadata: FileMetadata, selection: MetadataSelection) async throws {
        try await apply(metadata, selection, to: path, kind: kind, on: client.connection)
    }

    /// Owner, mode and times of `path`, in that order (a chown may clear setuid bits; times last).
    func apply(_ metadata: FileMetadata, _ selection: MetadataSelection, to path: EntryPath, kind: EntryKind, on connection: NFSConnection) async throws {
        let p = client.cPath(path)
        if selection.ownership {
            let uid = selection.uid ? Int32(bitPattern: metadata.uid) : -1, gid = selection.gid ? Int32(bitPattern: metadata.gid) : -1
            try await call("chown", path, on: connection) { ctx, cb, token in p.withUnsafeBufferPointer { nfs_lchown_async(ctx, $0.baseAddress, uid, gid, cb, token) } }
        }
        if selection.permissions && kind != .symlink {
            let mode = Int32(metadata.permissions & 0o7777)
            try await call("chmod", path, on: connection) { ctx, cb, token in p.withUnsafeBufferPointer { nfs_lchmod_async(ctx, $0.baseAddress, mode, cb, token) } }
        }
        if selection.mtime || selection.atime {
            let atime = selection.atime ? metadata.atime : metadata.mtime
            let times = Unchecked(UnsafeMutablePointer<timeval>.allocate(capacity: 2))
            times.value[0] = timeval(tv_sec: Int(atime.seconds), tv_usec: Int(atime.nanoseconds / 1_000))
            times.value[1] = timeval(tv_sec: Int(metadata.mtime.seconds), tv_usec: Int(metadata.mtime.nanoseconds / 1_000))
            defer { times.value.deallocate() }
            try await call("utimes", path, on: connection) { ctx, cb, token in p.withUnsafeBufferPointer { nfs_lutimes_async(ctx, $0.baseAddress, times.value, cb, token) } }
        }
    }

    public func remove(_ path: EntryPath, kind: EntryKind) async throws {
        if kind == .directory {
            if let listing = try await list(path) {
                for e in listing.entries { try await remove(path.appending(e.name), kind: e.kind) }
                for name in listing.staleTemporaries { try await removeTemporary(in: path, name: name) }
            }
            let p = client.cPath(path)
            try await call("rmdir", path) { ctx, cb, token in p.withUnsafeBufferPointer { nfs_rmdir_async(ctx, $0.baseAddress, cb, token) } }
        } else {
            try await unlink(path)
        }
    }

    func unlink(_ path: EntryPath, on connection: NFSConnection? = nil) async throws {
        let p = client.cPath(path)
        try await call("unlink", path, on: connection) { ctx, cb, token in p.withUnsafeBufferPointer { nfs_unlink_async(ctx, $0.baseAddress, cb, token) } }
    }

    /// Moves `temporary` over `path` (one RENAME: atomic on the server).
    func rename(_ temporary: EntryPath, to path: EntryPath, on connection: NFSConnection? = nil) async throws {
        let from = client.cPath(temporary), to = client.cPath(path)
        try await call("rename", path, on: connection) { ctx, cb, token in
            from.withUnsafeBufferPointer { f in to.withUnsafeBufferPointer { nfs_rename_async(ctx, f.baseAddress, $0.baseAddress, cb, token) } }
        }
    }

    public func makeSymlink(_ path: EntryPath, target: [UInt8], metadata: FileMetadata, selection: MetadataSelection) async throws {
        let connection = client.connection
        let temporary = TemporaryName.beside(path)
        let p = client.cPath(temporary), t = target.map { CChar(bitPattern: $0) } + [0]
        try await call("symlink", path, on: connection) { ctx, cb, token in
            t.withUnsafeBufferPointer { tp in p.withUnsafeBufferPointer { nfs_symlink_async(ctx, tp.baseAddress, $0.baseAddress, cb, token) } }
        }
        do {
            try await apply(metadata, selection, to: temporary, kind: .symlink, on: connection)
            try await rename(temporary, to: path, on: connection)
        } catch {
            try? await unlink(temporary, on: connection)
            throw error
        }
    }

    public func makeHardLink(_ path: EntryPath, to existing: EntryPath) async throws {
        let temporary = TemporaryName.beside(path)
        let from = client.cPath(existing), to = client.cPath(temporary)
        try await call("link", path) { ctx, cb, token in
            from.withUnsafeBufferPointer { f in to.withUnsafeBufferPointer { nfs_link_async(ctx, f.baseAddress, $0.baseAddress, cb, token) } }
        }
        do {
            try await rename(temporary, to: path)
            // Renaming a link over another link of the same file does nothing (rename(2)):
            // the temporary name is then still there.
            try? await unlink(temporary)
        } catch {
            try? await unlink(temporary)
            throw error
        }
    }

    public func makeSpecial(_ path: EntryPath, kind: EntryKind, metadata: FileMetadata, selection: MetadataSelection) async throws {
        let connection = client.connection
        let temporary = TemporaryName.beside(path)
        let p = client.cPath(temporary)
        let mode = Int32(kind.modeTypeBits | 0o600), device = Int32(truncatingIfNeeded: metadata.deviceNumber)
        try await call("mknod", path, on: connection) { ctx, cb, token in
            p.withUnsafeBufferPointer { nfs_mknod_async(ctx, $0.baseAddress, mode, device, cb, token) }
        }
        do {
            try await apply(metadata, selection, to: temporary, kind: kind, on: connection)
            try await rename(temporary, to: path, on: connection)
        } catch {
            try? await unlink(temporary, on: connection)
            throw error
        }
    }

    public func removeTemporary(in directory: EntryPath, name: [UInt8]) async throws {
        try await unlink(directory.appending(name))
    }

    // MARK: Attributes as libnfs gives them

    static func kind(type: UInt32, mode: UInt32) -> EntryKind {
        switch Int(type) {
        case Int(NF3REG.rawValue): .file
        case Int(NF3DIR.rawValue): .directory
        case Int(NF3LNK.rawValue): .symlink
        case Int(NF3FIFO.rawValue): .fifo
        case Int(NF3CHR.rawValue): .characterDevice
        case Int(NF3BLK.rawValue): .blockDevice
        case Int(NF3SOCK.rawValue): .socket
        default: EntryKind(modeTypeBits: mode) ?? .file
        }
    }

    static func entry(name: [UInt8], _ d: nfsdirent) -> Entry {
        let kind = kind(type: d.type, mode: d.mode)
        let metadata = FileMetadata(
            permissions: d.mode & 0o7777, uid: d.uid, gid: d.gid,
            mtime: Timestamp(seconds: Int64(d.mtime.tv_sec), nanoseconds: Int32(d.mtime_nsec)),
            atime: Timestamp(seconds: Int64(d.atime.tv_sec), nanoseconds: Int32(d.atime_nsec)),
            ctime: Timestamp(seconds: Int64(d.ctime.tv_sec), nanoseconds: Int32(d.ctime_nsec)),
            size: Int64(bitPattern: d.size), allocatedBytes: Int64(bitPattern: d.used), deviceNumber: d.rdev,
            fileID: FileID(device: d.dev, inode: d.inode), linkCount: d.nlink)
        return Entry(name: name, kind: kind, metadata: metadata)
    }

    static func entry(name: [UInt8], _ s: nfs_stat_64) -> Entry {
        let mode = UInt32(truncatingIfNeeded: s.nfs_mode)
        let metadata = FileMetadata(
            permissions: mode & 0o7777, uid: UInt32(truncatingIfNeeded: s.nfs_uid), gid: UInt32(truncatingIfNeeded: s.nfs_gid),
            mtime: Timestamp(seconds: Int64(s.nfs_mtime), nanoseconds: Int32(s.nfs_mtime_nsec)),
            atime: Timestamp(seconds: Int64(s.nfs_atime), nanoseconds: Int32(s.nfs_atime_nsec)),
            ctime: Timestamp(seconds: Int64(s.nfs_ctime), nanoseconds: Int32(s.nfs_ctime_nsec)),
            size: Int64(bitPattern: s.nfs_size), allocatedBytes: Int64(bitPattern: s.nfs_used), deviceNumber: s.nfs_rdev,
            fileID: FileID(device: s.nfs_dev, inode: s.nfs_ino), linkCount: UInt32(truncatingIfNeeded: s.nfs_nlink))
        return Entry(name: name, kind: EntryKind(modeTypeBits: mode) ?? .file, metadata: metadata)
    }
}
