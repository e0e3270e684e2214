import Foundation
import Glibc

/// A real SMB server for tests: Samba's `smbd` with a private `smb.conf` on 127.0.0.1 at a
/// port of its own and at 445 (DataSync's SMB locations name no port), a user made with
/// `smbpasswd`, and two shares (`share1`, `share2`) that keep DOS attributes and NT ACLs
/// (`acl_xattr`); the user holds SeRestorePrivilege and SeTakeOwnershipPrivilege (it may give
/// files to other owners, as DataSync's OWNER_DACL asks of its user). Started once per test process; fails loudly when it cannot start.
public final class SMBTestServer: Sendable {
    public let port: Int
    public let directory: String
    static let userName = "ferrysmb"
    public let user = SMBTestServer.userName
    public let password = "Ferry-Secret-123"
    let process: Process
    /// smbd in the foreground exits when its stdin ends: a pipe kept open for its lifetime.
    let stdin = Pipe()
    /// samba-dcerpcd, which serves the LSA pipe on IPC$, and its stdin.
    let rpcProcess = Process()
    let rpcStdin = Pipe()

    public static let shared: Result<SMBTestServer, TestTreeError> = Result { try SMBTestServer.start() }.mapError {
        $0 as? TestTreeError ?? TestTreeError("\($0)")
    }

    init(port: Int, directory: String, process: Process) {
        self.port = port
        self.directory = directory
        self.process = process
    }

    /// The directory on this host behind `share`.
    public func path(_ share: String) -> String { "\(directory)/\(share)" }

    /// `smb://ferrysmb@127.0.0.1:PORT/SHARE/sub`.
    public func url(_ share: String, _ sub: String) -> String { "smb://\(user)@127.0.0.1:\(port)/\(share)/\(sub)" }

    /// A file holding the password, for `--password-file`.
    public func passwordFile() throws -> String {
        let file = "\(directory)/password"
        try (password + "\n").write(toFile: file, atomically: true, encoding: .utf8)
        chmod(file, 0o600)
        return file
    }

    /// `namespace`: smbd runs there, on its loopback's port 445 (and on `addresses` of
    /// that namespace, for the hosts on its links), reachable from that namespace alone
    /// otherwise (no RPC helpers: no security descriptors).
    public static func start(in namespace: NetworkNamespace? = nil, addresses: [String] = []) throws -> SMBTestServer {
        guard let smbd = S3TestServer.which("smbd") else {
            throw TestTreeError("smbd not found: apt-get install samba smbclient (.ci/run does)")
        }
        let dcerpcd = "/usr/libexec/samba/samba-dcerpcd"
        guard access(dcerpcd, X_OK) == 0 else {
            throw TestTreeError("\(dcerpcd) not found: apt-get install samba-common-bin (.ci/run does)")
        }
        if namespace == nil && NFSTestServer.portOpen(445) {
            throw TestTreeError("something already listens on port 445 (another SMB server?); the test smbd needs it for locations that name no port")
        }
        let dir = try TestTree(label: "smbd").root
        chmod(dir, 0o755)
        for sub in ["share1", "share2", "private", "lock", "state", "cache", "pid", "log", "ncalrpc"] { mkdir("\(dir)/\(sub)", 0o755) }
        let port = namespace == nil ? try S3TestServer.freePort() : 445
        let conf = """
            [global]
              smb ports = \(namespace == nil ? "\(port) 445" : "445")
              interfaces = \((["lo"] + addresses).joined(separator: " "))
              bind interfaces only = yes
              private dir = \(dir)/private
              lock directory = \(dir)/lock
              state directory = \(dir)/state
              cache directory = \(dir)/cache
              pid directory = \(dir)/pid
              log file = \(dir)/log/smbd.log
              passdb backend = tdbsam:\(dir)/private/passdb.tdb
              server min protocol = SMB2_02
              map to guest = never
              load printers = no
              printing = bsd
              printcap name = /dev/null
              disable spoolss = yes
              server role = standalone server
              ncalrpc dir = \(dir)/ncalrpc
              rpc start on demand helpers = no
            [share1]
              path = \(dir)/share1
              read only = no
              vfs objects = acl_xattr
              store dos attributes = yes
            [share2]
              path = \(dir)/share2
              read only = no
              vfs objects = acl_xattr
              store dos attributes = yes
            """
        try conf.write(toFile: "\(dir)/smb.conf", atomically: true, encoding: .utf8)
        let server = SMBTestServer(port: port, directory: dir, process: Process())
        if getpwnam(server.user) == nil {
            try run("/usr/sbin/useradd", ["-M", "-s", "/usr/sbin/nologin", server.user])
        }
        let owner = getpwnam(server.user)!.pointee
        for share in ["share1", "share2"] { chown("\(dir)/\(share)", owner.pw_uid, owner.pw_gid) }
        try run("/usr/bin/smbpasswd", ["-c", "\(dir)/smb.conf", "-s", "-a", server.user], input: "\(server.password)\n\(server.password)\n")
        try run("/usr/bin/net", ["-s", "\(dir)/smb.conf", "sam", "rights", "grant", server.user, "SeRestorePrivilege", "SeTakeOwnershipPrivilege"])
        let p = server.process
        if let namespace {
            try launch(p, namespace.command([smbd, "-s", "\(dir)/smb.conf", "--foreground", "--no-process-group"]), stdin: server.stdin)
            try namespace.waitFor("127.0.0.1", 445, what: "smbd (log: \(dir)/log/smbd.log)", process: p)
            return server
        }
        try launch(p, [smbd, "-s", "\(dir)/smb.conf", "--foreground", "--no-process-group"], stdin: server.stdin)
        try S3TestServer.waitForPort(port, process: p, what: "smbd (log: \(dir)/log/smbd.log)")
        try S3TestServer.waitForPort(445, process: p, what: "smbd on port 445 (log: \(dir)/log/smbd.log)")
        // The RPC services (LSA among them, which libsmbclient needs to read and write
        // security descriptors) run in samba-dcerpcd, started here rather than on demand.
        try launch(server.rpcProcess, [dcerpcd, "-s", "\(dir)/smb.conf", "--foreground", "--libexec-rpcds"], stdin: server.rpcStdin)
        try server.waitForLSA()
        return server
    }

    /// Starts a server in the foreground, killed when the test process ends (and stopping
    /// when `stdin`, kept open for its lifetime, ends).
    static func launch(_ p: Process, _ argv: [String], stdin: Pipe) throws {
        try ProcessLauncher.start(p, argv, stdin: stdin)
    }

    /// Runs `tool` to its end; its standard output (``ProcessLauncher/output(_:input:)``).
    @discardableResult
    static func run(_ tool: String, _ args: [String], input: String? = nil) throws -> String {
        try ProcessLauncher.output([tool] + args, input: input)
    }

    /// Waits until security descriptors can be read (smbcacls on the share's root answers),
    /// failing loudly after 15 s.
    func waitForLSA() throws {
        var last = ""
        for _ in 0..<60 {
            do {
                // Names, not SIDs: the LSA service answered.
                if try acl("share1", "/", numeric: false).contains("\\\(user)") { return }
            } catch {
                last = "\(error)"
            }
            guard rpcProcess.isRunning else { break }
            usleep(250_000)
        }
        throw TestTreeError("samba-dcerpcd did not serve security descriptors (log: \(directory)/log/): \(last)")
    }

    /// `smbcacls` of `path` in `share` (numeric SIDs unless told; port 445: smbcacls takes
    /// no port), for checking what a copy kept.
    public func acl(_ share: String, _ path: String, numeric: Bool = true) throws -> String {
        try SMBTestServer.run("/usr/bin/smbcacls", ["-U", "\(user)%\(password)"] + (numeric ? ["--numeric"] : []) + ["//127.0.0.1/\(share)", path])
    }

    /// `smbclient -c COMMAND` on `share`; its output.
    public func smbclient(_ share: String, _ command: String) throws -> String {
        try SMBTestServer.run("/usr/bin/smbclient", ["//127.0.0.1/\(share)", "-p", "\(port)", "-U", "\(user)%\(password)", "-c", command])
    }

    /// The DOS attributes ("RHA (23)") and creation time of `path` in `share`, as
    /// `smbclient`'s `allinfo` tells them.
    public func attributes(_ share: String, _ path: String) throws -> (attributes: String, created: String) {
        let info = try smbclient(share, "allinfo \"\(path)\"")
        func field(_ name: String) -> String {
            info.split(separator: "\n").first { $0.hasPrefix(name + ":") }
                .map { $0.dropFirst(name.count + 1).trimmingCharacters(in: .whitespaces) } ?? ""
        }
        return (field("attributes"), field("create_time"))
    }

    /// Gives `path` in `share` to the owner `sid` (`smbcacls --chown`).
    public func setOwner(_ share: String, _ path: String, _ sid: String) throws {
        try SMBTestServer.run("/usr/bin/smbcacls", ["-U", "\(user)%\(password)", "//127.0.0.1/\(share)", path, "--chown", sid])
    }

    /// Sets an ACL entry with `smbcacls --add`.
    public func addACE(_ share: String, _ path: String, _ ace: String) throws {
        try SMBTestServer.run("/usr/bin/smbcacls", ["-U", "\(user)%\(password)", "//127.0.0.1/\(share)", path, "--add", ace])
    }
}
