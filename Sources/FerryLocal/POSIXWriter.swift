import CFerry
import FerryCore
import Glibc
import Synchronization

/// Writes one file as an unnamed `O_TMPFILE` inode in its final directory (or, where the
/// file system cannot, under a temporary name), mode 0600, then applies ownership, mode,
/// xattrs and times to the descriptor and links (or renames) it into place.
final class POSIXWriter: EntryWriter, @unchecked Sendable {
    let parent: FileDescriptor
    let file: FileDescriptor
    /// nil: the file is an unnamed `O_TMPFILE` inode until commit links it.
    let temporaryName: [UInt8]?
    let path: EntryPath
    let location: POSIXLocation
    private let finished = Atomic<Bool>(false)
    /// The end of the furthest write, so commit knows whether a trailing hole needs `ftruncate`.
    private let end = Atomic<Int64>(0)

    let metadata: FileMetadata
    let attributes: [ExtendedAttribute]?
    let selection: MetadataSelection
    /// What an earlier writer of the same file left (``ResumableWriting``): removed when this
    /// one commits or aborts.
    let leftover: [UInt8]?
    /// Lets go of the resumable temporary's names when this writer is done with them.
    let release: (@Sendable () -> Void)?

    init(
        parent: FileDescriptor, file: FileDescriptor, temporaryName: [UInt8]?, path: EntryPath, location: POSIXLocation,
        metadata: FileMetadata, attributes: [ExtendedAttribute]?, selection: MetadataSelection, leftover: [UInt8]? = nil,
        release: (@Sendable () -> Void)? = nil
    ) {
        self.leftover = leftover
        self.release = release
        self.metadata = metadata
        self.attributes = attributes
        self.selection = selection
        self.parent = parent
        self.file = file
        self.temporaryName = temporaryName
        self.path = path
        self.location = location
    }

    deinit {
        if !finished.load(ordering: .relaxed), let temporaryName {
            _ = Sys.withCString(temporaryName) { unlinkat(parent.fd, $0, 0) }
        }
        release?()
    }

    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) async throws {
        guard bytes.count > 0 else { return }
        if !FileIO.pwriteFully(file.fd, bytes, offset) { throw location.fail("pwrite", path) }
        end.max(offset + Int64(bytes.count), ordering: .relaxed)
    }

    func commit() async throws -> [String] {
        if end.load(ordering: .relaxed) != metadata.size {
            guard ftruncate(file.fd, off_t(metadata.size)) == 0 else { throw location.fail("ftruncate", path) }
        }
        try location.commit(
            file.fd, in: parent, temporaryName: temporaryName, path, metadata: metadata, attributes: attributes, selection: selection)
        finished.store(true, ordering: .relaxed)
        removeLeftover()
        return []
    }

    /// The same descriptor (opened read-write with `O_NOATIME`, so reading back leaves the
    /// atime just set), now under the final name.
    func committedReader() async throws -> (any EntryReader)? {
        guard finished.load(ordering: .relaxed) else { return nil }
        return POSIXReader(fd: file, metadata: metadata, path: path, location: location)
    }

    func abort() async {
        if !finished.exchange(true, ordering: .relaxed), let temporaryName {
            _ = Sys.withCString(temporaryName) { unlinkat(parent.fd, $0, 0) }
            removeLeftover()
        }
    }

    private func removeLeftover() {
        if let leftover { _ = Sys.withCString(leftover) { unlinkat(parent.fd, $0, 0) } }
    }
}

/// Applying metadata: owner first (chown clears setuid/setgid), then mode, xattrs (ACLs,
/// capabilities, which chown would clear), then times last (every other change moves ctime only).
enum POSIXMetadata {
    /// - Parameter checkAfter: for a new file created with its final mode by its owner:
    ///   assume owner and mode hold, set xattrs and times, then `fstat` once; only where
    ///   owner or mode do not hold (a squashing server, a setgid directory, a default ACL)
    ///   is everything applied again in order. One `fstat` instead of two changes of the
    ///   inode, and that `fstat`, taken after the last change, is returned: the metadata
    ///   that arrived, for verification. Otherwise returns nil.
    @discardableResult
    static func apply(
        fd: Int32, metadata: FileMetadata, selection: MetadataSelection, attributes: [ExtendedAttribute]?,
        location: POSIXLocation, path: EntryPath, checkAfter: Bool = false
    ) throws(LocalError) -> Glibc.stat? {
        guard checkAfter else {
            try applyInOrder(fd: fd, metadata: metadata, selection: selection, attributes: attributes, location: location, path: path)
            return nil
        }
        try setAttributesAndTimes(fd: fd, metadata: metadata, selection: selection, attributes: attributes, location: location, path: path)
        var st = Glibc.stat()
        guard fstat(fd, &st) == 0 else { throw location.fail("fstat", path) }
        let ownerHolds = (!selection.uid || st.st_uid == metadata.uid) && (!selection.gid || st.st_gid == metadata.gid)
        let modeHolds = !selection.permissions || UInt32(st.st_mode) & 0o7777 == metadata.permissions & 0o7777
        if ownerHolds && modeHolds { return st }
        // chown clears setuid/setgid and file capabilities: all of it again, in order.
        try applyInOrder(fd: fd, metadata: metadata, selection: selection, attributes: attributes, location: location, path: path)
        guard fstat(fd, &st) == 0 else { throw location.fail("fstat", path) }
        return st
    }

    private static func applyInOrder(
        fd: Int32, metadata: FileMetadata, selection: MetadataSelection, attributes: [ExtendedAttribute]?,
        location: POSIXLocation, path: EntryPath
    ) throws(LocalError) {
        if selection.uid || selection.gid {
            let uid = selection.uid ? metadata.uid : UInt32.max
            let gid = selection.gid ? metadata.gid : UInt32.max
            if fchown(fd, uid, gid) != 0 { throw location.fail("fchown", path) }
        }
        if selection.permissions, fchmod(fd, mode_t(metadata.permissions)) != 0 { throw location.fail("fchmod", path) }
        try setAttributesAndTimes(fd: fd, metadata: metadata, selection: selection, attributes: attributes, location: location, path: path)
    }

    /// xattrs (ACLs, capabilities), then times last (every other change moves ctime only).
    private static func setAttributesAndTimes(
        fd: Int32, metadata: FileMetadata, selection: MetadataSelection, attributes: [ExtendedAttribute]?,
        location: POSIXLocation, path: EntryPath
    ) throws(LocalError) {
        if let attributes, selection.extendedAttributes {
            try replaceAttributes(.descriptor(fd), attributes, location: location, path: path)
        }
        if selection.mtime || selection.atime {
            if Sys.withTimes(metadata, selection) { futimens(fd, $0) } != 0 { throw location.fail("futimens", path) }
        }
    }

    /// Sets `attributes` on `target` and removes any attribute not among them.
    static func replaceAttributes(
        _ target: XattrTarget, _ attributes: [ExtendedAttribute], location: POSIXLocation, path: EntryPath
    ) throws(LocalError) {
        let existing = Sys.xattrs(target) ?? []
        let wanted = Set(attributes.map(\.name))
        for old in existing where !wanted.contains(old.name) {
            _ = Sys.withCString(old.name) { target.remove($0) }
        }
        for attr in attributes where !existing.contains(attr) {
            let r = Sys.withCString(attr.name) { name in
                attr.value.withUnsafeBytes { target.set(name, $0.baseAddress, $0.count) }
            }
            if r != 0 { throw location.fail(target.call("setxattr \(String(decoding: attr.name, as: UTF8.self))"), path) }
        }
    }
}
