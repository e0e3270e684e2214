import FerryCore

/// The checks every location passes, run against the real thing (a temp directory for
/// POSIX, a real server for S3). Each check gets a fresh, empty location from `make`;
/// what a location's ``Capabilities`` do not claim is not checked. Returns the failures.
public enum LocationConformance {
    public typealias Factory = @Sendable () async throws -> any Location

    /// Runs every check; an empty result means the location conforms.
    public static func run(_ make: Factory) async -> [String] {
        var failures: [String] = []
        let checks: [(String, @Sendable (any Location) async throws -> [String])] = [
            ("empty root", emptyRoot),
            ("write, list, stat, read back", writeAndReadBack),
            ("atomic write: invisible until commit, abort leaves nothing", atomicWrite),
            ("replace an existing file", replaceFile),
            ("listing sorted by name bytes", sortedListing),
            ("directories and removal", directoriesAndRemoval),
            ("metadata in place", metadataInPlace),
            ("symlinks", symlinks),
            ("hard links", hardLinks),
            ("sparse writes", sparseWrites),
            ("extended attributes", extendedAttributes),
        ]
        for (name, check) in checks {
            do {
                let location = try await make()
                failures += try await check(location).map { "\(name): \($0)" }
            } catch {
                failures.append("\(name): threw \(error)")
            }
        }
        return failures
    }

    static func metadata(size: Int64, mtime: Int64 = 1_600_000_000) -> FileMetadata {
        FileMetadata(permissions: 0o640, uid: 0, gid: 0, mtime: Timestamp(seconds: mtime, nanoseconds: 123_456_789),
                     atime: Timestamp(seconds: mtime + 10, nanoseconds: 5), ctime: Timestamp(seconds: 0, nanoseconds: 0), size: size)
    }

    /// Writes `bytes` at `path` and commits with default test metadata.
    public static func put(_ l: any Location, _ path: EntryPath, _ bytes: [UInt8], mtime: Int64 = 1_600_000_000) async throws {
        let w = try await l.createFile(path, metadata: metadata(size: Int64(bytes.count), mtime: mtime), attributes: nil, selection: .all)
        try await withBuffer(bytes) { try await w.write($0, at: 0) }
        try await w.commit()
    }

    /// Calls an async `body` with a copy of `bytes` in a raw buffer.
    static func withBuffer(_ bytes: [UInt8], _ body: (UnsafeRawBufferPointer) async throws -> Void) async throws {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 16)
        defer { buffer.deallocate() }
        buffer.copyBytes(from: bytes)
        try await body(UnsafeRawBufferPointer(rebasing: buffer[0..<bytes.count]))
    }

    /// Reads a whole file (holes as zeros).
    public static func get(_ l: any Location, _ path: EntryPath) async throws -> [UInt8] {
        guard let e = try await l.stat(path) else { return [] }
        let r = try await l.openForReading(path, expected: e)
        let size = Int(r.metadata.size)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(size, 1), alignment: 16)
        defer { buffer.deallocate() }
        buffer.initializeMemory(as: UInt8.self, repeating: 0)
        for extent in try await r.dataExtents() {
            var offset = extent.offset
            while offset < extent.offset + extent.length {
                let slice = UnsafeMutableRawBufferPointer(rebasing: buffer[Int(offset)..<Int(extent.offset + extent.length)])
                let n = try await r.read(into: slice, at: offset)
                if n == 0 { break }
                offset += Int64(n)
            }
        }
        _ = try await r.close()
        return Array(buffer.prefix(size))
    }

    static func emptyRoot(_ l: any Location) async throws -> [String] {
        let listing = try await l.list(.root)
        return listing?.entries.isEmpty == true ? [] : ["root lists \(listing?.entries.count ?? -1) entries"]
    }

    static func writeAndReadBack(_ l: any Location) async throws -> [String] {
        var out: [String] = []
        let bytes = TestTree.bytes(300_001, seed: 42)
        try await l.makeDirectory(EntryPath("d")!)
        try await put(l, EntryPath("d/file")!, bytes)
        guard let e = try await l.stat(EntryPath("d/file")!) else { return ["stat found nothing after commit"] }
        if e.kind != .file { out.append("kind \(e.kind)") }
        if e.metadata.size != Int64(bytes.count) { out.append("size \(e.metadata.size)") }
        let precision = l.capabilities.mtimePrecisionNanoseconds
        if e.metadata.mtime.totalNanoseconds / precision != metadata(size: 0).mtime.totalNanoseconds / precision {
            out.append("mtime \(e.metadata.mtime)")
        }
        if l.capabilities.permissions && e.metadata.permissions != 0o640 { out.append("mode \(String(e.metadata.permissions, radix: 8))") }
        if try await get(l, EntryPath("d/file")!) != bytes { out.append("content differs") }
        let names = try await l.list(EntryPath("d")!)?.entries.map(\.name) ?? []
        if names != [Array("file".utf8)] { out.append("listing \(names)") }
        return out
    }

    static func atomicWrite(_ l: any Location) async throws -> [String] {
        var out: [String] = []
        let w = try await l.createFile(EntryPath("pending")!, metadata: metadata(size: 3), attributes: nil, selection: .all)
        try await withBuffer([1, 2, 3]) { try await w.write($0, at: 0) }
        if try await l.stat(EntryPath("pending")!) != nil { out.append("visible before commit") }
        if let listing = try await l.list(.root), !listing.entries.isEmpty { out.append("listed before commit") }
        await w.abort()
        if let listing = try await l.list(.root), !listing.entries.isEmpty || !listing.staleTemporaries.isEmpty {
            out.append("left something after abort")
        }
        return out
    }

    static func replaceFile(_ l: any Location) async throws -> [String] {
        try await put(l, EntryPath("f")!, [1, 2, 3])
        try await put(l, EntryPath("f")!, [9])
        return try await get(l, EntryPath("f")!) == [9] ? [] : ["old content still there"]
    }

    static func sortedListing(_ l: any Location) async throws -> [String] {
        let names = ["b", "a", "A", "a b", "ä", "-x", "a.b"]
        for n in names { try await put(l, EntryPath(n)!, [1]) }
        let listed = try await l.list(.root)?.entries.map(\.name) ?? []
        let expected = names.map { Array($0.utf8) }.sorted { $0.lexicographicallyPrecedes($1) }
        return listed == expected ? [] : ["order \(listed.map { String(decoding: $0, as: UTF8.self) })"]
    }

    static func directoriesAndRemoval(_ l: any Location) async throws -> [String] {
        var out: [String] = []
        try await l.makeDirectory(EntryPath("x")!)
        try await l.makeDirectory(EntryPath("x")!)  // idempotent
        try await l.makeDirectory(EntryPath("x/y")!)
        try await put(l, EntryPath("x/y/z")!, [1])
        try await put(l, EntryPath("keep")!, [2])
        if try await l.stat(EntryPath("x")!)?.kind != .directory { out.append("x is not a directory") }
        try await l.remove(EntryPath("x")!, kind: .directory)
        if try await l.stat(EntryPath("x")!) != nil { out.append("x still there after remove") }
        try await l.remove(EntryPath("keep")!, kind: .file)
        if try await l.stat(EntryPath("keep")!) != nil { out.append("file still there after remove") }
        if try await l.list(EntryPath("missing")!) != nil { out.append("listing a missing directory is not nil") }
        return out
    }

    static func metadataInPlace(_ l: any Location) async throws -> [String] {
        guard l.capabilities.setsMetadataInPlace else { return [] }
        try await put(l, EntryPath("m")!, [1])
        var m = metadata(size: 1, mtime: 1_500_000_000)
        m.permissions = 0o600
        m.uid = 1234
        m.gid = 4321
        try await l.setMetadata(EntryPath("m")!, kind: .file, metadata: m, selection: .all)
        guard let e = try await l.stat(EntryPath("m")!) else { return ["gone"] }
        var out: [String] = []
        if e.metadata.mtime != m.mtime { out.append("mtime \(e.metadata.mtime)") }
        if l.capabilities.permissions && e.metadata.permissions != 0o600 { out.append("mode") }
        if l.capabilities.ownership && (e.metadata.uid != 1234 || e.metadata.gid != 4321) { out.append("owner") }
        return out
    }

    static func symlinks(_ l: any Location) async throws -> [String] {
        guard l.capabilities.symlinks else { return [] }
        let target = Array("../nowhere/at all".utf8)
        try await l.makeSymlink(EntryPath("s")!, target: target, metadata: metadata(size: 0), selection: .all)
        try await l.makeSymlink(EntryPath("s")!, target: Array("t2".utf8), metadata: metadata(size: 0), selection: .all)
        let e = try await l.stat(EntryPath("s")!)
        return e?.kind == .symlink && e?.symlinkTarget == Array("t2".utf8) ? [] : ["got \(String(describing: e))"]
    }

    static func hardLinks(_ l: any Location) async throws -> [String] {
        guard l.capabilities.hardLinks else { return [] }
        try await put(l, EntryPath("h1")!, [7, 7])
        try await l.makeHardLink(EntryPath("h2")!, to: EntryPath("h1")!)
        try await l.makeHardLink(EntryPath("h2")!, to: EntryPath("h1")!)  // already linked: no-op
        let a = try await l.stat(EntryPath("h1")!), b = try await l.stat(EntryPath("h2")!)
        var out: [String] = []
        if a?.metadata.fileID == nil || a?.metadata.fileID != b?.metadata.fileID { out.append("not one file") }
        if let listing = try await l.list(.root), !listing.staleTemporaries.isEmpty { out.append("temporaries left") }
        return out
    }

    static func sparseWrites(_ l: any Location) async throws -> [String] {
        let w = try await l.createFile(EntryPath("sparse")!, metadata: metadata(size: 4 << 20), attributes: nil, selection: .all)
        let data = TestTree.bytes(4096, seed: 9)
        try await withBuffer(data) { try await w.write($0, at: 1 << 20) }
        try await w.commit()
        var expected = [UInt8](repeating: 0, count: 4 << 20)
        expected.replaceSubrange((1 << 20)..<((1 << 20) + 4096), with: data)
        var out: [String] = []
        if try await get(l, EntryPath("sparse")!) != expected { out.append("content differs") }
        if l.capabilities.sparseFiles, let e = try await l.stat(EntryPath("sparse")!), let allocated = e.metadata.allocatedBytes, allocated > 1 << 20 {
            out.append("allocated \(allocated) bytes for 4 KiB of data")
        }
        return out
    }

    static func extendedAttributes(_ l: any Location) async throws -> [String] {
        guard l.capabilities.extendedAttributes else { return [] }
        let attrs = [ExtendedAttribute(name: Array("user.a".utf8), value: [1, 2]), ExtendedAttribute(name: Array("user.b".utf8), value: [])]
        let w = try await l.createFile(EntryPath("x")!, metadata: metadata(size: 0), attributes: attrs, selection: .all)
        try await w.commit()
        var out: [String] = []
        if try await l.extendedAttributes(EntryPath("x")!, kind: .file) != attrs { out.append("xattrs not kept on commit") }
        try await l.setExtendedAttributes(EntryPath("x")!, kind: .file, [attrs[1]])
        if try await l.extendedAttributes(EntryPath("x")!, kind: .file) != [attrs[1]] { out.append("xattrs not replaced") }
        return out
    }
}
