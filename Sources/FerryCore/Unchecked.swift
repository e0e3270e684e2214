/// A value handed to a thread of a C library's client (a caller's buffer, a file handle)
/// that Swift cannot prove sendable; the caller keeps it alive and unshared until the call
/// that uses it returns.
public struct Unchecked<T>: @unchecked Sendable {
    public var value: T
    public init(_ value: T) { self.value = value }
}
