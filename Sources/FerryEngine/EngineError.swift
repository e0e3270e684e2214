import FerryCore

/// Errors of the engine itself (not of a location).
public struct EngineError: LocationError {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public init(_ rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }
        public static let fatal = Code("Fatal")
        public static let checksumMismatch = Code("ChecksumMismatch")
        public static let sourceChanged = Code("SourceChanged")
    }
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

    public var description: String { message }
}
