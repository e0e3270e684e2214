import FerryCore
import Glibc

/// Copies files between two POSIX trees on the calling thread (``DirectFileCopier``): the
/// system calls ``POSIXReader`` and ``POSIXWriter`` make, in the same order, through the
/// same helpers, but with neither object and no async call around each; the directories
/// last used on both sides stay open from one file to the next.
final class POSIXDirectCopier: DirectFileCopier {
    let source: POSIXLocation
    let destination: POSIXLocation
    private var sourceDirectory: (path: EntryPath, fd: FileDescriptor)?
    private var destinationDirectory: (path: EntryPath, fd: FileDescriptor)?

    init(from source: POSIXLocation, to destination: POSIXLocation) {
        self.source = source
        self.destination = destination
    }

    func copy(
        _ path: EntryPath, expected: FileMetadata, selection: MetadataSelection,
        buffer: UnsafeMutableRawBufferPointer, hash: ChecksumState, readBack: Bool
    ) throws -> DirectCopy {
        let sourceParent = try Self.parent(of: path, in: source, &sourceDirectory)
        let destinationParent = try Self.parent(of: path, in: destination, &destinationDirectory)
        let input = try source.openFile(in: sourceParent, path)
        defer { close(input) }
        var attributes: [ExtendedAttribute]?
        if selection.extendedAttributes {
            guard let found = Sys.xattrs(fd: input) else { throw source.fail("flistxattr", path) }
            attributes = found.isEmpty ? nil : found
        }
        attributes = destination.attributes(attributes, in: destinationParent, selection: selection)
        let (output, temporaryName) = try destination.createTemporary(
            in: destinationParent, path, metadata: expected, selection: selection)
        var committed = false
        defer {
            close(output)
            if !committed, let temporaryName { _ = Sys.withCString(temporaryName) { unlinkat(destinationParent.fd, $0, 0) } }
        }

        let written = try Self.pump(from: input, size: expected.size, buffer: buffer, hash: hash) { chunk, offset throws(LocalError) in
            if !FileIO.pwriteFully(output, chunk, offset) { throw destination.fail("pwrite", path) }
        } fail: { source.fail("pread", path) }
        let checksum = hash.finalize()
        let after = try source.metadataOfOpenFile(input, path)
        if !after.unchanged(since: expected) {
            return DirectCopy(checksum: checksum, written: 0, sourceChanged: true, arrived: nil, readBackNanoseconds: 0)
        }
        if written != expected.size, ftruncate(output, off_t(expected.size)) != 0 { throw destination.fail("ftruncate", path) }
        let applied = try destination.commit(
            output, in: destinationParent, temporaryName: temporaryName, path, metadata: expected, attributes: attributes,
            selection: selection)
        committed = true

        guard readBack else {
            return DirectCopy(checksum: checksum, written: written, sourceChanged: false, arrived: nil, readBackNanoseconds: 0)
        }
        // The descriptor was opened read-write with O_NOATIME: reading back leaves the atime just set.
        let started = Sys.monotonicNanoseconds()
        let arrivedChecksum = try Self.readBack(output, size: expected.size, written: written, checksum: checksum, buffer: buffer, hash: hash) {
            destination.fail("pread", path)
        }
        // The metadata that arrived: the inode's after its last change (linking it moved
        // only its ctime and link count), else asked now.
        let arrived = (arrivedChecksum, try applied.map(Sys.metadata) ?? destination.metadataOfOpenFile(output, path))
        return DirectCopy(
            checksum: checksum, written: written, sourceChanged: false, arrived: arrived,
            readBackNanoseconds: Sys.monotonicNanoseconds() - started)
    }

    /// The checksum of the `size` bytes `fd` holds now, `written` of them sent with `checksum`.
    /// A whole file read in one piece still lies at the start of `buffer`: it is read back
    /// into the second half and compared byte for byte (stronger than a checksum, and
    /// cheaper than a second one; equal, it is the checksum sent). Others are hashed again.
    static func readBack(
        _ fd: Int32, size: Int64, written: Int64, checksum: ContentChecksum, buffer: UnsafeMutableRawBufferPointer,
        hash: ChecksumState, fail: () -> LocalError
    ) throws(LocalError) -> ContentChecksum {
        let half = buffer.count / 2
        guard written == size, size < half else {
            _ = try pump(from: fd, size: size, buffer: buffer, hash: hash, sink: { _, _ in }, fail: fail)
            return hash.finalize()
        }
        let count = Int(size)
        // One pread of a byte more than was written: a longer file shows. (`preadFully`
        // would ask again at the end of the file, a system call per file for nothing.)
        var n: Int
        repeat { n = pread(fd, buffer.baseAddress! + half, count + 1, 0) } while n < 0 && errno == EINTR
        if n < 0 { throw fail() }
        if n < count {  // a short read: read it whole
            _ = try pump(from: fd, size: size, buffer: buffer, hash: hash, sink: { _, _ in }, fail: fail)
            return hash.finalize()
        }
        let back = UnsafeRawBufferPointer(start: buffer.baseAddress! + half, count: n)
        if n == count && memcmp(buffer.baseAddress!, back.baseAddress!, count) == 0 { return checksum }
        hash.reset()
        hash.update(back)
        return hash.finalize()
    }

    /// Reads `fd` from its start up to `size` bytes (less if it ends sooner) through
    /// `buffer`, feeding `hash` (reset first) and `sink`; returns the bytes read.
    private static func pump(
        from fd: Int32, size: Int64, buffer: UnsafeMutableRawBufferPointer, hash: ChecksumState,
        sink: (UnsafeRawBufferPointer, Int64) throws(LocalError) -> Void, fail: () -> LocalError
    ) throws(LocalError) -> Int64 {
        hash.reset()
        var position: Int64 = 0
        while position < size {
            let want = Int(min(Int64(buffer.count), size - position))
            let n = FileIO.preadFully(fd, UnsafeMutableRawBufferPointer(rebasing: buffer[0..<want]), position)
            if n < 0 { throw fail() }
            if n == 0 { break }  // shrank; the caller's fstat notices
            let chunk = UnsafeRawBufferPointer(rebasing: buffer[0..<n])
            hash.update(chunk)
            try sink(chunk, position)
            position += Int64(n)
        }
        return position
    }

    /// The directory holding `path` in `location`: the one last used when it is the same.
    private static func parent(
        of path: EntryPath, in location: POSIXLocation, _ last: inout (path: EntryPath, fd: FileDescriptor)?
    ) throws(LocalError) -> FileDescriptor {
        if let last, path.isChild(of: last.path) { return last.fd }
        let fd = try location.parentDirectory(of: path, operation: "open directory")
        last = (path.parent, fd)
        return fd
    }
}
