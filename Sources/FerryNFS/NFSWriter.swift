import CLibNFS
import FerryCore
import Glibc
import Synchronization

/// Writes one file over NFS under a temporary name: WRITEs of the server's size at once,
/// ranges of zeros left unwritten (holes), then size, owner, mode and times (SETATTRs on
/// the handle, nanoseconds kept where the server keeps them), and a RENAME
/// to the final name: the file never appears partial under it.
final class NFSWriter: EntryWriter, @unchecked Sendable {
    let location: NFSLocation
    let connection: NFSConnection
    let handle: Unchecked<OpaquePointer>
    let path: EntryPath
    let temporary: EntryPath
    let metadata: FileMetadata
    let attributes: [ExtendedAttribute]
    let selection: MetadataSelection
    private let open = Atomic<Bool>(true)
    private let done = Atomic<Bool>(false)

    init(location: NFSLocation, connection: NFSConnection, handle: Unchecked<OpaquePointer>, path: EntryPath, temporary: EntryPath,
         metadata: FileMetadata, attributes: [ExtendedAttribute], selection: MetadataSelection) {
        self.location = location
        self.connection = connection
        self.handle = handle
        self.path = path
        self.temporary = temporary
        self.metadata = metadata
        self.attributes = attributes
        self.selection = selection
    }

    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) async throws {
        let chunk = connection.writeMax
        let source = Unchecked(bytes)
        try await withThrowingTaskGroup(of: Void.self) { group in
            var start = 0
            while start < bytes.count {
                let at = start, length = min(chunk, bytes.count - start)
                start += length
                if FileIO.isAllZero(UnsafeRawBufferPointer(rebasing: bytes[at..<(at + length)])) { continue }
                group.addTask { [self] in
                    let written = try await location.call("write", path, on: connection, { ctx, cb, token in
                        nfs_pwrite_async(ctx, self.handle.value, UInt64(offset) + UInt64(at), UInt64(length), source.value.baseAddress! + at, cb, token)
                    }) { _, status, _ in Int(status) }
                    if written != length {
                        throw NFSError(operation: "write", path: path, errno: EIO, detail: "the server wrote \(written) of \(length) bytes", location: location.uri)
                    }
                }
            }
            try await group.waitForAll()
        }
    }

    func commit() async throws -> [String] {
        do {
            // Two SETATTRs on the open handle (each of libnfs's path-based calls would LOOKUP
            // every component of the path first, a round trip each): size and owner, then
            // mode and times (a chown may clear setuid bits), times to the nanosecond.
            let m = metadata, sel = selection
            let owner = sel.ownership
            try await location.call("setattr", path, on: connection) { [handle] ctx, cb, token in
                ferry_nfs3_fsetattr_async(ctx, handle.value, cb, token, 1, UInt64(m.size), owner && sel.uid ? 1 : 0, m.uid,
                                          owner && sel.gid ? 1 : 0, m.gid, 0, 0, 0, 0, 0, 0, 0, 0)
            }
            let atime = sel.atime ? m.atime : m.mtime
            let setTimes = (sel.mtime || sel.atime) && NFSWriter.fits(atime) && NFSWriter.fits(m.mtime)
            try await location.call("setattr", path, on: connection) { [handle] ctx, cb, token in
                ferry_nfs3_fsetattr_async(ctx, handle.value, cb, token, 0, 0, 0, 0, 0, 0, sel.permissions ? 1 : 0, UInt32(m.permissions & 0o7777),
                                          setTimes ? 1 : 0, UInt32(truncatingIfNeeded: atime.seconds), UInt32(atime.nanoseconds),
                                          setTimes ? 1 : 0, UInt32(truncatingIfNeeded: m.mtime.seconds), UInt32(m.mtime.nanoseconds))
            }
            try await closeHandle()
            try await location.rename(temporary, to: path, on: connection)
            done.store(true, ordering: .relaxed)
        } catch {
            await abort()
            throw error
        }
        guard !attributes.isEmpty else { return [] }
        let names = attributes.map { String(decoding: $0.name, as: UTF8.self) }.joined(separator: ", ")
        return ["extended attributes (\(location.client.version.label) keeps none): \(names)"]
    }

    /// Whether NFSv3's unsigned 32-bit seconds hold `t` (times beyond are withheld, see
    /// ``MetadataWithheld/times``).
    static func fits(_ t: Timestamp) -> Bool { t.seconds >= 0 && t.seconds <= Int64(UInt32.max) }

    private func closeHandle() async throws {
        guard open.exchange(false, ordering: .relaxed) else { return }
        try await location.call("close", path, on: connection) { [handle] ctx, cb, token in nfs_close_async(ctx, handle.value, cb, token) }
    }

    func abort() async {
        try? await closeHandle()
        // Over another connection when this one broke (the cause, often): the temporary goes.
        if !done.exchange(true, ordering: .relaxed) { try? await location.unlink(temporary, on: connection.broken ? nil : connection) }
    }
}
