import CFerry
import FerryCore
import Glibc

/// Everything Ferry promises to keep about one entry of a POSIX tree, read with raw
/// syscalls (never following symlinks), for comparing what arrived with what left.
public struct SnapshotEntry: Hashable, Sendable, CustomStringConvertible {
    public var kind: EntryKind
    public var permissions: UInt32
    public var uid: UInt32
    public var gid: UInt32
    public var mtime: Timestamp
    public var atime: Timestamp
    /// Moves with any change to the inode: equal ctimes mean nothing was done to it.
    public var ctime: Timestamp
    public var size: Int64
    public var allocatedBytes: Int64
    public var deviceNumber: UInt64
    public var linkCount: UInt32
    public var inode: UInt64
    /// XXH3-128 of a file's content.
    public var checksum: ContentChecksum?
    public var symlinkTarget: [UInt8]?
    public var xattrs: [ExtendedAttribute]

    public var description: String {
        "\(kind) mode=\(String(permissions, radix: 8)) uid=\(uid) gid=\(gid) mtime=\(mtime) size=\(size) links=\(linkCount)"
    }
}

/// A whole tree read into memory (tests only), keyed by relative path bytes.
public struct TreeSnapshot: Sendable {
    public var entries: [EntryPath: SnapshotEntry] = [:]

    /// Reads the tree at `root` (the root itself is stored under ``EntryPath/root``).
    public init(_ root: String) throws {
        var st = stat()
        guard lstat(root, &st) == 0 else { throw TestTreeError("lstat \(root): \(String(cString: strerror(errno)))") }
        entries[.root] = TreeSnapshot.entry(path: root, st: st)
        try walk(Array(root.utf8), .root)
    }

    private mutating func walk(_ absolute: [UInt8], _ relative: EntryPath) throws {
        guard let dir = TestTree.withCPath(absolute, { opendir($0) }) else {
            throw TestTreeError("opendir \(TestTree.stringPath(absolute)): \(String(cString: strerror(errno)))")
        }
        defer { closedir(dir) }
        while let dent = readdir(dir) {
            let name: [UInt8] = withUnsafeBytes(of: dent.pointee.d_name) { raw in
                let b = raw.bindMemory(to: UInt8.self)
                return Array(b[..<(b.firstIndex(of: 0) ?? b.count)])
            }
            if name == [46] || name == [46, 46] { continue }
            let child = absolute + [47] + name
            let path = relative.appending(name)
            var st = stat()
            guard TestTree.withCPath(child, { lstat($0, &st) }) == 0 else {
                throw TestTreeError("lstat \(TestTree.stringPath(child)): \(String(cString: strerror(errno)))")
            }
            entries[path] = TestTree.withCPath(child) { TreeSnapshot.entry(cpath: $0, st: st) }
            if (st.st_mode & S_IFMT) == S_IFDIR { try walk(child, path) }
        }
    }

    static func entry(path: String, st: stat) -> SnapshotEntry {
        TestTree.withCPath(Array(path.utf8)) { entry(cpath: $0, st: st) }
    }

    static func entry(cpath: UnsafePointer<CChar>, st: stat) -> SnapshotEntry {
        let kind = EntryKind(modeTypeBits: UInt32(st.st_mode))!
        var checksum: ContentChecksum?
        var target: [UInt8]?
        if kind == .file {
            let fd = open(cpath, O_RDONLY | O_NOFOLLOW | cferry_O_NOATIME)
            if fd >= 0 {
                let hash = ChecksumState()
                var buffer = [UInt8](repeating: 0, count: 1 << 16)
                while true {
                    let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                    if n <= 0 { break }
                    buffer.withUnsafeBytes { hash.update(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
                }
                close(fd)
                checksum = hash.finalize()
            }
        } else if kind == .symlink {
            var buf = [CChar](repeating: 0, count: 4096)
            let n = readlink(cpath, &buf, buf.count)
            if n >= 0 { target = buf[..<n].map { UInt8(bitPattern: $0) } }
        }
        var xattrs: [ExtendedAttribute] = []
        if kind != .symlink {  // Linux keeps none on symlinks (user.* is refused, ACLs unsupported)
            xattrs = TestTree.xattrs(cpath)
        }
        return SnapshotEntry(
            kind: kind, permissions: UInt32(st.st_mode) & 0o7777, uid: st.st_uid, gid: st.st_gid,
            mtime: Timestamp(seconds: Int64(st.st_mtim.tv_sec), nanoseconds: Int32(st.st_mtim.tv_nsec)),
            atime: Timestamp(seconds: Int64(st.st_atim.tv_sec), nanoseconds: Int32(st.st_atim.tv_nsec)),
            ctime: Timestamp(seconds: Int64(st.st_ctim.tv_sec), nanoseconds: Int32(st.st_ctim.tv_nsec)),
            size: Int64(st.st_size), allocatedBytes: Int64(st.st_blocks) * 512, deviceNumber: UInt64(st.st_rdev),
            linkCount: UInt32(st.st_nlink), inode: UInt64(st.st_ino), checksum: checksum, symlinkTarget: target, xattrs: xattrs)
    }

    /// Differences between two trees: every path missing on one side, and every field of
    /// data and metadata that differs (atime and hard-link grouping included when asked).
    public static func differences(
        _ a: TreeSnapshot, _ b: TreeSnapshot, compareAtime: Bool = true, compareRoot: Bool = true
    ) -> [String] {
        var out: [String] = []
        for (path, x) in a.entries.sorted(by: { $0.key < $1.key }) {
            if path.isRoot && !compareRoot { continue }
            guard let y = b.entries[path] else { out.append("\(path): missing at the destination"); continue }
            func check<T: Equatable>(_ field: String, _ l: T, _ r: T) {
                if l != r { out.append("\(path): \(field) \(l) != \(r)") }
            }
            check("kind", x.kind, y.kind)
            if x.kind != y.kind { continue }
            if x.kind != .symlink { check("mode", String(x.permissions, radix: 8), String(y.permissions, radix: 8)) }
            check("uid", x.uid, y.uid)
            check("gid", x.gid, y.gid)
            check("mtime", x.mtime, y.mtime)
            // Directory atimes move when listed, symlink atimes when their target is read
            // (readlink has no O_NOATIME): only files and special nodes keep theirs.
            if compareAtime && x.kind != .directory && x.kind != .symlink { check("atime", x.atime, y.atime) }
            if x.kind != .directory { check("size", x.size, y.size) }
            check("checksum", x.checksum, y.checksum)
            check("symlink target", x.symlinkTarget, y.symlinkTarget)
            check("device", x.deviceNumber, y.deviceNumber)
            // Bytes, not text: an ACL's values are binary (uid 1000 and 1001 decode alike).
            if x.xattrs != y.xattrs { out.append("\(path): xattrs \(describe(x.xattrs)) != \(describe(y.xattrs))") }
            if x.kind == .file { check("link count", x.linkCount, y.linkCount) }
        }
        for path in b.entries.keys.sorted() where a.entries[path] == nil {
            out.append("\(path): extra at the destination")
        }
        out.append(contentsOf: linkGroupDifferences(a, b))
        return out
    }

    /// Extended attributes named as text, their values in hex.
    static func describe(_ attributes: [ExtendedAttribute]) -> String {
        attributes.map { a in
            String(decoding: a.name, as: UTF8.self) + "=" + a.value.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
        }.joined(separator: ",")
    }

    /// The entries of `before` that are not the same in `after` (missing, or any field
    /// changed: inode, ctime, data, metadata; a directory's atime aside, which a listing
    /// moves), and the paths only `after` has; `except` paths are left out.
    public static func changes(_ before: TreeSnapshot, _ after: TreeSnapshot, except: Set<EntryPath> = []) -> [String] {
        var out: [String] = []
        for (path, x) in before.entries.sorted(by: { $0.key < $1.key }) where !except.contains(path) {
            guard var y = after.entries[path] else { out.append("\(path): gone"); continue }
            if x.kind == .directory && y.kind == .directory { y.atime = x.atime }
            if x != y { out.append("\(path): \(x) ctime=\(x.ctime) inode=\(x.inode) became \(y) ctime=\(y.ctime) inode=\(y.inode)") }
        }
        for path in after.entries.keys.sorted() where before.entries[path] == nil && !except.contains(path) {
            out.append("\(path): new")
        }
        return out
    }

    /// Paths that share an inode on one side must share one on the other.
    static func linkGroupDifferences(_ a: TreeSnapshot, _ b: TreeSnapshot) -> [String] {
        var groups: [UInt64: [EntryPath]] = [:]
        for (path, e) in a.entries where e.kind == .file && e.linkCount > 1 { groups[e.inode, default: []].append(path) }
        var out: [String] = []
        for (_, paths) in groups {
            let inodes = Set(paths.compactMap { b.entries[$0]?.inode })
            if inodes.count > 1 { out.append("hard links \(paths.sorted()) are not one file at the destination") }
        }
        return out
    }
}

/// Failure of a test-tree helper.
public struct TestTreeError: Error, CustomStringConvertible {
    public var description: String
    public init(_ d: String) { description = d }
}
