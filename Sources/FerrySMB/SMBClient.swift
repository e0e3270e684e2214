import CLibSMB
import CSMBThreads
import FerryCore
import Foundation
import Glibc
import Synchronization

/// One libsmbclient context (one SMB session to the server) and the thread that uses it:
/// libsmbclient's calls block, and a context is used by one thread at a time, so each
/// worker runs its calls in order on a serial queue of its own; many workers keep many
/// requests in flight.
final class SMBWorker: @unchecked Sendable {
    let context: UnsafeMutablePointer<SMBCCTX>
    private let queue: DispatchQueue
    private let auth: Unmanaged<AuthData>

    /// libsmbclient is thread-safe only once told to use POSIX threads (its per-thread
    /// talloc stack frames); done once, before the first context.
    private static let threadsReady: Bool = csmb_threads_posix() == 0

    init(index: Int, credentials: SMBCredentials, version: SMBVersion, port: Int?, timeoutMilliseconds: Int32) throws(FerryError) {
        guard SMBWorker.threadsReady else {
            throw FerryError(.fatal, "libsmbclient cannot be made thread-safe here (smb_thread_set_functions not found in libsamba-util.so.0)")
        }
        // Setting a context up reloads libsmbclient's shared configuration: alone.
        SMBWorker.library.lockWrite()
        defer { SMBWorker.library.unlock() }
        guard let context = smbc_new_context() else { throw FerryError(.fatal, "smbc_new_context failed") }
        smbc_setDebug(context, 0)
        smbc_setTimeout(context, timeoutMilliseconds)
        smbc_setOptionUseKerberos(context, 0)
        smbc_setOptionFallbackAfterKerberos(context, 1)
        smbc_setOptionNoAutoAnonymousLogin(context, 1)
        // system.dos_attr.* names times CREATE_TIME, WRITE_TIME, … (not C_TIME, M_TIME, …).
        smbc_setOptionFullTimeNames(context, 1)
        // The credentials reach libsmbclient through its authentication callback (setting
        // them with smbc_set_credentials_with_fallback fails NTLM here:
        // NT_STATUS_WRONG_CREDENTIAL_HANDLE).
        auth = Unmanaged.passRetained(AuthData(credentials))
        smbc_setOptionUserData(context, auth.toOpaque())
        smbc_setFunctionAuthDataWithContext(context, smbAuthenticate)
        if let port { smbc_setPort(context, UInt16(port)) }
        let p = version.protocols
        _ = smbc_setOptionProtocols(context, p.min, p.max)
        guard smbc_init_context(context) != nil else {
            smbc_free_context(context, 1)
            auth.release()
            throw FerryError(.fatal, "smbc_init_context failed (is there a readable smb.conf?)")
        }
        self.context = context
        queue = DispatchQueue(label: "ferry-smb-\(index)")
    }

    /// libsmbclient's shared state (its character-set handles among it) is made and
    /// remade, without locks, when a context is set up and when a session connects:
    /// concurrent logons failed here with "convert_string_talloc: out of memory" and a
    /// double free, even after a first session had connected. So setting a context up, a
    /// session's first call (and its first after a connection error), its first
    /// security-descriptor call and closing run alone (the write side); every other call
    /// runs at once with those of the other sessions (the read side).
    static let library = ReadWriteLock()
    /// Whether this session's next call may connect (first call, or after a broken connection).
    private let connecting = Atomic<Bool>(true)

    static func brokeConnection(_ e: Int32) -> Bool {
        [ECONNRESET, ECONNABORTED, ENOTCONN, EPIPE, ETIMEDOUT, EIO, ECONNREFUSED, EHOSTUNREACH, ENETUNREACH, ENOMEM].contains(e)
    }

    /// Whether the session has made its second connection, to IPC$, for SID lookups
    /// (libsmbclient makes it on the first security-descriptor call: run alone too).
    let describes = Atomic<Bool>(false)

    private func call<T>(alone force: Bool = false, _ body: (UnsafeMutablePointer<SMBCCTX>) -> T) -> (T, Int32) {
        let alone = force || connecting.load(ordering: .relaxed)
        if alone { SMBWorker.library.lockWrite() } else { SMBWorker.library.lockRead() }
        errno = 0
        let value = body(context)
        let e = errno
        SMBWorker.library.unlock()
        if SMBWorker.brokeConnection(e) {
            connecting.store(true, ordering: .relaxed)
        } else if alone && e == 0 {
            connecting.store(false, ordering: .relaxed)
        }
        return (value, e)
    }

    /// Runs `body` with the context on the worker's queue; `errno` as the call left it.
    /// `alone`: the call may connect (see ``library``).
    func run<T: Sendable>(alone: Bool = false, _ body: @escaping @Sendable (UnsafeMutablePointer<SMBCCTX>) -> T) async -> (T, Int32) {
        await withCheckedContinuation { continuation in
            let worker = Unchecked(self)
            queue.async {
                continuation.resume(returning: worker.value.call(alone: alone) { body($0) })
            }
        }
    }

    /// The same, blocking the caller (only while connecting).
    func runNow<T>(_ body: (UnsafeMutablePointer<SMBCCTX>) -> T) -> (T, Int32) {
        queue.sync { call(body) }
    }

    func close() {
        queue.sync {
            SMBWorker.library.lockWrite()
            defer { SMBWorker.library.unlock() }
            _ = smbc_free_context(context, 1)
        }
        auth.release()
    }
}

/// What the authentication callback answers, as C strings.
private final class AuthData {
    let workgroup: [CChar], user: [CChar], password: [CChar]
    init(_ c: SMBCredentials) {
        workgroup = Array((c.domain ?? "WORKGROUP").utf8CString)
        user = Array(c.user.utf8CString)
        password = Array(c.password.utf8CString)
    }
}

private func copy(_ value: [CChar], to buffer: UnsafeMutablePointer<CChar>?, _ length: Int32) {
    guard let buffer, length > 0 else { return }
    let n = min(value.count - 1, Int(length) - 1)
    value.withUnsafeBufferPointer { buffer.update(from: $0.baseAddress!, count: n) }
    buffer[n] = 0
}

private let smbAuthenticate: smbc_get_auth_data_with_context_fn = { context, _, _, workgroup, workgroupLength, user, userLength, password, passwordLength in
    guard let context, let data = smbc_getOptionUserData(context) else { return }
    let auth = Unmanaged<AuthData>.fromOpaque(data).takeUnretainedValue()
    copy(auth.workgroup, to: workgroup, workgroupLength)
    copy(auth.user, to: user, userLength)
    copy(auth.password, to: password, passwordLength)
}

/// Ferry's SMB client for one location: `workers` sessions to one share, the path below it,
/// and how security descriptors travel.
public final class SMBClient: Sendable {
    public let host: String
    public let port: Int?
    public let share: String
    /// The location's root below the share ("" or "/a/b").
    public let below: String
    public let user: String
    public let domain: String?
    public let securityDescriptors: SecurityDescriptorCopy
    /// Sessions per location unless told otherwise: each carries one request at a time,
    /// and a file is some 20 round trips (10 ms away: 84 files/s with 16 sessions, 161 with
    /// 32; docs/PERFORMANCE.md).
    public static let defaultSessions = 32

    let workers: [SMBWorker]
    /// DOS attributes of the directories listed and not yet asked for, those with more than
    /// the directory bit only (few; the rest are 0x10): libsmbclient's mapped mode cannot
    /// tell a directory's, its parent's listing can.
    private let directoryAttributes = Mutex<[EntryPath: UInt32]>([:])
    private let next = Atomic<Int>(0)
    private let closed = Atomic<Bool>(false)

    /// `smb://[domain;]user@host[:port]/share/path` as messages name it.
    public var display: String {
        "smb://" + (domain.map { $0 + ";" } ?? "") + user + "@" + (host.contains(":") ? "[\(host)]" : host) + (port.map { ":\($0)" } ?? "") + "/" + share + below
    }

    /// Connects `workers` sessions to `share` on `host` and checks that `path` below it is
    /// a directory (made, with its parents, when `create`). Blocks while it connects.
    public static func connect(
        host: String, port: Int?, path: String, credentials: SMBCredentials, version: SMBVersion = .automatic,
        securityDescriptors: SecurityDescriptorCopy = .ownerDACL, create: Bool, workers: Int = defaultSessions, timeoutMilliseconds: Int32 = 30_000
    ) throws -> SMBClient {
        let parts = path.split(separator: "/").map(String.init)
        guard let share = parts.first else {
            throw FerryError(.invalidLocation, "smb://\(host)/: name the share (smb://HOST/SHARE/PATH)")
        }
        let below = parts.dropFirst().map { "/" + $0 }.joined()
        let location = "smb://" + host + (port.map { ":\($0)" } ?? "") + "/" + share + below
        if securityDescriptors == .ownerDACLSACL {
            throw SMBError(.smbConnectFailed, operation: "connect", path: nil, errno: 0,
                           detail: "SecurityDescriptorCopyFlags OWNER_DACL_SACL is not supported yet: libsmbclient reads and writes no SACLs; use OWNER_DACL or NONE",
                           location: location, retryClass: .fatal)
        }
        var all: [SMBWorker] = []
        for i in 0..<max(1, workers) {
            all.append(try SMBWorker(index: i, credentials: credentials, version: version, port: port, timeoutMilliseconds: timeoutMilliseconds))
        }
        let client = SMBClient(host: host, port: port, share: share, below: below, credentials: credentials,
                               securityDescriptors: securityDescriptors, workers: all)
        // The share itself first: a wrong name, password or version is told as such.
        // The first session logs on now; each other at its first call, alone (see
        // ``SMBWorker``): a run that needs few sessions pays for few logons (some 17 round
        // trips each).
        let root = client.url(.root, belowShare: false)
        let (shareStatus, shareErrno) = client.workers[0].runNow { ctx -> Int32 in
            guard let dir = smbc_getFunctionOpendir(ctx)!(ctx, root) else { return -1 }
            _ = smbc_getFunctionClosedir(ctx)!(ctx, dir)
            return 0
        }
        if shareStatus != 0 {
            client.close()
            throw SMBError(.smbConnectFailed, operation: "connect", path: nil, errno: shareErrno,
                           detail: SMBClient.connectHint(shareErrno, host: host, port: port, share: share, user: credentials.user, version: version),
                           location: location, retryClass: .fatal)
        }
        var made = ""
        for name in parts.dropFirst() {
            made += "/" + name
            let url = "smb://" + client.authority + "/" + SMBClient.encode(share) + SMBClient.encode(made)
            let (status, e) = client.workers[0].runNow { ctx -> Int32 in
                var st = Glibc.stat()
                if smbc_getFunctionStat(ctx)!(ctx, url, &st) == 0 { return st.st_mode & S_IFMT == S_IFDIR ? 0 : -2 }
                guard create else { return -1 }
                return smbc_getFunctionMkdir(ctx)!(ctx, url, 0o755)
            }
            if status != 0 {
                client.close()
                throw SMBError(.smbConnectFailed, operation: create ? "mkdir" : "stat", path: nil, errno: status == -2 ? ENOTDIR : e,
                               detail: create ? "" : "the directory \(made) does not exist in share \(share)", location: location, retryClass: .fatal)
            }
        }
        return client
    }

    static func connectHint(_ e: Int32, host: String, port: Int?, share: String, user: String, version: SMBVersion) -> String {
        switch e {
        case ENOENT: "no share \"\(share)\" on \(host) (list them with smbclient -L \(host))"
        case EACCES, EPERM: "the server refused user \(user) (check the user, domain and password) or its access to share \"\(share)\""
        case ECONNREFUSED, EHOSTUNREACH, ENETUNREACH, ETIMEDOUT: "is an SMB server listening on \(host) port \(port ?? 445)?"
        case EPROTONOSUPPORT, ECONNRESET, EPROTO, EINVAL: "the server refused the protocol (SMB \(version.protocols.min)…\(version.protocols.max)); try --smb-version auto"
        default: "is \(host) an SMB server, and is the name right?"
        }
    }

    private init(host: String, port: Int?, share: String, below: String, credentials: SMBCredentials,
                 securityDescriptors: SecurityDescriptorCopy, workers: [SMBWorker]) {
        self.host = host
        self.port = port
        self.share = share
        self.below = below
        self.user = credentials.user
        self.domain = credentials.domain
        self.securityDescriptors = securityDescriptors
        self.workers = workers
    }

    deinit { close() }

    public func close() {
        guard !closed.exchange(true, ordering: .relaxed) else { return }
        for w in workers { w.close() }
    }

    func noteDirectoryAttributes(_ found: [(EntryPath, UInt32)]) {
        let marked = found.filter { $0.1 != SMBClient.plainDirectory }
        guard !marked.isEmpty else { return }
        directoryAttributes.withLock { for (path, attributes) in marked { $0[path] = attributes } }
    }

    /// A directory's DOS attributes, as its parent's listing gave them.
    func takeDirectoryAttributes(_ path: EntryPath) -> UInt32 {
        directoryAttributes.withLock { $0.removeValue(forKey: path) } ?? SMBClient.plainDirectory
    }

    /// FILE_ATTRIBUTE_DIRECTORY alone.
    static let plainDirectory: UInt32 = 0x10

    /// Up to `count` sessions other than `worker`, those after it first (files opened on
    /// several sessions at once spread over all of them).
    func sessions(after worker: SMBWorker, _ count: Int) -> [SMBWorker] {
        guard let index = workers.firstIndex(where: { $0 === worker }) else { return Array(workers.prefix(count)) }
        return Array((workers[(index + 1)...] + workers[..<index]).prefix(count))
    }

    /// The next worker (round robin).
    var worker: SMBWorker { workers[next.add(1, ordering: .relaxed).oldValue % workers.count] }

    var authority: String { (host.contains(":") ? "[\(host)]" : host) + (port.map { ":\($0)" } ?? "") }

    /// The URL libsmbclient is given for `path`, percent-encoded.
    func url(_ path: EntryPath, belowShare: Bool = true) -> String {
        var s = "smb://" + authority + "/" + SMBClient.encode(share)
        if belowShare { s += SMBClient.encode(below) }
        if !path.isRoot { s += "/" + SMBClient.encode(bytes: path.bytes) }
        return s
    }

    static func encode(_ text: String) -> String { encode(bytes: Array(text.utf8)) }

    /// Percent-encodes all but unreserved characters and '/' (libsmbclient decodes URLs).
    static func encode(bytes: [UInt8]) -> String {
        var out = ""
        out.reserveCapacity(bytes.count)
        for b in bytes {
            switch b {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"), UInt8(ascii: "/"):
                out.unicodeScalars.append(Unicode.Scalar(b))
            default:
                out += String(format: "%%%02X", b)
            }
        }
        return out
    }
}
