import FerryCore
import FerryLocal

/// A test location whose core operations go to a POSIX tree: a test's type conforms and
/// implements only what it changes (a listing that fails, a writer that corrupts).
protocol ForwardingToPOSIX: Location {
    var base: POSIXLocation { get }
}

extension ForwardingToPOSIX {
    func list(_ directory: EntryPath) async throws -> Listing? { try await base.list(directory) }
    func stat(_ path: EntryPath) async throws -> Entry? { try await base.stat(path) }
    func openForReading(_ path: EntryPath, expected: Entry) async throws -> any EntryReader {
        try await base.openForReading(path, expected: expected)
    }
    func createFile(_ path: EntryPath, metadata: FileMetadata, attributes: [ExtendedAttribute]?, selection: MetadataSelection) async throws -> any EntryWriter {
        try await base.createFile(path, metadata: metadata, attributes: attributes, selection: selection)
    }
    func makeDirectory(_ path: EntryPath) async throws { try await base.makeDirectory(path) }
    func setMetadata(_ path: EntryPath, kind: EntryKind, metadata: FileMetadata, selection: MetadataSelection) async throws {
        try await base.setMetadata(path, kind: kind, metadata: metadata, selection: selection)
    }
    func remove(_ path: EntryPath, kind: EntryKind) async throws { try await base.remove(path, kind: kind) }
}
