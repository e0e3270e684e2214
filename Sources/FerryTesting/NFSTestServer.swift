import Foundation
import Glibc

/// A real NFS server for tests: nfs-ganesha with its VFS backend, exporting `/tmp` (where
/// every test tree lies) over NFSv3 and v4.0 on 127.0.0.1 at ports of its own, root not
/// squashed, its pseudo path the same as its real path (so one URL serves both versions).
/// rpcbind is started first when none runs; ganesha registers its NFS and MOUNT services
/// there, so a client that names no port (the server's NFS locations) finds them. Started
/// once per test process; fails loudly when it cannot start.
public final class NFSTestServer: Sendable {
    /// The exported directory (also its NFS path): `/tmp`.
    public let export: String
    public let port: Int
    let process: Process

    /// The shared server of this test process.
    public static let shared: Result<NFSTestServer, TestTreeError> = Result { try NFSTestServer.start() }.mapError {
        $0 as? TestTreeError ?? TestTreeError("\($0)")
    }

    init(export: String, port: Int, process: Process) {
        self.export = export
        self.port = port
        self.process = process
    }

    /// `nfs://127.0.0.1:PORT/EXPORT/sub` for a directory `sub` of the export.
    public func url(_ sub: String) -> String { "nfs://127.0.0.1:\(port)\(export)/\(sub)" }

    /// A fresh directory of the export, its path on this host and its name in the export.
    public func directory(_ label: String) throws -> (local: String, name: String) {
        let name = "ferry-test-nfs-\(label)-\(UInt32.random(in: 0..<UInt32.max))"
        let local = "\(export)/\(name)"
        guard mkdir(local, 0o755) == 0 else { throw TestTreeError("mkdir \(local): \(String(cString: strerror(errno)))") }
        return (local, name)
    }

    public static func start(protocols: String = "3, 4") throws -> NFSTestServer {
        guard let ganesha = S3TestServer.which("ganesha.nfsd") else {
            throw TestTreeError("ganesha.nfsd not found: apt-get install nfs-ganesha nfs-ganesha-vfs rpcbind (.ci/run does)")
        }
        try ensureRPCBind()
        let dir = try TestTree(label: "ganesha").root
        let export = "/tmp"
        let port = try S3TestServer.freePort()
        let config = """
            NFS_CORE_PARAM { NFS_Port = \(port); MNT_Port = \(try S3TestServer.freePort()); Protocols = \(protocols); Bind_addr = 127.0.0.1; Enable_NLM = false; Enable_RQUOTA = false; }
            NFSV4 { Graceless = true; Allow_Numeric_Owners = true; Only_Numeric_Owners = true; }
            NFS_KRB5 { Active_krb5 = false; }
            EXPORT { Export_Id = 1; Path = \(export); Pseudo = \(export); Access_Type = RW; Squash = No_Root_Squash; Protocols = \(protocols); Transports = TCP; SecType = sys; FSAL { Name = VFS; } }
            """
        try config.write(toFile: "\(dir)/ganesha.conf", atomically: true, encoding: .utf8)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        p.arguments = ["--pdeathsig", "KILL", "--", ganesha, "-F", "-f", "\(dir)/ganesha.conf", "-L", "\(dir)/ganesha.log", "-p", "\(dir)/ganesha.pid"]
        p.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        p.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try ProcessLauncher.run(p)
        try S3TestServer.waitForPort(port, process: p, what: "ganesha.nfsd (log: \(dir)/ganesha.log)")
        return NFSTestServer(export: export, port: port, process: p)
    }

    /// Starts `rpcbind` unless something listens on port 111 already; it lives as long as the
    /// test process.
    static func ensureRPCBind() throws {
        if portOpen(111) { return }
        guard let rpcbind = S3TestServer.which("rpcbind") else {
            throw TestTreeError("rpcbind not found: apt-get install rpcbind (.ci/run does)")
        }
        // In the foreground, never waited for: a daemonizing rpcbind's parent was once left
        // unreaped and `waitUntilExit` hung the whole test run (CI timed out). rpcbind drops
        // to its own user, which clears a pdeathsig, so a shell kills it when the pipe on
        // its stdin ends — when the test process exits, however it exits (SIGKILL: it
        // outlived a SIGTERM here).
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", "\"$0\" -f -w & read _; kill -9 $!", rpcbind]
        p.standardInput = rpcbindLifeline
        p.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        p.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try ProcessLauncher.run(p)
        for _ in 0..<50 where !portOpen(111) { usleep(100_000) }
        if !portOpen(111) { throw TestTreeError("rpcbind did not start (nothing listens on port 111)") }
    }

    /// Open for the test process's lifetime: its end stops rpcbind.
    static let rpcbindLifeline = Pipe()

    public static func portOpen(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = UInt16(port).bigEndian
        return withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } } == 0
    }

    /// Kills the server at once.
    public func kill() {
        Glibc.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
}
