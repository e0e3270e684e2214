import CFerry
import FerryCore
import Glibc
import Synchronization

extension POSIXLocation: ResumableWriting {
    /// The two names a resumable temporary of `key` takes in turn (`.ferry-tmp-1-…` and
    /// `.ferry-tmp-2-…`, the key in letters a–p): temporaries by ``isTemporaryName(_:)``, so
    /// listings hide them and a later run removes what is left. The next writer reads the
    /// one left and writes the other.
    /// The resumable temporaries this process's writers hold (`DEVICE:INODE/NAME` of their
    /// directory and name), both names of a version at once.
    static let resumablesWriting = Mutex<Set<String>>([])

    static func resumableNames(_ key: UInt64) -> [[UInt8]] {
        let letters = stride(from: 60, through: 0, by: -4).map { UInt8(ascii: "a") + UInt8((key >> UInt64($0)) & 0xf) }
        return ["1", "2"].map { temporaryPrefix + Array($0.utf8) + [UInt8(ascii: "-")] + letters }
    }

    /// A writer under a named temporary (an unnamed one dies with the process), and the
    /// larger of what earlier writers of `key` left in the directory, opened for reading.
    public func createResumableFile(
        _ path: EntryPath, key: UInt64, metadata: FileMetadata, attributes: [ExtendedAttribute]?, selection: MetadataSelection
    ) async throws -> (writer: any EntryWriter, partial: (any EntryReader)?) {
        let parent = try parentDirectory(of: path, operation: "open directory")
        let names = POSIXLocation.resumableNames(key)
        // A writer of this process may still hold these names (a retry whose abort has not
        // arrived yet): then this one writes as any other, and does not resume.
        var directory = Glibc.stat()
        guard fstat(parent.fd, &directory) == 0 else { throw fail("fstat", path.parent) }
        let claims = names.map { "\(directory.st_dev):\(directory.st_ino)/" + String(decoding: $0, as: UTF8.self) }
        let claimed = POSIXLocation.resumablesWriting.withLock { writing in
            guard claims.allSatisfy({ !writing.contains($0) }) else { return false }
            writing.formUnion(claims)
            return true
        }
        guard claimed else {
            return (try await createFile(path, metadata: metadata, attributes: attributes, selection: selection), nil)
        }
        let release: @Sendable () -> Void = { POSIXLocation.resumablesWriting.withLock { $0.subtract(claims) } }
        var left: [(name: [UInt8], file: FileDescriptor, size: Int64)] = []
        for name in names {
            let fd = Sys.withCString(name) { openat(parent.fd, $0, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | cferry_O_NOATIME) }
            guard fd >= 0 else { continue }
            let file = FileDescriptor(fd)
            var st = Glibc.stat()
            if fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG, st.st_size > 0 { left.append((name, file, Int64(st.st_size))) }
        }
        let partial = left.max { $0.size < $1.size }
        let target = names.first { $0 != partial?.name }!
        let fd = Sys.withCString(target) {
            openat(parent.fd, $0, O_RDWR | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC | cferry_O_NOATIME, 0o600)
        }
        if fd < 0 {
            release()
            throw fail("create temporary file", path)
        }
        let writer = POSIXWriter(parent: parent, file: FileDescriptor(fd), temporaryName: target, path: path, location: self,
                                 metadata: metadata, attributes: self.attributes(attributes, in: parent, selection: selection),
                                 selection: selection, leftover: partial?.name, release: release)
        let reader = partial.map { p -> any EntryReader in
            var found = metadata
            found.size = p.size
            return POSIXReader(fd: p.file, metadata: found, path: path, location: self)
        }
        return (writer, reader)
    }
}
