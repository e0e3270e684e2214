import FerryCore
import FerryTesting
import Foundation
import Testing

/// The tree comparer every round-trip test rests on must see what it names.
@Suite struct TreeSnapshotTests {
    /// `system.posix_acl_access` granting `uid` read-write (the kernel's binary format:
    /// version 2, then tag/perm/id entries).
    static func acl(uid: UInt32) -> [UInt8] {
        var b: [UInt8] = [2, 0, 0, 0]
        func entry(_ tag: UInt16, _ perm: UInt16, _ id: UInt32) {
            b += [UInt8(tag & 0xff), UInt8(tag >> 8), UInt8(perm & 0xff), UInt8(perm >> 8)]
            b += [UInt8(id & 0xff), UInt8(id >> 8 & 0xff), UInt8(id >> 16 & 0xff), UInt8(id >> 24)]
        }
        entry(0x01, 6, .max)  // USER_OBJ
        entry(0x02, 6, uid)   // USER
        entry(0x04, 4, .max)  // GROUP_OBJ
        entry(0x10, 6, .max)  // MASK
        entry(0x20, 4, .max)  // OTHER
        return b
    }

    @Test func aclsNamingDifferentUsersDiffer() throws {
        let a = try TestTree(label: "snap-a"), b = try TestTree(label: "snap-b")
        defer { a.remove(); b.remove() }
        for (tree, uid) in [(a, UInt32(1000)), (b, UInt32(1001))] {
            try tree.file("f", [1])
            try tree.setXattr("f", name: "system.posix_acl_access", value: Self.acl(uid: uid))
            try tree.setTimes("f", atime: Timestamp(seconds: 1, nanoseconds: 0), mtime: Timestamp(seconds: 1, nanoseconds: 0))
            try tree.setTimes("", atime: Timestamp(seconds: 1, nanoseconds: 0), mtime: Timestamp(seconds: 1, nanoseconds: 0))
        }
        let diffs = TreeSnapshot.differences(try TreeSnapshot(a.root), try TreeSnapshot(b.root), compareAtime: false, compareRoot: false)
        #expect(diffs.count == 1 && diffs.first?.contains("xattrs") == true, "\(diffs)")
        #expect(diffs.first?.contains("e8030000") == true && diffs.first?.contains("e9030000") == true, "uid 1000 and 1001 in hex: \(diffs)")
    }
}
