/// What kind of thing an entry is.
public enum EntryKind: UInt8, Sendable, Codable, CustomStringConvertible {
    case file, directory, symlink, fifo, characterDevice, blockDevice, socket

    public var description: String {
        switch self {
        case .file: "file"
        case .directory: "directory"
        case .symlink: "symlink"
        case .fifo: "fifo"
        case .characterDevice: "character device"
        case .blockDevice: "block device"
        case .socket: "socket"
        }
    }

    /// The `S_IFMT` bits of this kind, as `st_mode` carries them.
    public var modeTypeBits: UInt32 {
        switch self {
        case .file: 0o100000
        case .directory: 0o040000
        case .symlink: 0o120000
        case .fifo: 0o010000
        case .characterDevice: 0o020000
        case .blockDevice: 0o060000
        case .socket: 0o140000
        }
    }

    /// The kind named by the `S_IFMT` bits of `mode`, if any.
    public init?(modeTypeBits mode: UInt32) {
        switch mode & 0o170000 {
        case 0o100000: self = .file
        case 0o040000: self = .directory
        case 0o120000: self = .symlink
        case 0o010000: self = .fifo
        case 0o020000: self = .characterDevice
        case 0o060000: self = .blockDevice
        case 0o140000: self = .socket
        default: return nil
        }
    }

    /// FIFOs, device nodes and sockets: transferred only with PreserveDevices.
    public var isSpecial: Bool { self == .fifo || self == .characterDevice || self == .blockDevice || self == .socket }
}

/// A point in time with nanosecond precision (a `timespec`).
public struct Timestamp: Hashable, Sendable, Comparable, Codable, CustomStringConvertible {
    public var seconds: Int64
    public var nanoseconds: Int32

    public init(seconds: Int64, nanoseconds: Int32) {
        self.seconds = seconds
        self.nanoseconds = nanoseconds
    }

    /// Nanoseconds since the epoch.
    public var totalNanoseconds: Int64 { seconds &* 1_000_000_000 &+ Int64(nanoseconds) }

    /// The time `totalNanoseconds` after the epoch (before it when negative; the
    /// nanoseconds are then counted forward from the earlier second).
    public init(totalNanoseconds n: Int64) {
        var s = n / 1_000_000_000, ns = n % 1_000_000_000
        if ns < 0 { s -= 1; ns += 1_000_000_000 }
        self.init(seconds: s, nanoseconds: Int32(ns))
    }

    public static func < (a: Timestamp, b: Timestamp) -> Bool {
        (a.seconds, a.nanoseconds) < (b.seconds, b.nanoseconds)
    }

    public var description: String { "\(seconds).\(String(repeating: "0", count: 9 - String(nanoseconds).count))\(nanoseconds)" }
}

/// Identity of a file's storage (device + inode on POSIX), used to group hard links.
public struct FileID: Hashable, Sendable {
    public var device: UInt64
    public var inode: UInt64
    public init(device: UInt64, inode: UInt64) {
        self.device = device
        self.inode = inode
    }
}

/// One extended attribute (POSIX ACLs travel as `system.posix_acl_access` / `_default`).
public struct ExtendedAttribute: Hashable, Sendable {
    public var name: [UInt8]
    public var value: [UInt8]
    public init(name: [UInt8], value: [UInt8]) {
        self.name = name
        self.value = value
    }
}

/// The metadata Ferry moves with an entry.
public struct FileMetadata: Hashable, Sendable {
    /// Permission bits including setuid/setgid/sticky (`mode & 0o7777`).
    public var permissions: UInt32
    public var uid: UInt32
    public var gid: UInt32
    public var mtime: Timestamp
    public var atime: Timestamp
    /// Change time at the source; used to notice a file changing while it is read.
    public var ctime: Timestamp
    /// Logical size in bytes (for a symlink, the length of its target).
    public var size: Int64
    /// Bytes allocated on disk (`st_blocks * 512`), when the location knows it.
    public var allocatedBytes: Int64?
    /// Device number of a device node (`st_rdev`).
    public var deviceNumber: UInt64
    /// Storage identity and link count, when the location has them (hard links).
    public var fileID: FileID?
    public var linkCount: UInt32

    public init(
        permissions: UInt32, uid: UInt32, gid: UInt32, mtime: Timestamp, atime: Timestamp,
        ctime: Timestamp, size: Int64, allocatedBytes: Int64? = nil, deviceNumber: UInt64 = 0,
        fileID: FileID? = nil, linkCount: UInt32 = 1
    ) {
        self.permissions = permissions
        self.uid = uid
        self.gid = gid
        self.mtime = mtime
        self.atime = atime
        self.ctime = ctime
        self.size = size
        self.allocatedBytes = allocatedBytes
        self.deviceNumber = deviceNumber
        self.fileID = fileID
        self.linkCount = linkCount
    }

    /// Whether a file stat'd again after a read still looks as it did when listed as
    /// `before`: the same size, mtime and ctime (a write during the read moves them).
    public func unchanged(since before: FileMetadata) -> Bool {
        size == before.size && mtime == before.mtime && ctime == before.ctime
    }

    /// Whether the data may have holes (fewer bytes allocated than the logical size).
    public var mayBeSparse: Bool {
        guard let allocated = allocatedBytes else { return false }
        return allocated < size
    }
}

/// One item of a listing: its name within the listed directory, kind and metadata.
public struct Entry: Sendable, Hashable {
    /// The last path component, raw bytes.
    public var name: [UInt8]
    public var kind: EntryKind
    public var metadata: FileMetadata
    /// The target of a symlink, raw bytes.
    public var symlinkTarget: [UInt8]?
    /// What the location knows of the file's bytes besides its metadata (an object store's);
    /// nil for the files of a POSIX tree. Plain values, no references: copying an entry
    /// costs no reference counting for it.
    public var content: ContentIdentity?

    public init(
        name: [UInt8], kind: EntryKind, metadata: FileMetadata, symlinkTarget: [UInt8]? = nil, contentTag: ContentTag? = nil,
        mtimeIsStandIn: Bool = false, writtenFromMtime: Timestamp? = nil
    ) {
        self.name = name
        self.kind = kind
        self.metadata = metadata
        self.symlinkTarget = symlinkTarget
        if contentTag != nil || mtimeIsStandIn || writtenFromMtime != nil {
            content = ContentIdentity(tag: contentTag, mtimeIsStandIn: mtimeIsStandIn, writtenFromMtime: writtenFromMtime)
        }
    }

    /// The location's own name for the file's bytes, when it has one (an S3 ETag); the
    /// location's ``Location/holdsSameContent(_:_:as:)`` compares it with a source's bytes.
    public var contentTag: ContentTag? { content?.tag }
    /// True when the location does not hold this file's mtime and `metadata.mtime` is a
    /// stand-in (an object without `file-mtime` metadata: its Last-Modified). Size and
    /// mtime then cannot tell whether the file changed; its content can.
    public var mtimeIsStandIn: Bool { content?.mtimeIsStandIn ?? false }
    /// For a file whose mtime is a stand-in: the mtime of the source file whose bytes Ferry
    /// wrote here, where the location remembers it (a server that dropped the metadata sent
    /// with them). Equal size and this mtime mean unchanged, as equal size and mtime do
    /// where mtimes are kept.
    public var writtenFromMtime: Timestamp? { content?.writtenFromMtime }
}

/// A 128-bit digest that names a file's bytes, and the number of parts it was computed
/// over (an S3 ETag: the MD5 of the object, or the MD5 of its parts' MD5s with `-N`).
public struct ContentTag: Sendable, Hashable {
    public var high: UInt64
    public var low: UInt64
    /// 0: one part (the digest of the bytes themselves).
    public var parts: UInt32

    public init(high: UInt64, low: UInt64, parts: UInt32) {
        self.high = high
        self.low = low
        self.parts = parts
    }
}

/// See ``Entry/contentTag``, ``Entry/mtimeIsStandIn`` and ``Entry/writtenFromMtime``.
public struct ContentIdentity: Sendable, Hashable {
    public var tag: ContentTag?
    public var mtimeIsStandIn: Bool
    public var writtenFromMtime: Timestamp?

    public init(tag: ContentTag?, mtimeIsStandIn: Bool, writtenFromMtime: Timestamp?) {
        self.tag = tag
        self.mtimeIsStandIn = mtimeIsStandIn
        self.writtenFromMtime = writtenFromMtime
    }
}

/// A listing of one directory, sorted by name bytes.
public struct Listing: Sendable {
    public var entries: [Entry]
    /// Names of the location's own leftover temporary files (from an interrupted run),
    /// hidden from `entries`; at the destination the engine removes them unless it is a dry
    /// run, at a source it reports them as skipped where they are files
    /// (``Location/temporariesAreFiles``).
    public var staleTemporaries: [[UInt8]]
    /// Names the location found but cannot offer safely (an object key that is no safe
    /// path: `..`, empty components, NUL, too long), with the reason; they are reported
    /// as skipped.
    public var unusable: [(name: String, reason: String)]
    public init(entries: [Entry], staleTemporaries: [[UInt8]] = [], unusable: [(name: String, reason: String)] = []) {
        self.entries = entries
        self.staleTemporaries = staleTemporaries
        self.unusable = unusable
    }

    /// Hands the entries to `deliver` as one run (``RunListing``) and returns the rest of
    /// the listing without them.
    public func deliveredAsOneRun(_ deliver: ([Entry]) throws -> Void) rethrows -> Listing {
        try deliver(entries)
        var rest = self
        rest.entries = []
        return rest
    }
}
