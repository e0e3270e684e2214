import FerryCore

/// The byte form of a remote call's arguments and results: little-endian integers,
/// LEB128 lengths, raw byte strings (names are bytes, never re-encoded), one tag byte for
/// optionals. Compact enough that a listing of 20,000 entries is about 1.5 MB.
public struct WireWriter: Sendable {
    public private(set) var bytes: [UInt8] = []

    public init(capacity: Int = 64) { bytes.reserveCapacity(capacity) }

    public mutating func u8(_ v: UInt8) { bytes.append(v) }
    public mutating func bool(_ v: Bool) { bytes.append(v ? 1 : 0) }

    /// An unsigned LEB128 varint.
    public mutating func uvarint(_ v: UInt64) {
        var v = v
        while v >= 0x80 {
            bytes.append(UInt8(v & 0x7f) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    /// A signed integer, zigzag-encoded.
    public mutating func varint(_ v: Int64) { uvarint(UInt64(bitPattern: (v << 1) ^ (v >> 63))) }

    public mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }

    public mutating func data(_ b: [UInt8]) {
        uvarint(UInt64(b.count))
        bytes.append(contentsOf: b)
    }

    public mutating func data(_ b: UnsafeRawBufferPointer) {
        uvarint(UInt64(b.count))
        bytes.append(contentsOf: b)
    }

    public mutating func string(_ s: String) { data(Array(s.utf8)) }

    public mutating func optional<T>(_ v: T?, _ write: (inout WireWriter, T) -> Void) {
        if let v {
            bytes.append(1)
            write(&self, v)
        } else {
            bytes.append(0)
        }
    }

    public mutating func array<T>(_ a: [T], _ write: (inout WireWriter, T) -> Void) {
        uvarint(UInt64(a.count))
        for v in a { write(&self, v) }
    }
}

/// Reads what ``WireWriter`` wrote; a short or malformed message throws
/// ``RemoteError/malformed``, never traps.
public struct WireReader {
    let bytes: [UInt8]
    var at = 0

    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    public var isAtEnd: Bool { at >= bytes.count }

    public mutating func u8() throws(RemoteError) -> UInt8 {
        guard at < bytes.count else { throw RemoteError.malformed("a message ended early") }
        defer { at += 1 }
        return bytes[at]
    }

    public mutating func bool() throws(RemoteError) -> Bool { try u8() != 0 }

    public mutating func uvarint() throws(RemoteError) -> UInt64 {
        var v: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let b = try u8()
            guard shift < 64 else { throw RemoteError.malformed("a varint longer than 64 bits") }
            v |= UInt64(b & 0x7f) << shift
            if b < 0x80 { return v }
            shift += 7
        }
    }

    public mutating func varint() throws(RemoteError) -> Int64 {
        let u = try uvarint()
        return Int64(bitPattern: (u >> 1) ^ (0 &- (u & 1)))
    }

    public mutating func u64() throws(RemoteError) -> UInt64 {
        guard at + 8 <= bytes.count else { throw RemoteError.malformed("a message ended early") }
        var v: UInt64 = 0
        for i in 0..<8 { v |= UInt64(bytes[at + i]) << (8 * UInt64(i)) }
        at += 8
        return v
    }

    public mutating func count() throws(RemoteError) -> Int {
        let n = try uvarint()
        guard n <= UInt64(bytes.count - at) else { throw RemoteError.malformed("a length of \(n) beyond the message's end") }
        return Int(n)
    }

    public mutating func data() throws(RemoteError) -> [UInt8] {
        let n = try count()
        defer { at += n }
        return Array(bytes[at..<(at + n)])
    }

    /// A byte string copied straight into memory of its own (the caller deallocates it).
    public mutating func copiedData() throws(RemoteError) -> UnsafeMutableRawBufferPointer {
        let n = try count()
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(n, 1), alignment: 16)
        bytes.withUnsafeBytes { buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[at..<(at + n)])) }
        at += n
        return UnsafeMutableRawBufferPointer(rebasing: buffer[0..<n])
    }

    public mutating func string() throws(RemoteError) -> String { String(decoding: try data(), as: UTF8.self) }

    public mutating func optional<T>(_ read: (inout WireReader) throws(RemoteError) -> T) throws(RemoteError) -> T? {
        try u8() == 0 ? nil : try read(&self)
    }

    public mutating func array<T>(_ read: (inout WireReader) throws(RemoteError) -> T) throws(RemoteError) -> [T] {
        let n = try uvarint()
        guard n <= UInt64(bytes.count - at) else { throw RemoteError.malformed("a count of \(n) beyond the message's end") }
        var out: [T] = []
        out.reserveCapacity(Int(n))
        for _ in 0..<n { out.append(try read(&self)) }
        return out
    }
}

// MARK: the core types

extension WireWriter {
    mutating func path(_ p: EntryPath) { data(p.bytes) }

    mutating func timestamp(_ t: Timestamp) {
        varint(t.seconds)
        uvarint(UInt64(UInt32(bitPattern: t.nanoseconds)))
    }

    mutating func metadata(_ m: FileMetadata) {
        uvarint(UInt64(m.permissions))
        uvarint(UInt64(m.uid))
        uvarint(UInt64(m.gid))
        timestamp(m.mtime)
        timestamp(m.atime)
        timestamp(m.ctime)
        varint(m.size)
        optional(m.allocatedBytes) { $0.varint($1) }
        uvarint(m.deviceNumber)
        optional(m.fileID) { w, id in
            w.uvarint(id.device)
            w.uvarint(id.inode)
        }
        uvarint(UInt64(m.linkCount))
    }

    mutating func entry(_ e: Entry) {
        data(e.name)
        u8(e.kind.rawValue)
        metadata(e.metadata)
        optional(e.symlinkTarget) { $0.data($1) }
        optional(e.content) { w, c in
            w.optional(c.tag) { w, t in
                w.u64(t.high)
                w.u64(t.low)
                w.uvarint(UInt64(t.parts))
            }
            w.bool(c.mtimeIsStandIn)
            w.optional(c.writtenFromMtime) { $0.timestamp($1) }
        }
    }

    mutating func selection(_ s: MetadataSelection) {
        var bits: UInt8 = 0
        for (i, on) in [s.mtime, s.atime, s.ownership, s.uid, s.gid, s.permissions, s.extendedAttributes].enumerated() where on {
            bits |= 1 << UInt8(i)
        }
        u8(bits)
    }

    mutating func attributes(_ a: [ExtendedAttribute]) {
        array(a) { w, x in
            w.data(x.name)
            w.data(x.value)
        }
    }

    mutating func kind(_ k: EntryKind) { u8(k.rawValue) }

    /// What a new file's writer is made from: path, metadata, attributes and selection.
    mutating func creating(_ path: EntryPath, _ metadata: FileMetadata, _ attributes: [ExtendedAttribute]?, _ selection: MetadataSelection) {
        self.path(path)
        self.metadata(metadata)
        optional(attributes) { $0.attributes($1) }
        self.selection(selection)
    }

    /// An entry's path, kind, metadata and selection (setMetadata, makeSpecial).
    mutating func placed(_ path: EntryPath, _ kind: EntryKind, _ metadata: FileMetadata, _ selection: MetadataSelection) {
        self.path(path)
        self.kind(kind)
        self.metadata(metadata)
        self.selection(selection)
    }
}

extension WireReader {
    /// A path, checked like every path a location accepts: a peer's `..` or absolute path
    /// never reaches the location.
    mutating func path() throws(RemoteError) -> EntryPath {
        let bytes = try data()
        guard let p = EntryPath(checking: bytes) else {
            throw RemoteError.malformed("the path \(EntryPath(validatedBytes: bytes)) could leave the location's root")
        }
        return p
    }

    /// A name within a directory (one safe component).
    mutating func name() throws(RemoteError) -> [UInt8] {
        let bytes = try data()
        guard EntryPath.isSafeName(bytes) else { throw RemoteError.malformed("a name that is no single safe path component") }
        return bytes
    }

    mutating func timestamp() throws(RemoteError) -> Timestamp {
        let s = try varint()
        let n = try uvarint()
        return Timestamp(seconds: s, nanoseconds: Int32(bitPattern: UInt32(truncatingIfNeeded: n)))
    }

    mutating func metadata() throws(RemoteError) -> FileMetadata {
        let permissions = UInt32(truncatingIfNeeded: try uvarint())
        let uid = UInt32(truncatingIfNeeded: try uvarint())
        let gid = UInt32(truncatingIfNeeded: try uvarint())
        let mtime = try timestamp(), atime = try timestamp(), ctime = try timestamp()
        let size = try varint()
        let allocated = try optional { (r: inout WireReader) throws(RemoteError) in try r.varint() }
        let device = try uvarint()
        let fileID = try optional { (r: inout WireReader) throws(RemoteError) in FileID(device: try r.uvarint(), inode: try r.uvarint()) }
        let links = UInt32(truncatingIfNeeded: try uvarint())
        return FileMetadata(permissions: permissions, uid: uid, gid: gid, mtime: mtime, atime: atime, ctime: ctime, size: size,
                            allocatedBytes: allocated, deviceNumber: device, fileID: fileID, linkCount: links)
    }

    mutating func kind() throws(RemoteError) -> EntryKind {
        let raw = try u8()
        guard let k = EntryKind(rawValue: raw) else { throw RemoteError.malformed("an entry kind \(raw) Ferry does not know") }
        return k
    }

    mutating func entry() throws(RemoteError) -> Entry {
        let name = try data()
        let kind = try kind()
        let metadata = try metadata()
        let target = try optional { (r: inout WireReader) throws(RemoteError) in try r.data() }
        var e = Entry(name: name, kind: kind, metadata: metadata, symlinkTarget: target)
        e.content = try optional { (r: inout WireReader) throws(RemoteError) -> ContentIdentity in
            let tag = try r.optional { (r: inout WireReader) throws(RemoteError) in
                ContentTag(high: try r.u64(), low: try r.u64(), parts: UInt32(truncatingIfNeeded: try r.uvarint()))
            }
            let standIn = try r.bool()
            let written = try r.optional { (r: inout WireReader) throws(RemoteError) in try r.timestamp() }
            return ContentIdentity(tag: tag, mtimeIsStandIn: standIn, writtenFromMtime: written)
        }
        return e
    }

    mutating func selection() throws(RemoteError) -> MetadataSelection {
        let bits = try u8()
        var s = MetadataSelection()
        s.mtime = bits & 1 != 0
        s.atime = bits & 2 != 0
        s.ownership = bits & 4 != 0
        s.uid = bits & 8 != 0
        s.gid = bits & 16 != 0
        s.permissions = bits & 32 != 0
        s.extendedAttributes = bits & 64 != 0
        return s
    }

    /// What ``WireWriter/placed(_:_:_:_:)`` wrote.
    mutating func placed() throws(RemoteError) -> (path: EntryPath, kind: EntryKind, metadata: FileMetadata, selection: MetadataSelection) {
        (try path(), try kind(), try metadata(), try selection())
    }

    mutating func attributes() throws(RemoteError) -> [ExtendedAttribute] {
        try array { (r: inout WireReader) throws(RemoteError) in ExtendedAttribute(name: try r.data(), value: try r.data()) }
    }
}
