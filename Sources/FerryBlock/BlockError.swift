import FerryCore
import Glibc

/// Errors of block-level sync: a syscall that failed on an image or device (with its
/// errno), a map or manifest that cannot be used, a bad change list, an object store that
/// refused a request. The message names the file, device or key and what to do.
public struct BlockError: Error, Sendable, CustomStringConvertible {
    public typealias Code = ErrorCode

    public var code: Code
    public var message: String
    /// The errno of the failed syscall, 0 if none.
    public var errno: Int32

    public init(_ code: Code, _ message: String, errno: Int32 = 0) {
        self.code = code
        self.message = message
        self.errno = errno
    }

    /// A failed syscall on `path`, with the current errno.
    static func syscall(_ operation: String, _ path: String, errno e: Int32 = Glibc.errno) -> BlockError {
        BlockError(.imageIO, "\(operation) failed on \(path): \(String(cString: strerror(e)))\(ErrnoHint.text(for: e))", errno: e)
    }

    public var description: String { message }
}

extension ErrorCode {
    /// A syscall on an image or device failed (errno in the error).
    public static let imageIO = ErrorCode("ImageIO")
    /// A block map or manifest that is damaged or belongs to another image.
    public static let badBlockMap = ErrorCode("BadBlockMap")
    /// A `--changed-extents` file that cannot be parsed.
    public static let badChangeList = ErrorCode("BadChangeList")
    /// The destination cannot hold the source (a device smaller than the image).
    public static let destinationTooSmall = ErrorCode("DestinationTooSmall")
    /// A snapshot could not be made or removed.
    public static let snapshotFailed = ErrorCode("SnapshotFailed")
    /// The object store refused or lost something.
    public static let objectStore = ErrorCode("ObjectStore")
}
