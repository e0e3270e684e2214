import FerryCore
import Glibc

/// Trees with every kind of entry and metadata Ferry promises to keep, for round-trip tests.
public enum SampleTrees {
    /// Raw `system.posix_acl_access` value: owner rw-, user `uid` rwx, group r--, mask rwx, other r--.
    public static func aclValue(uid: UInt32) -> [UInt8] {
        var out: [UInt8] = []
        func u16(_ v: UInt16) { out += [UInt8(v & 0xff), UInt8(v >> 8)] }
        func u32(_ v: UInt32) { out += [UInt8(v & 0xff), UInt8((v >> 8) & 0xff), UInt8((v >> 16) & 0xff), UInt8(v >> 24)] }
        u32(2)  // POSIX_ACL_XATTR_VERSION
        for (tag, perm, id) in [(UInt16(0x01), UInt16(6), UInt32.max), (0x02, 7, uid), (0x04, 4, UInt32.max), (0x10, 7, UInt32.max), (0x20, 4, UInt32.max)] {
            u16(tag); u16(perm); u32(id)
        }
        return out
    }

    /// A fixed timestamp with a nanosecond part, distinct per `n`.
    public static func time(_ n: Int) -> Timestamp {
        Timestamp(seconds: 1_600_000_000 + Int64(n) * 3_671, nanoseconds: Int32(123_456_789 - n * 1_111))
    }

    /// Builds the rich tree in `tree`: owners, modes with setuid/setgid/sticky, ns times,
    /// symlinks (relative, absolute, dangling, looping), hard links across directories,
    /// a sparse file, empty directories with their own metadata, a FIFO and a device node
    /// (when `devices`; the FIFO with an ACL), xattrs and an ACL, and hard names (non-UTF-8, spaces, newline,
    /// tab, leading dash, 255 bytes).
    public static func rich(_ tree: TestTree, devices: Bool = true) throws {
        try tree.file("plain.txt", Array("hello, ferry\n".utf8))
        try tree.file("empty-file", [])
        try tree.file("dir/owned", TestTree.bytes(10_000, seed: 1), mode: 0o640)
        try tree.chown("dir/owned", uid: 1234, gid: 5678)
        try tree.file("dir/setuid", TestTree.bytes(5_000, seed: 2), mode: 0o4755)
        try tree.file("dir/setgid", TestTree.bytes(300, seed: 3), mode: 0o2711)
        try tree.chown("dir/setuid", uid: 0, gid: 0)
        try tree.chmod("dir/setuid", 0o4755)
        try tree.file("dir/sub/deep/big.bin", TestTree.bytes(3 << 20 | 12_345, seed: 4))
        try tree.directory("sticky", mode: 0o1777)
        try tree.directory("empty-owned", mode: 0o750)
        try tree.chown("empty-owned", uid: 4242, gid: 4343)
        try tree.directory("empty-plain", mode: 0o700)
        try tree.symlink("links/relative", to: "../plain.txt")
        try tree.symlink("links/absolute", to: "/etc/hostname")
        try tree.symlink("links/dangling", to: "does/not/exist")
        try tree.symlink("links/loop-a", to: "loop-b")
        try tree.symlink("links/loop-b", to: "loop-a")
        try tree.chown("links/relative", uid: 77, gid: 88)
        try tree.file("hard/one", TestTree.bytes(20_000, seed: 5))
        try tree.hardLink("hard/two", to: "hard/one")
        try tree.hardLink("dir/three-hard", to: "hard/one")
        try tree.chown("hard/one", uid: 500, gid: 501)
        try tree.sparseFile("sparse.img", size: 64 << 20, data: [(0, TestTree.bytes(4096, seed: 6)), (32 << 20, TestTree.bytes(8192, seed: 7))])
        if devices {
            try tree.fifo("special/fifo", mode: 0o640)
            try tree.deviceNode("special/null-like", character: true, major: 1, minor: 3, mode: 0o666)
            try tree.deviceNode("special/block", character: false, major: 7, minor: 200, mode: 0o660)
            try tree.setXattr("special/fifo", name: "system.posix_acl_access", value: aclValue(uid: 1001))
        }
        try tree.setXattr("plain.txt", name: "user.colour", value: Array("blue".utf8))
        try tree.setXattr("dir", name: "user.dir-note", value: [0, 1, 2, 255])
        try tree.setXattr("dir/owned", name: "system.posix_acl_access", value: aclValue(uid: 1000))
        // Hard names.
        try tree.fileBytes(Array("names/".utf8) + [0x66, 0xff, 0xfe, 0x2e, 0x62, 0x69, 0x6e], TestTree.bytes(10, seed: 8))
        try tree.file("names/with space", [1])
        try tree.file("names/new\nline", [2])
        try tree.file("names/tab\there", [3])
        try tree.file("names/-leading-dash", [4])
        try tree.file("names/" + String(repeating: "n", count: 255), [5])
        try tree.file("names/ünïcödé", [6])
        // Times last, children before their directories.
        var n = 0
        let snapshot = try TreeSnapshot(tree.root)
        for path in snapshot.entries.keys.sorted(by: { $0.depth > $1.depth || ($0.depth == $1.depth && $0 < $1) }) {
            n += 1
            try setTimesBytes(tree, path.bytes, atime: time(n + 1000), mtime: time(n))
        }
    }

    static func setTimesBytes(_ tree: TestTree, _ relative: [UInt8], atime: Timestamp, mtime: Timestamp) throws {
        var times = [timespec(tv_sec: Int(atime.seconds), tv_nsec: Int(atime.nanoseconds)),
                     timespec(tv_sec: Int(mtime.seconds), tv_nsec: Int(mtime.nanoseconds))]
        let full = relative.isEmpty ? Array(tree.root.utf8) : tree.pathBytes(relative)
        let r = TestTree.withCPath(full) { utimensat(AT_FDCWD, $0, &times, AT_SYMLINK_NOFOLLOW) }
        if r != 0 { throw TestTreeError("utimensat: \(String(cString: strerror(errno)))") }
    }

    /// `files` small files of 1–16 KiB spread over `directories` directories (deterministic).
    public static func smallFiles(_ tree: TestTree, files: Int, directories: Int) throws {
        for d in 0..<directories { try tree.directory("d\(d)") }
        for i in 0..<files {
            let size = 1024 + (i &* 7919) % (15 * 1024)
            try tree.file("d\(i % directories)/f\(i)", TestTree.bytes(size, seed: UInt64(i)))
        }
    }
}
