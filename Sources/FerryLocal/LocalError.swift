import FerryCore
import Glibc

/// Errors of the POSIX location: the failed operation, the path, and the `errno`.
public struct LocalError: LocationError {
    public typealias Code = ErrorCode

    public var code: Code
    /// The operation, e.g. `openat2`, `renameat`.
    public var operation: String
    public var path: EntryPath?
    public var errno: Int32
    public var retryClass: RetryClass
    /// The location root, for messages.
    public var root: String

    public init(_ code: Code = .syscallFailed, operation: String, path: EntryPath?, errno: Int32, root: String) {
        self.code = code
        self.operation = operation
        self.path = path
        self.errno = errno
        self.root = root
        self.retryClass = LocalError.classify(errno)
    }

    static func classify(_ e: Int32) -> RetryClass {
        switch e {
        case EACCES, EPERM, EAGAIN, ETXTBSY: .itemUnreadable
        case ENOSPC, EDQUOT, EROFS, EIO, EMFILE, ENFILE: .fatal
        case EINTR: .retryable
        default: .itemFailed
        }
    }

    public var description: String {
        let reason = String(cString: strerror(errno))
        let where_ = path.map { "\(root)\($0.isRoot ? "" : $0.description)" } ?? root
        let hint = ErrnoHint.text(for: errno)
        return "\(operation) failed on \(where_): \(reason)\(hint)"
    }
}

extension ErrorCode {
    public static let syscallFailed = ErrorCode("SyscallFailed")
    public static let rootMissing = ErrorCode("RootMissing")
    public static let unsafePath = ErrorCode("UnsafePath")
}
