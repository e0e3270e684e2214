import CLibSMB
import FerryCore
import Glibc
import Synchronization

/// Between two shares: DOS attributes, creation time and (as SecurityDescriptorCopyFlags
/// asks) the owner and DACL, through libsmbclient's `system.dos_attr.*` and
/// `system.nt_sec_desc.*` attributes.
///
/// What libsmbclient 4.17 allows, learned against smbd: `system.dos_attr.*` gives MODE as
/// the POSIX mode it maps the attributes to (archive → u+x, system → g+x, hidden → o+x,
/// read-only → no u+w; a directory is always 0555), so a file's four settable attributes
/// come from it and a directory's from its parent's listing (``SMBClient/noteDirectoryAttributes(_:)``);
/// CREATE_TIME is in whole seconds. Its calls that set attributes write the times back in
/// whole seconds, and utimes resets the attributes, so attributes, creation time and the
/// times already set go in one SET_INFO through Samba's own `cli_setpathinfo_ext`
/// (``BasicInformation``). Descriptors are read in
/// numeric form; written back, an ACE's access mask must be decimal (a hex mask is parsed
/// as 0). The SACL is not among them: OWNER_DACL_SACL is refused when the location opens.
extension SMBLocation: NativeMetadataCopying {
    public var nativeMetadataFamily: String { "smb" }

    static let attributesPart = "attributes", creationPart = "creation time", descriptorPart = "security descriptor"

    public func nativeMetadata(_ path: EntryPath, kind: EntryKind) async throws -> NativeMetadata {
        let url = client.url(path)
        let worker = client.worker
        let withDescriptor = client.securityDescriptors != .none
        let first = withDescriptor && !worker.describes.load(ordering: .relaxed)
        let ((dos, dosErrno, descriptor, descriptorErrno), _) = await worker.run(alone: first) { ctx in
            let (dos, dosErrno) = SMBLocation.getAttribute(ctx, url, "system.dos_attr.*")
            guard withDescriptor else { return (dos, dosErrno, String?.none, Int32(0)) }
            let (descriptor, descriptorErrno) = SMBLocation.getAttribute(ctx, url, "system.nt_sec_desc.*")
            return (dos, dosErrno, descriptor, descriptorErrno)
        }
        if first { worker.describes.store(true, ordering: .relaxed) }
        guard let dos else {
            if dosErrno == ENOENT { throw fail("getxattr", path, dosErrno, "the entry vanished") }
            throw fail("getxattr system.dos_attr.*", path, dosErrno)
        }
        var native = NativeMetadata()
        let fields = SMBLocation.fields(dos)
        if kind == .directory {
            native.parts[SMBLocation.attributesPart] = String(client.takeDirectoryAttributes(path), radix: 16)
        } else if let mode = fields["MODE"].flatMap({ UInt32($0.dropFirst(2), radix: 16) }) {
            native.parts[SMBLocation.attributesPart] = String(SMBLocation.attributes(mappedMode: mode), radix: 16)
        }
        if let created = fields["CREATE_TIME"] { native.parts[SMBLocation.creationPart] = created }
        if withDescriptor {
            if let descriptor {
                native.parts[SMBLocation.descriptorPart] = SecurityDescriptorText.ownerAndDACL(descriptor)
            } else {
                native.unreadable[SMBLocation.descriptorPart] = SMBLocation.descriptorHint(descriptorErrno)
            }
        }
        return native
    }

    public func setNativeMetadata(_ path: EntryPath, kind: EntryKind, _ metadata: NativeMetadata,
                                  keeping times: FileMetadata, selection: MetadataSelection) async throws -> [String] {
        let url = client.url(path)
        let worker = client.worker
        var problems: [String] = []
        let attributes = metadata.parts[SMBLocation.attributesPart].flatMap { UInt32($0, radix: 16) }
        let created = metadata.parts[SMBLocation.creationPart].flatMap { Int($0) }
        let descriptor = metadata.parts[SMBLocation.descriptorPart].map(SecurityDescriptorText.forSetting)
        let first = descriptor != nil && !worker.describes.load(ordering: .relaxed)
        let basic = BasicInformation(client: client, path: path, attributes: attributes, created: created, times: times, selection: selection)
        let ((basicErrno, secondsOnly, descriptorErrno, ownerDropped), _) = await worker.run(alone: first) { ctx -> (Int32, Bool, Int32, Bool) in
            var secondsOnly = false
            var basicErrno: Int32 = 0
            if basic.wanted {
                basicErrno = basic.apply(ctx, url)
                if basicErrno == ENOSYS {
                    secondsOnly = true
                    basicErrno = basic.applyInSeconds(ctx, url)
                }
            }
            guard let descriptor else { return (basicErrno, secondsOnly, 0, false) }
            var e = SMBLocation.setAttribute(ctx, url, "system.nt_sec_desc.*", descriptor)
            // Giving a file to another owner takes a privilege the user may lack: the DACL
            // alone then, and the owner reported.
            if e == EPERM || e == EACCES, let dacl = SecurityDescriptorText.withoutOwner(descriptor) {
                let again = SMBLocation.setAttribute(ctx, url, "system.nt_sec_desc.*", dacl)
                if again == 0 { return (basicErrno, secondsOnly, e, true) }
                e = again
            }
            return (basicErrno, secondsOnly, e, false)
        }
        if first { worker.describes.store(true, ordering: .relaxed) }
        if basicErrno != 0 {
            problems.append("DOS attributes and creation time (\(String(cString: strerror(basicErrno))))")
        } else if secondsOnly && (times.mtime.nanoseconds != 0 || times.atime.nanoseconds != 0) {
            problems.append("times below the second (this libsmbclient sets DOS attributes only with times in whole seconds)")
        }
        if descriptor != nil && descriptorErrno != 0 {
            if ownerDropped {
                problems.append("owner \(SecurityDescriptorText.owner(metadata.parts[SMBLocation.descriptorPart]!) ?? "") (\(String(cString: strerror(descriptorErrno))): the user may not give files away; the DACL was applied)")
            } else {
                problems.append("security descriptor (\(SMBLocation.descriptorHint(descriptorErrno)))")
            }
        }
        return problems
    }

    static func descriptorHint(_ e: Int32) -> String {
        e == ENODATA
            ? "the server gave none: libsmbclient reads descriptors over the server's LSA service on IPC$ (samba-dcerpcd on Samba)"
            : String(cString: strerror(e == 0 ? EIO : e))
    }

    /// The four attributes libsmbclient's mapped mode carries (see the extension's note).
    static func attributes(mappedMode mode: UInt32) -> UInt32 {
        var a: UInt32 = 0
        if mode & 0o200 == 0 { a |= 0x01 }  // no u+w: read-only
        if mode & 0o001 != 0 { a |= 0x02 }  // o+x: hidden
        if mode & 0o010 != 0 { a |= 0x04 }  // g+x: system
        if mode & 0o100 != 0 { a |= 0x20 }  // u+x: archive
        return a
    }

    /// "NAME:value,NAME:value" as a dictionary.
    static func fields(_ text: String) -> [String: String] {
        var out: [String: String] = [:]
        for field in text.split(separator: ",") {
            guard let colon = field.firstIndex(of: ":") else { continue }
            out[String(field[..<colon])] = String(field[field.index(after: colon)...])
        }
        return out
    }

    static func getAttribute(_ ctx: UnsafeMutablePointer<SMBCCTX>, _ url: String, _ name: String) -> (String?, Int32) {
        var size = 64 << 10
        while true {
            var buffer = [CChar](repeating: 0, count: size)
            errno = 0
            if smbc_getFunctionGetxattr(ctx)!(ctx, url, name, &buffer, size - 1) >= 0 {
                return (String(cString: buffer), 0)
            }
            let e = errno
            if e == ERANGE && size < 16 << 20 { size *= 4; continue }
            return (nil, e == 0 ? EIO : e)
        }
    }

    static func setAttribute(_ ctx: UnsafeMutablePointer<SMBCCTX>, _ url: String, _ name: String, _ value: String) -> Int32 {
        errno = 0
        let status = value.withCString { smbc_getFunctionSetxattr(ctx)!(ctx, url, name, $0, strlen($0), 0) }
        return status == 0 ? 0 : (errno == 0 ? EIO : errno)
    }
}

/// libsmbclient's numeric security-descriptor text ("REVISION:1,OWNER:S-…,GROUP:S-…,
/// ACL:S-…:0/0/0x001f01ff,…"), as DataSync's OWNER_DACL copies it.
enum SecurityDescriptorText {
    /// The revision, the owner and the DACL's entries sorted (the group is not
    /// OWNER_DACL's; libsmbclient writes a DACL in canonical order, so the order read is
    /// not compared).
    static func ownerAndDACL(_ text: String) -> String {
        let fields = text.split(separator: ",")
        return (fields.filter { $0.hasPrefix("REVISION:") || $0.hasPrefix("OWNER:") } + fields.filter { $0.hasPrefix("ACL:") }.sorted())
            .joined(separator: ",")
    }

    /// The text to set: each ACE's access mask in decimal (libsmbclient 4.17 parses a hex
    /// mask as 0, which would deny everything).
    static func forSetting(_ text: String) -> String {
        text.split(separator: ",").map { field -> String in
            guard field.hasPrefix("ACL:"), let slash = field.lastIndex(of: "/") else { return String(field) }
            let mask = field[field.index(after: slash)...]
            guard mask.hasPrefix("0x"), let value = UInt32(mask.dropFirst(2), radix: 16) else { return String(field) }
            return field[...slash] + String(value)
        }.joined(separator: ",")
    }

    static func withoutOwner(_ text: String) -> String? {
        let rest = text.split(separator: ",").filter { !$0.hasPrefix("OWNER:") }
        return rest.count == text.split(separator: ",").count ? nil : rest.joined(separator: ",")
    }

    static func owner(_ text: String) -> String? {
        text.split(separator: ",").first { $0.hasPrefix("OWNER:") }.map { String($0.dropFirst(6)) }
    }
}

/// A path's SMB basic information — creation, access and write times and DOS attributes —
/// set in one request by Samba's `cli_setpathinfo_ext` on the session's connection (what
/// libsmbclient's public calls cannot do without losing one or the other); where this
/// libsmbclient lacks it, its `system.dos_attr.*` (times back in whole seconds).
struct BasicInformation: Sendable {
    let server: String, share: String, workgroup: String, user: String
    /// The path on the share, backslashed ("\\dir\\file"; "" for the share's root).
    let sharePath: String
    let attributes: UInt32?
    let created: Int?
    let access: timespec, write: timespec

    /// Samba's "leave this time as it is".
    static let omit = timespec(tv_sec: 0, tv_nsec: (1 << 30) - 2)

    /// `cli_setpathinfo_ext` of the libsmbclient loaded (Samba 4.15 and later share its
    /// signature), or nil.
    static let setPathInfo: ferry_smb_setpathinfo_fn? = {
        let version = String(cString: smbc_version()).split(separator: ".").compactMap { Int($0.prefix { $0.isNumber }) }
        guard version.count >= 2, version[0] == 4, version[1] >= 15, let symbol = dlsym(nil, "cli_setpathinfo_ext") else { return nil }
        return unsafeBitCast(symbol, to: ferry_smb_setpathinfo_fn.self)
    }()

    init(client: SMBClient, path: EntryPath, attributes: UInt32?, created: Int?, times: FileMetadata, selection: MetadataSelection) {
        server = client.host
        share = client.share
        workgroup = client.domain ?? "WORKGROUP"
        user = client.user
        let full = client.below + (path.isRoot ? "" : "/" + String(decoding: path.bytes, as: UTF8.self))
        sharePath = full.replacingOccurrences(of: "/", with: "\\")
        self.attributes = attributes
        self.created = created
        func spec(_ t: Timestamp) -> timespec { timespec(tv_sec: Int(t.seconds), tv_nsec: Int(t.nanoseconds)) }
        write = selection.mtime || selection.atime ? spec(times.mtime) : BasicInformation.omit
        access = selection.atime ? spec(times.atime) : write
    }

    var wanted: Bool { attributes != nil || created != nil }

    /// The attributes to send: those a server sets (read-only, hidden, system, directory,
    /// archive); none is NORMAL (0 would be taken as NORMAL by the client anyway).
    var sent: UInt32 {
        let settable = (attributes ?? 0) & 0x37
        return settable == 0 ? 0x80 : settable
    }

    /// One SET_INFO; ENOSYS where Samba's function or the session's connection is not to be had.
    func apply(_ ctx: UnsafeMutablePointer<SMBCCTX>, _ url: String) -> Int32 {
        guard let setPathInfo = BasicInformation.setPathInfo else { return ENOSYS }
        var connection = cachedConnection(ctx)
        if connection == nil {
            // Connect the session (a stat through libsmbclient), then look again.
            var st = Glibc.stat()
            _ = smbc_getFunctionStat(ctx)!(ctx, url, &st)
            connection = cachedConnection(ctx)
        }
        guard let connection else { return ENOSYS }
        let create = created.map { timespec(tv_sec: $0, tv_nsec: 0) } ?? BasicInformation.omit
        let status = sharePath.withCString { setPathInfo(connection, $0, create, access, write, BasicInformation.omit, sent) }
        return BasicInformation.errno(status)
    }

    /// libsmbclient's `system.dos_attr.*`: attributes and creation time, the times after
    /// them in whole seconds.
    func applyInSeconds(_ ctx: UnsafeMutablePointer<SMBCCTX>, _ url: String) -> Int32 {
        var fields = ["MODE:0x" + String(sent, radix: 16)]
        if let created { fields.append("CREATE_TIME:\(created)") }
        return SMBLocation.setAttribute(ctx, url, "system.dos_attr.*", fields.joined(separator: ","))
    }

    private func cachedConnection(_ ctx: UnsafeMutablePointer<SMBCCTX>) -> UnsafeMutableRawPointer? {
        let server = smbc_getFunctionGetCachedServer(ctx)!(ctx, self.server, share, workgroup, user)
        return ferry_smb_server_connection(server)
    }

    /// An NTSTATUS as errno (0 for success).
    static func errno(_ status: UInt32) -> Int32 {
        switch status {
        case 0: 0
        case 0xC000_0022: EACCES  // ACCESS_DENIED
        case 0xC000_0034, 0xC000_003A: ENOENT  // OBJECT_NAME_NOT_FOUND, OBJECT_PATH_NOT_FOUND
        case 0xC000_0033: EINVAL  // OBJECT_NAME_INVALID
        default: EIO
        }
    }
}
