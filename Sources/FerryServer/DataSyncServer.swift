import FerryS3
import FerryStore
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOCore
import NIOSSL

/// A request's context: Hummingbird's, plus the connection, whose TLS handshake tells
/// whether an agent's client certificate was presented.
struct FerryRequestContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    let channel: any Channel

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }

    /// The client certificate the connection presented (verified against the agents' CA),
    /// nil without one or without TLS.
    func peerCertificate() async -> NIOSSLCertificate? {
        (try? await channel.nioSSL_peerCertificate().get()) ?? nil
    }
}

/// `ferry server`: the DataSync JSON 1.1 API on `POST /` (`X-Amz-Target:
/// FmrsService.<Operation>`), every call SigV4-authenticated; `GET /metrics` (Prometheus
/// text) and `GET /health`. Built on Hummingbird.
public struct DataSyncServer: Sendable {
    public struct Configuration: Sendable {
        public var dataDirectory: String
        public var host: String
        public var port: Int
        public var region: String
        public var s3Endpoint: S3Configuration.Overrides
        /// The shortest schedule interval accepted, in seconds (DataSync: one hour).
        public var minimumScheduleInterval: TimeInterval
        /// HTTPS with this certificate (``ServerTLS``); plain HTTP when nil.
        public var tls: ServerTLS?
        /// Silence after which an agent is OFFLINE, in seconds (DataSync: five minutes).
        public var agentOfflineAfter: TimeInterval
        /// How long an agent's activation key stays valid, in seconds (DataSync: 30 minutes).
        public var activationKeyLifetime: TimeInterval = 1800
        public init(dataDirectory: String, host: String = "127.0.0.1", port: Int = 8950, region: String = "us-east-1",
                    s3Endpoint: S3Configuration.Overrides = .init(), minimumScheduleInterval: TimeInterval = 3600, tls: ServerTLS? = nil,
                    agentOfflineAfter: TimeInterval = 300) {
            self.tls = tls
            self.agentOfflineAfter = agentOfflineAfter
            self.dataDirectory = dataDirectory
            self.minimumScheduleInterval = minimumScheduleInterval
            self.host = host
            self.port = port
            self.region = region
            self.s3Endpoint = s3Endpoint
        }
    }

    let configuration: Configuration
    let logger: Logger

    public init(_ configuration: Configuration, logger: Logger = Logger(label: "ferry.server")) {
        self.configuration = configuration
        self.logger = logger
    }

    /// Starts the server and runs until cancelled (SIGINT/SIGTERM end it through the
    /// service lifecycle). `onRunning` gets the endpoint URL once the port is bound.
    public func run(onRunning: @escaping @Sendable (String) -> Void = { _ in }) async throws {
        let credentials = try AdminCredentials.loadOrCreate(dataDirectory: configuration.dataDirectory)
        let plane = try await ControlPlane(dataDirectory: configuration.dataDirectory, region: configuration.region,
                                           s3Endpoint: configuration.s3Endpoint,
                                           minimumScheduleInterval: configuration.minimumScheduleInterval,
                                           agentOfflineAfter: configuration.agentOfflineAfter,
                                           activationLifetime: configuration.activationKeyLifetime, logger: logger)
        let handler = APIHandler(plane: plane, authenticator: RequestAuthenticator(credentials: [credentials]), logger: logger)
        let router = Router(context: FerryRequestContext.self)
        router.post("/") { request, context in
            if let refused = await APIHandler.refuseAgent(context) { return refused }
            return await handler.respond(request)
        }
        router.get("/logs/{task}/{execution}") { request, context in
            if let refused = await APIHandler.refuseAgent(context) { return refused }
            return await handler.respondWithLog(request, task: context.parameters.get("task") ?? "",
                                                execution: context.parameters.get("execution") ?? "")
        }
        let agents = AgentEndpoint(plane: plane, tls: configuration.tls != nil, logger: logger)
        router.post("/agent/v1/{operation}") { request, context in
            await agents.respond(request, operation: context.parameters.get("operation") ?? "", context: context)
        }
        router.get("/health") { _, _ in Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: "ok\n"))) }
        router.get("/metrics") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                     body: .init(byteBuffer: ByteBuffer(string: await plane.metricsText())))
        }
        let scheme = configuration.tls == nil ? "http" : "https"
        let server: HTTPServerBuilder = try configuration.tls.map { try .tls(.http1(), tlsConfiguration: $0.serverConfiguration()) } ?? .http1()
        let app = Application(
            router: router,
            server: server,
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "ferry"),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? configuration.port
                onRunning("\(scheme)://\(configuration.host):\(port)")
            },
            logger: logger)
        // The schedules fire while the server runs; both stop together.
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await plane.runSchedules() }
                group.addTask { await plane.hub.runSweeps() }
                defer { group.cancelAll() }
                try await app.runService()
            }
        } catch {
            await plane.shutdown()
            throw error
        }
        await plane.shutdown()
    }
}

/// One API call: authenticate, parse, dispatch, answer in DataSync's JSON and error shapes.
struct APIHandler: Sendable {
    /// An agent's certificate does not open the DataSync API: the refusal, or nil.
    static func refuseAgent(_ context: FerryRequestContext) async -> Response? {
        guard await context.peerCertificate() != nil else { return nil }
        return error(ServerError(type: "AccessDeniedException", status: 403,
                                 message: "an agent's client certificate cannot call the DataSync API; sign the call with an access key (SigV4)"))
    }

    let plane: ControlPlane
    let authenticator: RequestAuthenticator
    let logger: Logger

    /// The request's body, once its SigV4 signature is verified.
    func authenticatedBody(_ incoming: Request) async throws -> Data {
        var request = incoming
        let body = try await request.collectBody(upTo: 16 << 20)
        let data = Data(body.readableBytesView)
        var headers: [(name: String, value: String)] = request.headers.map { ($0.name.rawName, $0.value) }
        if let authority = request.head.authority { headers.append(("host", authority)) }
        try authenticator.authenticate(.init(method: request.method.rawValue, rawPath: request.uri.path,
                                             rawQuery: request.uri.query ?? "", headers: headers, body: data))
        return data
    }

    /// `GET /logs/task-…/exec-…`: an execution's log lines as text (SigV4 like every call).
    func respondWithLog(_ request: Request, task: String, execution: String) async -> Response {
        do {
            _ = try await authenticatedBody(request)
            let lines = try plane.logLines(task: task, execution: execution)
            let text = lines.isEmpty ? "" : lines.joined(separator: "\n") + "\n"
            return Response(status: .ok, headers: [.contentType: "text/plain; charset=utf-8"],
                            body: .init(byteBuffer: ByteBuffer(string: text)))
        } catch let e as ServerError {
            return APIHandler.error(e)
        } catch {
            return APIHandler.error(.internalError("\(error)"))
        }
    }

    func respond(_ request: Request) async -> Response {
        let operation: String
        do {
            let data = try await authenticatedBody(request)
            guard let target = request.headers[HTTPField.Name("X-Amz-Target")!], target.hasPrefix("FmrsService.") else {
                throw ServerError(type: "UnknownOperationException", status: 400, message: "The X-Amz-Target header must name FmrsService.<Operation>.")
            }
            operation = String(target.dropFirst("FmrsService.".count))
            let input: JSONValue
            do {
                input = data.isEmpty ? [:] : try JSONValue.parse(data)
            } catch {
                throw ServerError(type: "SerializationException", status: 400, message: "The request body is not valid JSON.")
            }
            guard case .object = input else {
                throw ServerError(type: "SerializationException", status: 400, message: "The request body must be a JSON object.")
            }
            let output = try await plane.handle(operation: operation, input: input)
            return APIHandler.json(.ok, output)
        } catch let e as ServerError {
            if e.status >= 500 { logger.error("request failed", metadata: ["error": "\(e.message)"]) }
            return APIHandler.error(e)
        } catch {
            logger.error("request failed", metadata: ["error": "\(error)"])
            return APIHandler.error(.internalError("\(error)"))
        }
    }

    static func json(_ status: HTTPResponse.Status, _ value: JSONValue) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/x-amz-json-1.1"
        headers[HTTPField.Name("x-amzn-RequestId")!] = UUID().uuidString.lowercased()
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: value.serialized())))
    }

    static func error(_ e: ServerError) -> Response {
        var body: JSONValue = ["__type": .string(e.type), "message": .string(e.message)]
        if let code = e.errorCode { body["errorCode"] = .string(code) }
        if let code = e.datasyncErrorCode { body["datasyncErrorCode"] = .string(code) }
        var r = json(HTTPResponse.Status(code: e.status), body)
        r.headers[HTTPField.Name("x-amzn-ErrorType")!] = e.type
        return r
    }
}
