import Crypto
import FerryCore
import Foundation
import NIOCore

/// Writes one object. Up to the multipart threshold the bytes gather in memory and go in
/// one PutObject at commit (S3 makes it appear atomically). Above it, a multipart upload
/// with parts sized for the object (at least 8 MiB, at most 10,000 parts); the object
/// appears only when the upload completes, and ``abort()`` aborts it. Up to
/// ``partsInFlight`` parts upload at once. Holes are sent as zeros. Every PutObject and
/// part carries Content-MD5 (the server refuses bytes that do not match), and the ETag the
/// server answers for the whole object is compared with the MD5s of what was sent (see
/// ``S3ETag``): a match is ``contentConfirmed``. Multipart uploads declare composite CRC32
/// checksums: each part also carries its CRC32, which the server checks and keeps (and a
/// server that would build a full-object checksum at completion need not). Used by one
/// task at a time.
final class S3Writer: EntryWriter, @unchecked Sendable {
    let location: S3Location
    let key: String
    let path: EntryPath
    let size: Int64
    let metadata: [String: String]
    let partSize: Int
    private var buffer: ByteBuffer
    /// File offset of `buffer`'s first byte.
    private var bufferStart: Int64 = 0
    private var uploadID: String?
    private var parts: [(Int, String)] = []
    /// CRC32s (base64) of the parts sent, in order.
    private var partCRCs: [String] = []
    /// MD5s of the parts sent, in order.
    private var partDigests: [UInt8] = []
    /// Parts being uploaded (bounded by `partsInFlight`); awaited in order.
    private var pending: [Task<(number: Int, etag: String, md5: [UInt8], crc32: String), any Error>] = []
    private(set) var contentConfirmed = false
    static let partsInFlight = 4
    /// When the write began: bounds the stored object's Last-Modified for the metadata cache.
    private let started = ContinuousClock.now

    /// Metadata known not to fit before anything is sent.
    let notStored: [String]

    init(location: S3Location, key: String, path: EntryPath, size: Int64, metadata: [String: String], notStored: [String]) {
        self.notStored = notStored
        self.location = location
        self.key = key
        self.path = path
        self.size = size
        self.metadata = metadata
        partSize = Int(S3Writer.partSize(objectSize: size))
        buffer = ByteBuffer()
        buffer.reserveCapacity(Int(min(size, location.multipartThreshold, Int64(partSize))))
    }

    var isMultipart: Bool { size > location.multipartThreshold }

    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) async throws {
        let end = bufferStart + Int64(buffer.readableBytes)
        if offset > end { try await appendZeros(offset - end) }
        buffer.writeBytes(bytes)
        try await flushFullParts()
    }

    private func appendZeros(_ count: Int64) async throws {
        var left = count
        while left > 0 {
            let n = Int(min(left, Int64(partSize)))
            buffer.writeRepeatingByte(0, count: n)
            left -= Int64(n)
            try await flushFullParts()
        }
    }

    private func flushFullParts() async throws {
        guard isMultipart else { return }
        while buffer.readableBytes >= partSize {
            let part = buffer.readSlice(length: partSize)!
            try await upload(part)
            bufferStart += Int64(partSize)
            buffer.discardReadBytes()
        }
    }

    private func upload(_ part: ByteBuffer) async throws {
        let client = location.client
        if uploadID == nil {
            uploadID = try await client.createMultipartUpload(bucket: location.bucket, key: key, metadata: metadata, crc32Parts: true)
        }
        if pending.count >= S3Writer.partsInFlight { try await finishPart() }
        let number = parts.count + pending.count + 1
        let (bucket, key, id) = (location.bucket, self.key, uploadID!)
        pending.append(Task {
            let md5 = part.md5Digest
            let crc = part.crc32Base64
            let etag = try await client.uploadPart(bucket: bucket, key: key, uploadID: id, partNumber: number, body: part, contentMD5: md5, crc32: crc)
            return (number, etag, Array(md5), crc)
        })
    }

    private func finishPart() async throws {
        let done = try await pending.removeFirst().value
        parts.append((done.number, done.etag))
        partDigests += done.md5
        partCRCs.append(done.crc32)
    }

    private func finishParts() async throws {
        while !pending.isEmpty { try await finishPart() }
    }

    /// Compares the ETag the server gave the stored object with what was sent.
    private func confirm(_ stored: S3Object, sent: S3ETag) throws {
        guard stored.etagIsContentMD5, let answered = S3ETag(stored.etag) else { return }
        if answered != sent {
            throw S3Error(.checksumMismatch, operation: isMultipart ? "CompleteMultipartUpload" : "PutObject", bucket: location.bucket, key: key,
                          message: "the server stored ETag \(answered.description), but the bytes sent give \(sent.description)",
                          path: path, retryClass: .retryable)
        }
        contentConfirmed = true
    }

    /// Ferry's part size for an object of `objectSize` bytes: 8 MiB (as the aws CLI's), or
    /// the whole MiBs that keep it within 10,000 parts.
    static func partSize(objectSize size: Int64) -> Int64 {
        let mib: Int64 = 1 << 20
        let needed = (size + 9_999) / 10_000
        return max(8 * mib, (needed + mib - 1) / mib * mib)
    }

    func commit() async throws -> [String] {
        let stored: S3Object
        let end = bufferStart + Int64(buffer.readableBytes)
        if size > end { try await appendZeros(size - end) }
        if isMultipart {
            if buffer.readableBytes > 0 || parts.isEmpty && pending.isEmpty { try await upload(buffer.slice()) }
            try await finishParts()
            stored = try await location.client.completeMultipartUpload(bucket: location.bucket, key: key, uploadID: uploadID!, parts: parts,
                                                                      crc32s: partCRCs)
            uploadID = nil
            try confirm(stored, sent: S3ETag(partDigests: partDigests, multipart: parts.count))
        } else {
            let md5 = buffer.md5Digest
            stored = try await location.client.putObject(bucket: location.bucket, key: key, body: buffer, metadata: metadata, contentMD5: md5)
            try confirm(stored, sent: S3ETag(partDigests: Array(md5), multipart: nil))
        }
        buffer = ByteBuffer()
        let kept = try await location.metadataSupport.keepsUserMetadata(location: location, key: key)
        // One cache row per upload: what the server holds (no user metadata where it drops it).
        location.metadataCache?.rememberWrite(scope: location.cacheScope, key: key, stored: stored, size: size,
                                              metadata: kept ? metadata : [:],
                                              sentMtime: kept ? nil : S3Metadata.parseTime(metadata[S3Metadata.mtime]),
                                              duration: ContinuousClock.now - started)
        guard kept else {
            return notStored + ["x-amz-meta-{\(metadata.keys.sorted().joined(separator: ","))} (the server drops user metadata)"]
        }
        return notStored
    }

    func abort() async {
        for task in pending { task.cancel() }
        for task in pending { _ = try? await task.value }
        pending = []
        if let uploadID {
            try? await location.client.abortMultipartUpload(bucket: location.bucket, key: key, uploadID: uploadID)
            self.uploadID = nil
        }
        buffer = ByteBuffer()
    }
}
