import CFerry
import FerryCore
import Glibc

/// Reads one regular file through an `O_NOATIME` descriptor (the source's atime is left as it was).
final class POSIXReader: EntryReader, @unchecked Sendable {
    let handle: FileDescriptor
    let metadata: FileMetadata
    let path: EntryPath
    let location: POSIXLocation

    init(fd: FileDescriptor, metadata: FileMetadata, path: EntryPath, location: POSIXLocation) {
        self.handle = fd
        self.metadata = metadata
        self.path = path
        self.location = location
        if metadata.size >= 1 << 20 {
            _ = posix_fadvise(fd.fd, 0, 0, POSIX_FADV_SEQUENTIAL)
        }
    }

    /// Data extents from `lseek(SEEK_DATA/SEEK_HOLE)` when fewer blocks are allocated than
    /// the size needs; one extent covering the file otherwise.
    func dataExtents() async throws -> [Extent] {
        let size = metadata.size
        guard size > 0 else { return [] }
        guard metadata.mayBeSparse else { return [Extent(offset: 0, length: size)] }
        switch FileIO.dataRanges(handle.fd, size: size) {
        case .success(let ranges): return ranges.map { Extent(offset: $0.lowerBound, length: $0.upperBound - $0.lowerBound) }
        case .failure(let f): throw location.fail(f.call, path, f.errno)
        }
    }

    func extendedAttributes() async throws -> [ExtendedAttribute] {
        guard let attrs = Sys.xattrs(fd: handle.fd) else { throw location.fail("flistxattr", path) }
        return attrs
    }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) async throws -> Int {
        let n = FileIO.preadFully(handle.fd, buffer, offset)
        if n < 0 { throw location.fail("pread", path) }
        return n
    }

    /// `fstat` of the open descriptor: the engine compares size, mtime and ctime with ``metadata``.
    func close() async throws -> FileMetadata {
        try location.metadataOfOpenFile(handle.fd, path)
    }
}
