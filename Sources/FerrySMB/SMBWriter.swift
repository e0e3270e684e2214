import CLibSMB
import FerryCore
import Glibc
import Synchronization

/// Writes one file over SMB under a temporary name on the worker that created it: ranges
/// of zeros are not sent, then size, times, and a rename to the final name (the file never
/// appears partial under it).
final class SMBWriter: EntryWriter, @unchecked Sendable {
    let location: SMBLocation
    let worker: SMBWorker
    let handle: Unchecked<OpaquePointer>
    let path: EntryPath
    let temporary: EntryPath
    let metadata: FileMetadata
    let attributes: [ExtendedAttribute]
    let selection: MetadataSelection
    private let open = Atomic<Bool>(true)
    private let done = Atomic<Bool>(false)
    /// The end of the furthest range written: the file's size when it reaches the
    /// metadata's (no truncation request then).
    private let end = Atomic<Int64>(0)

    init(location: SMBLocation, worker: SMBWorker, handle: Unchecked<OpaquePointer>, path: EntryPath, temporary: EntryPath,
         metadata: FileMetadata, attributes: [ExtendedAttribute], selection: MetadataSelection) {
        self.location = location
        self.worker = worker
        self.handle = handle
        self.path = path
        self.temporary = temporary
        self.metadata = metadata
        self.attributes = attributes
        self.selection = selection
    }

    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) async throws {
        if FileIO.isAllZero(bytes) { return }
        end.max(offset + Int64(bytes.count), ordering: .relaxed)
        let source = Unchecked(bytes)
        let (ok, e) = await worker.run { [handle] ctx -> Bool in
            guard smbc_getFunctionLseek(ctx)!(ctx, handle.value, off_t(offset), SEEK_SET) >= 0 else { return false }
            var done = 0
            while done < source.value.count {
                let w = smbc_getFunctionWrite(ctx)!(ctx, handle.value, source.value.baseAddress! + done, source.value.count - done)
                if w <= 0 { return false }
                done += w
            }
            return true
        }
        if !ok { throw location.fail("write", path, e) }
    }

    func commit() async throws -> [String] {
        do {
            let size = off_t(metadata.size)
            let sized = end.load(ordering: .relaxed) == metadata.size
            let (ok, e) = await worker.run { [handle] ctx -> Bool in
                let truncated = sized || smbc_getFunctionFtruncate(ctx)!(ctx, handle.value, size) == 0
                return smbc_getFunctionClose(ctx)!(ctx, handle.value) == 0 && truncated
            }
            open.store(false, ordering: .relaxed)
            if !ok { throw location.fail("close", path, e) }
            let url = location.client.url(temporary)
            try await location.setTimes(url, path: path, metadata, selection, on: worker)
            try await location.rename(temporary, to: path, on: worker)
            done.store(true, ordering: .relaxed)
        } catch {
            await abort()
            throw error
        }
        guard !attributes.isEmpty else { return [] }
        return ["extended attributes (an SMB share keeps none): " + attributes.map { String(decoding: $0.name, as: UTF8.self) }.joined(separator: ", ")]
    }

    func abort() async {
        if open.exchange(false, ordering: .relaxed) {
            _ = await worker.run { [handle] ctx in smbc_getFunctionClose(ctx)!(ctx, handle.value) }
        }
        if !done.exchange(true, ordering: .relaxed) { try? await location.unlink(temporary, on: worker) }
    }
}
