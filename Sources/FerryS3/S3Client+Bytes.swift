import NIOCore

extension S3Client {
    /// PutObject of plain bytes (Content-MD5 checked by the server); for callers that do
    /// not deal in NIO buffers (block sync's chunks and manifests).
    @discardableResult
    public func putObject(bucket: String, key: String, bytes: [UInt8], metadata: [String: String] = [:]) async throws -> S3Object {
        try await putObject(bucket: bucket, key: key, body: ByteBuffer(bytes: bytes), metadata: metadata)
    }

    /// GetObject of the whole object as bytes; nil if there is no such key.
    public func getObjectBytes(bucket: String, key: String) async throws -> [UInt8]? {
        do {
            let (_, body) = try await getObject(bucket: bucket, key: key)
            return Array(body.readableBytesView)
        } catch let error as S3Error where error.status == 404 {
            return nil
        }
    }
}
