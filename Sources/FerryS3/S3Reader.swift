import AsyncHTTPClient
import Crypto
import FerryCore
import Foundation
import NIOCore

/// Reads one object. Objects up to ``S3Location/streamingLimit`` come in one GET whose
/// body is copied out as it arrives (a broken connection resumes where it stopped, with
/// `If-Match` on the ETag); larger ones, or a read out of order, in ranged GETs of 8 MiB
/// blocks, up to ``blocksAhead`` of them fetched in parallel ahead of the reader. Bytes
/// read in order are checked against the object's ETag (single-part or multipart, see
/// ``S3ETag``), and every answer must carry the same ETag. Used by one task at a time.
final class S3Reader: EntryReader, @unchecked Sendable {
    let location: S3Location
    let key: String
    let path: EntryPath
    let metadata: FileMetadata
    static let blockSize: Int64 = 8 << 20

    private var block: (offset: Int64, bytes: ByteBuffer)?
    private var object: S3Object?
    /// Ranged GETs under way for the blocks after the current one, by block offset.
    private var prefetch: [Int64: Task<(S3Object, ByteBuffer), any Error>] = [:]
    static let blocksAhead: Int64 = 4
    /// The first answer; every later one must carry the same ETag.
    private var first: S3Object?
    /// Checks the bytes read in order; nil when the ETag cannot be checked.
    private var checker: S3ETagChecker?

    /// The streamed GET's body (nil before it is opened, at its end, or after it broke).
    private var stream: HTTPClientResponse.Body.AsyncIterator?
    /// Received bytes not read yet; they start at ``position``.
    private var pending = ByteBuffer()
    private var position: Int64 = 0
    /// Whether reads still follow the stream (a read elsewhere falls back to ranged GETs).
    private var streaming: Bool
    /// Times the stream was opened again after it broke.
    private var resumes = 0
    /// The body the listing fetched (``PrefetchedBodies``), until the first read checks it.
    private var preloaded: (object: S3Object, body: ByteBuffer)?

    deinit { for t in prefetch.values { t.cancel() } }

    init(location: S3Location, key: String, path: EntryPath, metadata: FileMetadata) {
        self.location = location
        self.key = key
        self.path = path
        self.metadata = metadata
        self.streaming = metadata.size <= location.streamingLimit
        if let kept = location.prefetched.take(key), kept.object.size == metadata.size, kept.body.readableBytes == metadata.size {
            preloaded = kept
            streaming = false
        }
    }

    func dataExtents() async throws -> [Extent] {
        metadata.size > 0 ? [Extent(offset: 0, length: metadata.size)] : []
    }

    func extendedAttributes() async throws -> [ExtendedAttribute] {
        try await ensureObject()
        return S3Metadata.decodeAttributes(object?.metadata ?? [:])
    }

    private func ensureObject() async throws {
        if object != nil { return }
        if let kept = preloaded {
            preloaded = nil
            try await check(kept.object, kept.body, at: 0)
            object = kept.object
            block = (0, kept.body)
        } else if metadata.size > 0 && streaming {
            try await openStream()
        } else if metadata.size > 0 {
            try await load(0)
        } else {
            object = try await location.client.headObject(bucket: location.bucket, key: key)
            if object == nil { throw missing() }
        }
    }

    private func missing() -> S3Error {
        S3Error(.http, operation: "GetObject", bucket: location.bucket, key: key, status: 404, message: "the object is gone", path: path)
    }

    /// Fetches the block holding `offset` (the whole object when it is small).
    private func load(_ offset: Int64) async throws {
        let whole = metadata.size <= location.multipartThreshold
        let start = whole ? 0 : offset - offset % S3Reader.blockSize
        let (info, bytes): (S3Object, ByteBuffer)
        if whole {
            (info, bytes) = try await location.client.getObject(bucket: location.bucket, key: key)
        } else {
            // Keep the next blocks coming while this one is read.
            for n in 0...S3Reader.blocksAhead {
                let b = start + n * S3Reader.blockSize
                if b < metadata.size && prefetch[b] == nil { prefetch[b] = fetch(b) }
            }
            (info, bytes) = try await prefetch.removeValue(forKey: start)!.value
            for (b, t) in prefetch where b < start { t.cancel(); prefetch[b] = nil }
        }
        try await check(info, bytes, at: start)
        object = info
        block = (start, bytes)
    }

    /// Checks a block read in order: from the same object as every earlier answer, and fed to the ETag check.
    private func check(_ info: S3Object, _ bytes: ByteBuffer, at start: Int64) async throws {
        try await adopt(info)
        try feed(bytes, at: start)
    }

    /// Takes an answer's object: the first one sets the ETag the bytes are checked
    /// against; a later one with another ETag means the object changed while it was read.
    private func adopt(_ info: S3Object) async throws {
        if let first {
            if info.etag != first.etag {
                throw S3Error(.sourceChanged, operation: "GetObject", bucket: location.bucket, key: key,
                              message: "the object changed while it was read (ETag \(first.etag ?? "none"), then \(info.etag ?? "none"))",
                              path: path, retryClass: .itemFailed)
            }
        } else {
            first = info
            checker = try await makeChecker(info)
        }
    }

    /// Feeds bytes read in order to the ETag check; the check ends when the last byte is in.
    private func feed(_ bytes: ByteBuffer, at start: Int64) throws {
        guard var c = checker, start == c.fed else {
            if let c = checker, start > c.fed { checker = nil }  // read out of order: cannot check
            return
        }
        bytes.withUnsafeReadableBytes { c.feed($0) }
        checker = c
        guard c.fed == c.total else { return }
        let computed = c.computed()
        if computed != c.expected {
            throw S3Error(.checksumMismatch, operation: "GetObject", bucket: location.bucket, key: key,
                          message: "the bytes received (ETag \(computed.description)) are not what the server stored (ETag \(c.expected.description))",
                          path: path, retryClass: .retryable)
        }
    }

    private func makeChecker(_ info: S3Object) async throws -> S3ETagChecker? {
        guard info.etagIsContentMD5, info.size == metadata.size, let etag = S3ETag(info.etag) else { return nil }
        return try await location.etagChecker(key: key, etag: etag, size: info.size)
    }

    private func fetch(_ start: Int64) -> Task<(S3Object, ByteBuffer), any Error> {
        let end = min(start + S3Reader.blockSize, metadata.size) - 1
        let (client, bucket, key) = (location.client, location.bucket, self.key)
        return Task { try await client.getObject(bucket: bucket, key: key, range: start...end) }
    }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) async throws -> Int {
        if offset >= metadata.size || buffer.count == 0 { return 0 }
        if preloaded != nil { try await ensureObject() }
        if streaming {
            if offset == position { return try await readStreamed(into: buffer) }
            streaming = false
            stream = nil
            pending = ByteBuffer()
        }
        if block == nil || offset < block!.offset || offset >= block!.offset + Int64(block!.bytes.readableBytes) {
            try await load(offset)
        }
        let (start, bytes) = block!
        let available = Int64(bytes.readableBytes) - (offset - start)
        if available <= 0 { return 0 }
        let n = Int(min(Int64(buffer.count), available))
        bytes.withUnsafeReadableBytes { raw in
            buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: raw[Int(offset - start)..<(Int(offset - start) + n)]))
        }
        return n
    }

    /// Fills `buffer` from the stream at ``position`` (less only at the end of the object).
    private func readStreamed(into buffer: UnsafeMutableRawBufferPointer) async throws -> Int {
        var copied = 0
        while copied < buffer.count && position < metadata.size {
            if pending.readableBytes == 0 {
                guard let chunk = try await nextChunk() else { break }
                pending = chunk
            }
            let n = min(buffer.count - copied, pending.readableBytes, Int(metadata.size - position))
            pending.withUnsafeReadableBytes { raw in
                (buffer.baseAddress! + copied).copyMemory(from: raw.baseAddress!, byteCount: n)
            }
            pending.moveReaderIndex(forwardBy: n)
            position += Int64(n)
            copied += n
        }
        // Read the end of the body too, so that the connection goes back to the pool.
        if pending.readableBytes == 0, stream != nil, let object, position == object.size { _ = try await nextChunk() }
        return copied
    }

    /// GET from ``position`` on (the first time from the start, later with `If-Match` on the first answer's ETag).
    private func openStream() async throws {
        let (info, body): (S3Object, HTTPClientResponse.Body)
        do {
            (info, body) = try await location.client.openObject(bucket: location.bucket, key: key, from: position, ifMatch: first?.etag)
        } catch let error as S3Error where error.status == 412 {
            throw S3Error(.sourceChanged, operation: "GetObject", bucket: location.bucket, key: key,
                          message: "the object changed while it was read (it no longer has ETag \(first?.etag ?? "none"))",
                          path: path, retryClass: .itemFailed)
        }
        try await adopt(info)
        object = info
        stream = body.makeAsyncIterator()
    }

    /// The next piece of the body (nil at the end of the object), opening the stream again
    /// where it broke, up to the client's attempt limit.
    private func nextChunk() async throws -> ByteBuffer? {
        while true {
            if stream == nil {
                if let object, position >= object.size { return nil }
                try await openStream()
            }
            let broke: any Error
            do {
                var it = stream!
                let chunk = try await it.next()
                stream = it
                if let chunk {
                    try feed(chunk, at: position)
                    return chunk
                }
                stream = nil
                guard let object, position < object.size else { return nil }
                broke = S3Error(.transport, operation: "GetObject", bucket: location.bucket, key: key,
                                message: "the body ended at byte \(position) of \(object.size)", path: path)
            } catch let error as S3Error {
                throw error  // the bytes do not match the ETag
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                broke = error
            }
            try await resume(after: broke)
        }
    }

    /// Drops a broken stream and waits before it is opened again at ``position``.
    private func resume(after error: any Error) async throws {
        stream = nil
        resumes += 1
        guard resumes < location.client.maxAttempts else {
            throw S3Error(.transport, operation: "GetObject", bucket: location.bucket, key: key,
                          message: "the download broke off at byte \(position) \(resumes) times (last: \(error))", path: path)
        }
        location.client.logger.warning("resuming an S3 download", metadata: [
            "key": "\(key)", "offset": "\(position)", "error": "\(error)", "attempt": "\(resumes)"])
        try await S3Client.backOff(attempt: resumes)
    }

    /// The object's metadata as the GET/HEAD showed it (S3 has no ctime: it is the mtime).
    func close() async throws -> FileMetadata {
        try await ensureObject()
        guard let object else { throw missing() }
        return S3Metadata.decode(object, isDirectory: false).1
    }
}
