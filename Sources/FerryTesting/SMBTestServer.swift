import Foundation
import Glibc

/// A real SMB server for tests: Samba's `smbd` with a private `smb.conf` on 127.0.0.1 at a
/// port of its own and at 445 (DataSync's SMB locations name no port), a user made with
/// `smbpasswd`, and two shares (`share1`, `share2`) that keep DOS attributes and NT ACLs
/// (`acl_xattr`). Started once per test process; fails loudly when it cannot start.
public final class SMBTestServer: Sendable {
    public let port: Int
    public let directory: String
    public let user = "ferrysmb"
    public let password = "Ferry-Secret-123"
    let process: Process
    /// smbd in the foreground exits when its stdin ends: a pipe kept open for its lifetime.
    let stdin = Pipe()

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

    public static func start() throws -> SMBTestServer {
        guard let smbd = S3TestServer.which("smbd") else {
            throw TestTreeError("smbd not found: apt-get install samba smbclient (.ci/run does)")
        }
        if NFSTestServer.portOpen(445) {
            throw TestTreeError("something already listens on port 445 (another SMB server?); the test smbd needs it for locations that name no port")
        }
        let dir = try TestTree(label: "smbd").root
        chmod(dir, 0o755)
        for sub in ["share1", "share2", "private", "lock", "state", "cache", "pid", "log"] { mkdir("\(dir)/\(sub)", 0o755) }
        let port = try S3TestServer.freePort()
        let conf = """
            [global]
              smb ports = \(port) 445
              interfaces = lo
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
        let p = server.process
        p.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        p.arguments = ["--pdeathsig", "KILL", "--", smbd, "-s", "\(dir)/smb.conf", "--foreground", "--no-process-group"]
        p.standardInput = server.stdin
        p.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        p.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try ProcessLauncher.run(p)
        try S3TestServer.waitForPort(port, process: p, what: "smbd (log: \(dir)/log/smbd.log)")
        try S3TestServer.waitForPort(445, process: p, what: "smbd on port 445 (log: \(dir)/log/smbd.log)")
        return server
    }

    static func run(_ tool: String, _ args: [String], input: String? = nil) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tool)
        p.arguments = args
        let pipe = Pipe()
        if input != nil { p.standardInput = pipe }
        p.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        p.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try p.run()
        if let input {
            pipe.fileHandleForWriting.write(Data(input.utf8))
            try pipe.fileHandleForWriting.close()
        }
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw TestTreeError("\(tool) \(args.joined(separator: " ")) failed with \(p.terminationStatus)") }
    }

    /// `smbcacls` of `path` in `share` (numeric SIDs), for checking what a copy kept.
    public func acl(_ share: String, _ path: String) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/smbcacls")
        p.arguments = ["--port", "\(port)", "-U", "\(user)%\(password)", "--numeric", "//127.0.0.1/\(share)", path]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw TestTreeError("smbcacls //127.0.0.1/\(share) \(path) failed with \(p.terminationStatus)") }
        return String(decoding: data, as: UTF8.self)
    }

    /// Sets an ACL entry with `smbcacls --add`.
    public func addACE(_ share: String, _ path: String, _ ace: String) throws {
        try SMBTestServer.run("/usr/bin/smbcacls", ["--port", "\(port)", "-U", "\(user)%\(password)", "//127.0.0.1/\(share)", path, "--add", ace])
    }
}
