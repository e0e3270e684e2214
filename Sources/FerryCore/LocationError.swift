/// How the engine should react to an error.
public enum RetryClass: Sendable, Hashable {
    /// Worth trying again after a pause (a timeout, a reset connection, throttling).
    case retryable
    /// This item failed; skip it, report it, and go on with the others.
    case itemFailed
    /// The item could not be read at the source (permission denied, locked); skip and count it.
    case itemUnreadable
    /// The whole execution cannot go on (location unreachable, destination full).
    case fatal
}

/// What every location's error type offers the engine: a retry class and the path it concerns.
public protocol LocationError: Error, Sendable, CustomStringConvertible {
    /// What went wrong.
    var code: ErrorCode { get }
    var retryClass: RetryClass { get }
    /// The path the error concerns, if any.
    var path: EntryPath? { get }
}

/// What went wrong, as an extensible code shared by every module's error type
/// (each module adds its codes as static constants).
public struct ErrorCode: Hashable, Sendable, CustomStringConvertible {
    public let rawValue: String
    public init(_ rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }
}

/// Errors of FerryCore and the engine: invalid options, filters and location URIs, and
/// conditions the engine finds itself (a fatal stop, a source that changed).
public struct FerryError: LocationError {
    public typealias Code = ErrorCode

    public var code: Code
    public var message: String
    public var path: EntryPath?
    public var retryClass: RetryClass

    public init(_ code: Code, _ message: String, path: EntryPath? = nil, retryClass: RetryClass = .fatal) {
        self.code = code
        self.message = message
        self.path = path
        self.retryClass = retryClass
    }

    public var description: String {
        if let path { return "\(message) (\(path))" }
        return message
    }
}

extension ErrorCode {
    public static let invalidOption = ErrorCode("InvalidOption")
    public static let invalidFilter = ErrorCode("InvalidFilter")
    public static let invalidLocation = ErrorCode("InvalidLocation")
    public static let unsupported = ErrorCode("Unsupported")
    public static let fatal = ErrorCode("Fatal")
    public static let sourceChanged = ErrorCode("SourceChanged")
    /// Bytes read do not match the checksum the location holds for them (corrupted in transit).
    public static let checksumMismatch = ErrorCode("ChecksumMismatch")
}
