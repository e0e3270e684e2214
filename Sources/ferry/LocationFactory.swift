import FerryCore
import FerryLocal
import Foundation

/// Turns a command-line argument into a location: a plain path or `file://` URI today;
/// other schemes are named in the error until their backend lands.
enum LocationFactory {
    enum Role { case source, destination }

    /// The POSIX path a `file://` URI or plain path names, or a usage error.
    static func posixPath(_ argument: String) throws(FerryError) -> String {
        if argument.isEmpty { throw FerryError(.invalidLocation, "an empty location was given") }
        if argument.hasPrefix("file://") {
            let rest = String(argument.dropFirst("file://".count))
            guard rest.hasPrefix("/") else {
                throw FerryError(.invalidLocation, "\(argument): a file:// URI needs an absolute path (file:///data)")
            }
            return rest.removingPercentEncoding ?? rest
        }
        if let scheme = argument.range(of: "://").map({ String(argument[..<$0.lowerBound]) }), !scheme.contains("/") {
            throw FerryError(.unsupported, "\(argument): locations of scheme \(scheme):// are not supported yet (file:// and plain paths are)")
        }
        return argument
    }

    static func open(_ argument: String, role: Role, create: Bool) throws -> any Location {
        let path = try posixPath(argument)
        do {
            return try POSIXLocation(path: path, create: create)
        } catch let error as LocalError where error.code == .rootMissing {
            let what = role == .source ? "source" : "destination"
            throw FerryError(.invalidLocation, "the \(what) \(path) does not exist")
        }
    }
}
