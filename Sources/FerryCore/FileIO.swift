import CFerry
import Glibc

/// Positioned I/O on a descriptor that the POSIX location, block sync and the engine's
/// spill files share: whole reads and writes (retrying `EINTR` and short counts) and the
/// data ranges of a sparse file.
public enum FileIO {
    /// Whether every byte is zero (eight bytes at a time): a range that need not be written
    /// where the destination leaves holes.
    public static func isAllZero(_ data: UnsafeRawBufferPointer) -> Bool {
        let words = data.count / 8
        var i = 0
        while i < words {
            if data.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self) != 0 { return false }
            i += 1
        }
        for i in (words * 8)..<data.count where data[i] != 0 { return false }
        return true
    }

    /// `pread(2)` until `buffer` is full or the end of the file; the count, or -1 with
    /// `errno` set when nothing could be read.
    public static func preadFully(_ fd: Int32, _ buffer: UnsafeMutableRawBufferPointer, _ offset: Int64) -> Int {
        var done = 0
        while done < buffer.count {
            let n = pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                return done > 0 ? done : -1
            }
            if n == 0 { break }
            done += n
        }
        return done
    }

    /// `pwrite(2)` all of `bytes`; false with `errno` set on failure.
    public static func pwriteFully(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, _ offset: Int64) -> Bool {
        var done = 0
        while done < bytes.count {
            let n = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                return false
            }
            done += n
        }
        return true
    }

    /// The ranges of the first `size` bytes that hold data (`lseek` `SEEK_DATA` /
    /// `SEEK_HOLE`); everything else reads as zeros. A file system without the seeks is all
    /// data from where they failed. On another failure, the call that failed (`errno` set).
    public static func dataRanges(_ fd: Int32, size: Int64) -> Result<[Range<Int64>], SeekFailure> {
        var ranges: [Range<Int64>] = []
        var offset: Int64 = 0
        while offset < size {
            let start = lseek(fd, off_t(offset), cferry_SEEK_DATA)
            if start < 0 {
                if errno == ENXIO { break }  // only a hole remains
                if errno == EINVAL { ranges.append(offset..<size); break }  // no SEEK_DATA here
                return .failure(SeekFailure(call: "lseek(SEEK_DATA)", errno: errno))
            }
            if Int64(start) >= size { break }
            let end = lseek(fd, start, cferry_SEEK_HOLE)
            if end < 0 { return .failure(SeekFailure(call: "lseek(SEEK_HOLE)", errno: errno)) }
            let upper = min(Int64(end), size)
            if Int64(start) < upper { ranges.append(Int64(start)..<upper) }
            offset = Int64(end)
        }
        return .success(ranges)
    }

    /// Which seek failed, and its `errno`.
    public struct SeekFailure: Error, Sendable {
        public var call: String
        public var errno: Int32
    }
}
