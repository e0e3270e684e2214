import AsyncHTTPClient
import Crypto
import Foundation
import NIOCore
import NIOHTTP1

/// One object as a listing or HEAD shows it.
public struct S3Object: Sendable, Hashable {
    public var key: String
    public var size: Int64
    public var lastModified: Date?
    public var etag: String?
    /// `x-amz-meta-*` values, keys lower-cased without the prefix (HEAD only).
    public var metadata: [String: String]
    /// `x-amz-server-side-encryption` (`AES256`, `aws:kms`, …), or `customer` for SSE-C.
    public var serverSideEncryption: String? = nil
    /// The `Date` of the server's answer (what a write's Last-Modified will be close to).
    public var serverDate: Date? = nil

    /// Whether the ETag can be an MD5 of the bytes (SSE-KMS and SSE-C ETags are not).
    var etagIsContentMD5: Bool { serverSideEncryption == nil || serverSideEncryption == "AES256" }
}

/// One page of ListObjectsV2.
public struct S3ListPage: Sendable {
    public var objects: [S3Object]
    public var commonPrefixes: [String]
    public var nextContinuationToken: String?
}

extension S3Client {
    /// ListObjectsV2: one page under `prefix`, grouped by `delimiter` when given.
    public func listObjects(bucket: String, prefix: String, delimiter: String?, continuationToken: String? = nil, maxKeys: Int = 1000) async throws -> S3ListPage {
        var query: [(String, String)] = [("list-type", "2"), ("prefix", prefix), ("max-keys", "\(maxKeys)")]
        if let delimiter { query.append(("delimiter", delimiter)) }
        if let continuationToken { query.append(("continuation-token", continuationToken)) }
        let response = try await send(Request(method: .GET, bucket: bucket, query: query, operation: "ListObjectsV2"))
        guard let xml = XMLElement.parse(Data(response.body.readableBytesView)) else {
            throw S3Error(.badResponse, operation: "ListObjectsV2", bucket: bucket, key: prefix, message: "the listing is not XML")
        }
        let objects = xml.all("Contents").compactMap { c -> S3Object? in
            guard let key = c["Key"] else { return nil }
            return S3Object(key: key, size: Int64(c["Size"] ?? "0") ?? 0, lastModified: c["LastModified"].flatMap(WireDates.parseISO),
                            etag: c["ETag"], metadata: [:])
        }
        let prefixes = xml.all("CommonPrefixes").compactMap { $0["Prefix"] }
        let truncated = xml["IsTruncated"] == "true"
        return S3ListPage(objects: objects, commonPrefixes: prefixes, nextContinuationToken: truncated ? xml["NextContinuationToken"] : nil)
    }

    /// Every page of a listing.
    public func listAll(bucket: String, prefix: String, delimiter: String?, pageSize: Int = 1000) async throws -> (objects: [S3Object], prefixes: [String]) {
        var objects: [S3Object] = [], prefixes: [String] = []
        var token: String?
        repeat {
            let page = try await listObjects(bucket: bucket, prefix: prefix, delimiter: delimiter, continuationToken: token, maxKeys: pageSize)
            objects += page.objects
            prefixes += page.commonPrefixes
            token = page.nextContinuationToken
        } while token != nil
        return (objects, prefixes)
    }

    static func object(key: String, headers: HTTPHeaders) -> S3Object {
        var metadata: [String: String] = [:]
        for (name, value) in headers {
            let lower = name.lowercased()
            if lower.hasPrefix("x-amz-meta-") { metadata[String(lower.dropFirst("x-amz-meta-".count))] = value }
        }
        // A ranged GET's Content-Length is the range's; Content-Range carries the object's size.
        var size = Int64(headers.first(name: "content-length") ?? "0") ?? 0
        if let range = headers.first(name: "content-range"), let slash = range.lastIndex(of: "/"),
           let total = Int64(range[range.index(after: slash)...]) {
            size = total
        }
        return S3Object(
            key: key, size: size,
            lastModified: headers.first(name: "last-modified").flatMap(WireDates.parseHTTP),
            etag: headers.first(name: "etag"), metadata: metadata,
            serverSideEncryption: headers.first(name: "x-amz-server-side-encryption")
                ?? (headers.first(name: "x-amz-server-side-encryption-customer-algorithm") == nil ? nil : "customer"),
            serverDate: headers.first(name: "date").flatMap(WireDates.parseHTTP))
    }

    /// HeadObject; nil if there is no such key.
    public func headObject(bucket: String, key: String) async throws -> S3Object? {
        let response = try await send(Request(method: .HEAD, bucket: bucket, key: key, operation: "HeadObject"), accept: [200, 404])
        if response.status == 404 { return nil }
        return S3Client.object(key: key, headers: response.headers)
    }

    /// The size of part `partNumber` of a multipart object (HeadObject?partNumber=N answers
    /// with that part's Content-Length); nil if the server does not say.
    func partSize(bucket: String, key: String, partNumber: Int) async throws -> Int64? {
        let response = try await send(Request(method: .HEAD, bucket: bucket, key: key, query: [("partNumber", "\(partNumber)")],
                                              operation: "HeadObject"), accept: [200, 206])
        return response.headers.first(name: "content-length").flatMap { Int64($0) }
    }

    /// GetObject of `range` (inclusive byte offsets) or the whole object.
    public func getObject(bucket: String, key: String, range: ClosedRange<Int64>? = nil) async throws -> (S3Object, ByteBuffer) {
        var headers: [(String, String)] = []
        if let range { headers.append(("Range", "bytes=\(range.lowerBound)-\(range.upperBound)")) }
        let response = try await send(Request(method: .GET, bucket: bucket, key: key, headers: headers, operation: "GetObject"),
                                      accept: [200, 206], maxBody: range.map { Int($0.count) } ?? (5 << 30))
        return (S3Client.object(key: key, headers: response.headers), response.body)
    }

    /// GetObject from `offset` to the end, its body left to stream as it arrives. With
    /// `ifMatch`, an object whose ETag is no longer that is not served (HTTP 412).
    func openObject(bucket: String, key: String, from offset: Int64, ifMatch: String? = nil) async throws -> (S3Object, HTTPClientResponse.Body) {
        var headers: [(String, String)] = []
        if offset > 0 { headers.append(("Range", "bytes=\(offset)-")) }
        if let ifMatch { headers.append(("If-Match", ifMatch)) }
        var request = Request(method: .GET, bucket: bucket, key: key, headers: headers, operation: "GetObject")
        request.streamsBody = true
        let response = try await send(request, accept: [200, 206])
        guard let body = response.stream else {
            throw S3Error(.badResponse, operation: "GetObject", bucket: bucket, key: key, status: response.status, message: "the answer has no body")
        }
        // A server that ignores Range answers 200 with the whole object: those bytes are
        // not the ones asked for.
        if offset > 0 && !(response.headers.first(name: "content-range") ?? "").hasPrefix("bytes \(offset)-") {
            throw S3Error(.badResponse, operation: "GetObject", bucket: bucket, key: key, status: response.status,
                          message: "asked for the bytes from \(offset) on, the server answered \(response.headers.first(name: "content-range") ?? "without a Content-Range")")
        }
        return (S3Client.object(key: key, headers: response.headers), body)
    }

    static func metadataHeaders(_ metadata: [String: String]) -> [(String, String)] {
        metadata.sorted { $0.key < $1.key }.map { ("x-amz-meta-\($0.key)", $0.value) }
    }

    /// PutObject with Content-MD5 (the server checks the bytes it got); returns the stored
    /// object as the answer describes it (ETag, encryption).
    @discardableResult
    public func putObject(bucket: String, key: String, body: ByteBuffer, metadata: [String: String], contentType: String = "application/octet-stream",
                          contentMD5: Insecure.MD5.Digest? = nil) async throws -> S3Object {
        var headers = S3Client.metadataHeaders(metadata)
        headers.append(("Content-MD5", Data(contentMD5 ?? body.md5Digest).base64EncodedString()))
        headers.append(("Content-Type", contentType))
        headers.append(("Content-Length", "\(body.readableBytes)"))
        let response = try await send(Request(method: .PUT, bucket: bucket, key: key, headers: headers, body: body,
                                              payloadHash: SigV4Signer.unsignedPayload, operation: "PutObject"))
        var stored = S3Client.object(key: key, headers: response.headers)
        stored.size = Int64(body.readableBytes)
        return stored
    }

    /// CreateMultipartUpload. With `crc32Parts`, the upload declares CRC32 checksums
    /// (`x-amz-checksum-algorithm: CRC32`, composite): every part then carries its CRC32,
    /// which the server checks, and CompleteMultipartUpload names them.
    public func createMultipartUpload(bucket: String, key: String, metadata: [String: String], crc32Parts: Bool = false) async throws -> String {
        var headers = S3Client.metadataHeaders(metadata)
        headers.append(("Content-Type", "application/octet-stream"))
        if crc32Parts { headers.append(("x-amz-checksum-algorithm", "CRC32")) }
        let response = try await send(Request(method: .POST, bucket: bucket, key: key, query: [("uploads", "")], headers: headers,
                                              operation: "CreateMultipartUpload"))
        guard let id = XMLElement.parse(Data(response.body.readableBytesView))?["UploadId"] else {
            throw S3Error(.badResponse, operation: "CreateMultipartUpload", bucket: bucket, key: key, message: "no UploadId in the response")
        }
        return id
    }

    /// UploadPart with Content-MD5 (and `crc32`, base64, when the upload declared CRC32);
    /// returns the part's ETag.
    public func uploadPart(bucket: String, key: String, uploadID: String, partNumber: Int, body: ByteBuffer,
                           contentMD5: Insecure.MD5.Digest? = nil, crc32: String? = nil) async throws -> String {
        var headers = [("Content-MD5", Data(contentMD5 ?? body.md5Digest).base64EncodedString()), ("Content-Length", "\(body.readableBytes)")]
        if let crc32 { headers.append(("x-amz-checksum-crc32", crc32)) }
        let response = try await send(Request(method: .PUT, bucket: bucket, key: key,
                                              query: [("partNumber", "\(partNumber)"), ("uploadId", uploadID)], headers: headers,
                                              body: body, payloadHash: SigV4Signer.unsignedPayload, operation: "UploadPart"))
        guard let etag = response.headers.first(name: "etag") else {
            throw S3Error(.badResponse, operation: "UploadPart", bucket: bucket, key: key, message: "no ETag for part \(partNumber)")
        }
        return etag
    }

    /// CompleteMultipartUpload; returns the object as the answer describes it (ETag, encryption).
    /// `crc32s`: the parts' CRC32s (base64), in order, for an upload that declared CRC32.
    @discardableResult
    public func completeMultipartUpload(
        bucket: String, key: String, uploadID: String, parts: [(Int, String)], crc32s: [String]? = nil
    ) async throws -> S3Object {
        var xml = "<CompleteMultipartUpload>"
        for (i, (n, etag)) in parts.enumerated() {
            let crc = crc32s.map { "<ChecksumCRC32>\($0[i])</ChecksumCRC32>" } ?? ""
            xml += "<Part>\(crc)<ETag>\(xmlEscape(etag))</ETag><PartNumber>\(n)</PartNumber></Part>"
        }
        xml += "</CompleteMultipartUpload>"
        let body = ByteBuffer(string: xml)
        let response = try await send(Request(method: .POST, bucket: bucket, key: key, query: [("uploadId", uploadID)],
                                              headers: [("Content-Type", "application/xml")], body: body,
                                              payloadHash: SHA256Hex.of(body), operation: "CompleteMultipartUpload"))
        // S3 may answer 200 with an <Error> body.
        if let x = XMLElement.parse(Data(response.body.readableBytesView)), x.name == "Error" {
            throw S3Error(.http, operation: "CompleteMultipartUpload", bucket: bucket, key: key, status: 200, s3Code: x["Code"],
                          message: x["Message"] ?? "error", requestID: x["RequestId"])
        }
        var stored = S3Client.object(key: key, headers: response.headers)
        stored.etag = XMLElement.parse(Data(response.body.readableBytesView))?["ETag"] ?? stored.etag
        return stored
    }

    public func abortMultipartUpload(bucket: String, key: String, uploadID: String) async throws {
        _ = try await send(Request(method: .DELETE, bucket: bucket, key: key, query: [("uploadId", uploadID)],
                                   operation: "AbortMultipartUpload"), accept: [200, 204, 404])
    }

    /// Open multipart uploads under `prefix`: (key, upload id).
    public func listMultipartUploads(bucket: String, prefix: String) async throws -> [(key: String, uploadID: String)] {
        var result: [(String, String)] = []
        var keyMarker: String?, idMarker: String?
        repeat {
            var query: [(String, String)] = [("uploads", ""), ("prefix", prefix)]
            if let keyMarker { query.append(("key-marker", keyMarker)) }
            if let idMarker { query.append(("upload-id-marker", idMarker)) }
            let response = try await send(Request(method: .GET, bucket: bucket, query: query, operation: "ListMultipartUploads"))
            guard let xml = XMLElement.parse(Data(response.body.readableBytesView)) else { break }
            for u in xml.all("Upload") { if let k = u["Key"], let id = u["UploadId"] { result.append((k, id)) } }
            if xml["IsTruncated"] == "true" {
                keyMarker = xml["NextKeyMarker"]; idMarker = xml["NextUploadIdMarker"]
            } else {
                keyMarker = nil
            }
        } while keyMarker != nil
        return result
    }

    /// Server-side CopyObject with the metadata replaced.
    public func copyObject(bucket: String, key: String, sourceBucket: String, sourceKey: String, metadata: [String: String]) async throws {
        var headers = S3Client.metadataHeaders(metadata)
        headers.append(("x-amz-copy-source", "/\(sourceBucket)/" + SigV4Signer.uriEncode(sourceKey, keepSlash: true)))
        headers.append(("x-amz-metadata-directive", "REPLACE"))
        headers.append(("Content-Type", "application/octet-stream"))
        let response = try await send(Request(method: .PUT, bucket: bucket, key: key, headers: headers, operation: "CopyObject"))
        if let x = XMLElement.parse(Data(response.body.readableBytesView)), x.name == "Error" {
            throw S3Error(.http, operation: "CopyObject", bucket: bucket, key: key, status: 200, s3Code: x["Code"],
                          message: x["Message"] ?? "error", requestID: x["RequestId"])
        }
    }

    /// UploadPartCopy: bytes `range` of the source object as part `partNumber`; returns its ETag.
    public func uploadPartCopy(bucket: String, key: String, uploadID: String, partNumber: Int,
                               sourceBucket: String, sourceKey: String, range: ClosedRange<Int64>) async throws -> String {
        let headers = [("x-amz-copy-source", "/\(sourceBucket)/" + SigV4Signer.uriEncode(sourceKey, keepSlash: true)),
                       ("x-amz-copy-source-range", "bytes=\(range.lowerBound)-\(range.upperBound)")]
        let response = try await send(Request(method: .PUT, bucket: bucket, key: key,
                                              query: [("partNumber", "\(partNumber)"), ("uploadId", uploadID)], headers: headers,
                                              operation: "UploadPartCopy"))
        let xml = XMLElement.parse(Data(response.body.readableBytesView))
        if let xml, xml.name == "Error" {
            throw S3Error(.http, operation: "UploadPartCopy", bucket: bucket, key: key, status: 200, s3Code: xml["Code"],
                          message: xml["Message"] ?? "error", requestID: xml["RequestId"])
        }
        guard let etag = xml?["ETag"] else {
            throw S3Error(.badResponse, operation: "UploadPartCopy", bucket: bucket, key: key, message: "no ETag for part \(partNumber)")
        }
        return etag
    }

    /// A server-side copy of any size: CopyObject up to `singleCopyLimit` (S3's is 5 GiB),
    /// a multipart copy (UploadPartCopy, at most 10,000 parts) above it; aborted on failure.
    public func copyObjectAnySize(bucket: String, key: String, sourceBucket: String, sourceKey: String, size: Int64,
                                  metadata: [String: String], singleCopyLimit: Int64 = 5 << 30) async throws {
        if size <= singleCopyLimit {
            try await copyObject(bucket: bucket, key: key, sourceBucket: sourceBucket, sourceKey: sourceKey, metadata: metadata)
            return
        }
        let mib: Int64 = 1 << 20
        let partSize = max(5 * mib, ((size + 9_999) / 10_000 + mib - 1) / mib * mib, min(singleCopyLimit, 512 * mib))
        let uploadID = try await createMultipartUpload(bucket: bucket, key: key, metadata: metadata)
        do {
            var parts: [(Int, String)] = []
            var offset: Int64 = 0
            while offset < size {
                let end = min(offset + partSize, size) - 1
                let etag = try await uploadPartCopy(bucket: bucket, key: key, uploadID: uploadID, partNumber: parts.count + 1,
                                                    sourceBucket: sourceBucket, sourceKey: sourceKey, range: offset...end)
                parts.append((parts.count + 1, etag))
                offset = end + 1
            }
            try await completeMultipartUpload(bucket: bucket, key: key, uploadID: uploadID, parts: parts)
        } catch {
            try? await abortMultipartUpload(bucket: bucket, key: key, uploadID: uploadID)
            throw error
        }
    }

    /// DeleteObjects in batches of 1,000 (Content-MD5 required); returns keys that failed with their messages.
    public func deleteObjects(bucket: String, keys: [String]) async throws -> [(key: String, message: String)] {
        var failed: [(String, String)] = []
        var start = 0
        while start < keys.count {
            let batch = keys[start..<min(start + 1000, keys.count)]
            start += batch.count
            var xml = "<Delete><Quiet>true</Quiet>"
            for k in batch { xml += "<Object><Key>\(xmlEscape(k))</Key></Object>" }
            xml += "</Delete>"
            let body = ByteBuffer(string: xml)
            let response = try await send(Request(method: .POST, bucket: bucket, query: [("delete", "")],
                                                  headers: [("Content-MD5", body.md5Base64), ("Content-Type", "application/xml")],
                                                  body: body, payloadHash: SHA256Hex.of(body), operation: "DeleteObjects"))
            if let x = XMLElement.parse(Data(response.body.readableBytesView)) {
                for e in x.all("Error") { failed.append((e["Key"] ?? "?", "\(e["Code"] ?? ""): \(e["Message"] ?? "")")) }
            }
        }
        return failed
    }

    public func deleteObject(bucket: String, key: String) async throws {
        _ = try await send(Request(method: .DELETE, bucket: bucket, key: key, operation: "DeleteObject"), accept: [200, 204, 404])
    }

    public func createBucket(_ bucket: String) async throws {
        var body: ByteBuffer?
        var hash = SigV4Signer.emptyPayloadHash
        if endpoint.region != "us-east-1" {
            let b = ByteBuffer(string: "<CreateBucketConfiguration><LocationConstraint>\(endpoint.region)</LocationConstraint></CreateBucketConfiguration>")
            body = b
            hash = SHA256Hex.of(b)
        }
        _ = try await send(Request(method: .PUT, bucket: bucket, body: body, payloadHash: hash, operation: "CreateBucket"), accept: [200, 409])
    }
}

enum SHA256Hex {
    static func of(_ b: ByteBuffer) -> String { b.sha256Hex }
}
