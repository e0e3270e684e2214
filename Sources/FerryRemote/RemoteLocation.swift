import FerryCore
import Synchronization

/// How calls reach a ``LocationServer``: one request, one reply, any number in flight.
public protocol RemoteTransport: Sendable {
    /// Who is called, for messages.
    var peer: String { get }
    func call(_ operation: RemoteOperation, _ body: [UInt8]) async throws -> [UInt8]
    func close() async
    /// A call on lane `lane` of a transport over several connections (``SpreadTransport``):
    /// the calls about one open file keep to the lane that opened it. (Required, not
    /// defaulted: a wrapper that dropped the lane would scatter a file's calls.)
    func call(_ operation: RemoteOperation, _ body: [UInt8], lane: Int) async throws -> [UInt8]
    /// The lane a file about to be opened takes.
    func nextLane() -> Int
}

/// A location another Ferry process serves (``LocationServer``): every ``Location`` member
/// is a call to it, so the engine runs here against storage only the peer reaches. What
/// the served location can hold comes from its `hello`.
public struct RemoteLocation: Location, SymlinkWriting, HardLinkWriting, SpecialFileWriting, ExtendedAttributeStoring, TemporaryKeeping,
    LinkMetering, DeltaWriting, ChecksumComputing
{
    /// Items the engine keeps in flight against a location across a link, at least: each
    /// small file is a round trip, so at 20 ms 16 at a time move 800 files a second.
    public static let itemsInFlight = 256

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
        var capabilities = remote.capabilities
        capabilities.itemsInFlight = max(capabilities.itemsInFlight, itemsInFlight)
        return RemoteLocation(transport: transport, uri: uri, capabilities: capabilities,
                              temporariesAreFiles: remote.temporariesAreFiles)
    }

    public func close() async { await transport.close() }

    /// File data on the link so far (compressed where it paid), both ways.
    public var bytesOnLink: Int64 { meter.total }

    public func meterLink(_ sink: @escaping @Sendable (Int64) -> Void) { meter.attach(sink) }

    static func call(_ transport: any RemoteTransport, _ operation: RemoteOperation, _ body: [UInt8], lane: Int? = nil) async throws -> WireReader {
        let answer = if let lane { try await transport.call(operation, body, lane: lane) } else { try await transport.call(operation, body) }
        var r = WireReader(answer)
        if try r.u8() != 0 { throw try RemoteError.decode(&r) }
        return r
    }

    /// A call on `lane` (an open file's), or on whichever the transport takes next.
    func call(_ operation: RemoteOperation, lane: Int? = nil, _ build: (inout WireWriter) -> Void = { _ in }) async throws -> WireReader {
        var w = WireWriter()
        build(&w)
        return try await RemoteLocation.call(transport, operation, w.bytes, lane: lane)
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
        let lane = transport.nextLane()
        var r = try await call(.openRead, lane: lane) { w in
            w.path(path)
            w.entry(expected)
        }
        return RemoteReader(location: self, handle: try r.uvarint(), lane: lane, metadata: try r.metadata())
    }

    /// The serving side reads the file where it lies and answers its checksum and metadata.
    public func contentChecksum(_ path: EntryPath, expected: Entry) async throws -> (ContentChecksum, FileMetadata) {
        var r = try await call(.checksum) { w in
            w.path(path)
            w.entry(expected)
        }
        return (try r.checksum(), try r.metadata())
    }

    /// The connections (each its own session) an agent opens to another agent's served
    /// location (``SpreadTransport``).
    public static let connections = 4

    /// Files up to this size travel whole in one call at commit (``RemoteOperation/put``):
    /// one round trip a file instead of three.
    public static let smallFile: Int64 = 1 << 20

    /// A file up to ``smallFile`` travels whole at commit; a larger one is created as a
    /// delta (``createFile(_:replacing:metadata:attributes:selection:)``) against whatever
    /// the serving side holds of it: the part an earlier writer left when the serving agent
    /// restarted mid-file (``ResumableWriting``), so the file resumes; else nothing.
    public func createFile(_ path: EntryPath, metadata: FileMetadata, attributes: [ExtendedAttribute]?,
                           selection: MetadataSelection) async throws -> any EntryWriter {
        if metadata.size <= RemoteLocation.smallFile && !metadata.mayBeSparse {
            return SmallRemoteWriter(location: self, path: path, metadata: metadata, attributes: attributes, selection: selection)
        }
        if metadata.size <= RemoteLocation.smallFile {
            let lane = transport.nextLane()
            var r = try await call(.create, lane: lane) { $0.creating(path, metadata, attributes, selection) }
            return RemoteWriter(location: self, handle: try r.uvarint(), lane: lane, size: metadata.size)
        }
        return try await createDelta(path, blockSize: DeltaSignature.blockSize(for: metadata.size), metadata: metadata,
                                     attributes: attributes, selection: selection)
    }

    /// A file larger than ``smallFile`` that replaces one as large: the serving side sends
    /// the block hashes of the copy it holds, and the writer sends only the blocks that
    /// differ (``DeltaSignature``).
    public func createFile(_ path: EntryPath, replacing existing: Entry, metadata: FileMetadata, attributes: [ExtendedAttribute]?,
                           selection: MetadataSelection) async throws -> any EntryWriter {
        guard metadata.size > RemoteLocation.smallFile, existing.metadata.size > RemoteLocation.smallFile else {
            return try await createFile(path, metadata: metadata, attributes: attributes, selection: selection)
        }
        return try await createDelta(path, blockSize: DeltaSignature.blockSize(for: existing.metadata.size), metadata: metadata,
                                     attributes: attributes, selection: selection)
    }

    private func createDelta(_ path: EntryPath, blockSize: Int, metadata: FileMetadata, attributes: [ExtendedAttribute]?,
                             selection: MetadataSelection) async throws -> any EntryWriter {
        let lane = transport.nextLane()
        var r = try await call(.createDelta, lane: lane) { w in
            w.creating(path, metadata, attributes, selection)
            w.uvarint(UInt64(blockSize))
        }
        let handle = try r.uvarint()
        let signature = try r.optional { (r: inout WireReader) throws(RemoteError) in try DeltaSignature(&r) }
        meter.add(8 * (signature?.hashes.count ?? 0))
        return RemoteWriter(location: self, handle: handle, lane: lane, size: metadata.size, signature: signature)
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
    /// The transport's lane the file was opened on: its calls keep to it.
    let lane: Int
    let metadata: FileMetadata

    func dataExtents() async throws -> [Extent] {
        var r = try await location.call(.extents, lane: lane) { $0.uvarint(handle) }
        return try r.array { (r: inout WireReader) throws(RemoteError) in Extent(offset: try r.varint(), length: try r.varint()) }
    }

    func extendedAttributes() async throws -> [ExtendedAttribute] {
        var r = try await location.call(.readAttributes, lane: lane) { $0.uvarint(handle) }
        return try r.attributes()
    }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) async throws -> Int {
        let wanted = min(buffer.count, RemoteLocation.largestRead)
        var r = try await location.call(.read, lane: lane) { w in
            w.uvarint(handle)
            w.varint(offset)
            w.uvarint(UInt64(wanted))
        }
        let (n, onLink) = try r.unpack(into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<wanted]))
        location.meter.add(onLink)
        return n
    }

    func close() async throws -> FileMetadata {
        var r = try await location.call(.closeRead, lane: lane) { $0.uvarint(handle) }
        return try r.metadata()
    }
}

/// A file the peer writes under a temporary name until ``commit()``, which carries the
/// checksum of what was written so that the peer commits only the same bytes.
final class RemoteWriter: EntryWriter, Sendable {
    let location: RemoteLocation
    let handle: UInt64
    /// The transport's lane the file was opened on: its calls keep to it, in order.
    let lane: Int
    let size: Int64
    /// The serving side's old copy, for a delta: blocks that match it are kept, not sent.
    let signature: DeltaSignature?
    private let written = WrittenChecksum()
    private let confirmed = Mutex(false)
    /// Matching blocks not yet asked for (offset, length): runs of them go in one ``RemoteOperation/keep``.
    private let pendingKeep = Mutex<(offset: Int64, length: Int64)?>(nil)

    init(location: RemoteLocation, handle: UInt64, lane: Int, size: Int64, signature: DeltaSignature? = nil) {
        self.location = location
        self.handle = handle
        self.lane = lane
        self.size = size
        self.signature = signature
    }

    /// Writes `bytes` at `offset`; with a signature, whole blocks the old copy holds at the
    /// same offset are kept there and the rest is sent. Writes and keeps reach the serving
    /// side in file order (the engine awaits each write), which its checksum needs.
    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) async throws {
        written.add(bytes, at: offset)
        guard let signature else { return try await send(bytes, at: offset) }
        let block = Int64(signature.blockSize)
        var i = 0
        var differing: Int?  // where the run of blocks to send began
        while i < bytes.count {
            let at = offset + Int64(i)
            let length = Int(min(block - at % block, Int64(bytes.count - i)))
            let piece = UnsafeRawBufferPointer(rebasing: bytes[i..<(i + length)])
            if signature.matches(piece, at: at) {
                if let start = differing {
                    try await send(UnsafeRawBufferPointer(rebasing: bytes[start..<i]), at: offset + Int64(start))
                    differing = nil
                }
                try await keep(at, Int64(length))
            } else if differing == nil {
                try await flushKeep()
                differing = i
            }
            i += length
        }
        if let start = differing { try await send(UnsafeRawBufferPointer(rebasing: bytes[start...]), at: offset + Int64(start)) }
    }

    /// Adds a matching block to the pending run; a run that does not go on here (a hole of a
    /// sparse source came between) is asked for first, so keeps and writes reach the serving
    /// side in file order.
    private func keep(_ at: Int64, _ length: Int64) async throws {
        if let run = pendingKeep.withLock({ $0 }), run.offset + run.length != at { try await flushKeep() }
        pendingKeep.withLock { k in k = k.map { ($0.offset, $0.length + length) } ?? (at, length) }
    }

    /// Asks the serving side to keep the pending run of matching blocks.
    private func flushKeep() async throws {
        guard let k = pendingKeep.withLock({ k in defer { k = nil }; return k }) else { return }
        _ = try await location.call(.keep, lane: lane) { w in
            w.uvarint(handle)
            w.varint(k.offset)
            w.varint(k.length)
        }
    }

    /// Sends data in calls of at most 4 MiB (what the serving side accepts in one request).
    private func send(_ bytes: UnsafeRawBufferPointer, at offset: Int64) async throws {
        var done = 0
        repeat {
            let n = min(bytes.count - done, RemoteLocation.largestRead)
            var w = WireWriter(capacity: n + 24)
            w.uvarint(handle)
            w.varint(offset + Int64(done))
            let onLink = w.packed(UnsafeRawBufferPointer(rebasing: bytes[done..<(done + n)]), location.compressor)
            _ = try await RemoteLocation.call(location.transport, .write, w.bytes, lane: lane)
            location.meter.add(onLink)
            done += n
        } while done < bytes.count
    }

    func commit() async throws -> [String] {
        try await flushKeep()
        let checksum = written.finish(size: size)
        var r = try await location.call(.commit, lane: lane) { w in
            w.uvarint(handle)
            w.optional(checksum) { $0.checksum($1) }
        }
        let notKept = try r.array { (r: inout WireReader) throws(RemoteError) in try r.string() }
        let held = try r.bool()
        confirmed.withLock { $0 = held }
        return notKept
    }

    func abort() async {
        _ = try? await location.call(.abort, lane: lane) { $0.uvarint(handle) }
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
            w.creating(path, metadata, attributes, selection)
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
