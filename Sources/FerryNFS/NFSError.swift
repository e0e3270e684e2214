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
        self.retryClass = retryClass ?? RetryClass(remoteErrno: errno)
    }

    init(_ failure: NFSFailure, operation: String, path: EntryPath?, location: String) {
        // A broken connection is worth another try on a new one (``NFSClient/connection``).
        self.init(operation: operation, path: path, errno: failure.errno, detail: failure.message, location: location,
                  retryClass: NFSConnection.breaks(failure.errno, failure.message) ? .retryable : nil)
    }

    public var description: String {
        ErrnoHint.remoteFailure(operation, location: location, path: path,
                                reason: detail.isEmpty ? String(cString: strerror(errno)) : detail, errno: errno)
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
