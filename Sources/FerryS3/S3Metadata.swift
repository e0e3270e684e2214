import FerryCore
import Foundation

/// The user-metadata format AWS File Gateway, FSx for Lustre and DataSync share
/// (`x-amz-meta-file-*`), plus Ferry's own `ferry-*` keys for what it lacks.
public enum S3Metadata {
    public static let permissions = "file-permissions"
    public static let owner = "file-owner"
    public static let group = "file-group"
    public static let mtime = "file-mtime"
    public static let atime = "file-atime"
    public static let userAgent = "user-agent"
    /// `st_rdev` of a device node, decimal.
    public static let deviceNumber = "ferry-rdev"
    /// Extended attributes: base64 of (u16 name length, name, u32 value length, value)*, little-endian.
    public static let xattrs = "ferry-xattrs"
    /// Source `device:inode` of a hard-link group, and its link count.
    public static let linkGroup = "ferry-link-group"
    public static let linkCount = "ferry-nlink"

    /// User metadata S3 keeps at most (AWS: 2 KiB for all `x-amz-meta-*` keys and values).
    public static let budget = 2048

    public static let writer = "ferry/0.1.0"

    /// DataSync's defaults for objects without metadata.
    public static let defaultUID: UInt32 = 65534
    public static let defaultGID: UInt32 = 65534

    /// Metadata for an object holding `kind`, per `selection`. xattrs that do not fit the
    /// budget are left out and named in `dropped`.
    public static func encode(
        kind: EntryKind, metadata m: FileMetadata, selection: MetadataSelection, attributes: [ExtendedAttribute]?
    ) -> (values: [String: String], dropped: [String]) {
        var v: [String: String] = [userAgent: writer]
        let mode = kind.modeTypeBits | (selection.permissions ? m.permissions : (kind == .directory ? 0o755 : 0o644))
        let octal = String(mode, radix: 8)
        v[permissions] = String(repeating: "0", count: max(0, 7 - octal.count)) + octal
        if selection.uid { v[owner] = String(m.uid) }
        if selection.gid { v[group] = String(m.gid) }
        if selection.mtime { v[mtime] = "\(m.mtime.totalNanoseconds)ns" }
        if selection.atime { v[atime] = "\(m.atime.totalNanoseconds)ns" }
        if kind == .characterDevice || kind == .blockDevice { v[deviceNumber] = String(m.deviceNumber) }
        if kind == .file, m.linkCount > 1, let id = m.fileID {
            v[linkGroup] = "\(id.device):\(id.inode)"
            v[linkCount] = String(m.linkCount)
        }
        var dropped: [String] = []
        if let attributes, !attributes.isEmpty {
            let encoded = encodeAttributes(attributes)
            let used = v.reduce(0) { $0 + $1.key.count + $1.value.count + 11 }
            if used + encoded.count + xattrs.count + 11 <= budget {
                v[xattrs] = encoded
            } else {
                dropped = attributes.map { String(decoding: $0.name, as: UTF8.self) }
            }
        }
        return (v, dropped)
    }

    static func encodeAttributes(_ attributes: [ExtendedAttribute]) -> String {
        var bytes: [UInt8] = []
        for a in attributes {
            let n = UInt16(min(a.name.count, Int(UInt16.max))), l = UInt32(a.value.count)
            bytes += [UInt8(n & 0xff), UInt8(n >> 8)] + a.name.prefix(Int(n))
            bytes += [UInt8(l & 0xff), UInt8((l >> 8) & 0xff), UInt8((l >> 16) & 0xff), UInt8(l >> 24)] + a.value
        }
        return Data(bytes).base64EncodedString()
    }

    public static func decodeAttributes(_ metadata: [String: String]) -> [ExtendedAttribute] {
        guard let text = metadata[xattrs], let data = Data(base64Encoded: text) else { return [] }
        let b = [UInt8](data)
        var out: [ExtendedAttribute] = []
        var i = 0
        while i + 2 <= b.count {
            let n = Int(b[i]) | Int(b[i + 1]) << 8
            i += 2
            guard i + n + 4 <= b.count else { break }
            let name = Array(b[i..<(i + n)])
            i += n
            let l = Int(b[i]) | Int(b[i + 1]) << 8 | Int(b[i + 2]) << 16 | Int(b[i + 3]) << 24
            i += 4
            guard i + l <= b.count else { break }
            out.append(ExtendedAttribute(name: name, value: Array(b[i..<(i + l)])))
            i += l
        }
        return out.sorted { $0.name.lexicographicallyPrecedes($1.name) }
    }

    /// `1595002920000000000ns` (ns) or a bare number (ms, as File Gateway writes).
    static func parseTime(_ text: String?) -> Timestamp? {
        guard var t = text?.trimmingCharacters(in: .whitespaces), !t.isEmpty else { return nil }
        let nanos: Int64
        if t.hasSuffix("ns") {
            t.removeLast(2)
            guard let v = Int64(t) else { return nil }
            nanos = v
        } else {
            guard let v = Int64(t) else { return nil }
            nanos = v &* 1_000_000
        }
        return Timestamp(totalNanoseconds: nanos)
    }

    static func timestamp(_ date: Date) -> Timestamp {
        let t = date.timeIntervalSince1970
        let s = Int64(t.rounded(.down))
        return Timestamp(seconds: s, nanoseconds: Int32(((t - Double(s)) * 1e9).rounded(.down)))
    }

    /// The kind and metadata an object stands for; objects without Ferry/File Gateway
    /// metadata get DataSync's defaults and their Last-Modified as mtime.
    public static func decode(_ object: S3Object, isDirectory: Bool) -> (EntryKind, FileMetadata) {
        let meta = object.metadata
        var kind: EntryKind = isDirectory ? .directory : .file
        var perms: UInt32 = isDirectory ? 0o755 : 0o644
        if let p = meta[permissions], let mode = UInt32(p, radix: 8) {
            if let k = EntryKind(modeTypeBits: mode), !isDirectory || k == .directory { kind = k }
            perms = mode & 0o7777
        }
        // Whole seconds: a listing gives Last-Modified in milliseconds (the JuiceFS gateway's
        // are not zero), HEAD and GET in seconds; a stand-in mtime must not depend on which.
        let lastModified = Timestamp(seconds: object.lastModified.map(timestamp)?.seconds ?? 0, nanoseconds: 0)
        let mt = parseTime(meta[mtime]) ?? lastModified
        let at = parseTime(meta[atime]) ?? mt
        var fileID: FileID?
        var links: UInt32 = 1
        if let g = meta[linkGroup] {
            let parts = g.split(separator: ":")
            if parts.count == 2, let d = UInt64(parts[0]), let i = UInt64(parts[1]) {
                fileID = FileID(device: d, inode: i)
                links = UInt32(meta[linkCount] ?? "2") ?? 2
            }
        }
        let m = FileMetadata(
            permissions: perms, uid: UInt32(meta[owner] ?? "") ?? defaultUID, gid: UInt32(meta[group] ?? "") ?? defaultGID,
            mtime: mt, atime: at, ctime: mt, size: kind == .file ? object.size : (kind == .symlink ? object.size : 0),
            allocatedBytes: nil, deviceNumber: UInt64(meta[deviceNumber] ?? "0") ?? 0, fileID: fileID, linkCount: links)
        return (kind, m)
    }
}
