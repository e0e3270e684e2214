import FerryStore

/// DataSync's `TaskExecutionStatus`, as the store and the API spell it.
enum TaskExecutionStatus: String, Sendable, CustomStringConvertible {
    case queued = "QUEUED", launching = "LAUNCHING", preparing = "PREPARING", transferring = "TRANSFERRING"
    case verifying = "VERIFYING", cancelling = "CANCELLING", success = "SUCCESS", error = "ERROR"

    /// The status of a stored execution body (nil when it has none Ferry knows).
    init?(_ body: JSONValue) {
        guard let text = body["Status"]?.string, let status = TaskExecutionStatus(rawValue: text) else { return nil }
        self = status
    }

    /// SUCCESS and ERROR: the execution has ended.
    var isTerminal: Bool { self == .success || self == .error }
    var json: JSONValue { .string(rawValue) }
    var description: String { rawValue }
}
