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

    /// Refuses a source and destination that contain one another: copying a tree into
    /// itself never ends, and with --delete a source inside the destination would be removed.
    static func checkDisjoint(source: String, destination: String) throws(FerryError) {
        let sourcePath = try posixPath(source), destinationPath = try posixPath(destination)
        guard let s = realpathOrNil(sourcePath) else { return }
        let d = realpathOrNil(destinationPath) ?? absolute(destinationPath)
        func inside(_ a: String, _ b: String) -> Bool { a == b || a.hasPrefix(b == "/" ? "/" : b + "/") }
        if inside(d, s) || inside(s, d) {
            throw FerryError(.invalidLocation, "the source \(s) and the destination \(d) overlap; choose a destination outside the source tree")
        }
    }

    private static func realpathOrNil(_ path: String) -> String? {
        guard let r = realpath(path, nil) else { return nil }
        defer { free(r) }
        return String(cString: r)
    }

    private static func absolute(_ path: String) -> String {
        let full = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        return URL(fileURLWithPath: full).standardizedFileURL.path
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
