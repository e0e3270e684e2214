import Foundation
import Glibc
import Synchronization

/// A network namespace of the tests' own (`ip netns add`), standing in for a separate
/// host: its own loopback, its own ports, and veth links to the host or to other
/// namespaces with addresses in 10.x. A process started in it (``command(_:)``) reaches
/// only what its links reach. Removed (with its links) by ``remove()``.
public final class NetworkNamespace: Sendable {
    public let name: String

    /// Makes `ferry-LABEL-PID-N` (N counts this process's namespaces: suites that run at
    /// once never share one) with its loopback up.
    public init(_ label: String) throws {
        let pid = Int(getpid())
        name = "ferry-\(label)-\(pid)-\(NetworkNamespace.made.add())"
        _ = try? NetworkNamespace.ip(["netns", "delete", name])
        try NetworkNamespace.ip(["netns", "add", name])
        try NetworkNamespace.ip(["-n", name, "link", "set", "lo", "up"])
    }

    /// Links this namespace to `other` (nil: the host) with a veth pair on a /30 of its
    /// own; the address of each end: (here, there).
    @discardableResult
    public func link(to other: NetworkNamespace?) throws -> (here: String, there: String) {
        let n = Int(NetworkNamespace.counter.add())
        let subnet = "10.\(200 + (getpid() % 50)).\(n % 250)"
        let here = "\(subnet).1", there = "\(subnet).2"
        let a = "fa\(getpid() % 100000)x\(n)", b = "fb\(getpid() % 100000)x\(n)"
        try NetworkNamespace.ip(["link", "add", a, "type", "veth", "peer", "name", b])
        try NetworkNamespace.ip(["link", "set", a, "netns", name])
        if let other { try NetworkNamespace.ip(["link", "set", b, "netns", other.name]) }
        try NetworkNamespace.ip(["-n", name, "addr", "add", here + "/30", "dev", a])
        try NetworkNamespace.ip(["-n", name, "link", "set", a, "up"])
        let theirs = other.map { ["-n", $0.name] } ?? []
        try NetworkNamespace.ip(theirs + ["addr", "add", there + "/30", "dev", b])
        try NetworkNamespace.ip(theirs + ["link", "set", b, "up"])
        return (here, there)
    }

    /// Puts this namespace and `members` on one LAN (a bridge here, a veth from each member
    /// to it, a /24 of its own), as hosts beside one file server: this namespace's address
    /// on it, and each member's.
    public func bridge(_ members: [NetworkNamespace]) throws -> (here: String, members: [String]) {
        let n = Int(NetworkNamespace.counter.add())
        let subnet = "10.\(200 + (getpid() % 50)).\(n % 250)"
        let bridge = "fbr\(getpid() % 100000)x\(n)"
        try NetworkNamespace.ip(["-n", name, "link", "add", bridge, "type", "bridge"])
        try NetworkNamespace.ip(["-n", name, "addr", "add", "\(subnet).1/24", "dev", bridge])
        try NetworkNamespace.ip(["-n", name, "link", "set", bridge, "up"])
        var addresses: [String] = []
        for (i, member) in members.enumerated() {
            let a = "fa\(getpid() % 100000)b\(n)m\(i)", b = "fb\(getpid() % 100000)b\(n)m\(i)"
            try NetworkNamespace.ip(["link", "add", a, "type", "veth", "peer", "name", b])
            try NetworkNamespace.ip(["link", "set", a, "netns", member.name])
            try NetworkNamespace.ip(["link", "set", b, "netns", name])
            try NetworkNamespace.ip(["-n", member.name, "addr", "add", "\(subnet).\(i + 2)/24", "dev", a])
            try NetworkNamespace.ip(["-n", member.name, "link", "set", a, "up"])
            try NetworkNamespace.ip(["-n", name, "link", "set", b, "master", bridge])
            try NetworkNamespace.ip(["-n", name, "link", "set", b, "up"])
            addresses.append("\(subnet).\(i + 2)")
        }
        return ("\(subnet).1", addresses)
    }

    /// `argv` run inside the namespace.
    public func command(_ argv: [String]) -> [String] {
        ["/usr/sbin/ip", "netns", "exec", name] + argv
    }

    /// Whether something accepts TCP connections on `host:port` as seen from inside.
    public func accepts(_ host: String, _ port: Int) -> Bool {
        (try? NetworkNamespace.run(command(["/usr/bin/timeout", "2", "/bin/bash", "-c", "exec 3<>/dev/tcp/\(host)/\(port)"]))) != nil
    }

    /// Waits up to 30 s for `host:port` to accept connections from inside; fails naming `what`.
    public func waitFor(_ host: String, _ port: Int, what: String, process: Process? = nil) throws {
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            if let process, !process.isRunning {
                throw TestTreeError("\(what) exited with status \(process.terminationStatus) before listening on \(host):\(port) in \(name)")
            }
            if accepts(host, port) { return }
            usleep(100_000)
        }
        throw TestTreeError("\(what) did not listen on \(host):\(port) in namespace \(name) within 30 s")
    }

    public func remove() {
        _ = try? NetworkNamespace.ip(["netns", "delete", name])
    }

    private static let counter = Counter()
    private static let made = Counter()

    @discardableResult
    static func ip(_ args: [String]) throws -> String {
        try run(["/usr/sbin/ip"] + args)
    }

    /// Runs `argv` to its end; its output (``ProcessLauncher/output(_:input:)``).
    @discardableResult
    public static func run(_ argv: [String]) throws -> String {
        try ProcessLauncher.output(argv)
    }
}

/// A process-wide counter (link names and subnets stay apart).
final class Counter: Sendable {
    private let value = Mutex(0)
    func add() -> Int { value.withLock { $0 += 1; return $0 } }
}
