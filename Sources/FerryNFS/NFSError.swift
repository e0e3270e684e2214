import FerryCore
import Glibc

/// Errors of the NFS location: the operation, the path beneath the location's root, and
/// what the server or libnfs said, with the server and export named.
public struct NFSError: LocationError {
    public typealias Code = ErrorCode

    public var code: Code
    public var operation: String
    public var path: EntryPath?
    /// The errno libnfs gave (the NFS status mapped), 0 when none.
    public var errno: Int32
    /// libnfs's own message.
    public var detail: String
    /// `nfs://host[:port]/export` of the location, for messages.
    public var location: String
    public var retryClass: RetryClass

    public init(_ code: Code = .nfsCallFailed, operation: String, path: EntryPath?, errno: Int32, detail: String, location: String,
                retryClass: RetryClass? = nil) {
        self.code = code
        self.operation = operation
        self.path = path
        self.errno = errno
        self.detail = detail
        self.location = location
        self.retryClass = retryClass ?? NFSError.classify(errno)
    }

    init(_ failure: NFSFailure, operation: String, path: EntryPath?, location: String) {
        self.init(operation: operation, path: path, errno: failure.errno, detail: failure.message, location: location)
    }

    static func classify(_ e: Int32) -> RetryClass {
        switch e {
        case EACCES, EPERM: .itemUnreadable
        case ENOSPC, EDQUOT, EROFS, ESTALE: .fatal
        // A connection that broke or a request that timed out: the item is tried again
        // (libnfs reconnects).
        case EINTR, EIO, ETIMEDOUT, ECONNRESET, ECONNABORTED, EPIPE, EAGAIN: .retryable
        default: .itemFailed
        }
    }

    public var description: String {
        let where_ = path.map { location + ($0.isRoot ? "" : $0.description) } ?? location
        let reason = detail.isEmpty ? String(cString: strerror(errno)) : detail
        return "\(operation) failed on \(where_): \(reason)\(ErrnoHint.text(for: errno))"
    }
}

extension ErrorCode {
    /// An NFS request failed.
    public static let nfsCallFailed = ErrorCode("NfsCallFailed")
    /// The server could not be reached or the export not mounted.
    public static let nfsMountFailed = ErrorCode("NfsMountFailed")
    /// The version asked for is one Ferry or the server does not speak.
    public static let nfsVersionUnsupported = ErrorCode("NfsVersionUnsupported")
}
