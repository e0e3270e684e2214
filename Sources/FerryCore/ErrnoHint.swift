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
}
