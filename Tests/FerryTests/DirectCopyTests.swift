import FerryCore
@testable import FerryLocal
import FerryTesting
import Foundation
import Glibc
import Testing

/// The synchronous copier between two POSIX trees that the engine uses for small files: the
/// same bytes, metadata and atomic final name as the reader/writer path, on disk and tmpfs.
@Suite struct DirectCopyTests {
    /// A 10,000-byte file over an existing file, through a 4 KiB buffer (three reads, the
    /// read-back hashed again) and a 64 KiB one (one read, the read-back compared bytewise).
    @Test(arguments: ["/tmp", "/dev/shm"], [4096, 65536])
    func copiesDataMetadataAndReadsBack(base: String, bufferSize: Int) async throws {
        let source = try TestTree(label: "direct-src", base: base)
        let destination = try TestTree(label: "direct-dst", base: base)
        defer { source.remove(); destination.remove() }
        let bytes = TestTree.bytes(10_000, seed: 7)
        try source.file("d/file", bytes, mode: 0o640)
        try source.chown("d/file", uid: 1234, gid: 5678)
        try source.setXattr("d/file", name: "user.colour", value: Array("blue".utf8))
        try source.setTimes("d/file", atime: Timestamp(seconds: 1_600_000_000, nanoseconds: 5),
                            mtime: Timestamp(seconds: 1_500_000_000, nanoseconds: 123_456_789))
        try destination.file("d/file", [9, 9, 9])  // replaced atomically
        let from = try POSIXLocation(path: source.root)
        let to = try POSIXLocation(path: destination.root)
        let path = try #require(EntryPath("d/file"))
        let listed = try #require(try await from.stat(path))

        let copy = try withCopier(from, to, bufferSize: bufferSize) { copier, buffer, hash in
            try copier.copy(path, expected: listed.metadata, selection: .all, buffer: buffer, hash: hash, readBack: true)
        }

        let expected = ChecksumState()
        bytes.withUnsafeBytes { expected.update($0) }
        #expect(!copy.sourceChanged)
        #expect(copy.written == 10_000)
        #expect(copy.checksum == expected.finalize())
        let arrived = try #require(copy.arrived)
        #expect(arrived.checksum == copy.checksum)
        #expect(arrived.metadata.size == 10_000 && arrived.metadata.mtime == listed.metadata.mtime)
        let snapshot = try TreeSnapshot(destination.root)
        let file = try #require(snapshot.entries[path])
        #expect(FileManager.default.contents(atPath: destination.path("d/file")) == Data(bytes))
        #expect(file.permissions == 0o640 && file.uid == 1234 && file.gid == 5678)
        #expect(file.mtime == Timestamp(seconds: 1_500_000_000, nanoseconds: 123_456_789))
        #expect(file.atime == Timestamp(seconds: 1_600_000_000, nanoseconds: 5))
        #expect(file.xattrs == [ExtendedAttribute(name: Array("user.colour".utf8), value: Array("blue".utf8))])
        #expect(snapshot.entries.keys.filter { $0.name.starts(with: Array(".ferry-tmp-".utf8)) } == [])
    }

    /// The bytewise read-back tells a file that differs from what was sent, by one byte or by
    /// a byte more, and names the checksum of what it found.
    @Test func readBackFindsDifferentBytes() throws {
        let tree = try TestTree(label: "direct-readback")
        defer { tree.remove() }
        let sent = TestTree.bytes(5000, seed: 3)
        var changed = sent
        changed[4321] ^= 1
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 65536, alignment: 64)
        defer { buffer.deallocate() }
        let hash = ChecksumState()
        func checksum(_ bytes: [UInt8]) -> ContentChecksum {
            let h = ChecksumState()
            bytes.withUnsafeBytes { h.update($0) }
            return h.finalize()
        }
        for (held, expected) in [(sent, checksum(sent)), (changed, checksum(changed)), (sent + [0], checksum(sent + [0]))] {
            let fd = open(try tree.file("f", held), O_RDONLY)
            defer { close(fd) }
            sent.withUnsafeBytes { buffer.copyMemory(from: $0) }  // the bytes sent, as the copy leaves them
            let found = try POSIXDirectCopier.readBack(
                fd, size: 5000, written: 5000, checksum: checksum(sent), buffer: buffer, hash: hash) {
                LocalError(operation: "pread", path: nil, errno: EIO, root: tree.root)
            }
            #expect(found == expected)
        }
    }

    /// A symlink at the destination path is replaced by the file, never written through:
    /// the file it points to, outside the destination, keeps its bytes.
    @Test func symlinkInTheWayIsReplacedNotFollowed() async throws {
        let source = try TestTree(label: "direct-src")
        let destination = try TestTree(label: "direct-dst")
        let outside = try TestTree(label: "direct-outside")
        defer { source.remove(); destination.remove(); outside.remove() }
        try source.file("f", TestTree.bytes(2000, seed: 5))
        try outside.file("victim", [7, 7, 7])
        try destination.symlink("f", to: outside.path("victim"))
        let from = try POSIXLocation(path: source.root)
        let to = try POSIXLocation(path: destination.root)
        let path = try #require(EntryPath("f"))
        let listed = try #require(try await from.stat(path))

        let copy = try withCopier(from, to, bufferSize: 65536) { copier, buffer, hash in
            try copier.copy(path, expected: listed.metadata, selection: .all, buffer: buffer, hash: hash, readBack: true)
        }

        #expect(!copy.sourceChanged && copy.arrived?.checksum == copy.checksum)
        #expect(FileManager.default.contents(atPath: outside.path("victim")) == Data([7, 7, 7]))
        let arrived = try #require(try TreeSnapshot(destination.root).entries[path])
        let sent = try #require(try TreeSnapshot(source.root).entries[path])
        #expect(arrived.kind == .file && arrived.checksum == sent.checksum)
    }

    /// A source whose size, mtime or ctime moved since it was listed is not committed.
    @Test func changedSourceIsNotCommitted() async throws {
        let source = try TestTree(label: "direct-src")
        let destination = try TestTree(label: "direct-dst")
        defer { source.remove(); destination.remove() }
        try source.file("moving", TestTree.bytes(3000, seed: 1))
        let from = try POSIXLocation(path: source.root)
        let to = try POSIXLocation(path: destination.root)
        let path = try #require(EntryPath("moving"))
        var listed = try #require(try await from.stat(path)).metadata
        listed.ctime = Timestamp(seconds: listed.ctime.seconds - 1, nanoseconds: listed.ctime.nanoseconds)

        let copy = try withCopier(from, to) { copier, buffer, hash in
            try copier.copy(path, expected: listed, selection: .all, buffer: buffer, hash: hash, readBack: true)
        }

        #expect(copy.sourceChanged)
        #expect(copy.arrived == nil)
        #expect(try TreeSnapshot(destination.root).entries.keys.filter { !$0.isRoot } == [], "nothing under any name")
    }

    /// A file the source cannot open is an error naming it, and leaves nothing behind.
    @Test func missingSourceIsAnErrorNamingIt() async throws {
        let source = try TestTree(label: "direct-src")
        let destination = try TestTree(label: "direct-dst")
        defer { source.remove(); destination.remove() }
        try source.file("present", [1])
        let from = try POSIXLocation(path: source.root)
        let to = try POSIXLocation(path: destination.root)
        let present = try #require(EntryPath("present"))
        var listed = try #require(try await from.stat(present)).metadata
        listed.size = 1
        let gone = try #require(EntryPath("gone"))
        #expect {
            try withCopier(from, to) { copier, buffer, hash in
                try copier.copy(gone, expected: listed, selection: .all, buffer: buffer, hash: hash, readBack: false)
            }
        } throws: { error in
            "\(error)".contains("/gone") && "\(error)".contains("No such file")
        }
        #expect(try TreeSnapshot(destination.root).entries.keys.filter { !$0.isRoot } == [])
    }

    private func withCopier<R>(
        _ from: POSIXLocation, _ to: POSIXLocation, bufferSize: Int = 4096,
        _ body: (any DirectFileCopier, UnsafeMutableRawBufferPointer, ChecksumState) throws -> R
    ) throws -> R {
        let found = from.directCopier(to: to)
        let copier = try #require(found, "two POSIX trees copy directly")
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bufferSize, alignment: 64)
        defer { buffer.deallocate() }
        return try body(copier, buffer, ChecksumState())
    }
}
