import Glibc

/// Where a location's tree lies, to tell whether two locations overlap: a name space (this
/// host's file systems; one bucket of one endpoint) and the root's path in it, as
/// components. A copy between overlapping locations never ends (the destination inside the
/// source is copied into itself) or destroys its own source (with deletions, a source
/// inside the destination), so the engine refuses such a pair, as `ferry sync` and the
/// server's CreateTask do before anything is made.
public struct LocationScope: Sendable, Hashable, CustomStringConvertible {
    /// The name space: `file` for this host, `s3 ENDPOINT BUCKET` for a bucket.
    public var space: String
    /// The root's path in it, one component each, no empty ones.
    public var components: [String]
    /// How a user would name it (the path, `s3://bucket/prefix`).
    public var display: String

    public init(space: String, components: [String], display: String) {
        self.space = space
        self.components = components
        self.display = display
    }

    public var description: String { display }

    /// Whether one scope lies inside the other (or they are the same).
    public func overlaps(_ other: LocationScope) -> Bool {
        guard space == other.space else { return false }
        let n = min(components.count, other.components.count)
        return components.prefix(n) == other.components.prefix(n)
    }

    /// A path on this host, with symlinks resolved: the deepest part that exists is
    /// resolved by `realpath(3)`, the rest (a destination not made yet) is appended;
    /// `.` and `..` are taken as the kernel would after that.
    public static func posix(_ path: String, workingDirectory: String? = nil) -> LocationScope {
        var absolute = path
        if !absolute.hasPrefix("/") {
            let cwd = workingDirectory ?? currentDirectory()
            absolute = cwd + "/" + absolute
        }
        var parts = absolute.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        var rest: [String] = []
        while true {
            let candidate = "/" + parts.joined(separator: "/")
            if let resolved = realpathOrNil(candidate) {
                var components = resolved.split(separator: "/").map(String.init)
                for r in rest {
                    if r == "." { continue }
                    if r == ".." { if !components.isEmpty { components.removeLast() }; continue }
                    components.append(r)
                }
                return LocationScope(space: "file", components: components, display: "/" + components.joined(separator: "/"))
            }
            guard let last = parts.popLast() else {
                return LocationScope(space: "file", components: rest, display: absolute)
            }
            rest.insert(last, at: 0)
        }
    }

    /// A key prefix of one bucket on one endpoint (`endpoint` as its URL, so that two
    /// names of one server are taken as two: a false "disjoint" is never worse than today).
    public static func bucket(endpoint: String, bucket: String, prefix: String) -> LocationScope {
        let components = prefix.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        return LocationScope(space: "s3 \(endpoint) \(bucket)", components: components,
                             display: "s3://\(bucket)/" + components.joined(separator: "/"))
    }

    /// Refuses a source and destination that contain one another, naming both.
    public static func checkDisjoint(source: LocationScope?, destination: LocationScope?) throws(FerryError) {
        guard let source, let destination, source.overlaps(destination) else { return }
        let how: String
        if source.components.count == destination.components.count {
            how = "overlap: they are the same place"
        } else if source.components.count < destination.components.count {
            how = "overlap: the destination lies inside the source, which would copy the tree into itself"
        } else {
            how = "overlap: the source lies inside the destination"
        }
        throw FerryError(.invalidLocation, "the source \(source) and the destination \(destination) \(how); choose locations that do not contain one another")
    }

    private static func realpathOrNil(_ path: String) -> String? {
        guard let r = realpath(path, nil) else { return nil }
        defer { free(r) }
        return String(cString: r)
    }

    private static func currentDirectory() -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        guard getcwd(&buffer, buffer.count) != nil else { return "/" }
        return String(cString: buffer)
    }
}
