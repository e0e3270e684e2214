/// Reads every data extent of `reader` in chunks of up to `buffer.count` bytes, feeds
/// `hash` (reset first; holes as zeros) and hands each chunk to `sink` with its offset.
/// Returns the content checksum and the data bytes read. A file that shrank while it was
/// read ends early; the caller's re-stat notices.
public func pumpExtents(
    _ reader: any EntryReader, extents: [Extent], size: Int64, buffer: UnsafeMutableRawBufferPointer, hash: ChecksumState,
    sink: (UnsafeRawBufferPointer, Int64) async throws -> Void
) async throws -> (ContentChecksum, Int64) {
    var position: Int64 = 0
    var dataBytes: Int64 = 0
    hash.reset()
    let bufferSize = buffer.count
    outer: for extent in extents {
        let end = min(extent.offset + extent.length, size)
        if extent.offset > position { hash.updateZeros(extent.offset - position) }
        position = max(position, extent.offset)
        while position < end {
            let want = Int(min(Int64(bufferSize), end - position))
            let n = try await reader.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<want]), at: position)
            if n == 0 { break outer }
            let chunk = UnsafeRawBufferPointer(rebasing: buffer[0..<n])
            hash.update(chunk)
            try await sink(chunk, position)
            position += Int64(n)
            dataBytes += Int64(n)
        }
    }
    if size > position { hash.updateZeros(size - position) }
    return (hash.finalize(), dataBytes)
}

/// The content checksum of an open file and its metadata after the read. The reader is
/// closed either way (a failed read does not leave its handle open).
public func readContentChecksum(
    _ reader: any EntryReader, buffer: UnsafeMutableRawBufferPointer, hash: ChecksumState
) async throws -> (ContentChecksum, FileMetadata) {
    let sum: ContentChecksum
    do {
        let extents = try await reader.dataExtents()
        (sum, _) = try await pumpExtents(reader, extents: extents, size: reader.metadata.size, buffer: buffer, hash: hash) { _, _ in }
    } catch {
        _ = try? await reader.close()
        throw error
    }
    return (sum, try await reader.close())
}
