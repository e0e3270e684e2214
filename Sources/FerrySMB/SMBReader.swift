import CLibSMB
import FerryCore
import Glibc

/// Reads one file over SMB on the worker that opened it (libsmbclient splits a large read
/// into several requests in flight).
struct SMBReader: EntryReader {
    let location: SMBLocation
    let worker: SMBWorker
    let handle: Unchecked<OpaquePointer>
    let path: EntryPath
    let metadata: FileMetadata

    func dataExtents() async throws -> [Extent] { Extent.wholeFile(size: metadata.size) }

    func extendedAttributes() async throws -> [ExtendedAttribute] { [] }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) async throws -> Int {
        let target = Unchecked(buffer)
        let (n, e) = await worker.run { [handle] ctx -> Int in
            guard smbc_getFunctionLseek(ctx)!(ctx, handle.value, off_t(offset), SEEK_SET) >= 0 else { return -1 }
            var total = 0
            while total < target.value.count {
                let r = smbc_getFunctionRead(ctx)!(ctx, handle.value, target.value.baseAddress! + total, target.value.count - total)
                if r < 0 { return -1 }
                if r == 0 { break }
                total += r
            }
            return total
        }
        if n < 0 { throw location.fail("read", path, e) }
        return n
    }

    func close() async throws -> FileMetadata {
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
