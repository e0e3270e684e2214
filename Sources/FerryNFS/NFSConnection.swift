import CLibNFS
import FerryCore
import Foundation
import Glibc
import Synchronization

/// What one libnfs call came to: a negative errno and libnfs's own message.
struct NFSFailure: Error, Sendable {
    var errno: Int32
    var message: String
}


/// One NFS connection: a libnfs context (one TCP connection to the server) driven by a
/// thread of its own that polls its socket. Calls are queued to that thread, started with
/// libnfs's asynchronous interface and answered from its callbacks, so any number of
/// requests are outstanding on the connection at once (libnfs itself is not thread-safe;
/// only this thread touches the context).
final class NFSConnection: @unchecked Sendable {
    typealias Start = @Sendable (OpaquePointer, nfs_cb, UnsafeMutableRawPointer) -> Int32
    /// Work for the connection's thread; nil when the connection is closed.
    typealias Job = @Sendable (OpaquePointer?) -> Void

    private let context: OpaquePointer
    private let jobs = Mutex<[Job]>([])
    /// A pipe that wakes the thread when a job is queued (read end, write end).
    private let wake: (Int32, Int32)
    private let stopping = Atomic<Bool>(false)
    private let stopped = DispatchSemaphore(value: 0)
    private let started = Atomic<Bool>(false)
    private let brokenFlag = Atomic<Bool>(false)
    /// Whether a call failed as a broken connection does (timed out, reset): the client
    /// mounts a new connection in its place (``NFSClient/connection``).
    var broken: Bool { brokenFlag.load(ordering: .relaxed) }
    /// Largest READ and WRITE the server takes (FSINFO's rtmax/wtmax).
    let readMax: Int
    let writeMax: Int

    /// Mounts `export` on `server` (`url` carries the ports and version, as libnfs parses
    /// them) with blocking calls on the caller's thread; ``start()`` then starts the
    /// connection's thread.
    init(url: String, export: String, timeoutMilliseconds: Int32) throws(NFSFailure) {
        guard let context = nfs_init_context() else { throw NFSFailure(errno: ENOMEM, message: "nfs_init_context failed") }
        guard let parsed = nfs_parse_url_incomplete(context, url) else {
            let message = String(cString: nfs_get_error(context))
            nfs_destroy_context(context)
            throw NFSFailure(errno: EINVAL, message: message)
        }
        nfs_destroy_url(parsed)
        nfs_set_version(context, 3)  // NFSv3, also named in the URL
        nfs_set_timeout(context, timeoutMilliseconds)
        // No reconnection by libnfs: after a cut its reconnected requests were seen to hang
        // until they timed out (30 s each). A broken connection fails its calls at once
        // instead, and the client mounts a new one in its place (``NFSClient/connection``);
        // the engine tries the file again.
        nfs_set_autoreconnect(context, 0)
        // A first connection to a port nobody listens on fails at once; to a host that does
        // not answer, after a few SYNs, not the kernel's two minutes.
        nfs_set_tcp_syncnt(context, 3)
        let host = url.dropFirst("nfs://".count).prefix { $0 != "/" && $0 != "?" }
        let server = host.hasPrefix("[") ? String(host.dropFirst().prefix { $0 != "]" }) : String(host.prefix { $0 != ":" })
        if nfs_mount(context, server, export) != 0 {
            let message = String(cString: nfs_get_error(context))
            nfs_destroy_context(context)
            throw NFSFailure(errno: EIO, message: message)
        }
        self.context = context
        readMax = max(4096, Int(nfs_get_readmax(context)))
        writeMax = max(4096, Int(nfs_get_writemax(context)))
        var ends: [Int32] = [-1, -1]
        _ = pipe(&ends)
        for fd in ends { _ = fcntl(fd, F_SETFL, O_NONBLOCK); _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        wake = (ends[0], ends[1])
    }

    /// Runs a blocking libnfs call on the caller's thread: only before ``start()``.
    func blocking<R>(_ body: (OpaquePointer) -> R) -> R { body(context) }

    /// Starts the connection's thread; calls are served from then on.
    func start() {
        started.store(true, ordering: .releasing)
        let thread = Thread { [self] in loop() }
        thread.name = "ferry-nfs"
        thread.start()
    }

    /// Stops the thread; calls still outstanding fail.
    func close() {
        guard !jobs.withLock({ _ in stopping.exchange(true, ordering: .acquiringAndReleasing) }) else { return }
        if started.load(ordering: .acquiring) {
            signal()
            stopped.wait()
        } else {
            nfs_destroy_context(context)
            Glibc.close(wake.0)
            Glibc.close(wake.1)
        }
    }

    /// Starts a call on the connection's thread and waits for its callback: `start` calls a
    /// libnfs `…_async` function with the callback and its data; `finish` turns the
    /// callback's status and data into the result, on the connection's thread (where the
    /// data is still valid).
    func call<T: Sendable>(
        _ start: @escaping Start, finish: @escaping @Sendable (OpaquePointer, Int32, UnsafeMutableRawPointer?) -> T
    ) async throws(NFSFailure) -> T {
        // A broken connection fails at once rather than after another timeout.
        if broken { throw NFSFailure(errno: ECONNRESET, message: "the connection broke (a call on it timed out or was reset)") }
        let result: Result<T, NFSFailure> = await withCheckedContinuation { continuation in
            let pending = PendingCall { context, status, data in
                if status < 0 {
                    let message = data.map { String(cString: $0.assumingMemoryBound(to: CChar.self)) } ?? String(cString: strerror(-status))
                    if NFSConnection.breaks(-status, message) { self.brokenFlag.store(true, ordering: .relaxed) }
                    continuation.resume(returning: .failure(NFSFailure(errno: -status, message: message)))
                } else {
                    continuation.resume(returning: .success(finish(context, status, data)))
                }
            }
            submit { context in
                guard let context else {
                    continuation.resume(returning: .failure(NFSFailure(errno: ECONNABORTED, message: "the connection was closed")))
                    return
                }
                let token = Unmanaged.passRetained(pending).toOpaque()
                if start(context, nfsCallback, token) != 0 {
                    Unmanaged<PendingCall>.fromOpaque(token).release()
                    continuation.resume(returning: .failure(NFSFailure(errno: EIO, message: String(cString: nfs_get_error(context)))))
                }
            }
        }
        return try result.get()
    }

    /// Whether a failure is the connection's, not the call's: timed out, reset, gone (libnfs
    /// says "Failed to reconnect", "Command timed out", "Command was cancelled").
    static func breaks(_ e: Int32, _ message: String) -> Bool {
        [ETIMEDOUT, ECONNRESET, ECONNABORTED, ENOTCONN, EPIPE].contains(e)
            || ["timed out", "cancelled", "reconnect", "connection broke"].contains { message.contains($0) }
    }

    /// Runs `job` on the connection's thread, or with nil at once when it is closed.
    func submit(_ job: @escaping Job) {
        let queued = jobs.withLock { queue -> Bool in
            if stopping.load(ordering: .acquiring) { return false }
            queue.append(job)
            return true
        }
        if queued { signal() } else { job(nil) }
    }

    private func signal() {
        var one: UInt8 = 1
        _ = Glibc.write(wake.1, &one, 1)
    }

    private func loop() {
        var fds = [pollfd(), pollfd()]
        while !stopping.load(ordering: .acquiring) {
            for job in jobs.withLock({ j -> [Job] in defer { j = [] }; return j }) { job(context) }
            fds[0] = pollfd(fd: nfs_get_fd(context), events: Int16(truncatingIfNeeded: nfs_which_events(context)), revents: 0)
            fds[1] = pollfd(fd: wake.0, events: Int16(POLLIN), revents: 0)
            let n = poll(&fds, 2, 100)
            if n < 0 && errno != EINTR { break }
            if fds[1].revents != 0 {
                var drain = [UInt8](repeating: 0, count: 64)
                while Glibc.read(wake.0, &drain, 64) == 64 {}
            }
            // The socket reset or closed: the connection is broken; its calls fail now (as
            // the context goes), not when each times out, and new ones fail at once.
            if fds[0].revents & Int16(POLLHUP | POLLERR) != 0 {
                brokenFlag.store(true, ordering: .relaxed)
                jobs.withLock { _ in stopping.store(true, ordering: .releasing) }
                break
            }
            // Also with no events: libnfs times requests out here.
            _ = nfs_service(context, Int32(fds[0].revents))
        }
        for job in jobs.withLock({ j -> [Job] in defer { j = [] }; return j }) { job(context) }
        // Outstanding calls are answered with an error as the context goes.
        nfs_destroy_context(context)
        Glibc.close(wake.0)
        Glibc.close(wake.1)
        stopped.signal()
    }
}

/// A call waiting for its libnfs callback.
private final class PendingCall: @unchecked Sendable {
    let complete: (OpaquePointer, Int32, UnsafeMutableRawPointer?) -> Void
    init(_ complete: @escaping (OpaquePointer, Int32, UnsafeMutableRawPointer?) -> Void) { self.complete = complete }
}

private let nfsCallback: nfs_cb = { status, context, data, token in
    guard let token, let context else { return }
    Unmanaged<PendingCall>.fromOpaque(token).takeRetainedValue().complete(context, status, data)
}
