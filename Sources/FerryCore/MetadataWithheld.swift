/// Metadata a destination cannot apply to one entry, known before it is written: an
/// unprivileged process may not give a file to another owner, nor to a group it is not in
/// (`chown(2)`). The engine leaves those fields out of what it applies and compares, and
/// reports them for the entry (rsync -a run by a user copies the data the same way).
public struct MetadataWithheld: Sendable, Hashable {
    public var uid: Bool
    public var gid: Bool
    /// The mtime and atime cannot be held (NFSv3 keeps unsigned 32-bit seconds: nothing
    /// before 1970 or after 2106).
    public var times: Bool
    /// What is withheld and why, e.g. `uid 0, gid 0 (…)`.
    public var reason: String

    public init(uid: Bool, gid: Bool, times: Bool = false, reason: String) {
        self.uid = uid
        self.gid = gid
        self.times = times
        self.reason = reason
    }

    /// `selection` without the withheld fields.
    public func applied(to selection: MetadataSelection) -> MetadataSelection {
        var s = selection
        if uid { s.uid = false }
        if gid { s.gid = false }
        if times {
            s.mtime = false
            s.atime = false
        }
        s.ownership = s.uid || s.gid
        return s
    }
}
