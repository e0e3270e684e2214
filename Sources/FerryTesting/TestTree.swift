import CFerry
import FerryCore
import Glibc

/// Builds trees for tests with raw syscalls: files with given bytes, owners, modes and
/// nanosecond times, symlinks, hard links, sparse files, FIFOs, device nodes, xattrs.
/// Names are bytes, so non-UTF-8 names can be made.
public struct TestTree: Sendable {
    /// The tree's root directory.
    public let root: String

    /// Makes a fresh directory under `base` (default `/tmp`) named `ferry-test-<label>-<random>`.
    public init(label: String, base: String = "/tmp") throws {
        var template = Array("\(base)/ferry-test-\(label)-XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw TestTreeError("mkdtemp in \(base): \(String(cString: strerror(errno)))")
        }
        root = String(cString: made)
    }

    /// Wraps an existing directory.
    public init(existing root: String) { self.root = root }

    public func path(_ relative: String) -> String { relative.isEmpty ? root : root + "/" + relative }
    public func pathBytes(_ relative: [UInt8]) -> [UInt8] { Array(root.utf8) + [47] + relative }

    static func withCPath<R>(_ bytes: [UInt8], _ body: (UnsafePointer<CChar>) throws -> R) rethrows -> R {
        var b = bytes
        b.append(0)
        return try b.withUnsafeBufferPointer { p in
            try p.baseAddress!.withMemoryRebound(to: CChar.self, capacity: p.count) { try body($0) }
        }
    }

    static func stringPath(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

    private func check(_ r: Int32, _ what: String) throws {
        if r != 0 { throw TestTreeError("\(what): \(String(cString: strerror(errno)))") }
    }

    /// Writes a file (creating parent directories) with `bytes`.
    @discardableResult
    public func file(_ relative: String, _ bytes: [UInt8], mode: UInt32 = 0o644) throws -> String {
        try fileBytes(Array(relative.utf8), bytes, mode: mode)
        return path(relative)
    }

    /// Writes a file whose name is raw bytes.
    public func fileBytes(_ relative: [UInt8], _ bytes: [UInt8], mode: UInt32 = 0o644) throws {
        let full = pathBytes(relative)
        try makeParents(full)
        let fd = TestTree.withCPath(full) { open($0, O_WRONLY | O_CREAT | O_TRUNC, mode) }
        if fd < 0 { throw TestTreeError("open \(TestTree.stringPath(full)): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + done, bytes.count - done) }
            if n <= 0 { throw TestTreeError("write: \(String(cString: strerror(errno)))") }
            done += n
        }
        try check(fchmod(fd, mode_t(mode)), "fchmod")
    }

    private func makeParents(_ full: [UInt8]) throws {
        var prefix: [UInt8] = []
        let parts = full.split(separator: 47, omittingEmptySubsequences: false)
        for part in parts.dropLast() {
            prefix += part
            if !prefix.isEmpty { _ = TestTree.withCPath(prefix) { mkdir($0, 0o755) } }
            prefix.append(47)
        }
    }

    /// Deterministic pseudo-random bytes (xorshift), for content that does not compress.
    public static func bytes(_ count: Int, seed: UInt64) -> [UInt8] {
        var x = seed &* 0x9E3779B97F4A7C15 | 1
        var out = [UInt8](repeating: 0, count: count)
        out.withUnsafeMutableBytes { raw in
            var i = 0
            while i < count {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17
                withUnsafeBytes(of: x) { w in
                    for k in 0..<min(8, count - i) { raw[i + k] = w[k] }
                }
                i += 8
            }
        }
        return out
    }

    @discardableResult
    public func directory(_ relative: String, mode: UInt32 = 0o755) throws -> String {
        let full = Array(path(relative).utf8)
        try makeParents(full + [47, 120])
        try check(TestTree.withCPath(full) { Glibc.chmod($0, mode_t(mode)) }, "chmod \(relative)")
        return path(relative)
    }

    public func symlink(_ relative: String, to target: String) throws {
        try makeParents(Array(path(relative).utf8))
        try check(Glibc.symlink(target, path(relative)), "symlink \(relative)")
    }

    public func hardLink(_ relative: String, to existing: String) throws {
        try makeParents(Array(path(relative).utf8))
        try check(link(path(existing), path(relative)), "link \(relative)")
    }

    /// A sparse file: `size` bytes with data only at the given offsets.
    public func sparseFile(_ relative: String, size: Int64, data: [(offset: Int64, bytes: [UInt8])]) throws {
        try makeParents(Array(path(relative).utf8))
        let fd = open(path(relative), O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        if fd < 0 { throw TestTreeError("open \(relative): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        for (offset, bytes) in data {
            _ = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(offset)) }
        }
        try check(ftruncate(fd, off_t(size)), "ftruncate")
    }

    public func fifo(_ relative: String, mode: UInt32 = 0o644) throws {
        try makeParents(Array(path(relative).utf8))
        try check(mkfifo(path(relative), mode_t(mode)), "mkfifo \(relative)")
    }

    public func deviceNode(_ relative: String, character: Bool, major: UInt32, minor: UInt32, mode: UInt32 = 0o600) throws {
        try makeParents(Array(path(relative).utf8))
        let type: UInt32 = character ? 0o020000 : 0o060000
        try check(mknod(path(relative), mode_t(type | mode), dev_t(cferry_makedev(major, minor))), "mknod \(relative)")
    }

    /// Sets owner without following symlinks.
    public func chown(_ relative: String, uid: UInt32, gid: UInt32) throws {
        try check(lchown(path(relative), uid, gid), "lchown \(relative)")
    }

    public func chmod(_ relative: String, _ mode: UInt32) throws {
        try check(Glibc.chmod(path(relative), mode_t(mode)), "chmod \(relative)")
    }

    /// Sets atime and mtime to the nanosecond, without following symlinks.
    public func setTimes(_ relative: String, atime: Timestamp, mtime: Timestamp) throws {
        var times = [timespec(tv_sec: Int(atime.seconds), tv_nsec: Int(atime.nanoseconds)),
                     timespec(tv_sec: Int(mtime.seconds), tv_nsec: Int(mtime.nanoseconds))]
        try check(utimensat(AT_FDCWD, path(relative), &times, AT_SYMLINK_NOFOLLOW), "utimensat \(relative)")
    }

    public func setXattr(_ relative: String, name: String, value: [UInt8]) throws {
        let r = value.withUnsafeBytes { cferry_lsetxattr(path(relative), name, $0.baseAddress, $0.count, 0) }
        try check(r, "setxattr \(name) on \(relative)")
    }

    static func xattrs(_ cpath: UnsafePointer<CChar>) -> [ExtendedAttribute] {
        var size = cferry_llistxattr(cpath, nil, 0)
        guard size > 0 else { return [] }
        var names = [CChar](repeating: 0, count: size)
        size = cferry_llistxattr(cpath, &names, size)
        guard size > 0 else { return [] }
        var out: [ExtendedAttribute] = []
        for raw in names[..<size].split(separator: 0) {
            let name = Array(raw) + [0]
            let len = cferry_lgetxattr(cpath, name, nil, 0)
            if len < 0 { continue }
            var value = [UInt8](repeating: 0, count: max(len, 1))
            let got = value.withUnsafeMutableBytes { cferry_lgetxattr(cpath, name, $0.baseAddress, len) }
            if got >= 0 { out.append(ExtendedAttribute(name: raw.map { UInt8(bitPattern: $0) }, value: Array(value[..<got]))) }
        }
        return out.sorted { $0.name.lexicographicallyPrecedes($1.name) }
    }

    /// Removes the tree (best effort; `rm -rf`).
    public func remove() {
        var pid = pid_t()
        let args: [String] = ["/bin/rm", "-rf", root]
        var argv: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) }
        argv.append(nil)
        defer { for a in argv { free(a) } }
        if posix_spawn(&pid, "/bin/rm", nil, nil, &argv, environ) == 0 {
            var status: Int32 = 0
            waitpid(pid, &status, 0)
        }
    }
}
