import Glibc

/// What to do about a failed syscall, appended to error messages ("; …"), "" if nothing useful.
public enum ErrnoHint {
    public static func text(for e: Int32) -> String {
        switch e {
        case EACCES, EPERM: "; check permissions, or run as a user that may read and write it"
        case ENOSPC, EDQUOT: "; free space at the destination and run again"
        case ELOOP: "; a symlink stands where a directory was expected and is not followed"
        case EOPNOTSUPP: "; the file system or device does not support it"
        default: ""
        }
    }

    /// `OPERATION failed on LOCATION/PATH: REASON; hint`, as a client of a file server
    /// (NFS, SMB) tells a failed call.
    public static func remoteFailure(_ operation: String, location: String, path: EntryPath?, reason: String, errno e: Int32) -> String {
        let where_ = path.map { location + ($0.isRoot ? "" : $0.description) } ?? location
        return "\(operation) failed on \(where_): \(reason)\(text(for: e))"
    }
}

extension RetryClass {
    /// How to treat an errno from a file server's client (NFS, SMB): a broken connection or
    /// a timeout is tried again (the client reconnects), permission is the item's, a full or
    /// read-only server or a stale handle stops the execution.
    public init(remoteErrno e: Int32) {
        switch e {
        case EACCES, EPERM: self = .itemUnreadable
        case ENOSPC, EDQUOT, EROFS, ESTALE: self = .fatal
        case EINTR, EIO, ETIMEDOUT, ECONNRESET, ECONNABORTED, ENETRESET, EPIPE, EAGAIN: self = .retryable
        default: self = .itemFailed
        }
    }
}
