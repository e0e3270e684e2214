import CLibNFS
import FerryCore
import Glibc
import Synchronization

/// Writes one file over NFS under a temporary name: WRITEs of the server's size at once,
/// ranges of zeros left unwritten (holes), then size, owner, mode and times, and a RENAME
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
            let size = UInt64(metadata.size)
            try await location.call("truncate", path, on: connection) { [handle] ctx, cb, token in nfs_ftruncate_async(ctx, handle.value, size, cb, token) }
            try await closeHandle()
            try await location.apply(metadata, selection, to: temporary, kind: .file, on: connection)
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
