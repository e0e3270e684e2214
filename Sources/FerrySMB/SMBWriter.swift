import CLibSMB
import FerryCore
import Glibc
import Synchronization

/// Writes one file over SMB under a temporary name on the worker that created it: ranges
/// of zeros are not sent, then size, times, and a rename to the final name (the file never
/// appears partial under it). A large file's ranges go out on several sessions in turn
/// (``SMBLanes``), two per session in flight.
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
    /// The temporary on several sessions (a large file's); the writes sent on them and not
    /// yet answered, oldest first.
    private let lanes: SMBLanes
    private let pending = Mutex<[Task<Int32, Never>]>([])

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
        lanes = SMBLanes(worker: worker, handle: handle)
    }

    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) async throws {
        if FileIO.isAllZero(bytes) { return }
        end.max(offset + Int64(bytes.count), ordering: .relaxed)
        if metadata.size >= SMBLanes.threshold {
            let all = await lanes.all(location.client, location.client.url(temporary), flags: O_WRONLY)
            if all.count > 1 {
                try await send(bytes, at: offset, on: all[Int(offset / Int64(max(bytes.count, 1))) % all.count], window: 2 * all.count)
                return
            }
        }
        let source = Unchecked(bytes)
        let (ok, e) = await worker.run { [handle] ctx in SMBLane.writeAll(ctx, handle.value, source.value, at: offset) }
        if !ok { throw location.fail("write", path, e) }
    }

    /// Sends a copy of `bytes` on `lane` and returns once at most `window` writes are
    /// unanswered (the first failure is thrown).
    private func send(_ bytes: UnsafeRawBufferPointer, at offset: Int64, on lane: SMBLane, window: Int) async throws {
        let copy = Array(bytes)
        let task = Task { await lane.write(copy, at: offset) }
        let waiting = pending.withLock { p -> Task<Int32, Never>? in
            p.append(task)
            return p.count > window ? p.removeFirst() : nil
        }
        if let waiting, case let e = await waiting.value, e != 0 { throw location.fail("write", path, e) }
    }

    /// Waits for every write sent; closes the other sessions' handles. The first failure.
    private func drainLanes() async -> Int32 {
        var failure: Int32 = 0
        for task in pending.withLock({ p in defer { p.removeAll() }; return p }) {
            let e = await task.value
            if failure == 0 { failure = e }
        }
        let closed = await lanes.closeOthers()
        return failure != 0 ? failure : closed
    }

    func commit() async throws -> [String] {
        do {
            let sent = await drainLanes()
            if sent != 0 { throw location.fail("write", path, sent) }
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
        _ = await drainLanes()
        if open.exchange(false, ordering: .relaxed) {
            _ = await worker.run { [handle] ctx in smbc_getFunctionClose(ctx)!(ctx, handle.value) }
        }
        if !done.exchange(true, ordering: .relaxed) { try? await location.unlink(temporary, on: worker) }
    }
}
