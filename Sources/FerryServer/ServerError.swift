/// An error the DataSync API answers with: its `__type`, HTTP status, `message`, and
/// DataSync's `errorCode` / `datasyncErrorCode`.
public struct ServerError: Error, Sendable, CustomStringConvertible {
    public var type: String
    public var status: Int
    public var message: String
    public var errorCode: String?
    public var datasyncErrorCode: String?

    public init(type: String, status: Int, message: String, errorCode: String? = nil, datasyncErrorCode: String? = nil) {
        self.type = type
        self.status = status
        self.message = message
        self.errorCode = errorCode
        self.datasyncErrorCode = datasyncErrorCode
    }

    /// A request DataSync refuses: bad parameters, a missing resource, a state that does
    /// not allow the call.
    public static func invalid(_ message: String, errorCode: String = "InvalidParameter") -> ServerError {
        ServerError(type: "InvalidRequestException", status: 400, message: message, errorCode: errorCode)
    }

    /// A resource that is not there, in the wording Terraform looks for ("… is not found").
    public static func notFound(_ what: String, _ arn: String) -> ServerError {
        ServerError(type: "InvalidRequestException", status: 400, message: "\(what) \(arn) is not found.", errorCode: "InvalidParameter")
    }

    public static func internalError(_ message: String) -> ServerError {
        ServerError(type: "InternalException", status: 500, message: message, errorCode: "InternalError")
    }

    /// The AWS model's validation message ("1 validation error detected: Value … at '…'
    /// failed to satisfy constraint: …").
    public static func validation(_ problems: [String]) -> ServerError {
        let n = problems.count
        return ServerError(type: "InvalidRequestException", status: 400,
                           message: "\(n) validation error\(n == 1 ? "" : "s") detected: " + problems.joined(separator: "; "),
                           errorCode: "InvalidParameter")
    }

    public var description: String { "\(type): \(message)" }
}
