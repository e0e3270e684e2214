import FerryCore
import Glibc

/// Errors of the SMB location: the operation, the path beneath the location's root, the
/// errno libsmbclient set, with the server and share named.
public struct SMBError: LocationError {
    public typealias Code = ErrorCode

    public var code: Code
    public var operation: String
    public var path: EntryPath?
    public var errno: Int32
    /// What to do about it, or more of what happened ("" when strerror says it all).
    public var detail: String
    /// `smb://host[:port]/share/path` of the location.
    public var location: String
    public var retryClass: RetryClass

    public init(_ code: Code = .smbCallFailed, operation: String, path: EntryPath?, errno: Int32, detail: String = "", location: String,
                retryClass: RetryClass? = nil) {
        self.code = code
        self.operation = operation
        self.path = path
        self.errno = errno
        self.detail = detail
        self.location = location
        self.retryClass = retryClass ?? RetryClass(remoteErrno: errno)
    }

    public var description: String {
        ErrnoHint.remoteFailure(operation, location: location, path: path,
                                reason: errno == 0 ? detail : String(cString: strerror(errno)) + (detail.isEmpty ? "" : "; " + detail), errno: errno)
    }
}

extension ErrorCode {
    /// An SMB request failed.
    public static let smbCallFailed = ErrorCode("SmbCallFailed")
    /// The server, share or credentials could not be used.
    public static let smbConnectFailed = ErrorCode("SmbConnectFailed")
    /// The task met something an SMB share cannot hold and DataSync ends the task for (a
    /// symlink or a hard link on the way to SMB).
    public static let smbCannotHold = ErrorCode("SmbCannotHold")
}
