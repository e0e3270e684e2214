/// What a location can do beyond the required core, folded once into a value the engine
/// reads (the engine never type-tests a location in a hot loop).
public struct Capabilities: Sendable, Hashable {
    /// Metadata can be changed without rewriting data.
    public var setsMetadataInPlace = false
    /// Set by ``Features`` from conformance to ``SymlinkWriting`` (what a location says is not read).
    public var symlinks = false
    /// Set by ``Features`` from conformance to ``HardLinkWriting``.
    public var hardLinks = false
    /// FIFOs and device nodes.
    /// Set by ``Features`` from conformance to ``SpecialFileWriting``.
    public var deviceNodes = false
    /// Holes can be left unwritten (``EntryWriter/write(_:at:)`` may skip ranges).
    public var sparseFiles = false
    public var ownership = false
    /// Permission bits including setuid/setgid/sticky.
    public var permissions = false
    /// Set by ``Features`` from conformance to ``ExtendedAttributeStoring``.
    public var extendedAttributes = false
    /// Finest mtime the location keeps, in nanoseconds (1 = ns, 1_000_000 = ms).
    public var mtimePrecisionNanoseconds: Int64 = 1
    public var atime = false
    public var caseSensitive = true
    /// Reading reports allocated extents (``EntryReader/dataExtents()``).
    public var reportsExtents = false
    /// ``Location/listForCopying(_:reading:)`` fetches the contents of small files with
    /// their metadata; the engine then lists the destination first, to name what it has.
    public var fetchesContentsWhileListing = false
    /// The location keeps the metadata written with an entry. False for an S3-compatible
    /// server known to drop user metadata: metadata-only updates would be lost there, so
    /// none are planned (what a copy could not store is still reported).
    public var keepsMetadata = true
    /// Every operation runs to completion on the calling thread (blocking system calls, no
    /// waiting on a server): a worker handed many small items at once holds back no other
    /// request, so the engine hands them out in large batches when both sides do.
    public var neverSuspends = false
    /// Items the engine keeps in flight when this location is one end and no number is
    /// given (the larger of the two ends'): a file server across a network wants many, as
    /// each item waits on round trips, not on a CPU.
    public var itemsInFlight = 16

    public init() {}

    /// Everything a POSIX file system can hold, with nanosecond mtimes; a location
    /// switches off what it lacks.
    public static var everything: Capabilities {
        var c = Capabilities()
        c.setsMetadataInPlace = true
        c.symlinks = true
        c.hardLinks = true
        c.deviceNodes = true
        c.sparseFiles = true
        c.ownership = true
        c.permissions = true
        c.extendedAttributes = true
        c.atime = true
        c.reportsExtents = true
        return c
    }
}

/// A byte range holding data (outside it, a sparse file reads as zeros).
public struct Extent: Sendable, Hashable {
    public var offset: Int64
    public var length: Int64
    public init(offset: Int64, length: Int64) {
        self.offset = offset
        self.length = length
    }
}

/// Which metadata to apply (derived from the task options).
public struct MetadataSelection: Sendable, Hashable {
    public var mtime = true
    public var atime = true
    public var ownership = true
    public var uid = true
    public var gid = true
    public var permissions = true
    public var extendedAttributes = true
    public init() {}
    public static let all = MetadataSelection()
}

/// One end of a transfer: a POSIX tree, a bucket prefix, an image. Implementations are
/// value-like and `Sendable`; all paths are relative to the location's root and are
/// never resolved outside it.
///
/// This is the core every location writes (nine members; `capabilities` has a default).
/// What a location can do beyond it is a capability protocol it conforms to
/// (``SymlinkWriting``, ``ExtendedAttributeStoring``, ``ServerSideCopying``, …); the engine
/// folds them once per execution into ``Features``, where the capability *is* the function
/// (rclone's `Features.Fill`), so a flag and a method cannot disagree.
public protocol Location: Sendable {
    /// The location's URI, e.g. `file:///data`.
    var uri: String { get }
    /// What the location's entries can hold (ownership, permissions, times, sparse files…).
    var capabilities: Capabilities { get }
    /// Lists one directory, sorted by name bytes; nil if `directory` does not exist or is
    /// not a directory.
    func list(_ directory: EntryPath) async throws -> Listing?
    /// Stats one path without following a final symlink; nil if it does not exist.
    func stat(_ path: EntryPath) async throws -> Entry?
    /// Opens a file for reading; `expected` is what the listing said (used to notice change).
    func openForReading(_ path: EntryPath, expected: Entry) async throws -> any EntryReader
    /// Starts writing a file of `metadata.size` bytes that will carry `metadata` (as chosen
    /// by `selection`) and `attributes`; it appears at `path` only when
    /// ``EntryWriter/commit()`` succeeds. (Object stores need the metadata up front.)
    func createFile(
        _ path: EntryPath, metadata: FileMetadata, attributes: [ExtendedAttribute]?, selection: MetadataSelection
    ) async throws -> any EntryWriter
    /// Creates a directory (or leaves an existing one); metadata is applied later.
    func makeDirectory(_ path: EntryPath) async throws
    /// Applies metadata to an existing entry without touching its data.
    func setMetadata(_ path: EntryPath, kind: EntryKind, metadata: FileMetadata, selection: MetadataSelection) async throws
    /// Removes an entry; a directory is removed with everything below it.
    func remove(_ path: EntryPath, kind: EntryKind) async throws
}

extension Location {
    /// A location that says nothing holds no more than ``Capabilities/init()`` says.
    public var capabilities: Capabilities { Capabilities() }
}

/// Symlinks: created or replaced with their metadata.
public protocol SymlinkWriting: Location {
    func makeSymlink(_ path: EntryPath, target: [UInt8], metadata: FileMetadata, selection: MetadataSelection) async throws
}

/// Hard links: `path` created or replaced as a link to `existing`.
public protocol HardLinkWriting: Location {
    func makeHardLink(_ path: EntryPath, to existing: EntryPath) async throws
}

/// FIFOs and device nodes, created or replaced with their metadata.
public protocol SpecialFileWriting: Location {
    func makeSpecial(_ path: EntryPath, kind: EntryKind, metadata: FileMetadata, selection: MetadataSelection) async throws
}

/// Extended attributes (POSIX ACLs among them) of files, directories, FIFOs and devices.
public protocol ExtendedAttributeStoring: Location {
    /// The entry's attributes (empty for symlinks).
    func extendedAttributes(_ path: EntryPath, kind: EntryKind) async throws -> [ExtendedAttribute]
    /// Replaces the entry's attributes with `attributes` (others are removed).
    func setExtendedAttributes(_ path: EntryPath, kind: EntryKind, _ attributes: [ExtendedAttribute]) async throws
}

/// A huge directory listed without holding it in memory.
public protocol RunListing: Location {
    /// ``Location/list(_:)`` as runs of at most about `runSize` entries, each sorted by name
    /// bytes (every entry in one run; runs in no order among themselves); the listing
    /// returned carries the rest (temporaries, unusable names) and no entries.
    func listInRuns(_ directory: EntryPath, runSize: Int, _ deliver: ([Entry]) throws -> Void) async throws -> Listing?
}

/// Small files' contents fetched in the request that lists their metadata (an object
/// store's GET in place of a HEAD).
public protocol PrefetchingListing: Location {
    /// ``Location/list(_:)`` for a copy from here: the files for which `reading` holds (the
    /// destination lacks them and the filters take them) will be read next.
    func listForCopying(_ directory: EntryPath, reading: @Sendable ([UInt8]) -> Bool) async throws -> Listing?
}

/// Files copied from another location without the data passing through Ferry (S3
/// `CopyObject` on one endpoint).
public protocol ServerSideCopying: Location {
    /// Whether files of `source` can be copied so (asked once).
    func canCopyServerSide(from source: any Location) -> Bool
    /// Copies `path` from `source` to the same path here; false when this file cannot be
    /// (the engine then streams it).
    func copyServerSide(
        from source: any Location, _ path: EntryPath, metadata: FileMetadata, attributes: [ExtendedAttribute]?, selection: MetadataSelection
    ) async throws -> Bool
}

/// Files whose bytes the location names itself (``Entry/contentTag``, an S3 ETag), where
/// the mtime it does not hold (``Entry/mtimeIsStandIn``) cannot tell change.
public protocol ContentTagComparing: Location {
    /// Whether `entry` (listed here at `path`) holds exactly the bytes `source` reads (from
    /// its start to its end); nil when this entry's tag cannot tell.
    func holdsSameContent(_ path: EntryPath, _ entry: Entry, as source: any EntryReader) async throws -> Bool?
    /// After a match, and a source that did not change while read: a location that
    /// remembers what it holds may note it, so that a later run can tell without reading.
    func noteSameContent(_ path: EntryPath, _ entry: Entry, source: Entry) async
}

/// Small files copied by one synchronous routine between two file systems of this host.
public protocol DirectCopying: Location {
    /// A copier of whole files from here to `destination` (nil: not to that one). The
    /// engine takes one per batch of small files.
    func directCopier(to destination: any Location) -> (any DirectFileCopier)?
}

/// A location whose file data crosses a link of Ferry's own, compressed where it pays
/// (another agent's location): the engine counts the bytes that went on the link as
/// DataSync's `BytesCompressed`.
public protocol LinkMetering: Location {
    /// Hands `sink` every amount of file data put on (or taken off) the link from now on.
    func meterLink(_ sink: @escaping @Sendable (Int64) -> Void)
}

/// Files rewritten from the copy the location already holds (a location across a slow
/// link): the parts of the new file equal to the old copy's bytes at the same offsets are
/// taken from that copy where it lies, and only the blocks that differ cross (rsync's idea
/// at fixed block offsets: data changed in place or appended travels, data shifted does).
public protocol DeltaWriting: Location {
    /// ``Location/createFile(_:metadata:attributes:selection:)`` for a file that replaces
    /// `existing`, the regular file at `path` as listed; the writer is handed the new file's
    /// bytes in order as any writer is, and commits only when the whole result is them.
    func createFile(
        _ path: EntryPath, replacing existing: Entry, metadata: FileMetadata, attributes: [ExtendedAttribute]?, selection: MetadataSelection
    ) async throws -> any EntryWriter
}

/// Files written under a temporary that outlives the process writing them: when that
/// process dies (an agent restarted mid-file), the next writer of the same version of the
/// file finds what was written and reads it as the copy unchanged blocks are kept from, so
/// a file across a slow link resumes instead of starting again.
public protocol ResumableWriting: Location {
    /// A writer of `path` under a temporary named by `key` (the version of the file: its
    /// path, size and mtime), and what an earlier writer of the same key left (nil: none),
    /// opened for reading; it is removed when the new writer commits or aborts.
    func createResumableFile(
        _ path: EntryPath, key: UInt64, metadata: FileMetadata, attributes: [ExtendedAttribute]?, selection: MetadataSelection
    ) async throws -> (writer: any EntryWriter, partial: (any EntryReader)?)
}

/// Checksums computed where the data lies (another agent's location): verification sends a
/// path across the link and gets the checksum back, not the file.
public protocol ChecksumComputing: Location {
    /// The content checksum (XXH3-128, holes as zeros) of the file at `path`, listed as
    /// `expected`, and its metadata after it was read.
    func contentChecksum(_ path: EntryPath, expected: Entry) async throws -> (ContentChecksum, FileMetadata)
}

/// Leftovers of the location's own interrupted writes (temporaries, unfinished uploads),
/// named in ``Listing/staleTemporaries`` and cleaned by the next run.
public protocol TemporaryKeeping: Location {
    /// Removes one leftover named in ``Listing/staleTemporaries``.
    func removeTemporary(in directory: EntryPath, name: [UInt8]) async throws
    /// Whether the leftovers are files of the listed directory (a file system's), not
    /// something else (an object store's unfinished uploads): at a source, such files are
    /// reported as skipped rather than passed over in silence.
    var temporariesAreFiles: Bool { get }
}

/// Where the tree lies, to refuse a source and destination that contain one another
/// (``LocationScope/checkDisjoint(source:destination:)``).
public protocol ScopeTelling: Location {
    var scope: LocationScope? { get }
}

/// Metadata only locations of one family hold — an SMB share's DOS attributes, creation
/// time and security descriptor — carried between two locations of that family after the
/// engine's own metadata (DataSync copies them between SMB shares).
public protocol NativeMetadataCopying: Location {
    /// Locations of the same family exchange native metadata ("smb").
    var nativeMetadataFamily: String { get }
    /// The entry's native metadata (a file or directory).
    func nativeMetadata(_ path: EntryPath, kind: EntryKind) async throws -> NativeMetadata
    /// Applies `native`, read from a location of the same family, to the entry, keeping the
    /// times of `metadata` already set (as `selection` chose them); returns what could not
    /// be applied, each naming the part and why (reported, the copy stands).
    func setNativeMetadata(_ path: EntryPath, kind: EntryKind, _ native: NativeMetadata,
                           keeping metadata: FileMetadata, selection: MetadataSelection) async throws -> [String]
}

/// Native metadata by part ("attributes", "creation time", "security descriptor"), each in
/// the family's own text; parts that could not be read are named with the reason.
public struct NativeMetadata: Sendable, Hashable {
    public var parts: [String: String]
    public var unreadable: [String: String]

    public init(parts: [String: String] = [:], unreadable: [String: String] = [:]) {
        self.parts = parts
        self.unreadable = unreadable
    }
}

/// Metadata the location cannot keep, said before or while it is written.
public protocol MetadataLimiting: Location {
    /// What of `metadata` (as `selection` chooses) cannot be applied to an entry of `kind`
    /// here, known before writing it (an unprivileged process cannot give files away).
    func metadataWithheld(_ metadata: FileMetadata, kind: EntryKind, selection: MetadataSelection) -> MetadataWithheld?
    /// What ``Location/setMetadata(_:kind:metadata:selection:)`` is known, by now, to leave
    /// unstored for an entry of `kind` (a server that keeps no metadata on directory markers).
    func metadataNotStored(kind: EntryKind) -> String?
}

extension MetadataLimiting {
    public func metadataWithheld(_ metadata: FileMetadata, kind: EntryKind, selection: MetadataSelection) -> MetadataWithheld? { nil }
    public func metadataNotStored(kind: EntryKind) -> String? { nil }
}

extension ContentTagComparing {
    public func noteSameContent(_ path: EntryPath, _ entry: Entry, source: Entry) async {}
}

/// Copies whole regular files from one location to the same path in another on the calling
/// thread, as ``Location/openForReading(_:expected:)``, ``Location/createFile(_:metadata:attributes:selection:)``
/// and ``EntryWriter/commit()`` would: data and checksum, metadata, an atomic final name.
/// Used by one task at a time (it keeps the directories it last used open).
public protocol DirectFileCopier {
    /// Copies the file at `path`, listed as `expected`, through `buffer`, feeding `hash`
    /// (reset first). It is committed only if the source did not change while it was read;
    /// with `readBack`, the committed file is then read again through the same descriptor.
    /// Errors are the locations' own.
    func copy(
        _ path: EntryPath, expected: FileMetadata, selection: MetadataSelection,
        buffer: UnsafeMutableRawBufferPointer, hash: ChecksumState, readBack: Bool
    ) throws -> DirectCopy
}

/// What one ``DirectFileCopier/copy(_:expected:selection:buffer:hash:readBack:)`` came to.
public struct DirectCopy: Sendable {
    /// The checksum of the bytes read from the source.
    public var checksum: ContentChecksum
    /// Data bytes written (the file's size, when committed).
    public var written: Int64
    /// The source changed while it was read (size, mtime or ctime moved): nothing was committed.
    public var sourceChanged: Bool
    /// With `readBack`: the checksum and metadata of the committed file, read through its descriptor.
    public var arrived: (checksum: ContentChecksum, metadata: FileMetadata)?
    /// Nanoseconds spent reading back.
    public var readBackNanoseconds: Int64

    public init(
        checksum: ContentChecksum, written: Int64, sourceChanged: Bool,
        arrived: (checksum: ContentChecksum, metadata: FileMetadata)?, readBackNanoseconds: Int64
    ) {
        self.checksum = checksum
        self.written = written
        self.sourceChanged = sourceChanged
        self.arrived = arrived
        self.readBackNanoseconds = readBackNanoseconds
    }
}

/// Reads one file. Not shared between tasks.
public protocol EntryReader: Sendable {
    /// The file's metadata as it stood when it was opened.
    var metadata: FileMetadata { get }
    /// The ranges holding data, in order; everything else reads as zeros.
    func dataExtents() async throws -> [Extent]
    /// The file's extended attributes (empty when the location has none).
    func extendedAttributes() async throws -> [ExtendedAttribute]
    /// Reads up to `buffer.count` bytes at `offset`; returns the count (0 at end of file).
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) async throws -> Int
    /// Closes the file and returns its metadata now, to notice a change during the read.
    func close() async throws -> FileMetadata
}

/// Writes one file under a temporary name; ``commit()`` puts it in place.
public protocol EntryWriter: Sendable {
    /// Writes `bytes` at `offset`. Ranges never written stay holes where the location can.
    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) async throws
    /// Sets the final size, applies the metadata given at creation, and moves the file to
    /// its final name atomically. Returns the names of metadata the destination did not
    /// keep (an object store that drops user metadata, xattrs over its size limit).
    @discardableResult
    func commit() async throws -> [String]
    /// Discards the temporary file.
    func abort() async
    /// After ``commit()``: whether the destination itself confirmed that it holds exactly
    /// the bytes written (an object store's MD5 of what it stored matched the MD5 of what
    /// was sent). ONLY_FILES_TRANSFERRED verification then needs no read-back of the data.
    var contentConfirmed: Bool { get }
    /// After ``commit()``: a reader of the committed file through the writer's own handle,
    /// so verification need not open it again by name (nil: open it by name).
    func committedReader() async throws -> (any EntryReader)?
}

extension EntryWriter {
    public var contentConfirmed: Bool { false }
    public func committedReader() async throws -> (any EntryReader)? { nil }
}
