import FerryCore
import Synchronization

/// The calls a ``RemoteLocation`` makes, one per ``Location`` member (and one per open
/// reader's and writer's); each is a ``Frame`` whose operation byte is the case's index,
/// with the arguments as ``WireWriter`` bytes, answered with `0` and the result or `1` and
/// a ``RemoteError``. New cases go at the end (the index is the wire's name).
public enum RemoteOperation: String, Sendable, CaseIterable {
    case hello, list, stat, openRead, extents, readAttributes, read, closeRead
    case create, write, commit, abort, put
    case makeDirectory, setMetadata, remove, makeSymlink, makeHardLink, makeSpecial
    case attributes, setAttributes, removeTemporary
    case createDelta, keep, checksum
}

/// Serves one location to a remote peer: runs each ``RemoteOperation`` against it and
/// keeps the readers and writers the peer opened, under numbers of their own, until the
/// peer closes, commits or aborts them (or ``closeAll()`` when the peer is gone: writers
/// are aborted, so nothing partial is left under a final name). Every path that arrives
/// is checked before the location sees it.
public final class LocationServer: Sendable {
    public let location: any Location
    let features: Features
    /// Compresses the data of reads sent back.
    let compressor = Compressor()
    private let readers = Mutex<[UInt64: any EntryReader]>([:])
    private let writers = Mutex<[UInt64: ServedWriter]>([:])
    /// Handles start at a random number: a peer that still holds one from before this
    /// process restarted gets "not open", never another file's handle.
    private let nextHandle = Atomic<UInt64>(UInt64.random(in: 1...(UInt64.max >> 2)))

    public init(_ location: any Location) {
        self.location = location
        features = Features(location)
    }

    /// Answers one call: the reply's bytes.
    public func handle(_ operation: RemoteOperation, _ body: [UInt8]) async -> [UInt8] {
        var r = WireReader(body)
        var w = WireWriter()
        w.u8(0)
        do {
            try await run(operation, &r, &w)
            return w.bytes
        } catch {
            var e = WireWriter()
            e.u8(1)
            RemoteError.encode(error, into: &e)
            return e.bytes
        }
    }

    /// Aborts every writer and closes every reader still open (the peer went away).
    public func closeAll() async {
        let open = writers.withLock { w in defer { w = [:] }; return Array(w.values) }
        for served in open { await served.abort() }
        let reading = readers.withLock { r in defer { r = [:] }; return Array(r.values) }
        for reader in reading { _ = try? await reader.close() }
    }

    /// A handle this process does not hold: closed already, or from before a restart. The
    /// peer may try the whole file again.
    private static func notOpen(_ what: String, _ id: UInt64) -> RemoteError {
        RemoteError(.remoteFailure, "no \(what) \(id) is open at the serving agent (it was closed, or the agent restarted)", retryClass: .retryable)
    }

    private func reader(_ r: inout WireReader) throws -> any EntryReader {
        let id = try r.uvarint()
        guard let reader = readers.withLock({ $0[id] }) else { throw LocationServer.notOpen("reader", id) }
        return reader
    }

    private func writer(_ r: inout WireReader, removing: Bool = false) throws -> ServedWriter {
        let id = try r.uvarint()
        let served = writers.withLock { removing ? $0.removeValue(forKey: id) : $0[id] }
        guard let served else { throw LocationServer.notOpen("writer", id) }
        return served
    }

    /// What a file is created with: the path, metadata, attributes and selection that come next.
    private struct Creation {
        let path: EntryPath
        let metadata: FileMetadata
        let attributes: [ExtendedAttribute]?
        let selection: MetadataSelection

        init(_ r: inout WireReader) throws {
            path = try r.path()
            metadata = try r.metadata()
            attributes = try r.optional { (r: inout WireReader) throws(RemoteError) in try r.attributes() }
            selection = try r.selection()
        }
    }

    /// A writer for the path, metadata, attributes and selection that come next.
    private func createWriter(_ r: inout WireReader) async throws -> ServedWriter {
        let c = try Creation(&r)
        let writer = try await location.createFile(c.path, metadata: c.metadata, attributes: c.attributes, selection: c.selection)
        return ServedWriter(writer: writer, path: c.path, size: c.metadata.size)
    }

    /// A writer as ``createWriter(_:)`` makes one, with a signature (of blocks of the size
    /// that comes next) of the copy its unchanged blocks are kept from: what an earlier
    /// writer of the same version of the file left, where the location keeps that across a
    /// restart of this process (``ResumableWriting``), else the file at its path now; no
    /// signature when there is neither.
    private func createDeltaWriter(_ r: inout WireReader) async throws -> ServedWriter {
        let c = try Creation(&r)
        let blockSize = try DeltaSignature.blockSize(&r)
        var served: ServedWriter
        var base: (any EntryReader)?
        if let resumable = location as? any ResumableWriting {
            let (writer, partial) = try await resumable.createResumableFile(
                c.path, key: LocationServer.version(c.path, c.metadata), metadata: c.metadata, attributes: c.attributes, selection: c.selection)
            served = ServedWriter(writer: writer, path: c.path, size: c.metadata.size)
            base = partial
        } else {
            served = ServedWriter(writer: try await location.createFile(c.path, metadata: c.metadata, attributes: c.attributes, selection: c.selection),
                                  path: c.path, size: c.metadata.size)
        }
        do {
            if base == nil, let old = try await location.stat(c.path), old.kind == .file {
                base = try await location.openForReading(c.path, expected: old)
            }
            if let reader = base {
                do {
                    served.base = DeltaBase(reader: reader, signature: try await DeltaSignature.of(reader, blockSize: blockSize))
                } catch {
                    _ = try? await reader.close()
                    throw error
                }
            }
            return served
        } catch {
            await served.writer.abort()
            throw error
        }
    }

    /// The version of a file being written, which names its resumable temporary: its path,
    /// size and mtime.
    static func version(_ path: EntryPath, _ metadata: FileMetadata) -> UInt64 {
        var bytes = path.bytes
        for v in [UInt64(bitPattern: metadata.size), UInt64(bitPattern: metadata.mtime.seconds), UInt64(UInt32(bitPattern: metadata.mtime.nanoseconds))] {
            withUnsafeBytes(of: v.littleEndian) { bytes += $0 }
        }
        return bytes.withUnsafeBytes { DeltaSignature.hash($0) }
    }

    /// Writes the data that comes next at `offset` (unpacked once, out of the message, into
    /// memory the write may hold across its suspension).
    private func write(_ r: inout WireReader, to served: ServedWriter, at offset: Int64) async throws {
        let (bytes, _) = try r.unpacked(limit: RemoteLocation.largestRead)
        defer { bytes.deallocate() }
        guard bytes.count > 0 else { return }
        served.written.add(UnsafeRawBufferPointer(bytes), at: offset)
        try await served.writer.write(UnsafeRawBufferPointer(bytes), at: offset)
    }

    /// Commits `served` when the sender's checksum (if it sent one) is that of the bytes
    /// written here, and answers what it did not keep and whether the bytes are confirmed;
    /// aborts it when the checksums differ or the commit fails.
    private func commit(_ served: ServedWriter, _ r: inout WireReader, _ w: inout WireWriter) async throws {
        do {
            let sent = try r.optional { (r: inout WireReader) throws(RemoteError) in try r.checksum() }
            let here = served.written.finish(size: served.size)
            // A delta is committed only when the whole result is known to be the sender's
            // bytes: kept blocks were matched by a 64-bit hash.
            if served.base != nil, sent == nil || here == nil {
                throw RemoteError(.checksumMismatch, "the file rewritten from the destination's copy cannot be checked whole (writes went back)",
                                  path: served.path, retryClass: .itemFailed)
            }
            if let sent, let here, sent != here {
                throw RemoteError(.checksumMismatch, "the bytes written at the destination (\(here)) are not those sent (\(sent))",
                                  path: served.path, retryClass: .itemFailed)
            }
            await served.base?.close()
            let notKept = try await served.writer.commit()
            w.array(notKept) { $0.string($1) }
            w.bool(served.writer.contentConfirmed || (sent != nil && sent == here))
        } catch {
            await served.abort()
            throw error
        }
    }

    private func run(_ operation: RemoteOperation, _ r: inout WireReader, _ w: inout WireWriter) async throws {
        switch operation {
        case .hello:
            w.string(location.uri)
            RemoteCapabilities(features).write(&w)
        case .list:
            guard let listing = try await location.list(try r.path()) else { w.u8(0); return }
            w.u8(1)
            w.array(listing.entries) { $0.entry($1) }
            w.array(listing.staleTemporaries) { $0.data($1) }
            w.array(listing.unusable) { w, u in
                w.string(u.name)
                w.string(u.reason)
            }
        case .stat:
            w.optional(try await location.stat(try r.path())) { $0.entry($1) }
        case .openRead:
            let path = try r.path()
            let reader = try await location.openForReading(path, expected: try r.entry())
            let id = nextHandle.add(1, ordering: .relaxed).oldValue
            readers.withLock { $0[id] = reader }
            w.uvarint(id)
            w.metadata(reader.metadata)
        case .extents:
            w.array(try await reader(&r).dataExtents()) { w, x in
                w.varint(x.offset)
                w.varint(x.length)
            }
        case .readAttributes:
            w.attributes(try await reader(&r).extendedAttributes())
        case .read:
            let reader = try reader(&r)
            let offset = try r.varint()
            let length = Int(min(try r.uvarint(), UInt64(RemoteLocation.largestRead)))
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(length, 1), alignment: 16)
            defer { buffer.deallocate() }
            let n = try await reader.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<length]), at: offset)
            w.packed(UnsafeRawBufferPointer(rebasing: buffer[0..<min(n, length)]), compressor)
        case .closeRead:
            let id = try r.uvarint()
            guard let reader = readers.withLock({ $0.removeValue(forKey: id) }) else { throw LocationServer.notOpen("reader", id) }
            w.metadata(try await reader.close())
        case .create:
            let writer = try await createWriter(&r)
            let id = nextHandle.add(1, ordering: .relaxed).oldValue
            writers.withLock { $0[id] = writer }
            w.uvarint(id)
        case .write:
            let writer = try writer(&r)
            let offset = try r.varint()
            try await write(&r, to: writer, at: offset)
        case .commit:
            let served = try writer(&r, removing: true)
            try await commit(served, &r, &w)
        case .put:
            // A small file whole in one call: created, written and committed (aborted on failure).
            let served = try await createWriter(&r)
            do {
                try await write(&r, to: served, at: 0)
            } catch {
                await served.abort()
                throw error
            }
            try await commit(served, &r, &w)
        case .abort:
            await (try writer(&r, removing: true)).abort()
        case .makeDirectory:
            try await location.makeDirectory(try r.path())
        case .setMetadata:
            let p = try r.placed()
            try await location.setMetadata(p.path, kind: p.kind, metadata: p.metadata, selection: p.selection)
        case .remove:
            let path = try r.path()
            try await location.remove(path, kind: try r.kind())
        case .makeSymlink:
            let path = try r.path()
            let target = try r.data()
            try await features.makeSymlink(path, target: target, metadata: try r.metadata(), selection: try r.selection())
        case .makeHardLink:
            let path = try r.path()
            try await features.makeHardLink(path, to: try r.path())
        case .makeSpecial:
            let p = try r.placed()
            try await features.makeSpecial(p.path, kind: p.kind, metadata: p.metadata, selection: p.selection)
        case .attributes:
            let path = try r.path()
            w.attributes(try await features.extendedAttributes(path, kind: try r.kind()))
        case .setAttributes:
            let path = try r.path()
            let kind = try r.kind()
            try await features.setExtendedAttributes(path, kind: kind, try r.attributes())
        case .removeTemporary:
            let directory = try r.path()
            try await features.removeTemporary(in: directory, name: try r.name())
        case .createDelta:
            let served = try await createDeltaWriter(&r)
            let id = nextHandle.add(1, ordering: .relaxed).oldValue
            writers.withLock { $0[id] = served }
            w.uvarint(id)
            w.optional(served.base?.signature) { $1.write(&$0) }
        case .keep:
            let served = try writer(&r)
            let offset = try r.varint()
            let length = try r.varint()
            guard let base = served.base, offset >= 0, length >= 0, offset + length <= base.signature.size else {
                throw RemoteError.malformed("a keep of \(length) bytes at \(offset) beyond the old copy")
            }
            try await base.keep(offset, length, into: served)
        case .checksum:
            let path = try r.path()
            let expected = try r.entry()
            let reader = try await location.openForReading(path, expected: expected)
            // A buffer no larger than the file (verification asks for many small ones).
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(min(max(expected.metadata.size, 4096), 1 << 20)), alignment: 16)
            defer { buffer.deallocate() }
            let (sum, after) = try await readContentChecksum(reader, buffer: buffer, hash: ChecksumState())
            w.checksum(sum)
            w.metadata(after)
        }
    }
}

/// A writer the peer opened, with what the commit checks: the bytes written here, hashed;
/// and for a delta, the old copy unchanged blocks are kept from.
struct ServedWriter: Sendable {
    let writer: any EntryWriter
    let path: EntryPath
    let size: Int64
    let written = WrittenChecksum()
    var base: DeltaBase?

    init(writer: any EntryWriter, path: EntryPath, size: Int64) {
        self.writer = writer
        self.path = path
        self.size = size
    }

    /// Discards the temporary file and lets go of the old copy.
    func abort() async {
        await base?.close()
        await writer.abort()
    }
}

/// What a served location can do, as the peer learns it from `hello`.
struct RemoteCapabilities: Sendable {
    var capabilities: Capabilities
    var symlinks: Bool
    var hardLinks: Bool
    var specials: Bool
    var extendedAttributes: Bool
    var temporaries: Bool
    var temporariesAreFiles: Bool

    init(_ f: Features) {
        capabilities = f.capabilities
        let names = Set(f.conformances)
        symlinks = f.capabilities.symlinks
        hardLinks = f.capabilities.hardLinks
        specials = f.capabilities.deviceNodes
        extendedAttributes = f.capabilities.extendedAttributes
        temporaries = names.contains("TemporaryKeeping")
        temporariesAreFiles = f.temporariesAreFiles
    }

    func write(_ w: inout WireWriter) {
        let c = capabilities
        for flag in [c.setsMetadataInPlace, c.sparseFiles, c.ownership, c.permissions, c.atime, c.caseSensitive, c.reportsExtents,
                     c.keepsMetadata, symlinks, hardLinks, specials, extendedAttributes, temporaries, temporariesAreFiles] {
            w.bool(flag)
        }
        w.varint(c.mtimePrecisionNanoseconds)
        w.uvarint(UInt64(max(0, c.itemsInFlight)))
    }

    init(_ r: inout WireReader) throws(RemoteError) {
        var c = Capabilities()
        c.setsMetadataInPlace = try r.bool()
        c.sparseFiles = try r.bool()
        c.ownership = try r.bool()
        c.permissions = try r.bool()
        c.atime = try r.bool()
        c.caseSensitive = try r.bool()
        c.reportsExtents = try r.bool()
        c.keepsMetadata = try r.bool()
        symlinks = try r.bool()
        hardLinks = try r.bool()
        specials = try r.bool()
        extendedAttributes = try r.bool()
        temporaries = try r.bool()
        temporariesAreFiles = try r.bool()
        c.mtimePrecisionNanoseconds = try r.varint()
        c.itemsInFlight = Int(try r.uvarint())
        capabilities = c
    }
}
