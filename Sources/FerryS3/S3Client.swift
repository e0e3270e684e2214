import CFerry
import AsyncHTTPClient
import Crypto
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization

/// A small S3 client over AsyncHTTPClient: SigV4 signing, connection reuse, retries with
/// exponential backoff and full jitter on 5xx, SlowDown, timeouts and resets, and fewer
/// requests in flight while the server throttles.
public final class S3Client: Sendable {
    public let endpoint: S3Endpoint
    let http: HTTPClient
    let signer: SigV4Signer
    let logger: Logger
    let concurrency: AdaptiveConcurrency
    let maxAttempts: Int
    /// Requests sent (attempts included), for measurement.
    public let requestCount = Atomic<Int>(0)

    public init(endpoint: S3Endpoint, maxConcurrentRequests: Int = 64, maxAttempts: Int = 8, logger: Logger = Logger(label: "ferry.s3")) throws {
        self.endpoint = endpoint
        self.signer = SigV4Signer(credentials: endpoint.credentials, region: endpoint.region, service: "s3")
        self.logger = logger
        self.maxAttempts = maxAttempts
        self.concurrency = AdaptiveConcurrency(maximum: maxConcurrentRequests)
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: maxConcurrentRequests)
        // A refused connection fails the attempt at once; `send` retries with its own
        // backoff (AHC's own retry would hold each request until the connect timeout).
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.timeout = .init(connect: .seconds(10), read: .seconds(120))
        configuration.decompression = .disabled
        // No tracer: AHC otherwise takes the global (no-op) one and opens a span, with its
        // attributes, for every request (2.6 % of an upload's CPU).
        configuration.tracing.tracer = nil
        if let ca = endpoint.caBundlePath {
            var tls = TLSConfiguration.makeClientConfiguration()
            do {
                tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(ca))
            } catch {
                throw S3Error(.configuration, operation: "load CA bundle", message: "cannot read certificates from \(ca): \(error)")
            }
            configuration.tlsConfiguration = tls
        }
        http = HTTPClient(eventLoopGroupProvider: .shared(S3Client.eventLoops), configuration: configuration)
    }

    /// The event loops every S3 client of the process shares (never shut down, like NIO's
    /// singleton group): half the cores, at least one. Each request hops from Swift's
    /// concurrency pool to a loop and back; with one loop instead of two on this 2-core
    /// machine, a 2,000-file upload took 5,916 context switches instead of 8,460 and 0.89 s
    /// of the client's CPU instead of 1.04 s (8 alternated runs, docs/PERFORMANCE.md).
    static let eventLoops = MultiThreadedEventLoopGroup(numberOfThreads: max(1, System.coreCount / 2))

    /// Closes connections; call once when done.
    public func shutdown() async {
        try? await http.shutdown()
    }

    /// One S3 request.
    struct Request {
        var method: HTTPMethod
        var bucket: String?
        var key: String?
        var query: [(String, String)] = []
        var headers: [(String, String)] = []
        var body: ByteBuffer?
        /// Hex SHA-256 of the body, or UNSIGNED-PAYLOAD.
        var payloadHash: String = SigV4Signer.emptyPayloadHash
        var operation: String
        /// Leave a successful (2xx) answer's body to stream (``Response/stream``) instead
        /// of collecting it.
        var streamsBody = false
    }

    /// A response: status, headers, body.
    struct Response {
        var status: Int
        var headers: HTTPHeaders
        var body: ByteBuffer
        /// The body still to be read, for a request that ``Request/streamsBody``.
        var stream: HTTPClientResponse.Body? = nil
    }

    static func encodeQuery(_ query: [(String, String)]) -> String {
        query.map { "\(SigV4Signer.uriEncode($0.0, keepSlash: false))=\(SigV4Signer.uriEncode($0.1, keepSlash: false))" }
            .joined(separator: "&")
    }

    /// Sends with retries; statuses outside `accept` become ``S3Error``s (404 is returned
    /// to the caller when `accept` contains it).
    func send(_ r: Request, accept: Set<Int> = [200], maxBody: Int = 64 << 20) async throws -> Response {
        var attempt = 0
        while true {
            attempt += 1
            await concurrency.acquire()
            var throttled = false
            do {
                let response = try await sendOnce(r, maxBody: maxBody)
                if accept.contains(response.status) {
                    concurrency.release(throttled: false)
                    return response
                }
                let error = S3Client.error(from: response, request: r)
                throttled = error.isThrottle
                concurrency.release(throttled: throttled)
                guard error.retryClass == .retryable, attempt < maxAttempts else { throw error }
                logger.warning("retrying S3 request", metadata: ["operation": "\(r.operation)", "status": "\(response.status)", "attempt": "\(attempt)"])
            } catch let error as S3Error {
                throw error
            } catch let error as NIOSSLError {
                // A certificate or handshake failure does not heal by retrying.
                concurrency.release(throttled: false)
                throw S3Error(.transport, operation: r.operation, bucket: r.bucket, key: r.key,
                              message: "TLS with \(endpoint.url.absoluteString) failed (\(error)); check the endpoint's certificate, or trust its CA with --ca-bundle",
                              retryClass: .fatal)
            } catch let error as NIOConnectionError where S3Client.isUnknownHost(error) {
                // A name that does not exist (EAI_NONAME) will not appear by retrying; a
                // temporary resolver failure (EAI_AGAIN) is retried below.
                concurrency.release(throttled: false)
                throw S3Error(.transport, operation: r.operation, bucket: r.bucket, key: r.key,
                              message: "cannot resolve \(error.host) (\(error)); check --endpoint-url and --addressing-style",
                              retryClass: .fatal)
            } catch {
                concurrency.release(throttled: false)
                guard attempt < maxAttempts, !(error is CancellationError) else {
                    throw S3Error(.transport, operation: r.operation, bucket: r.bucket, key: r.key, message: "\(error)",
                                  retryClass: error is CancellationError ? .fatal : .retryable)
                }
                logger.warning("retrying S3 request", metadata: ["operation": "\(r.operation)", "error": "\(error)", "attempt": "\(attempt)"])
            }
            try await S3Client.backOff(attempt: attempt)
        }
    }

    /// Waits before attempt `attempt + 1`: exponential backoff with full jitter, up to
    /// 100 ms · 2^attempt, at most 10 s.
    static func backOff(attempt: Int) async throws {
        let cap = min(10_000.0, 100.0 * pow(2.0, Double(attempt)))
        try await Task.sleep(for: .milliseconds(Int64(Double.random(in: 0...cap))))
    }

    static func isUnknownHost(_ error: NIOConnectionError) -> Bool {
        guard let dns = (error.dnsAError ?? error.dnsAAAAError) as? SocketAddressError.UnknownHost else { return false }
        return dns.errorCode == Int(EAI_NONAME)
    }

    private func sendOnce(_ r: Request, maxBody: Int) async throws -> Response {
        let rawQuery = S3Client.encodeQuery(r.query)
        let (path, url) = endpoint.target(bucket: r.bucket, key: r.key, rawQuery: rawQuery)
        var headers = r.headers
        headers.append(("Host", endpoint.hostHeader(bucket: r.bucket)))
        let signed = signer.sign(SigV4Signer.Request(
            method: r.method.rawValue, path: path, rawQuery: rawQuery,
            headers: headers.map { (name: $0.0, value: $0.1) }, payloadHash: r.payloadHash))
        var request = HTTPClientRequest(url: url)
        request.method = r.method
        for (name, value) in signed { request.headers.add(name: name, value: value) }
        if let body = r.body {
            request.body = .bytes(body)
        } else if r.method == .PUT || r.method == .POST {
            request.body = .bytes(ByteBuffer())
        }
        requestCount.add(1, ordering: .relaxed)
        let response = try await http.execute(request, timeout: .seconds(300))
        if r.streamsBody && (200..<300).contains(response.status.code) {
            return Response(status: Int(response.status.code), headers: response.headers, body: ByteBuffer(), stream: response.body)
        }
        let limit = max(r.method == .HEAD ? 0 : maxBody, 1 << 20)
        let body = try await S3Client.collect(response, upTo: limit, for: r)
        return Response(status: Int(response.status.code), headers: response.headers, body: body)
    }

    /// The whole body, in one buffer sized from Content-Length when the server gives it
    /// (collecting into a growing buffer copied an 8 MiB ranged GET about twice over).
    static func collect(_ response: HTTPClientResponse, upTo limit: Int, for r: Request) async throws -> ByteBuffer {
        guard let length = response.headers.first(name: "content-length").flatMap(Int.init), length > 0, length <= limit else {
            return try await response.body.collect(upTo: limit)
        }
        var out = ByteBufferAllocator().buffer(capacity: length)
        for try await chunk in response.body {
            guard out.readableBytes + chunk.readableBytes <= limit else {
                throw S3Error(.badResponse, operation: r.operation, bucket: r.bucket, key: r.key,
                              message: "the response body is longer than its Content-Length (\(length))")
            }
            out.writeImmutableBuffer(chunk)
        }
        return out
    }

    /// An ``S3Error`` from an error response (S3's `<Error>` XML when there is one).
    static func error(from response: Response, request r: Request) -> S3Error {
        let xml = XMLElement.parse(Data(response.body.readableBytesView))
        let code = xml?["Code"]
        var message = xml?["Message"] ?? (response.status == 404 ? "not found" : "HTTP \(response.status)")
        if xml == nil && response.status == 403 {
            message = "access denied or the signature does not match (a HEAD response carries no reason): check the access key, the secret and the region"
        }
        let requestID = xml?["RequestId"] ?? response.headers.first(name: "x-amz-request-id")
        return S3Error(.http, operation: r.operation, bucket: r.bucket, key: xml?["Key"] ?? r.key, status: response.status,
                       s3Code: code ?? (response.status == 503 ? "SlowDown" : nil), message: message, requestID: requestID)
    }
}

extension ByteBuffer {
    var md5Digest: Insecure.MD5.Digest {
        withUnsafeReadableBytes { Insecure.MD5.hash(data: $0) }
    }
    var sha256Hex: String {
        withUnsafeReadableBytes { SHA256.hash(data: $0) }.hexString
    }

    var md5Base64: String {
        Data(md5Digest).base64EncodedString()
    }

    /// CRC32 as `x-amz-checksum-crc32` carries it: base64 of its four big-endian bytes.
    var crc32Base64: String {
        let crc = withUnsafeReadableBytes { cferry_crc32(0, $0.baseAddress, $0.count) }
        return Data(withUnsafeBytes(of: crc.bigEndian, Array.init)).base64EncodedString()
    }
}
