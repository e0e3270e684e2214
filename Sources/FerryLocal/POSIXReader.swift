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
        var extents: [Extent] = []
        var offset: Int64 = 0
        while offset < size {
            let data = lseek(handle.fd, off_t(offset), cferry_SEEK_DATA)
            if data < 0 {
                if errno == ENXIO { break }  // only a hole remains
                if errno == EINVAL { return [Extent(offset: 0, length: size)] }  // no SEEK_DATA here
                throw location.fail("lseek SEEK_DATA", path)
            }
            if Int64(data) >= size { break }
            var hole = lseek(handle.fd, data, cferry_SEEK_HOLE)
            if hole < 0 { throw location.fail("lseek SEEK_HOLE", path) }
            if Int64(hole) > size { hole = off_t(size) }
            extents.append(Extent(offset: Int64(data), length: Int64(hole - data)))
            offset = Int64(hole)
        }
        return extents
    }

    func extendedAttributes() async throws -> [ExtendedAttribute] {
        guard let attrs = Sys.xattrs(fd: handle.fd) else { throw location.fail("flistxattr", path) }
        return attrs
    }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) async throws -> Int {
        let n = Sys.preadFully(handle.fd, buffer, offset)
        if n < 0 { throw location.fail("pread", path) }
        return n
    }

    /// `fstat` of the open descriptor: the engine compares size, mtime and ctime with ``metadata``.
    func close() async throws -> FileMetadata {
        try location.metadataOfOpenFile(handle.fd, path)
    }
}
