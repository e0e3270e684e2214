import FerryCore
import Glibc

/// Which owners this process may give the files it writes, read once: with `CAP_CHOWN`
/// any; without it only its own uid, and only groups it belongs to (`chown(2)`).
struct OwnershipRights: Sendable {
    let privileged: Bool
    let uid: UInt32
    let groups: Set<UInt32>

    static let current = OwnershipRights()

    init() {
        uid = geteuid()
        privileged = OwnershipRights.hasCapChown()
        var list = [gid_t](repeating: 0, count: 256)
        let n = getgroups(Int32(list.count), &list)
        groups = Set(list.prefix(Int(max(n, 0)))).union([getegid()])
    }

    /// Bit 0 (`CAP_CHOWN`) of the effective set in `/proc/self/status`; root without the
    /// file (no procfs) counts as privileged.
    private static func hasCapChown() -> Bool {
        guard let hex = Sys.processStatus("CapEff") else { return geteuid() == 0 }
        return (UInt64(String(hex.filter { !$0.isWhitespace }), radix: 16) ?? 0) & 1 == 1
    }

    /// The owner fields of `metadata` this process may not set, with the reason.
    func withheld(_ metadata: FileMetadata, selection: MetadataSelection) -> MetadataWithheld? {
        if privileged { return nil }
        let uidOut = selection.uid && metadata.uid != uid
        let gidOut = selection.gid && !groups.contains(metadata.gid)
        guard uidOut || gidOut else { return nil }
        var parts: [String] = []
        if uidOut { parts.append("uid \(metadata.uid)") }
        if gidOut { parts.append("gid \(metadata.gid)") }
        var why: [String] = []
        if uidOut { why.append("only a process with CAP_CHOWN may give a file to another owner, and ferry runs as uid \(uid) without it") }
        if gidOut { why.append("uid \(uid) is not a member of group \(metadata.gid)") }
        return MetadataWithheld(uid: uidOut, gid: gidOut, reason: parts.joined(separator: ", ") + " (" + why.joined(separator: "; ") + ")")
    }
}
