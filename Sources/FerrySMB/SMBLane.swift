import CLibSMB
import FerryCore
import Glibc
import Synchronization

/// The handles of one file on several sessions: the one it was opened on, and, for a file
/// of ``threshold`` or more, the same file opened on up to seven sessions after it at its
/// first read or write. libsmbclient's reads and writes wait for each request they send,
/// so one session carries one range at a time; several carry several.
final class SMBLanes: Sendable {
    /// Files at least this large are read and written on several sessions at once.
    static let threshold: Int64 = 8 << 20
    let own: SMBLane
    private let others = Mutex<[SMBLane]?>(nil)

    init(worker: SMBWorker, handle: Unchecked<OpaquePointer>) { own = SMBLane(worker: worker, handle: handle) }

    /// Every lane, this session's first; the others are opened (`url` with `flags`) the
    /// first time, at once.
    func all(_ client: SMBClient, _ url: String, flags: Int32) async -> [SMBLane] {
        if let opened = others.withLock({ $0 }) { return [own] + opened }
        let opened = await withTaskGroup(of: SMBLane?.self) { group in
            for other in client.sessions(after: own.worker, 7) {
                group.addTask {
                    let (file, _) = await other.run { ctx in Unchecked(smbc_getFunctionOpen(ctx)!(ctx, url, flags, 0)) }
                    return file.value.map { SMBLane(worker: other, handle: Unchecked($0)) }
                }
            }
            return await group.reduce(into: [SMBLane]()) { if let lane = $1 { $0.append(lane) } }
        }
        others.withLock { $0 = opened }
        return [own] + opened
    }

    /// Closes the other sessions' handles (not this session's); 0 or the first errno.
    func closeOthers() async -> Int32 {
        var failure: Int32 = 0
        for lane in others.withLock({ o in defer { o = [] }; return o ?? [] }) {
            let (closed, e) = await lane.worker.run { ctx in smbc_getFunctionClose(ctx)!(ctx, lane.handle.value) }
            if closed != 0 && failure == 0 { failure = e == 0 ? EIO : e }
        }
        return failure
    }
}

/// One session's handle of a file (a lane): ranges of a large file go out on several at once.
struct SMBLane: Sendable {
    let worker: SMBWorker
    let handle: Unchecked<OpaquePointer>

    /// Writes all of `bytes` at `offset`; 0 or the errno.
    func write(_ bytes: [UInt8], at offset: Int64) async -> Int32 {
        let (ok, e) = await worker.run { [handle] ctx in bytes.withUnsafeBytes { SMBLane.writeAll(ctx, handle.value, $0, at: offset) } }
        return ok ? 0 : (e == 0 ? EIO : e)
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
