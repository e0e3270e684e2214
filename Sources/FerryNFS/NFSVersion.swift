import FerryCore

/// The NFS version a location is reached with: `--nfs-version 3|4|4.0|4.1|auto` on the
/// command line, DataSync's MountOptions.Version (`NFS3`, `NFS4_0`, `NFS4_1`, `AUTOMATIC`)
/// at the server. Ferry speaks NFSv3; v4.0 and v4.1 are refused by name (libnfs 4.0's v4.0
/// is not dependable, and it has no v4.1 sessions) rather than quietly served as something else.
public enum NFSVersion: String, Sendable, Hashable, CaseIterable {
    case v3 = "3"
    case v4_0 = "4.0"
    case v4_1 = "4.1"
    /// The best version both sides speak (NFSv3, the one Ferry speaks now).
    case automatic = "auto"

    /// Parses the command line's or DataSync's spelling.
    public init(parsing text: String) throws(FerryError) {
        switch text.uppercased() {
        case "3", "NFS3", "V3": self = .v3
        case "4", "4.0", "NFS4_0", "V4", "V4.0": self = .v4_0
        case "4.1", "NFS4_1", "V4.1": self = .v4_1
        case "AUTO", "AUTOMATIC": self = .automatic
        default:
            throw FerryError(.invalidOption, "\"\(text)\" is not an NFS version (3, 4, 4.0, 4.1 or auto; DataSync: NFS3, NFS4_0, NFS4_1, AUTOMATIC)")
        }
    }

    /// DataSync's MountOptions.Version spelling.
    public var dataSyncName: String {
        switch self {
        case .v3: "NFS3"
        case .v4_0: "NFS4_0"
        case .v4_1: "NFS4_1"
        case .automatic: "AUTOMATIC"
        }
    }

    /// Why Ferry does not speak this version yet (nil: it does), for the error that refuses it
    /// by name — at `ferry sync`, at the server's CreateLocationNfs/UpdateLocationNfs.
    public var refusal: String? {
        switch self {
        case .v4_1:
            "Ferry does not speak NFSv4.1 yet (its NFS client, libnfs 4.0, has no v4.1 sessions); use NFSv3 (--nfs-version 3 or auto; Version=NFS3 or AUTOMATIC)"
        case .v4_0:
            "Ferry does not speak NFSv4.0 yet: its NFS client, libnfs 4.0, fails NFSv4 WRITEs and directory SETATTRs, and CLOSEs of files read in parallel; use NFSv3 (--nfs-version 3 or auto; Version=NFS3 or AUTOMATIC)"
        case .v3, .automatic:
            nil
        }
    }

    var label: String { self == .v3 ? "NFSv3" : self == .v4_0 ? "NFSv4.0" : self == .v4_1 ? "NFSv4.1" : "NFS (automatic)" }
}
