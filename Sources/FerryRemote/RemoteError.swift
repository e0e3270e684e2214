import FerryCore

/// Errors of a remote location: what the serving location threw, carried across with its
/// code, retry class and path (so the engine treats it as it would locally), and what the
/// link itself did (unreachable, cut, a malformed message).
public struct RemoteError: LocationError {
    public var code: ErrorCode
    public var message: String
    public var path: EntryPath?
    public var retryClass: RetryClass

    public init(_ code: ErrorCode, _ message: String, path: EntryPath? = nil, retryClass: RetryClass) {
        self.code = code
        self.message = message
        self.path = path
        self.retryClass = retryClass
    }

    public var description: String { message }

    /// A message that cannot be read: the peer is not speaking this protocol (fatal).
    static func malformed(_ what: String) -> RemoteError {
        RemoteError(.remoteMalformed, "a remote location's message is malformed: \(what)", retryClass: .fatal)
    }

    /// The peer could not be reached or the connection broke: worth trying again.
    static func unreachable(_ peer: String, _ error: any Error) -> RemoteError {
        RemoteError(.remoteUnreachable, "the remote location at \(peer) cannot be reached: \(error)", retryClass: .retryable)
    }

    /// What the serving side sends for an error its location threw.
    static func encode(_ error: any Error, into w: inout WireWriter) {
        let located = error as? any LocationError
        w.string(located?.code.rawValue ?? ErrorCode.remoteFailure.rawValue)
        w.string("\(error)")
        w.optional(located?.path) { $0.data($1.bytes) }
        let retry: UInt8 = switch located?.retryClass ?? .itemFailed {
        case .retryable: 0
        case .itemFailed: 1
        case .itemUnreadable: 2
        case .fatal: 3
        }
        w.u8(retry)
    }

    static func decode(_ r: inout WireReader) throws(RemoteError) -> RemoteError {
        let code = try r.string()
        let message = try r.string()
        let path = try r.optional { (r: inout WireReader) throws(RemoteError) in EntryPath(validatedBytes: try r.data()) }
        let retry: RetryClass = switch try r.u8() {
        case 0: .retryable
        case 2: .itemUnreadable
        case 3: .fatal
        default: .itemFailed
        }
        return RemoteError(ErrorCode(code), message, path: path, retryClass: retry)
    }
}

extension ErrorCode {
    public static let remoteMalformed = ErrorCode("RemoteMalformed")
    public static let remoteUnreachable = ErrorCode("RemoteUnreachable")
    /// The serving location threw an error that carries no code of its own.
    public static let remoteFailure = ErrorCode("RemoteFailure")
}
