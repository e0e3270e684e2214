import CLibSMB
import FerryCore
import Glibc
import Synchronization

/// Writes one file over SMB under a temporary name on the worker that created it: ranges
/// of zeros are not sent, then size, times, and a rename to the final name (the file never
/// appears partial under it). A large file is also opened on other sessions (lanes) and
/// its ranges go out on them in turn without waiting for each other: libsmbclient's write
/// waits for every request it sends, so one session carries one range at a time.
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
    /// Handles of the temporary on other sessions (a large file's), opened at its first
    /// write; and the writes sent and not yet answered, oldest first.
    private let lanes = Mutex<[SMBLane]?>(nil)
    private let pending = Mutex<[Task<Int32, Never>]>([])
    /// Files at least this large are written on several sessions at once.
    static let laneThreshold: Int64 = 8 << 20

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
        if metadata.size >= SMBWriter.laneThreshold {
            let lanes = await openLanes()
            if lanes.count > 1 {
                try await send(bytes, at: offset, on: lanes[Int(offset / Int64(max(bytes.count, 1))) % lanes.count])
                return
            }
        }
        let source = Unchecked(bytes)
        let (ok, e) = await worker.run { [handle] ctx in SMBLane.writeAll(ctx, handle.value, source.value, at: offset) }
        if !ok { throw location.fail("write", path, e) }
    }

    /// The temporary opened on up to seven other sessions (with this one, the lanes).
    private func openLanes() async -> [SMBLane] {
        if let open = lanes.withLock({ $0 }) { return open }
        let opened = [SMBLane(worker: worker, handle: handle)]
            + (await SMBLane.open(location.client.url(temporary), flags: O_WRONLY, on: location.client.sessions(after: worker, 7)))
        lanes.withLock { $0 = opened }
        return opened
    }

    /// Sends a copy of `bytes` on `lane` and returns once fewer than two writes per lane
    /// are unanswered (the first failure is thrown).
    private func send(_ bytes: UnsafeRawBufferPointer, at offset: Int64, on lane: SMBLane) async throws {
        let copy = Array(bytes)
        let task = Task { await lane.write(copy, at: offset) }
        let waiting = pending.withLock { p -> Task<Int32, Never>? in
            p.append(task)
            return p.count > 2 * (lanes.withLock { $0?.count } ?? 1) ? p.removeFirst() : nil
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
        for lane in lanes.withLock({ l in defer { l = [] }; return l ?? [] }).dropFirst() {
            let (closed, e) = await lane.worker.run { ctx in smbc_getFunctionClose(ctx)!(ctx, lane.handle.value) }
            if closed != 0 && failure == 0 { failure = e == 0 ? EIO : e }
        }
        return failure
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

/// One session's handle of a file being written.
struct SMBLane: Sendable {
    let worker: SMBWorker
    let handle: Unchecked<OpaquePointer>

    /// Writes all of `bytes` at `offset`; 0 or the errno.
    func write(_ bytes: [UInt8], at offset: Int64) async -> Int32 {
        let (ok, e) = await worker.run { [handle] ctx in bytes.withUnsafeBytes { SMBLane.writeAll(ctx, handle.value, $0, at: offset) } }
        return ok ? 0 : (e == 0 ? EIO : e)
    }

    /// `url` opened with `flags` on each of `workers` at once; the lanes that opened it.
    static func open(_ url: String, flags: Int32, on workers: [SMBWorker]) async -> [SMBLane] {
        await withTaskGroup(of: SMBLane?.self) { group in
            for other in workers {
                group.addTask {
                    let (file, _) = await other.run { ctx in Unchecked(smbc_getFunctionOpen(ctx)!(ctx, url, flags, 0)) }
                    return file.value.map { SMBLane(worker: other, handle: Unchecked($0)) }
                }
            }
            return await group.reduce(into: [SMBLane]()) { if let lane = $1 { $0.append(lane) } }
        }
    }

    /// Reads up to `count` bytes at `offset` (fewer at the end); the bytes and 0, or the errno.
    func read(_ count: Int, at offset: Int64) async -> ([UInt8], Int32) {
        let ((bytes, n), e) = await worker.run { [handle] ctx -> ([UInt8], Int) in
            var bytes = [UInt8](repeating: 0, count: count)
            let n = bytes.withUnsafeMutableBytes { SMBLane.readAll(ctx, handle.value, $0, at: offset) }
            return (n == count ? bytes : Array(bytes.prefix(max(n, 0))), n)
        }
        return n < 0 ? ([], e == 0 ? EIO : e) : (bytes, 0)
    }

    /// Reads into `buffer` at `offset` until it is full or the file ends; the bytes read or -1.
    static func readAll(_ ctx: UnsafeMutablePointer<SMBCCTX>, _ handle: OpaquePointer, _ buffer: UnsafeMutableRawBufferPointer, at offset: Int64) -> Int {
        guard smbc_getFunctionLseek(ctx)!(ctx, handle, off_t(offset), SEEK_SET) >= 0 else { return -1 }
        var total = 0
        while total < buffer.count {
            let r = smbc_getFunctionRead(ctx)!(ctx, handle, buffer.baseAddress! + total, buffer.count - total)
            if r < 0 { return -1 }
            if r == 0 { break }
            total += r
        }
        return total
    }

    /// Writes all of `buffer` at `offset` through `handle` (on its session's queue).
    static func writeAll(_ ctx: UnsafeMutablePointer<SMBCCTX>, _ handle: OpaquePointer, _ buffer: UnsafeRawBufferPointer, at offset: Int64) -> Bool {
        guard smbc_getFunctionLseek(ctx)!(ctx, handle, off_t(offset), SEEK_SET) >= 0 else { return false }
        var done = 0
        while done < buffer.count {
            let w = smbc_getFunctionWrite(ctx)!(ctx, handle, buffer.baseAddress! + done, buffer.count - done)
            if w <= 0 { return false }
            done += w
        }
        return true
    }
}
