import FerryCore
import CFerry
import Glibc

/// Who an image or device is, as `fstat(2)` sees it; a map records it to tell whether the
/// image it describes is still the one it was made from.
public struct ImageIdentity: Codable, Sendable, Hashable {
    public var device: UInt64
    public var inode: UInt64
    public var size: Int64
    public var mtimeNs: Int64
    public var ctimeNs: Int64
}

/// An image file or a block device opened for block-level reading or writing, with the
/// syscalls block sync needs: `pread`/`pwrite`, `SEEK_DATA`/`SEEK_HOLE`, hole punching
/// (`fallocate`), `BLKZEROOUT`, `BLKGETSIZE64`, `fdatasync`.
public final class BlockImage: Sendable {
    public enum Kind: String, Codable, Sendable { case file, device }

    public let path: String
    public let fd: Int32
    public let kind: Kind

    private init(path: String, fd: Int32, kind: Kind) {
        self.path = path
        self.fd = fd
        self.kind = kind
    }

    deinit { close(fd) }

    /// Opens a source image or device read-only.
    public static func openSource(_ path: String) throws(BlockError) -> BlockImage {
        var fd = open(path, O_RDONLY | O_CLOEXEC | cferry_O_NOATIME)
        if fd < 0 && errno == EPERM { fd = open(path, O_RDONLY | O_CLOEXEC) }
        guard fd >= 0 else { throw .syscall("open", path) }
        return try BlockImage(path: path, fd: fd, kind: kind(fd, path, closingOnError: true))
    }

    /// Opens a destination image (created 0600 if missing; `created` says so) or device for writing.
    public static func openDestination(_ path: String) throws(BlockError) -> (image: BlockImage, created: Bool) {
        var fd = open(path, O_RDWR | O_CLOEXEC)
        var created = false
        if fd < 0 && errno == ENOENT {
            fd = open(path, O_RDWR | O_CLOEXEC | O_CREAT | O_EXCL, 0o600)
            created = fd >= 0
        }
        guard fd >= 0 else { throw .syscall("open", path) }
        return (try BlockImage(path: path, fd: fd, kind: kind(fd, path, closingOnError: true)), created)
    }

    private static func kind(_ fd: Int32, _ path: String, closingOnError: Bool) throws(BlockError) -> Kind {
        var st = stat()
        guard fstat(fd, &st) == 0 else { let e = errno; close(fd); throw .syscall("fstat", path, errno: e) }
        switch st.st_mode & S_IFMT {
        case S_IFREG: return .file
        case S_IFBLK: return .device
        default:
            close(fd)
            throw BlockError(.invalidOption, "\(path) is neither an image file nor a block device")
        }
    }

    /// The size in bytes (`fstat` for files, `BLKGETSIZE64` for devices).
    public func size() throws(BlockError) -> Int64 {
        if kind == .device {
            let n = cferry_block_device_size(fd)
            guard n >= 0 else { throw .syscall("ioctl(BLKGETSIZE64)", path) }
            return n
        }
        return try identity().size
    }

    public func identity() throws(BlockError) -> ImageIdentity {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw .syscall("fstat", path) }
        let size = kind == .device ? max(0, cferry_block_device_size(fd)) : Int64(st.st_size)
        return ImageIdentity(device: UInt64(kind == .device ? st.st_rdev : st.st_dev), inode: UInt64(st.st_ino), size: size,
                             mtimeNs: Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec),
                             ctimeNs: Int64(st.st_ctim.tv_sec) * 1_000_000_000 + Int64(st.st_ctim.tv_nsec))
    }

    /// The ranges that hold data (`SEEK_DATA`/`SEEK_HOLE`); everything else reads as zeros
    /// without being stored. A device, or a file system without the seeks, is all data.
    public func dataExtents(size: Int64) throws(BlockError) -> [Range<Int64>] {
        guard kind == .file else { return size > 0 ? [0..<size] : [] }
        switch FileIO.dataRanges(fd, size: size) {
        case .success(let ranges): return ranges
        case .failure(let f): throw .syscall(f.call, path, errno: f.errno)
        }
    }

    /// Reads `count` bytes at `offset` into `buffer` (short only at the end of the image).
    public func read(into buffer: UnsafeMutableRawBufferPointer, count: Int, at offset: Int64) throws(BlockError) -> Int {
        let n = FileIO.preadFully(fd, UnsafeMutableRawBufferPointer(rebasing: buffer[0..<count]), offset)
        if n < 0 { throw .syscall("pread", path) }
        return n
    }

    /// Writes all of `bytes` at `offset`.
    public func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws(BlockError) {
        if !FileIO.pwriteFully(fd, bytes, offset) { throw .syscall("pwrite", path) }
    }

    /// Makes `[offset, offset+length)` read as zeros: a hole in a file (`fallocate`
    /// PUNCH_HOLE), `BLKZEROOUT` on a device; written zeros where neither works.
    public func zero(offset: Int64, length: Int64) throws(BlockError) {
        guard length > 0 else { return }
        let r = kind == .file ? cferry_punch_hole(fd, offset, length) : cferry_block_zeroout(fd, UInt64(offset), UInt64(length))
        if r == 0 { return }
        guard errno == EOPNOTSUPP || errno == EINVAL || errno == ENOTTY else {
            throw .syscall(kind == .file ? "fallocate(PUNCH_HOLE)" : "ioctl(BLKZEROOUT)", path)
        }
        let zeros = [UInt8](repeating: 0, count: Int(min(length, 1 << 20)))
        var at = offset
        while at < offset + length {
            let n = Int(min(Int64(zeros.count), offset + length - at))
            do {
                try zeros.withUnsafeBytes { buf in try write(UnsafeRawBufferPointer(rebasing: buf[..<n]), at: at) }
            } catch let e as BlockError { throw e } catch { throw BlockError(.imageIO, "\(error)") }
            at += Int64(n)
        }
    }

    /// Sets a file's size (`ftruncate`); a device cannot change size, and must be large enough.
    public func resize(to size: Int64) throws(BlockError) {
        if kind == .device {
            let have = try self.size()
            guard have >= size else {
                throw BlockError(.destinationTooSmall, "the device \(path) holds \(have) bytes, the source \(size): choose a device at least as large")
            }
            return
        }
        guard ftruncate(fd, off_t(size)) == 0 else { throw .syscall("ftruncate", path) }
    }

    /// `fdatasync(2)`: what was written is on stable storage.
    public func sync() throws(BlockError) {
        guard fdatasync(fd) == 0 else { throw .syscall("fdatasync", path) }
    }
}
