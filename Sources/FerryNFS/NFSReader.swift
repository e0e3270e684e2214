import CLibNFS
import FerryCore
import Glibc

/// Reads one file over NFS: a buffer larger than the server's READ size is read as several
/// READs at once.
struct NFSReader: EntryReader {
    let location: NFSLocation
    let connection: NFSConnection
    let handle: Unchecked<OpaquePointer>
    let path: EntryPath
    let metadata: FileMetadata

    /// NFSv3 cannot tell where a file's holes are (SEEK_DATA is v4.2): the whole file is
    /// data here, and a writer leaves ranges of zeros unwritten.
    func dataExtents() async throws -> [Extent] { Extent.wholeFile(size: metadata.size) }

    func extendedAttributes() async throws -> [ExtendedAttribute] { [] }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) async throws -> Int {
        let chunk = connection.readMax
        let target = Unchecked(buffer)
        let counts = try await withThrowingTaskGroup(of: (Int, Int).self) { group in
            var start = 0
            while start < buffer.count {
                let at = start, length = min(chunk, buffer.count - start)
                group.addTask {
                    let n = try await location.call("read", path, on: connection, { ctx, cb, token in
                        nfs_pread_async(ctx, handle.value, UInt64(offset) + UInt64(at), UInt64(length), cb, token)
                    }) { _, status, data in
                        let n = min(Int(status), length)
                        if n > 0, let data { target.value.baseAddress!.advanced(by: at).copyMemory(from: data, byteCount: n) }
                        return n
                    }
                    return (at, n)
                }
                start += length
            }
            var counts: [(Int, Int)] = []
            for try await c in group { counts.append(c) }
            return counts.sorted { $0.0 < $1.0 }
        }
        // The bytes read run up to the first short READ (the end of the file).
        var total = 0
        for (at, n) in counts {
            guard at == total else { break }
            total += n
        }
        return total
    }

    func close() async throws -> FileMetadata {
        let stat = try await location.call("fstat", path, on: connection, { ctx, cb, token in
            nfs_fstat64_async(ctx, handle.value, cb, token)
        }) { _, _, data in NFSLocation.entry(name: [], data!.assumingMemoryBound(to: nfs_stat_64.self).pointee).metadata }
        try await location.call("close", path, on: connection) { ctx, cb, token in nfs_close_async(ctx, handle.value, cb, token) }
        return stat
    }
}
