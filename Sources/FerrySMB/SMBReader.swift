import CLibSMB
import FerryCore
import Glibc
import Synchronization

/// Reads one file over SMB on the worker that opened it. For a large file the ranges after
/// the one asked for are read ahead on several sessions (``SMBLanes``), two per session.
final class SMBReader: EntryReader, @unchecked Sendable {
    let location: SMBLocation
    let worker: SMBWorker
    let handle: Unchecked<OpaquePointer>
    let path: EntryPath
    let metadata: FileMetadata
    private let lanes: SMBLanes
    /// Reads sent ahead, by offset: how many bytes each asked for, and the read.
    private let ahead = Mutex<[Int64: (count: Int, task: Task<([UInt8], Int32), Never>)]>([:])

    init(location: SMBLocation, worker: SMBWorker, handle: Unchecked<OpaquePointer>, path: EntryPath, metadata: FileMetadata) {
        self.location = location
        self.worker = worker
        self.handle = handle
        self.path = path
        self.metadata = metadata
        lanes = SMBLanes(worker: worker, handle: handle)
    }

    func dataExtents() async throws -> [Extent] { Extent.wholeFile(size: metadata.size) }

    func extendedAttributes() async throws -> [ExtendedAttribute] { [] }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) async throws -> Int {
        if metadata.size >= SMBLanes.threshold {
            let all = await lanes.all(location.client, location.client.url(path), flags: O_RDONLY)
            if all.count > 1 { return try await readAhead(into: buffer, at: offset, all) }
        }
        let target = Unchecked(buffer)
        let (n, e) = await worker.run { [handle] ctx in SMBLane.readAll(ctx, handle.value, target.value, at: offset) }
        if n < 0 { throw location.fail("read", path, e) }
        return n
    }

    /// The range at `offset` (read ahead already, or now), the next ones sent ahead on the
    /// lanes in turn, two per lane.
    private func readAhead(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64, _ lanes: [SMBLane]) async throws -> Int {
        let count = buffer.count
        func lane(_ o: Int64) -> SMBLane { lanes[Int(o / Int64(max(count, 1))) % lanes.count] }
        let task: Task<([UInt8], Int32), Never> = ahead.withLock { sent in
            let mine = sent.removeValue(forKey: offset).flatMap { $0.count == count ? $0.task : nil }
            ?? Task { [lane = lane(offset)] in await lane.read(count, at: offset) }
            for k in 1...(2 * lanes.count) {
                let o = offset + Int64(k * count)
                guard o < metadata.size, sent[o] == nil else { continue }
                sent[o] = (count, Task { [lane = lane(o)] in await lane.read(count, at: o) })
            }
            return mine
        }
        let (bytes, e) = await task.value
        if e != 0 { throw location.fail("read", path, e) }
        bytes.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        return bytes.count
    }

    func close() async throws -> FileMetadata {
        let sent: [Task<([UInt8], Int32), Never>] = ahead.withLock { a in
            let tasks = a.values.map(\.task)
            a.removeAll()
            return tasks
        }
        for task in sent { _ = await task.value }
        _ = await lanes.closeOthers()
        let (st, e) = await worker.run { [handle] ctx -> Glibc.stat? in
            var st = Glibc.stat()
            let ok = smbc_getFunctionFstat(ctx)!(ctx, handle.value, &st) == 0
            _ = smbc_getFunctionClose(ctx)!(ctx, handle.value)
            return ok ? st : nil
        }
        guard let st else { throw location.fail("fstat", path, e) }
        var now = SMBLocation.metadata(st)
        // fstat's times are libsmbclient's; what the listing said stands unless they moved.
        if now.size == metadata.size && now.mtime.seconds == metadata.mtime.seconds { now.mtime = metadata.mtime; now.ctime = metadata.ctime }
        return now
    }
}
