import FerryCore
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization

/// Ferry's own framing for remote locations, over TCP and TLS: every message is
/// `[u32 length][u64 call id][u8 operation or status][payload]`, replies come back in any
/// order under their call's id, and nothing but TCP's own window limits what is in flight
/// (HTTP/2's default 64 KiB connection window capped a 20 ms link at 3 MB/s). The first
/// message of a connection names the served location (`bind`).
enum Frame {
    /// What the first message of a connection carries in its operation byte.
    static let bind: UInt8 = 255
    static let headerSize = 13
    /// The largest message accepted (a 4 MiB read or write and its framing).
    static let largest = RemoteLocation.largestRead + (1 << 20)

    static func encode(_ id: UInt64, _ code: UInt8, _ payload: [UInt8], into buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt32(8 + 1 + payload.count))
        buffer.writeInteger(id)
        buffer.writeInteger(code)
        buffer.writeBytes(payload)
    }
}

/// Cuts the byte stream into messages: (id, code, payload).
struct FrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = (UInt64, UInt8, [UInt8])

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return .needMoreData }
        guard length >= 9, Int(length) <= Frame.largest else {
            throw RemoteError.malformed("a message of \(length) bytes")
        }
        guard buffer.readableBytes >= 4 + Int(length) else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: 4)
        let id = buffer.readInteger(as: UInt64.self)!
        let code = buffer.readInteger(as: UInt8.self)!
        let payload = buffer.readBytes(length: Int(length) - 9)!
        context.fireChannelRead(wrapInboundOut((id, code, payload)))
        return .continue
    }
}

// MARK: serving

/// Serves locations to peers over ``Frame``s (see ``LocationService``, which runs both this
/// and the HTTP/2 form).
final class FrameServerHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = (UInt64, UInt8, [UInt8])
    typealias OutboundOut = ByteBuffer

    private let servers: ServerTable
    private var server: LocationServer?  // touched on the channel's event loop only

    init(servers: ServerTable) { self.servers = servers }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let (id, code, payload) = unwrapInboundIn(data)
        let channel = context.channel
        if code == Frame.bind {
            server = servers.get(String(decoding: payload, as: UTF8.self))
            var out = channel.allocator.buffer(capacity: 16)
            Frame.encode(id, server == nil ? 1 : 0, [], into: &out)
            context.writeAndFlush(wrapOutboundOut(out), promise: nil)
            if server == nil { context.close(promise: nil) }
            return
        }
        guard let server, let operation = RemoteOperation.allCases.dropFirst(Int(code)).first else {
            context.close(promise: nil)
            return
        }
        Task {
            let reply = await server.handle(operation, payload)
            channel.eventLoop.execute {
                var out = channel.allocator.buffer(capacity: reply.count + Frame.headerSize)
                Frame.encode(id, 0, reply, into: &out)
                channel.writeAndFlush(out, promise: nil)
            }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

extension LocationService {
    /// Runs the framed service on `host:port` until cancelled (TLS with `tls`; mutual when
    /// it requires client certificates); `onRunning` gets the bound port.
    public func runFramed(host: String, port: Int, tls: TLSConfiguration, onRunning: @escaping @Sendable (Int) -> Void = { _ in }) async throws {
        let context = try NIOSSLContext(configuration: tls)
        let servers = self.servers
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context))
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder()))
                    try channel.pipeline.syncOperations.addHandler(FrameServerHandler(servers: servers))
                }
            }
            .bind(host: host, port: port).get()
        onRunning(channel.localAddress?.port ?? port)
        try await withTaskCancellationHandler {
            try await channel.closeFuture.get()
        } onCancel: {
            channel.close(promise: nil)
        }
    }
}

// MARK: calling

/// The client side: one TLS connection, calls multiplexed by id, reconnected on the next
/// call after it breaks (every call in flight then fails as retryable).
public final class FrameRemoteTransport: RemoteTransport, @unchecked Sendable {
    public let peer: String
    private let host: String
    private let port: Int
    private let name: String
    private let context: NIOSSLContext
    private let state = Mutex<(channel: (any Channel)?, connecting: EventLoopFuture<any Channel>?)>((nil, nil))
    private let pending = Mutex<[UInt64: EventLoopPromise<[UInt8]>]>([:])
    private let nextID = Atomic<UInt64>(1)

    /// `endpoint` is `host:port`; `name` what the peer serves the location under.
    public init(endpoint: String, name: String, tls: TLSConfiguration) throws {
        guard let colon = endpoint.lastIndex(of: ":"), let port = Int(endpoint[endpoint.index(after: colon)...]) else {
            throw RemoteError(.remoteUnreachable, "\(endpoint) is no host:port", retryClass: .fatal)
        }
        var host = String(endpoint[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        self.host = host
        self.port = port
        self.name = name
        peer = endpoint
        context = try NIOSSLContext(configuration: tls)
    }

    private func connection() async throws -> any Channel {
        let future: EventLoopFuture<any Channel> = state.withLock { s in
            if let channel = s.channel, channel.isActive { return channel.eventLoop.makeSucceededFuture(channel) }
            if let connecting = s.connecting { return connecting }
            let connecting = connect()
            s.connecting = connecting
            return connecting
        }
        do {
            let channel = try await future.get()
            state.withLock { s in
                s.channel = channel
                s.connecting = nil
            }
            return channel
        } catch {
            state.withLock { $0.connecting = nil }
            throw RemoteError.unreachable(peer, error)
        }
    }

    private func connect() -> EventLoopFuture<any Channel> {
        let context = self.context
        let host = self.host
        let bootstrap = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(10))
            .channelInitializer { [weak self] channel in
                channel.eventLoop.makeCompletedFuture {
                    // An address is no name for SNI; agents check the CA, not the name.
                    let isAddress = host.contains(":") || host.split(separator: ".").allSatisfy { UInt8($0) != nil }
                    let tls = try NIOSSLClientHandler(context: context, serverHostname: isAddress ? nil : host)
                    try channel.pipeline.syncOperations.addHandler(tls)
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder()))
                    try channel.pipeline.syncOperations.addHandler(FrameClientHandler { [weak self] id, code, payload in
                        self?.answered(id, code, payload)
                    } closed: { [weak self] in
                        self?.failAll()
                    })
                }
            }
        return bootstrap.connect(host: host, port: port).flatMap { channel in
            // Bind to the served location first; its answer arrives as call 0.
            let promise = channel.eventLoop.makePromise(of: [UInt8].self)
            self.pending.withLock { $0[0] = promise }
            var out = channel.allocator.buffer(capacity: 64)
            Frame.encode(0, Frame.bind, Array(self.name.utf8), into: &out)
            channel.writeAndFlush(out, promise: nil)
            return promise.futureResult.flatMapThrowing { reply in
                guard reply.first == 0 else {
                    throw RemoteError(.remoteFailure, "\(self.peer) serves no location under that name (not yet, or no more)", retryClass: .retryable)
                }
                return channel
            }
        }
    }

    private func answered(_ id: UInt64, _ code: UInt8, _ payload: [UInt8]) {
        guard let promise = pending.withLock({ $0.removeValue(forKey: id) }) else { return }
        promise.succeed(id == 0 ? [code] : payload)
    }

    private func failAll() {
        let all = pending.withLock { p in defer { p = [:] }; return Array(p.values) }
        for promise in all { promise.fail(RemoteError(.remoteUnreachable, "the connection to \(peer) broke", retryClass: .retryable)) }
    }

    public func call(_ operation: RemoteOperation, _ body: [UInt8]) async throws -> [UInt8] {
        let channel = try await connection()
        let id = nextID.add(1, ordering: .relaxed).oldValue
        let code = UInt8(RemoteOperation.allCases.firstIndex(of: operation)!)
        let promise = channel.eventLoop.makePromise(of: [UInt8].self)
        pending.withLock { $0[id] = promise }
        var out = channel.allocator.buffer(capacity: body.count + Frame.headerSize)
        Frame.encode(id, code, body, into: &out)
        channel.writeAndFlush(out, promise: nil)
        if !channel.isActive { failAll() }
        do {
            return try await promise.futureResult.get()
        } catch let e as RemoteError {
            throw e
        } catch {
            throw RemoteError.unreachable(peer, error)
        }
    }

    public func close() async {
        let channel = state.withLock { s in defer { s.channel = nil }; return s.channel }
        try? await channel?.close()
        failAll()
    }
}

/// Hands each reply to the transport; a closed connection fails what waits.
final class FrameClientHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = (UInt64, UInt8, [UInt8])
    let answer: (UInt64, UInt8, [UInt8]) -> Void
    let closed: () -> Void

    init(_ answer: @escaping (UInt64, UInt8, [UInt8]) -> Void, closed: @escaping () -> Void) {
        self.answer = answer
        self.closed = closed
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let (id, code, payload) = unwrapInboundIn(data)
        answer(id, code, payload)
    }

    func channelInactive(context: ChannelHandlerContext) {
        closed()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
