import FerryCore
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization

/// Ferry's own framing for remote locations, over TCP and TLS: every message is
/// `[u32 length][u64 call id][u8 operation or status][payload]`, replies come back in any
/// order under their call's id, and nothing but TCP's own window limits what is in flight
/// (HTTP/2's default 64 KiB connection window capped a 20 ms link at 3 MB/s).
///
/// A connection belongs to a client's session: its first message (`bind`) names the
/// session and the served location. When a connection breaks, the client connects again
/// and sends every call still unanswered under the same id; the server runs a call that
/// changes something at most once per session (it answers a repeat from what it kept),
/// and reruns the ones that only read or write bytes at an offset. So a cut in the middle
/// of a file resumes at the first write the destination had not acknowledged.
enum Frame {
    /// `[u64 session][name]`, answered with status 0 (bound), 1 (no such location, yet) or 2
    /// (the location cannot be served; the reason follows).
    static let bind: UInt8 = 255
    /// Answered at once with the same id and code: the peer is alive while a call runs long.
    static let ping: UInt8 = 254
    /// `[u64 id]`: every call of the session below it has its answer; the server forgets those.
    static let acknowledge: UInt8 = 253
    static let headerSize = 13
    /// The largest message accepted (a 4 MiB read or write and its framing).
    static let largest = RemoteLocation.largestRead + (1 << 20)

    static func encode(_ id: UInt64, _ code: UInt8, _ payload: [UInt8], into buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt32(8 + 1 + payload.count))
        buffer.writeInteger(id)
        buffer.writeInteger(code)
        buffer.writeBytes(payload)
    }

    static func send(_ channel: any Channel, _ id: UInt64, _ code: UInt8, _ payload: [UInt8], flush: Bool = true) {
        var out = channel.allocator.buffer(capacity: payload.count + headerSize)
        encode(id, code, payload, into: &out)
        if flush { channel.writeAndFlush(out, promise: nil) } else { channel.write(out, promise: nil) }
    }

    static func u64(_ v: UInt64) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }

    static func u64(_ bytes: [UInt8]) -> UInt64? {
        guard bytes.count >= 8 else { return nil }
        return bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
    }
}

extension RemoteOperation {
    /// The operation's byte on the wire: its index.
    var code: UInt8 { UInt8(RemoteOperation.allCases.firstIndex(of: self)!) }

    /// Whether running it twice is harmless (it reads, or writes bytes at an offset), so a
    /// repeat after a reconnect simply runs again; the others run once per session.
    var isRepeatable: Bool {
        switch self {
        case .hello, .list, .stat, .extents, .readAttributes, .read, .write, .attributes, .checksum: true
        default: false
        }
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

/// One client's calls across its connections: which run, the answers of those that must
/// not run twice (until the client acknowledges them), and the connection answers go to.
final class CallSession: Sendable {
    private struct State {
        var channel: (any Channel)?
        var running: Set<UInt64> = []
        var answers: [UInt64: [UInt8]] = [:]
    }
    private let state = Mutex(State())

    enum Start {
        case run
        /// Running already: its answer goes to the session's connection when it ends.
        case running
        case answered([UInt8])
    }

    /// Answers from now on go to `channel` (the client's newest connection).
    func attach(_ channel: any Channel) { state.withLock { $0.channel = channel } }

    func start(_ id: UInt64, repeatable: Bool) -> Start {
        state.withLock { s in
            if repeatable { return .run }
            if let answer = s.answers[id] { return .answered(answer) }
            return s.running.insert(id).inserted ? .run : .running
        }
    }

    /// Keeps the answer of a call that must not run twice; the connection to send it on.
    func finish(_ id: UInt64, repeatable: Bool, _ answer: [UInt8]) -> (any Channel)? {
        state.withLock { s in
            if !repeatable {
                s.running.remove(id)
                s.answers[id] = answer
            }
            return s.channel
        }
    }

    /// The client has every answer below `id`.
    func acknowledge(below id: UInt64) {
        state.withLock { s in s.answers = s.answers.filter { $0.key >= id } }
    }
}

/// Serves locations to peers over ``Frame``s (see ``LocationService``).
final class FrameServerHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = (UInt64, UInt8, [UInt8])
    typealias OutboundOut = ByteBuffer

    private let servers: ServerTable
    // Touched on the channel's event loop only.
    private var server: LocationServer?
    private var session: CallSession?

    init(servers: ServerTable) { self.servers = servers }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let (id, code, payload) = unwrapInboundIn(data)
        let channel = context.channel
        switch code {
        case Frame.bind:
            let binding = Frame.u64(payload).map { servers.bind(String(decoding: payload.dropFirst(8), as: UTF8.self), session: $0) } ?? .unknown
            switch binding {
            case .bound(let s, let c):
                (server, session) = (s, c)
                c.attach(channel)
                Frame.send(channel, id, 0, [])
            case .refused(let reason):
                Frame.send(channel, id, 2, Array(reason.utf8))
                context.close(promise: nil)
            case .unknown:
                Frame.send(channel, id, 1, [])
                context.close(promise: nil)
            }
            return
        case Frame.ping:
            Frame.send(channel, id, Frame.ping, [])
            return
        case Frame.acknowledge:
            if let below = Frame.u64(payload) { session?.acknowledge(below: below) }
            return
        default:
            break
        }
        guard let server, let session, let operation = RemoteOperation.allCases.dropFirst(Int(code)).first else {
            context.close(promise: nil)
            return
        }
        let repeatable = operation.isRepeatable
        switch session.start(id, repeatable: repeatable) {
        case .running:
            return
        case .answered(let answer):
            Frame.send(channel, id, 0, answer)
        case .run:
            Task {
                let answer = await server.handle(operation, payload)
                // The session's connection now: the one this call came on may be gone.
                if let current = session.finish(id, repeatable: repeatable, answer) {
                    Frame.send(current, id, 0, answer)
                }
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

/// The client side: one session over one TLS connection at a time, calls multiplexed by
/// id. When the connection breaks (reset, or silent longer than `silenceLimit` while calls
/// wait), it connects again and sends every unanswered call once more; a call fails only
/// when the peer stays unreachable longer than `outageLimit` (then as retryable, and later
/// calls fail after one attempt until a connection succeeds again).
public final class FrameRemoteTransport: RemoteTransport, @unchecked Sendable {
    public let peer: String
    /// How long the peer may stay unreachable before the calls waiting on it fail.
    public let outageLimit: Duration
    /// How long a connection may stay silent while calls wait (pings answered included).
    public let silenceLimit: Duration
    private let host: String
    private let port: Int
    private let name: String
    private let context: NIOSSLContext
    private let session = UInt64.random(in: 1...UInt64.max)

    private struct Call {
        let code: UInt8
        let body: [UInt8]
        let promise: EventLoopPromise<[UInt8]>
    }
    private struct State {
        var channel: (any Channel)?
        var reconnecting = false
        var brokenSince: ContinuousClock.Instant?
        var closed = false
        var calls: [UInt64: Call] = [:]
        var sinceAcknowledged = 0
    }
    private let state = Mutex(State())
    private let nextID = Atomic<UInt64>(1)
    private let sent = Atomic<Int64>(0)
    private let made = Atomic<Int>(0)
    /// When the peer was last heard from (a monotonic clock's nanoseconds).
    private let lastHeard = Atomic<UInt64>(0)

    /// `endpoint` is `host:port`; `name` what the peer serves the location under.
    public convenience init(endpoint: String, name: String, tls: TLSConfiguration,
                            outageLimit: Duration = .seconds(300), silenceLimit: Duration = .seconds(30)) throws {
        try self.init(endpoint: endpoint, name: name, context: try NIOSSLContext(configuration: tls),
                      outageLimit: outageLimit, silenceLimit: silenceLimit)
    }

    /// The same with a TLS context already made (several connections to one peer share one).
    public init(endpoint: String, name: String, context: NIOSSLContext,
                outageLimit: Duration = .seconds(300), silenceLimit: Duration = .seconds(30)) throws {
        guard let colon = endpoint.lastIndex(of: ":"), let port = Int(endpoint[endpoint.index(after: colon)...]) else {
            throw RemoteError(.remoteUnreachable, "\(endpoint) is no host:port", retryClass: .fatal)
        }
        var host = String(endpoint[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        self.host = host
        self.port = port
        self.name = name
        self.outageLimit = outageLimit
        self.silenceLimit = silenceLimit
        peer = endpoint
        self.context = context
    }

    private static func uptime() -> UInt64 { NIODeadline.now().uptimeNanoseconds }

    /// Bytes of calls sent so far, those sent again after a reconnect included.
    public var bytesSent: Int64 { sent.load(ordering: .relaxed) }

    /// Connections made so far (more than one: the link broke and was made again).
    public var connectionsMade: Int { made.load(ordering: .relaxed) }

    private func send(_ channel: any Channel, _ id: UInt64, _ code: UInt8, _ body: [UInt8], flush: Bool) {
        sent.add(Int64(body.count + Frame.headerSize), ordering: .relaxed)
        Frame.send(channel, id, code, body, flush: flush)
    }

    public func call(_ operation: RemoteOperation, _ body: [UInt8]) async throws -> [UInt8] {
        let id = nextID.add(1, ordering: .relaxed).oldValue
        let code = operation.code
        enum Next { case send(any Channel, acknowledge: UInt64?), connect, closed }
        let (promise, next): (EventLoopPromise<[UInt8]>, Next) = state.withLock { s in
            // On the connection's own event loop when there is one: its answer then completes
            // the promise without a hop to another thread.
            let promise = (s.channel?.eventLoop ?? MultiThreadedEventLoopGroup.singleton.next()).makePromise(of: [UInt8].self)
            if s.closed { return (promise, .closed) }
            if s.calls.isEmpty { lastHeard.store(Self.uptime(), ordering: .relaxed) }
            s.calls[id] = Call(code: code, body: body, promise: promise)
            guard let channel = s.channel else { return (promise, .connect) }
            s.sinceAcknowledged += 1
            guard s.sinceAcknowledged >= 256 else { return (promise, .send(channel, acknowledge: nil)) }
            s.sinceAcknowledged = 0
            return (promise, .send(channel, acknowledge: s.calls.keys.min()))
        }
        switch next {
        case .closed:
            promise.fail(RemoteError(.remoteUnreachable, "the connection to \(peer) was closed", retryClass: .fatal))
        case .connect:
            reconnect()
        case .send(let channel, let acknowledge):
            send(channel, id, code, body, flush: acknowledge == nil)
            if let acknowledge { Frame.send(channel, 0, Frame.acknowledge, Frame.u64(acknowledge)) }
        }
        do {
            return try await withTaskCancellationHandler {
                try await promise.futureResult.get()
            } onCancel: {
                // A cancelled execution does not wait out an outage.
                state.withLock { _ = $0.calls.removeValue(forKey: id) }
                promise.fail(CancellationError())
            }
        } catch let e as RemoteError {
            throw e
        } catch {
            throw RemoteError.unreachable(peer, error)
        }
    }

    /// One connection: every lane is it.
    public func call(_ operation: RemoteOperation, _ body: [UInt8], lane: Int) async throws -> [UInt8] {
        try await call(operation, body)
    }

    public func nextLane() -> Int { 0 }

    /// Starts connecting again unless that is under way (or the transport is closed).
    private func reconnect() {
        let start = state.withLock { s in
            guard !s.reconnecting, !s.closed, s.channel == nil else { return false }
            s.reconnecting = true
            if s.brokenSince == nil { s.brokenSince = .now }
            return true
        }
        if start { Task { await self.reconnectLoop() } }
    }

    /// Connects until it succeeds — then sends every waiting call again, in order — or
    /// until the outage has lasted `outageLimit` — then fails them.
    private func reconnectLoop() async {
        var pause = Duration.milliseconds(100)
        while true {
            do {
                let channel = try await connect().get()
                made.add(1, ordering: .relaxed)
                let again: [(key: UInt64, value: Call)]? = state.withLock { s in
                    s.reconnecting = false
                    guard !s.closed else { return nil }
                    s.channel = channel
                    s.brokenSince = nil
                    lastHeard.store(Self.uptime(), ordering: .relaxed)
                    return s.calls.sorted { $0.key < $1.key }
                }
                guard let again else {
                    channel.close(promise: nil)
                    return
                }
                for (id, call) in again { send(channel, id, call.code, call.body, flush: false) }
                channel.flush()
                if !channel.isActive { lost(channel) }
                return
            } catch {
                // The far side said it cannot serve the location: no use waiting.
                let refused = (error as? RemoteError)?.retryClass == .fatal
                let failed: [Call]? = state.withLock { s in
                    guard refused || s.closed || ContinuousClock.now - (s.brokenSince ?? .now) >= outageLimit else { return nil }
                    s.reconnecting = false
                    defer { s.calls = [:] }
                    return Array(s.calls.values)
                }
                if let failed {
                    let e = refused ? error : RemoteError(
                        .remoteUnreachable, "the connection to \(peer) broke and did not come back within \(outageLimit): \(error)", retryClass: .retryable)
                    for call in failed { call.promise.fail(e) }
                    return
                }
                try? await Task.sleep(for: pause)
                pause = min(pause * 2, .seconds(2))
            }
        }
    }

    /// `channel` closed: connect again if calls wait.
    private func lost(_ channel: any Channel) {
        let again = state.withLock { s in
            guard let current = s.channel, current === channel else { return false }
            s.channel = nil
            if s.brokenSince == nil { s.brokenSince = .now }
            return !s.calls.isEmpty && !s.closed
        }
        if again { reconnect() }
    }

    /// Every few seconds while calls wait: a ping after 5 s of silence, and the connection
    /// closed (to be made again) after `silenceLimit`.
    private func watch(_ channel: any Channel) {
        let waiting = state.withLock { s in s.channel.map { $0 === channel } == true && !s.calls.isEmpty }
        guard waiting else { return }
        let silent = Self.uptime() &- lastHeard.load(ordering: .relaxed)
        if silent > UInt64(silenceLimit.components.seconds) * 1_000_000_000 {
            channel.close(promise: nil)
        } else if silent > 5_000_000_000 {
            Frame.send(channel, 0, Frame.ping, [])
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
                    try channel.pipeline.syncOperations.addHandler(FrameClientHandler(bound: channel.eventLoop.makePromise(of: (UInt8, [UInt8]).self)) { [weak self] id, code, payload in
                        self?.answered(id, code, payload)
                    } closed: { [weak self, weak channel] in
                        if let channel { self?.lost(channel) }
                    })
                }
            }
        return bootstrap.connect(host: host, port: port).flatMap { channel in
            // Bind to the session and the served location first; its answer is call 0's.
            channel.pipeline.handler(type: FrameClientHandler.self).flatMap { handler in
                Frame.send(channel, 0, Frame.bind, Frame.u64(self.session) + Array(self.name.utf8))
                return handler.bound.futureResult
            }.flatMapThrowing { status, reason in
                guard status == 0 else {
                    channel.close(promise: nil)
                    if status == 2 {
                        throw RemoteError(.remoteFailure, "\(self.peer) cannot serve that location: \(String(decoding: reason, as: UTF8.self))",
                                          retryClass: .fatal)
                    }
                    throw RemoteError(.remoteFailure, "\(self.peer) serves no location under that name (not yet, or no more)", retryClass: .retryable)
                }
                let watchdog = channel.eventLoop.scheduleRepeatedTask(initialDelay: .seconds(2), delay: .seconds(2)) { [weak self, weak channel] _ in
                    if let channel { self?.watch(channel) }
                }
                channel.closeFuture.whenComplete { _ in watchdog.cancel() }
                return channel
            }
        }
    }

    private func answered(_ id: UInt64, _ code: UInt8, _ payload: [UInt8]) {
        lastHeard.store(Self.uptime(), ordering: .relaxed)
        guard code != Frame.ping, let call = state.withLock({ $0.calls.removeValue(forKey: id) }) else { return }
        call.promise.succeed(payload)
    }

    public func close() async {
        let (channel, calls) = state.withLock { s in
            s.closed = true
            defer {
                s.channel = nil
                s.calls = [:]
            }
            return (s.channel, Array(s.calls.values))
        }
        try? await channel?.close()
        for call in calls { call.promise.fail(RemoteError(.remoteUnreachable, "the connection to \(peer) was closed", retryClass: .fatal)) }
    }
}

/// Hands each reply to the transport (the first, call 0's, is the bind's status); a
/// closed connection tells the transport.
final class FrameClientHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = (UInt64, UInt8, [UInt8])
    /// The bind's status and what came with it (a refusal's reason).
    let bound: EventLoopPromise<(UInt8, [UInt8])>
    private var binding = true  // on the event loop only
    let answer: (UInt64, UInt8, [UInt8]) -> Void
    let closed: () -> Void

    init(bound: EventLoopPromise<(UInt8, [UInt8])>, _ answer: @escaping (UInt64, UInt8, [UInt8]) -> Void, closed: @escaping () -> Void) {
        self.bound = bound
        self.answer = answer
        self.closed = closed
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let (id, code, payload) = unwrapInboundIn(data)
        if binding && id == 0 {
            binding = false
            bound.succeed((code, payload))
            return
        }
        answer(id, code, payload)
    }

    func channelInactive(context: ChannelHandlerContext) {
        unbound()
        closed()
        context.fireChannelInactive()
    }

    /// A connection that never became active has no channelInactive.
    func handlerRemoved(context: ChannelHandlerContext) { unbound() }

    private func unbound() {
        guard binding else { return }
        binding = false
        bound.fail(RemoteError(.remoteUnreachable, "the connection closed before it was bound", retryClass: .retryable))
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
