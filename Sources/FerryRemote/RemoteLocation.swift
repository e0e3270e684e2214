import FerryCore
import Synchronization

/// How calls reach a ``LocationServer``: one request, one reply, any number in flight.
public protocol RemoteTransport: Sendable {
    /// Who is called, for messages.
    var peer: String { get }
    func call(_ operation: RemoteOperation, _ body: [UInt8]) async throws -> [UInt8]
    func close() async
}

/// A location another Ferry process serves (``LocationServer``): every ``Location`` member
/// is a call to it, so the engine runs here against storage only the peer reaches. What
/// the served location can hold comes from its `hello`.
public struct RemoteLocation: Location, SymlinkWriting, HardLinkWriting, SpecialFileWriting, ExtendedAttributeStoring, TemporaryKeeping,
    LinkMetering
{
    /// The most bytes one `read` call returns.
    public static let largestRead = 4 << 20

    let transport: any RemoteTransport
    public let uri: String
    public let capabilities: Capabilities
    public let temporariesAreFiles: Bool
    /// Compresses the data written (``PackedData``).
    let compressor = Compressor()
    let meter = LinkMeter()

    /// Connects: asks the peer what it serves.
    public static func connect(_ transport: any RemoteTransport) async throws -> RemoteLocation {
        var r = try await call(transport, .hello, [])
        let uri = try r.string()
        let remote = try RemoteCapabilities(&r)
        return RemoteLocation(transport: transport, uri: uri, capabilities: remote.capabilities,
                              temporariesAreFiles: remote.temporariesAreFiles)
    }

    public func close() async { await transport.close() }

    /// File data on the link so far (compressed where it paid), both ways.
    public var bytesOnLink: Int64 { meter.total }

    public func meterLink(_ sink: @escaping @Sendable (Int64) -> Void) { meter.attach(sink) }

    static func call(_ transport: any RemoteTransport, _ operation: RemoteOperation, _ body: [UInt8]) async throws -> WireReader {
        var r = WireReader(try await transport.call(operation, body))
        if try r.u8() != 0 { throw try RemoteError.decode(&r) }
        return r
    }

    func call(_ operation: RemoteOperation, _ build: (inout WireWriter) -> Void = { _ in }) async throws -> WireReader {
        var w = WireWriter()
        build(&w)
        return try await RemoteLocation.call(transport, operation, w.bytes)
    }

    public func list(_ directory: EntryPath) async throws -> Listing? {
        var r = try await call(.list) { $0.path(directory) }
        guard try r.u8() == 1 else { return nil }
        let entries = try r.array { (r: inout WireReader) throws(RemoteError) in try r.entry() }
        let stale = try r.array { (r: inout WireReader) throws(RemoteError) in try r.data() }
        let unusable = try r.array { (r: inout WireReader) throws(RemoteError) in (name: try r.string(), reason: try r.string()) }
        return Listing(entries: entries, staleTemporaries: stale, unusable: unusable)
    }

    public func stat(_ path: EntryPath) async throws -> Entry? {
        var r = try await call(.stat) { $0.path(path) }
        return try r.optional { (r: inout WireReader) throws(RemoteError) in try r.entry() }
    }

    public func openForReading(_ path: EntryPath, expected: Entry) async throws -> any EntryReader {
        var r = try await call(.openRead) { w in
            w.path(path)
            w.entry(expected)
        }
        return RemoteReader(location: self, handle: try r.uvarint(), metadata: try r.metadata())
    }

    /// Files up to this size travel whole in one call at commit (``RemoteOperation/put``):
    /// one round trip a file instead of three.
    public static let smallFile: Int64 = 1 << 20

    public func createFile(_ path: EntryPath, metadata: FileMetadata, attributes: [ExtendedAttribute]?,
                           selection: MetadataSelection) async throws -> any EntryWriter {
        if metadata.size <= RemoteLocation.smallFile && !metadata.mayBeSparse {
            return SmallRemoteWriter(location: self, path: path, metadata: metadata, attributes: attributes, selection: selection)
        }
        var r = try await call(.create) { w in
            w.path(path)
            w.metadata(metadata)
            w.optional(attributes) { $0.attributes($1) }
            w.selection(selection)
        }
        return RemoteWriter(location: self, handle: try r.uvarint(), size: metadata.size)
    }

    public func makeDirectory(_ path: EntryPath) async throws {
        _ = try await call(.makeDirectory) { $0.path(path) }
    }

    public func setMetadata(_ path: EntryPath, kind: EntryKind, metadata: FileMetadata, selection: MetadataSelection) async throws {
        _ = try await call(.setMetadata) { $0.placed(path, kind, metadata, selection) }
    }

    public func remove(_ path: EntryPath, kind: EntryKind) async throws {
        _ = try await call(.remove) { w in
            w.path(path)
            w.kind(kind)
        }
    }

    public func makeSymlink(_ path: EntryPath, target: [UInt8], metadata: FileMetadata, selection: MetadataSelection) async throws {
        _ = try await call(.makeSymlink) { w in
            w.path(path)
            w.data(target)
            w.metadata(metadata)
            w.selection(selection)
        }
    }

    public func makeHardLink(_ path: EntryPath, to existing: EntryPath) async throws {
        _ = try await call(.makeHardLink) { w in
            w.path(path)
            w.path(existing)
        }
    }

    public func makeSpecial(_ path: EntryPath, kind: EntryKind, metadata: FileMetadata, selection: MetadataSelection) async throws {
        _ = try await call(.makeSpecial) { $0.placed(path, kind, metadata, selection) }
    }

    public func extendedAttributes(_ path: EntryPath, kind: EntryKind) async throws -> [ExtendedAttribute] {
        var r = try await call(.attributes) { w in
            w.path(path)
            w.kind(kind)
        }
        return try r.attributes()
    }

    public func setExtendedAttributes(_ path: EntryPath, kind: EntryKind, _ attributes: [ExtendedAttribute]) async throws {
        _ = try await call(.setAttributes) { w in
            w.path(path)
            w.kind(kind)
            w.attributes(attributes)
        }
    }

    public func removeTemporary(in directory: EntryPath, name: [UInt8]) async throws {
        _ = try await call(.removeTemporary) { w in
            w.path(directory)
            w.data(name)
        }
    }
}

/// A file the peer opened for reading, read in calls of at most 4 MiB.
struct RemoteReader: EntryReader {
    let location: RemoteLocation
    let handle: UInt64
    let metadata: FileMetadata

    func dataExtents() async throws -> [Extent] {
        var r = try await location.call(.extents) { $0.uvarint(handle) }
        return try r.array { (r: inout WireReader) throws(RemoteError) in Extent(offset: try r.varint(), length: try r.varint()) }
    }

    func extendedAttributes() async throws -> [ExtendedAttribute] {
        var r = try await location.call(.readAttributes) { $0.uvarint(handle) }
        return try r.attributes()
    }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) async throws -> Int {
        let wanted = min(buffer.count, RemoteLocation.largestRead)
        var r = try await location.call(.read) { w in
            w.uvarint(handle)
            w.varint(offset)
            w.uvarint(UInt64(wanted))
        }
        let (n, onLink) = try r.unpack(into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<wanted]))
        location.meter.add(onLink)
        return n
    }

    func close() async throws -> FileMetadata {
        var r = try await location.call(.closeRead) { $0.uvarint(handle) }
        return try r.metadata()
    }
}

/// A file the peer writes under a temporary name until ``commit()``, which carries the
/// checksum of what was written so that the peer commits only the same bytes.
final class RemoteWriter: EntryWriter, Sendable {
    let location: RemoteLocation
    let handle: UInt64
    let size: Int64
    private let written = WrittenChecksum()
    private let confirmed = Mutex(false)

    init(location: RemoteLocation, handle: UInt64, size: Int64) {
        self.location = location
        self.handle = handle
        self.size = size
    }

    /// Writes in calls of at most 4 MiB (what the serving side accepts in one request).
    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) async throws {
        written.add(bytes, at: offset)
        var done = 0
        repeat {
            let n = min(bytes.count - done, RemoteLocation.largestRead)
            var w = WireWriter(capacity: n + 24)
            w.uvarint(handle)
            w.varint(offset + Int64(done))
            let onLink = w.packed(UnsafeRawBufferPointer(rebasing: bytes[done..<(done + n)]), location.compressor)
            _ = try await RemoteLocation.call(location.transport, .write, w.bytes)
            location.meter.add(onLink)
            done += n
        } while done < bytes.count
    }

    func commit() async throws -> [String] {
        let checksum = written.finish(size: size)
        var r = try await location.call(.commit) { w in
            w.uvarint(handle)
            w.optional(checksum) { $0.checksum($1) }
        }
        let notKept = try r.array { (r: inout WireReader) throws(RemoteError) in try r.string() }
        let held = try r.bool()
        confirmed.withLock { $0 = held }
        return notKept
    }

    func abort() async {
        _ = try? await location.call(.abort) { $0.uvarint(handle) }
    }

    var contentConfirmed: Bool { confirmed.withLock { $0 } }
}

/// A small file kept here until ``commit()`` sends it whole (``RemoteOperation/put``); an
/// abort sends nothing. Its bytes are the declared size; ranges never written are zeros.
final class SmallRemoteWriter: EntryWriter, Sendable {
    let location: RemoteLocation
    let path: EntryPath
    let metadata: FileMetadata
    let attributes: [ExtendedAttribute]?
    let selection: MetadataSelection
    private let state = Mutex<(bytes: [UInt8], confirmed: Bool)>(([], false))

    init(location: RemoteLocation, path: EntryPath, metadata: FileMetadata, attributes: [ExtendedAttribute]?, selection: MetadataSelection) {
        self.location = location
        self.path = path
        self.metadata = metadata
        self.attributes = attributes
        self.selection = selection
    }

    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) async throws {
        guard offset >= 0, offset + Int64(bytes.count) <= RemoteLocation.smallFile else {
            throw RemoteError(.remoteFailure, "a write at \(offset) of \(bytes.count) bytes beyond the file's declared size", path: path, retryClass: .itemFailed)
        }
        state.withLock { s in
            let end = Int(offset) + bytes.count
            if s.bytes.count < end { s.bytes.append(contentsOf: repeatElement(0, count: end - s.bytes.count)) }
            s.bytes.withUnsafeMutableBytes { UnsafeMutableRawBufferPointer(rebasing: $0[Int(offset)..<end]).copyMemory(from: bytes) }
        }
    }

    func commit() async throws -> [String] {
        var bytes = state.withLock { $0.bytes }
        if bytes.count < Int(metadata.size) { bytes.append(contentsOf: repeatElement(0, count: Int(metadata.size) - bytes.count)) }
        var onLink = 0
        var r = try await location.call(.put) { w in
            w.path(path)
            w.metadata(metadata)
            w.optional(attributes) { $0.attributes($1) }
            w.selection(selection)
            bytes.withUnsafeBytes { b in
                onLink = w.packed(b, location.compressor)
                w.optional(WrittenChecksum.of(b)) { $0.checksum($1) }
            }
        }
        location.meter.add(onLink)
        let notKept = try r.array { (r: inout WireReader) throws(RemoteError) in try r.string() }
        let held = try r.bool()
        state.withLock { $0 = ([], held) }
        return notKept
    }

    func abort() async {
        state.withLock { $0.bytes = [] }
    }

    var contentConfirmed: Bool { state.withLock { $0.confirmed } }
}

/// Counts the file data a ``RemoteLocation`` put on the link and hands each amount to the
/// sink the engine attached (DataSync's BytesCompressed).
final class LinkMeter: Sendable {
    /// The sink in a box: a closure kept in a Mutex's value was re-wrapped in two
    /// reabstraction thunks at each `inout` access, nesting deeper with every add (70 % of a
    /// run's CPU after 20,000 files).
    private final class Sink: Sendable {
        let call: @Sendable (Int64) -> Void
        init(_ call: @escaping @Sendable (Int64) -> Void) { self.call = call }
    }
    private let sum = Atomic<Int64>(0)
    private let sink = Mutex<Sink?>(nil)

    var total: Int64 { sum.load(ordering: .relaxed) }

    func attach(_ s: @escaping @Sendable (Int64) -> Void) { sink.withLock { $0 = Sink(s) } }

    func add(_ n: Int) {
        sum.add(Int64(n), ordering: .relaxed)
        sink.withLock { $0 }?.call(Int64(n))
    }
}
