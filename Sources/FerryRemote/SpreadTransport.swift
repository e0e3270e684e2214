import Synchronization

/// Several transports to one served location used as one, each its own session on its own
/// TCP connection: a path where one TCP stream cannot fill the link (loss, a window or a
/// middlebox that caps each flow) carries several at once. The calls about one open file
/// keep to the lane that opened it (its writes reach the serving side in order, and a
/// repeat after a reconnect is that session's to recognise); every other call, and each
/// file opened, takes the lanes in turn.
public final class SpreadTransport: RemoteTransport {
    public let lanes: [any RemoteTransport]
    private let turn = Atomic<Int>(0)

    public init(_ lanes: [any RemoteTransport]) {
        precondition(!lanes.isEmpty, "a spread transport needs a lane")
        self.lanes = lanes
    }

    public var peer: String { lanes[0].peer }

    public func nextLane() -> Int { Int(UInt(bitPattern: turn.add(1, ordering: .relaxed).oldValue) % UInt(lanes.count)) }

    public func call(_ operation: RemoteOperation, _ body: [UInt8]) async throws -> [UInt8] {
        try await lanes[nextLane()].call(operation, body)
    }

    public func call(_ operation: RemoteOperation, _ body: [UInt8], lane: Int) async throws -> [UInt8] {
        try await lanes[lane % lanes.count].call(operation, body)
    }

    public func close() async {
        for lane in lanes { await lane.close() }
    }
}
