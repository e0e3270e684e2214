/// A location's capabilities, folded once per execution (rclone's `Features.Fill`): each
/// capability protocol the location conforms to is kept as the function it offers, and the
/// flags the engine plans by (``Capabilities/symlinks``, ``Capabilities/hardLinks``,
/// ``Capabilities/deviceNodes``, ``Capabilities/extendedAttributes``,
/// ``Capabilities/fetchesContentsWhileListing``) are set from those functions, so a flag and
/// a method cannot disagree. What a location lacks has a default here: nothing to list
/// ahead, no xattrs, no server-side copy, no content tags, no scope.
public struct Features: Sendable {
    public let location: any Location
    /// The location's own capabilities with the flags of the capability protocols set by
    /// conformance.
    public let capabilities: Capabilities
    private let symlinkWriter: (any SymlinkWriting)?
    private let hardLinkWriter: (any HardLinkWriting)?
    private let specialWriter: (any SpecialFileWriting)?
    private let attributeStore: (any ExtendedAttributeStoring)?
    private let runLister: (any RunListing)?
    private let prefetcher: (any PrefetchingListing)?
    private let copier: (any ServerSideCopying)?
    private let tagComparer: (any ContentTagComparing)?
    private let directCopying: (any DirectCopying)?
    private let temporaryKeeper: (any TemporaryKeeping)?
    private let limits: (any MetadataLimiting)?
    private let native: (any NativeMetadataCopying)?
    private let deltaWriter: (any DeltaWriting)?
    private let checksummer: (any ChecksumComputing)?
    /// Where the tree lies (``ScopeTelling``), read once.
    public let scope: LocationScope?

    public init(_ location: any Location) {
        self.location = location
        symlinkWriter = location as? any SymlinkWriting
        hardLinkWriter = location as? any HardLinkWriting
        specialWriter = location as? any SpecialFileWriting
        attributeStore = location as? any ExtendedAttributeStoring
        runLister = location as? any RunListing
        prefetcher = location as? any PrefetchingListing
        copier = location as? any ServerSideCopying
        tagComparer = location as? any ContentTagComparing
        directCopying = location as? any DirectCopying
        temporaryKeeper = location as? any TemporaryKeeping
        limits = location as? any MetadataLimiting
        native = location as? any NativeMetadataCopying
        deltaWriter = location as? any DeltaWriting
        checksummer = location as? any ChecksumComputing
        scope = (location as? any ScopeTelling)?.scope
        var c = location.capabilities
        c.symlinks = symlinkWriter != nil
        c.hardLinks = hardLinkWriter != nil
        c.deviceNodes = specialWriter != nil
        c.extendedAttributes = attributeStore != nil
        c.fetchesContentsWhileListing = c.fetchesContentsWhileListing && prefetcher != nil
        capabilities = c
    }

    /// Which capability protocols the location conforms to, by name (for reports and tests).
    public var conformances: [String] {
        [("SymlinkWriting", symlinkWriter != nil), ("HardLinkWriting", hardLinkWriter != nil),
         ("SpecialFileWriting", specialWriter != nil), ("ExtendedAttributeStoring", attributeStore != nil),
         ("RunListing", runLister != nil), ("PrefetchingListing", prefetcher != nil), ("ServerSideCopying", copier != nil),
         ("ContentTagComparing", tagComparer != nil), ("DirectCopying", directCopying != nil),
         ("TemporaryKeeping", temporaryKeeper != nil), ("ScopeTelling", scope != nil), ("MetadataLimiting", limits != nil),
         ("NativeMetadataCopying", native != nil), ("DeltaWriting", deltaWriter != nil),
         ("ChecksumComputing", checksummer != nil)]
            .filter(\.1).map(\.0)
    }

    private func unsupported(_ what: String, _ path: EntryPath) -> FerryError {
        FerryError(.unsupported, "\(location.uri) cannot hold \(what)", path: path, retryClass: .itemFailed)
    }

    public func makeSymlink(_ path: EntryPath, target: [UInt8], metadata: FileMetadata, selection: MetadataSelection) async throws {
        guard let symlinkWriter else { throw unsupported("symlinks", path) }
        try await symlinkWriter.makeSymlink(path, target: target, metadata: metadata, selection: selection)
    }

    public func makeHardLink(_ path: EntryPath, to existing: EntryPath) async throws {
        guard let hardLinkWriter else { throw unsupported("hard links", path) }
        try await hardLinkWriter.makeHardLink(path, to: existing)
    }

    public func makeSpecial(_ path: EntryPath, kind: EntryKind, metadata: FileMetadata, selection: MetadataSelection) async throws {
        guard let specialWriter else { throw unsupported("\(kind)s", path) }
        try await specialWriter.makeSpecial(path, kind: kind, metadata: metadata, selection: selection)
    }

    /// The entry's xattrs; none where the location keeps none.
    public func extendedAttributes(_ path: EntryPath, kind: EntryKind) async throws -> [ExtendedAttribute] {
        try await attributeStore?.extendedAttributes(path, kind: kind) ?? []
    }

    public func setExtendedAttributes(_ path: EntryPath, kind: EntryKind, _ attributes: [ExtendedAttribute]) async throws {
        guard let attributeStore else {
            if attributes.isEmpty { return }
            throw unsupported("extended attributes", path)
        }
        try await attributeStore.setExtendedAttributes(path, kind: kind, attributes)
    }

    /// Whether native metadata goes from `source` to here: both of one family.
    public func copiesNativeMetadata(from source: Features) -> Bool {
        guard let native, let other = source.native else { return false }
        return native.nativeMetadataFamily == other.nativeMetadataFamily
    }

    /// The entry's native metadata (``NativeMetadataCopying``); empty where there is none.
    public func nativeMetadata(_ path: EntryPath, kind: EntryKind) async throws -> NativeMetadata {
        try await native?.nativeMetadata(path, kind: kind) ?? NativeMetadata()
    }

    public func setNativeMetadata(_ path: EntryPath, kind: EntryKind, _ native: NativeMetadata,
                                  keeping metadata: FileMetadata, selection: MetadataSelection) async throws -> [String] {
        try await self.native?.setNativeMetadata(path, kind: kind, native, keeping: metadata, selection: selection) ?? []
    }

    /// Sorted runs (``RunListing``), else the whole listing as one run.
    public func listInRuns(_ directory: EntryPath, runSize: Int, _ deliver: ([Entry]) throws -> Void) async throws -> Listing? {
        if let runLister { return try await runLister.listInRuns(directory, runSize: runSize, deliver) }
        return try await location.list(directory)?.deliveredAsOneRun(deliver)
    }

    /// ``PrefetchingListing/listForCopying(_:reading:)``, else the plain listing.
    public func listForCopying(_ directory: EntryPath, reading: @Sendable ([UInt8]) -> Bool) async throws -> Listing? {
        if let prefetcher { return try await prefetcher.listForCopying(directory, reading: reading) }
        return try await location.list(directory)
    }

    /// A writer of `path` that keeps what `existing` (the regular file there) already holds
    /// (``DeltaWriting``), else a plain one.
    public func createFile(
        _ path: EntryPath, replacing existing: Entry?, metadata: FileMetadata, attributes: [ExtendedAttribute]?, selection: MetadataSelection
    ) async throws -> any EntryWriter {
        if let deltaWriter, let existing, existing.kind == .file {
            return try await deltaWriter.createFile(path, replacing: existing, metadata: metadata, attributes: attributes, selection: selection)
        }
        return try await location.createFile(path, metadata: metadata, attributes: attributes, selection: selection)
    }

    /// The file's checksum and metadata computed by the location itself (``ChecksumComputing``);
    /// nil where it cannot (the caller reads the file).
    public func contentChecksum(_ path: EntryPath, expected: Entry) async throws -> (ContentChecksum, FileMetadata)? {
        try await checksummer?.contentChecksum(path, expected: expected)
    }

    public func canCopyServerSide(from source: any Location) -> Bool { copier?.canCopyServerSide(from: source) ?? false }

    public func copyServerSide(
        from source: any Location, _ path: EntryPath, metadata: FileMetadata, attributes: [ExtendedAttribute]?, selection: MetadataSelection
    ) async throws -> Bool {
        try await copier?.copyServerSide(from: source, path, metadata: metadata, attributes: attributes, selection: selection) ?? false
    }

    public func holdsSameContent(_ path: EntryPath, _ entry: Entry, as source: any EntryReader) async throws -> Bool? {
        try await tagComparer?.holdsSameContent(path, entry, as: source)
    }

    public func noteSameContent(_ path: EntryPath, _ entry: Entry, source: Entry) async {
        await tagComparer?.noteSameContent(path, entry, source: source)
    }

    public func directCopier(to destination: any Location) -> (any DirectFileCopier)? {
        directCopying?.directCopier(to: destination)
    }

    public func removeTemporary(in directory: EntryPath, name: [UInt8]) async throws {
        try await temporaryKeeper?.removeTemporary(in: directory, name: name)
    }

    public var temporariesAreFiles: Bool { temporaryKeeper?.temporariesAreFiles ?? false }

    public func metadataWithheld(_ metadata: FileMetadata, kind: EntryKind, selection: MetadataSelection) -> MetadataWithheld? {
        limits?.metadataWithheld(metadata, kind: kind, selection: selection)
    }

    public func metadataNotStored(kind: EntryKind) -> String? { limits?.metadataNotStored(kind: kind) }
}
