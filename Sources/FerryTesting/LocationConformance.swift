import CFerry
import FerryCore
import Glibc

/// The contract every location implements, as checks run against the real thing (a temp
/// directory for POSIX, a real server for S3). Each check is named and gets a fresh, empty
/// location; a check of a capability the location does not claim is skipped, by name, so
/// a new location written against the core alone runs the core checks and is told which
/// capability checks it skipped.
public enum LocationConformance {
    public typealias Factory = @Sendable () async throws -> any Location

    /// One named check: of the required core (`capability` nil) or of one capability.
    public struct Check: Sendable, CustomStringConvertible {
        public let name: String
        /// The capability the check needs, as ``Capabilities`` or the protocol names it.
        public let capability: String?
        let claims: @Sendable (any Location) -> Bool
        /// The check, given the location and the factory (for a second, fresh location).
        let body: @Sendable (any Location, Factory) async throws -> [String]
        public var description: String { name }

        init(_ name: String, capability: String? = nil, claims: @escaping @Sendable (any Location) -> Bool = { _ in true },
             _ body: @escaping @Sendable (any Location) async throws -> [String]) {
            self.init(name, capability: capability, claims: claims, withFactory: { l, _ in try await body(l) })
        }

        init(_ name: String, capability: String? = nil, claims: @escaping @Sendable (any Location) -> Bool = { _ in true },
             withFactory body: @escaping @Sendable (any Location, Factory) async throws -> [String]) {
            self.name = name
            self.capability = capability
            self.claims = claims
            self.body = body
        }
    }

    /// What one check came to on one location.
    public enum Outcome: Sendable, Equatable {
        case passed
        /// The location does not claim the capability the check needs (named).
        case skipped(capability: String)
        /// What differed from the contract; each failure starts with the field or step it names.
        case failed([String])
    }

    public static let checks: [Check] = [
        Check("empty root", emptyRoot),
        Check("write, list, stat, read back", writeAndReadBack),
        Check("read a byte range", readRange),
        Check("atomic write: invisible until commit, abort leaves nothing", atomicWrite),
        Check("replace an existing file", replaceFile),
        Check("listing sorted by name bytes", sortedListing),
        Check("directories and removal", directoriesAndRemoval),
        Check("listing for a copy lists the same", listingForCopy),
        Check("metadata in place", capability: "setsMetadataInPlace", claims: { $0.capabilities.setsMetadataInPlace }, metadataInPlace),
        Check("atime kept", capability: "atime", claims: { $0.capabilities.atime }, atimeKept),
        Check("names that differ only in case", capability: "caseSensitive", claims: { $0.capabilities.caseSensitive }, caseSensitiveNames),
        Check("symlinks", capability: "SymlinkWriting", claims: { Features($0).capabilities.symlinks }, symlinks),
        Check("hard links", capability: "HardLinkWriting", claims: { Features($0).capabilities.hardLinks }, hardLinks),
        Check("FIFOs and device nodes", capability: "SpecialFileWriting", claims: { Features($0).capabilities.deviceNodes }, deviceNodes),
        Check("ranges never written read as zeros", { try await sparseWrites($0, holes: false) }),
        Check("sparse writes leave holes", capability: "sparseFiles", claims: { $0.capabilities.sparseFiles }, { try await sparseWrites($0, holes: true) }),
        Check("data extents of a sparse file", capability: "reportsExtents", claims: { $0.capabilities.reportsExtents }, dataExtents),
        Check("extended attributes", capability: "ExtendedAttributeStoring", claims: { Features($0).capabilities.extendedAttributes }, extendedAttributes),
        Check("server-side copy", capability: "ServerSideCopying", claims: { Features($0).canCopyServerSide(from: $0) }, serverSideCopy),
        Check("content comparison by a native tag", capability: "ContentTagComparing (Entry.contentTag)", claims: { Features($0).conformances.contains("ContentTagComparing") }, contentComparison),
        Check("listing in sorted runs", capability: "RunListing", claims: { Features($0).conformances.contains("RunListing") }, runListing),
        Check("direct copies to another tree", capability: "DirectCopying", claims: { Features($0).conformances.contains("DirectCopying") },
              withFactory: directCopy),
        Check("metadata withheld only where it cannot be applied", capability: "MetadataLimiting",
              claims: { Features($0).conformances.contains("MetadataLimiting") }, metadataWithheld),
        Check("a write cut off before commit: invisible, its leftovers cleared", capability: "TemporaryKeeping",
              claims: { Features($0).conformances.contains("TemporaryKeeping") }, cutOffWrite),
        Check("scope of the tree", capability: "ScopeTelling", claims: { Features($0).scope != nil }, scopeOfTree),
    ]

    /// The check named `name`.
    public static func check(_ name: String) -> Check? { checks.first { $0.name == name } }

    /// Runs one check on a fresh location from `make`.
    public static func run(_ check: Check, on make: Factory) async -> Outcome {
        do {
            let location = try await make()
            guard check.claims(location) else { return .skipped(capability: check.capability ?? "?") }
            let failures = try await check.body(location, make)
            if failures == [Self.notClaimed] { return .skipped(capability: check.capability ?? "?") }
            return failures.isEmpty ? .passed : .failed(failures)
        } catch {
            return .failed(["threw \(error)"])
        }
    }

    /// Runs every check; the failures, each prefixed with its check's name (an empty
    /// result means the location conforms where it claims to).
    public static func run(_ make: Factory) async -> [String] {
        var failures: [String] = []
        for check in checks {
            if case .failed(let f) = await run(check, on: make) { failures += f.map { "\(check.name): \($0)" } }
        }
        return failures
    }

    /// What a check returns when it finds, only by trying, that the location lacks its capability.
    static let notClaimed = "\u{0}not claimed"

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
        // "A" beside "a" only where names differ by case.
        let names = ["b", "a", "a b", "ä", "-x", "a.b"] + (l.capabilities.caseSensitive ? ["A"] : [])
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
        try await put(l, EntryPath("m")!, [1])
        var m = metadata(size: 1, mtime: 1_500_000_000)
        m.permissions = 0o600
        m.uid = 1234
        m.gid = 4321
        try await l.setMetadata(EntryPath("m")!, kind: .file, metadata: m, selection: .all)
        guard let e = try await l.stat(EntryPath("m")!) else { return ["gone"] }
        var out: [String] = []
        if !sameTime(e.metadata.mtime, m.mtime, l) { out.append("mtime \(e.metadata.mtime)") }
        if l.capabilities.permissions && e.metadata.permissions != 0o600 { out.append("mode") }
        if l.capabilities.ownership && (e.metadata.uid != 1234 || e.metadata.gid != 4321) { out.append("owner") }
        return out
    }

    static func symlinks(_ l: any Location) async throws -> [String] {
        let target = Array("../nowhere/at all".utf8)
        try await Features(l).makeSymlink(EntryPath("s")!, target: target, metadata: metadata(size: 0), selection: .all)
        try await Features(l).makeSymlink(EntryPath("s")!, target: Array("t2".utf8), metadata: metadata(size: 0), selection: .all)
        let e = try await l.stat(EntryPath("s")!)
        var out: [String] = []
        if e?.kind != .symlink { out.append("kind \(String(describing: e?.kind))") }
        if e?.symlinkTarget != Array("t2".utf8) { out.append("target \(e?.symlinkTarget.map { String(decoding: $0, as: UTF8.self) } ?? "none")") }
        return out
    }

    static func hardLinks(_ l: any Location) async throws -> [String] {
        try await put(l, EntryPath("h1")!, [7, 7])
        try await Features(l).makeHardLink(EntryPath("h2")!, to: EntryPath("h1")!)
        try await Features(l).makeHardLink(EntryPath("h2")!, to: EntryPath("h1")!)  // already linked: no-op
        let a = try await l.stat(EntryPath("h1")!), b = try await l.stat(EntryPath("h2")!)
        var out: [String] = []
        if a?.metadata.fileID == nil || a?.metadata.fileID != b?.metadata.fileID { out.append("fileID not shared: not one file") }
        if let listing = try await l.list(.root), !listing.staleTemporaries.isEmpty { out.append("temporaries left") }
        return out
    }

    static func sparseWrites(_ l: any Location, holes: Bool) async throws -> [String] {
        let w = try await l.createFile(EntryPath("sparse")!, metadata: metadata(size: 4 << 20), attributes: nil, selection: .all)
        let data = TestTree.bytes(4096, seed: 9)
        try await withBuffer(data) { try await w.write($0, at: 1 << 20) }
        try await w.commit()
        var expected = [UInt8](repeating: 0, count: 4 << 20)
        expected.replaceSubrange((1 << 20)..<((1 << 20) + 4096), with: data)
        var out: [String] = []
        if try await get(l, EntryPath("sparse")!) != expected { out.append("content differs") }
        guard holes else { return out }
        guard let e = try await l.stat(EntryPath("sparse")!), let allocated = e.metadata.allocatedBytes else {
            return out + ["allocatedBytes not reported"]
        }
        if allocated > 1 << 20 { out.append("allocated \(allocated) bytes for 4 KiB of data") }
        return out
    }

    static func extendedAttributes(_ l: any Location) async throws -> [String] {
        let attrs = [ExtendedAttribute(name: Array("user.a".utf8), value: [1, 2]), ExtendedAttribute(name: Array("user.b".utf8), value: [])]
        let w = try await l.createFile(EntryPath("x")!, metadata: metadata(size: 0), attributes: attrs, selection: .all)
        try await w.commit()
        var out: [String] = []
        if try await Features(l).extendedAttributes(EntryPath("x")!, kind: .file) != attrs { out.append("xattrs not kept on commit") }
        try await Features(l).setExtendedAttributes(EntryPath("x")!, kind: .file, [attrs[1]])
        if try await Features(l).extendedAttributes(EntryPath("x")!, kind: .file) != [attrs[1]] { out.append("xattrs not replaced") }
        return out
    }

    static func readRange(_ l: any Location) async throws -> [String] {
        let bytes = TestTree.bytes(200_000, seed: 7)
        try await put(l, EntryPath("r")!, bytes)
        guard let e = try await l.stat(EntryPath("r")!) else { return ["stat found nothing"] }
        let reader = try await l.openForReading(EntryPath("r")!, expected: e)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1000, alignment: 16)
        defer { buffer.deallocate() }
        var got: [UInt8] = []
        while got.count < 1000 {
            let n = try await reader.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[got.count...]), at: 123_456 + Int64(got.count))
            if n == 0 { break }
            got += buffer[got.count..<(got.count + n)]
        }
        let atEnd = try await reader.read(into: buffer, at: 200_000)
        _ = try await reader.close()
        var out: [String] = []
        if got != Array(bytes[123_456..<124_456]) { out.append("range 123456+1000 differs (\(got.count) bytes read)") }
        if atEnd != 0 { out.append("read at the end gave \(atEnd) bytes") }
        return out
    }

    static func listingForCopy(_ l: any Location) async throws -> [String] {
        for n in ["a", "b", "c"] { try await put(l, EntryPath(n)!, Array(n.utf8)) }
        let plain = try await l.list(.root)?.entries.map(\.name)
        let copying = try await Features(l).listForCopying(.root) { $0 != Array("b".utf8) }?.entries.map(\.name)
        return plain == copying && plain?.count == 3 ? [] : ["listing \(String(describing: plain)) vs for a copy \(String(describing: copying))"]
    }

    static func atimeKept(_ l: any Location) async throws -> [String] {
        try await put(l, EntryPath("t")!, [1])
        guard let e = try await l.stat(EntryPath("t")!) else { return ["gone"] }
        return sameTime(e.metadata.atime, metadata(size: 0).atime, l) ? [] : ["atime \(e.metadata.atime)"]
    }

    /// Equal within the finest time the location keeps (``Capabilities/mtimePrecisionNanoseconds``).
    static func sameTime(_ a: Timestamp, _ b: Timestamp, _ l: any Location) -> Bool {
        let p = max(1, l.capabilities.mtimePrecisionNanoseconds)
        return a.totalNanoseconds / p == b.totalNanoseconds / p
    }

    static func caseSensitiveNames(_ l: any Location) async throws -> [String] {
        try await put(l, EntryPath("Name")!, [1])
        try await put(l, EntryPath("name")!, [2])
        let names = try await l.list(.root)?.entries.map { String(decoding: $0.name, as: UTF8.self) } ?? []
        var out: [String] = []
        if names != ["Name", "name"] { out.append("listing \(names)") }
        if try await get(l, EntryPath("Name")!) != [1] { out.append("content of Name replaced") }
        return out
    }

    static func deviceNodes(_ l: any Location) async throws -> [String] {
        var out: [String] = []
        var m = metadata(size: 0)
        try await Features(l).makeSpecial(EntryPath("fifo")!, kind: .fifo, metadata: m, selection: .all)
        m.deviceNumber = UInt64(cferry_makedev(1, 3))
        try await Features(l).makeSpecial(EntryPath("null")!, kind: .characterDevice, metadata: m, selection: .all)
        let fifo = try await l.stat(EntryPath("fifo")!), null = try await l.stat(EntryPath("null")!)
        if fifo?.kind != .fifo { out.append("kind of the FIFO \(String(describing: fifo?.kind))") }
        if null?.kind != .characterDevice || null?.metadata.deviceNumber != m.deviceNumber {
            out.append("device \(String(describing: null?.kind)) \(String(describing: null?.metadata.deviceNumber))")
        }
        if fifo.map({ !sameTime($0.metadata.mtime, m.mtime, l) }) ?? true { out.append("mtime \(String(describing: fifo?.metadata.mtime))") }
        return out
    }

    static func dataExtents(_ l: any Location) async throws -> [String] {
        let w = try await l.createFile(EntryPath("sparse")!, metadata: metadata(size: 4 << 20), attributes: nil, selection: .all)
        try await withBuffer(TestTree.bytes(4096, seed: 3)) { try await w.write($0, at: 2 << 20) }
        try await w.commit()
        guard let e = try await l.stat(EntryPath("sparse")!) else { return ["gone"] }
        let r = try await l.openForReading(EntryPath("sparse")!, expected: e)
        let extents = try await r.dataExtents()
        _ = try await r.close()
        let covered = extents.reduce(Int64(0)) { $0 + $1.length }
        let holdsData = extents.contains { $0.offset <= 2 << 20 && $0.offset + $0.length >= (2 << 20) + 4096 }
        return holdsData && covered <= 1 << 20 ? [] : ["extents \(extents)"]
    }

    static func serverSideCopy(_ l: any Location) async throws -> [String] {
        let bytes = TestTree.bytes(10_000, seed: 11)
        try await l.makeDirectory(EntryPath("d")!)
        try await put(l, EntryPath("d/f")!, bytes)
        // From the same location (its own root) to itself: the path is the same on both
        // sides, so copy a file onto itself with new metadata.
        var m = metadata(size: Int64(bytes.count), mtime: 1_400_000_000)
        m.permissions = 0o600
        guard try await Features(l).copyServerSide(from: l, EntryPath("d/f")!, metadata: m, attributes: nil, selection: .all) else {
            return ["copyServerSide declined a file canCopyServerSide accepted"]
        }
        var out: [String] = []
        if try await get(l, EntryPath("d/f")!) != bytes { out.append("content differs") }
        if try await l.stat(EntryPath("d/f")!)?.metadata.mtime != m.mtime { out.append("mtime not the one given") }
        return out
    }

    static func contentComparison(_ l: any Location) async throws -> [String] {
        let bytes = TestTree.bytes(5000, seed: 13)
        try await put(l, EntryPath("c")!, bytes)
        try await put(l, EntryPath("same")!, bytes)
        try await put(l, EntryPath("other")!, TestTree.bytes(5000, seed: 14))
        guard let c = try await l.stat(EntryPath("c")!) else { return ["gone"] }
        guard c.contentTag != nil else { return [notClaimed] }
        var out: [String] = []
        for (name, expected) in [("same", true), ("other", false)] {
            let e = try requireStat(try await l.stat(EntryPath(name)!))
            let reader = try await l.openForReading(EntryPath(name)!, expected: e)
            let answer = try await Features(l).holdsSameContent(EntryPath("c")!, c, as: reader)
            _ = try await reader.close()
            if answer != expected { out.append("holdsSameContent of \(name): \(String(describing: answer))") }
        }
        return out
    }

    static func scopeOfTree(_ l: any Location) async throws -> [String] {
        guard let scope = Features(l).scope else { return ["nil"] }
        return scope.overlaps(scope) && !scope.display.isEmpty ? [] : ["scope \(scope)"]
    }
}

/// Runs of a listing: each sorted, together the listing, none above the size asked.
func runListing(_ l: any Location) async throws -> [String] {
    for i in (0..<25).reversed() { try await LocationConformance.put(l, EntryPath("n\(i)")!, [UInt8(i)]) }
    var runs: [[Entry]] = []
    _ = try await Features(l).listInRuns(.root, runSize: 7) { runs.append($0) }
    let all = try await l.list(.root)?.entries.map(\.name) ?? []
    var out: [String] = []
    if runs.contains(where: { $0.count > 7 }) { out.append("run sizes \(runs.map(\.count))") }
    if runs.contains(where: { run in zip(run, run.dropFirst()).contains { !$0.name.lexicographicallyPrecedes($1.name) } }) {
        out.append("a run is not sorted")
    }
    if runs.flatMap({ $0.map(\.name) }).sorted(by: { $0.lexicographicallyPrecedes($1) }) != all { out.append("runs do not hold the listing") }
    return out
}

/// A file copied by the location's direct copier into a second, fresh location of its kind:
/// the same bytes and checksum, the metadata given, read back when asked.
func directCopy(_ l: any Location, _ make: LocationConformance.Factory) async throws -> [String] {
    let bytes = TestTree.bytes(20_000, seed: 17)
    try await LocationConformance.put(l, EntryPath("f")!, bytes)
    let other = try await make()
    guard let copier = Features(l).directCopier(to: other) else { return ["no copier to another location of its kind"] }
    guard let e = try await l.stat(EntryPath("f")!) else { return ["gone"] }
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 64)
    defer { buffer.deallocate() }
    let hash = ChecksumState()
    let copy = try copier.copy(EntryPath("f")!, expected: e.metadata, selection: .all, buffer: buffer, hash: hash, readBack: true)
    var out: [String] = []
    if copy.sourceChanged { out.append("source changed") }
    if copy.written != Int64(bytes.count) { out.append("written \(copy.written)") }
    if copy.arrived?.checksum != copy.checksum { out.append("read-back checksum differs") }
    if try await LocationConformance.get(other, EntryPath("f")!) != bytes { out.append("content differs") }
    if try await other.stat(EntryPath("f")!)?.metadata.mtime != e.metadata.mtime { out.append("mtime") }
    return out
}

/// What the location says it cannot apply: nothing of an entry owned by this process.
func metadataWithheld(_ l: any Location) async throws -> [String] {
    var m = LocationConformance.metadata(size: 0)
    m.uid = geteuid()
    m.gid = getegid()
    let withheld = Features(l).metadataWithheld(m, kind: .file, selection: .all)
    return withheld == nil ? [] : ["withheld for its own owner: \(withheld!.reason)"]
}

/// A writer that never commits nor aborts (the process died): its file is not visible, and
/// whatever it left (an object store's unfinished multipart upload; nothing for an unnamed
/// `O_TMPFILE`) is named in the root's listing and cleared by `removeTemporary`.
func cutOffWrite(_ l: any Location) async throws -> [String] {
    let size = 20 << 20  // above S3's multipart threshold: parts go up before the commit
    let w = try await l.createFile(EntryPath("cut")!, metadata: LocationConformance.metadata(size: Int64(size)), attributes: nil, selection: .all)
    try await LocationConformance.withBuffer(TestTree.bytes(size, seed: 23)) { try await w.write($0, at: 0) }
    var out: [String] = []
    let features = Features(l)
    guard let listing = try await l.list(.root) else { return ["the root cannot be listed"] }
    if listing.entries.contains(where: { $0.name == Array("cut".utf8) }) { out.append("visible before its commit") }
    for name in listing.staleTemporaries { try await features.removeTemporary(in: .root, name: name) }
    if let after = try await l.list(.root), !after.staleTemporaries.isEmpty { out.append("leftovers after removeTemporary: \(after.staleTemporaries.count)") }
    await w.abort()
    return out
}

/// The entry, or an error naming what was missing (a check's precondition, not a finding).
func requireStat(_ entry: Entry?) throws -> Entry {
    guard let entry else { throw TestTreeError("an entry the check just wrote is missing") }
    return entry
}
