// ferry-netem: a TCP proxy that delays, stalls and cuts, for benchmarks and tests over a
// network this kernel cannot emulate (it has no netem).
//
//   ferry-netem --listen [ADDRESS:]PORT --to HOST:PORT [--delay-ms D] [--cut-after BYTES [--cuts N] [--outage-ms O]]
//               [--stall-after BYTES --stall-ms S] [--count-file F] [--rate-kbit K]
//
// Every byte is held D ms in each direction (a round trip gains 2·D), in order. With
// --cut-after, the first N connections (1) are reset once BYTES have crossed them (both
// directions counted); later ones are left alone, so a client that reconnects goes on.
// With --outage-ms, a cut takes the path down for O ms: connections made meanwhile are reset
// at once (the far side unreachable), then they go through again.
// With --stall-after, the first connection stops forwarding for S ms once BYTES crossed.
// With --rate-kbit, each direction of each connection forwards at most K kbit/s (a slow
// link for tests, where `tc` cannot reach: the proxy paces its writes).
// With --count-file, the bytes that crossed all connections so far (both directions) are
// written to F (as a decimal number, replaced atomically) every 100 ms while they grow, so
// a benchmark can read what a run put on the link.
// It listens on 127.0.0.1 unless ADDRESS (an IPv4 address) is given.
// Prints "listening PORT" when ready, and a line per cut or stall; ends when killed.
import Foundation
import Glibc

struct Settings: Sendable {
    var listen = 0
    var listenAddress = "127.0.0.1"
    var host = "127.0.0.1"
    var port = 0
    var delayNanoseconds: UInt64 = 0
    var cutAfter: Int?
    var cuts = 1
    var stallAfter: Int?
    var stallNanoseconds: UInt64 = 0
    var outageNanoseconds: UInt64 = 0
    var countFile: String?
    var bytesPerSecond: Double = 0
}

/// The bytes that crossed every connection, both directions.
final class Crossed: @unchecked Sendable {
    static let shared = Crossed()
    private let lock = NSLock()
    private var total = 0

    func add(_ n: Int) {
        lock.lock()
        total += n
        lock.unlock()
    }

    var value: Int {
        lock.lock()
        defer { lock.unlock() }
        return total
    }

    /// Writes the total to `path` every 100 ms while it grows.
    func keepWriting(to path: String) {
        let t = Thread {
            var written = -1
            while true {
                let v = self.value
                if v != written {
                    let temporary = path + ".tmp"
                    FileManager.default.createFile(atPath: temporary, contents: Data("\(v)\n".utf8))
                    rename(temporary, path)
                    written = v
                }
                usleep(100_000)
            }
        }
        t.stackSize = 256 << 10
        t.start()
    }
}

/// Until when the path is down (after a cut with --outage-ms).
final class Outage: @unchecked Sendable {
    static let shared = Outage()
    private let lock = NSLock()
    private var until: UInt64 = 0

    func begin(_ nanoseconds: UInt64) {
        guard nanoseconds > 0 else { return }
        lock.lock()
        until = now() + nanoseconds
        lock.unlock()
        say("down for \(nanoseconds / 1_000_000) ms")
    }

    var isDown: Bool {
        lock.lock()
        defer { lock.unlock() }
        return now() < until
    }
}

func usage(_ message: String) -> Never {
    FileHandle.standardError.write(Data("ferry-netem: \(message)\nusage: ferry-netem --listen [ADDRESS:]PORT --to HOST:PORT [--delay-ms D] [--cut-after BYTES [--cuts N] [--outage-ms O]] [--stall-after BYTES --stall-ms S] [--count-file F] [--rate-kbit K]\n".utf8))
    exit(64)
}

func parse(_ args: [String]) -> Settings {
    var s = Settings()
    var i = 0
    func value() -> String {
        i += 1
        guard i < args.count else { usage("\(args[i - 1]) needs a value") }
        return args[i]
    }
    func number(_ text: String, _ name: String) -> Double {
        guard let n = Double(text), n >= 0 else { usage("\(name) \(text) is not a number ≥ 0") }
        return n
    }
    while i < args.count {
        switch args[i] {
        case "--listen":
            let v = value()
            if let colon = v.lastIndex(of: ":") { s.listenAddress = String(v[..<colon]) }
            s.listen = Int(number(String(v[(v.lastIndex(of: ":").map { v.index(after: $0) } ?? v.startIndex)...]), "--listen"))
        case "--to":
            let v = value()
            guard let colon = v.lastIndex(of: ":"), let p = Int(v[v.index(after: colon)...]) else { usage("--to \(v) is not HOST:PORT") }
            s.host = String(v[..<colon])
            s.port = p
        case "--delay-ms": s.delayNanoseconds = UInt64(number(value(), "--delay-ms") * 1_000_000)
        case "--cut-after": s.cutAfter = Int(number(value(), "--cut-after"))
        case "--cuts": s.cuts = Int(number(value(), "--cuts"))
        case "--stall-after": s.stallAfter = Int(number(value(), "--stall-after"))
        case "--stall-ms": s.stallNanoseconds = UInt64(number(value(), "--stall-ms") * 1_000_000)
        case "--outage-ms": s.outageNanoseconds = UInt64(number(value(), "--outage-ms") * 1_000_000)
        case "--count-file": s.countFile = value()
        case "--rate-kbit": s.bytesPerSecond = number(value(), "--rate-kbit") * 1000 / 8
        default: usage("unknown argument \(args[i])")
        }
        i += 1
    }
    if s.port == 0 { usage("--to HOST:PORT is required") }
    return s
}

func now() -> UInt64 {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return UInt64(t.tv_sec) * 1_000_000_000 + UInt64(t.tv_nsec)
}

func sleep(until deadline: UInt64) {
    var t = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
    while clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, nil) == EINTR {}
}

func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

/// One proxied connection: both sockets, the bytes that crossed it, and whether it is to be
/// cut or stalled.
final class Link: @unchecked Sendable {
    let client: Int32
    let server: Int32
    let cutAfter: Int?
    let stallAfter: Int?
    let stallNanoseconds: UInt64
    private let lock = NSLock()
    private var crossed = 0
    private var stalledUntil: UInt64 = 0
    private var stallDone = false
    private var closedSides = 0

    init(client: Int32, server: Int32, cutAfter: Int?, stallAfter: Int?, stallNanoseconds: UInt64) {
        self.client = client
        self.server = server
        self.cutAfter = cutAfter
        self.stallAfter = stallAfter
        self.stallNanoseconds = stallNanoseconds
    }

    /// Counts `n` bytes; whether the link is to be cut now, and until when it stalls.
    func count(_ n: Int) -> (cut: Bool, stallUntil: UInt64) {
        Crossed.shared.add(n)
        lock.lock()
        defer { lock.unlock() }
        crossed += n
        if let stallAfter, !stallDone, crossed >= stallAfter {
            stallDone = true
            stalledUntil = now() + stallNanoseconds
            say("stall \(stallNanoseconds / 1_000_000) ms after \(crossed) bytes")
        }
        return (cutAfter.map { crossed >= $0 } ?? false, stalledUntil)
    }

    /// Resets both sockets (SO_LINGER 0: the peers see ECONNRESET, as when a cable is pulled
    /// and the path comes back).
    func cut() {
        var off = linger(l_onoff: 1, l_linger: 0)
        for fd in [client, server] {
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &off, socklen_t(MemoryLayout<linger>.size))
            shutdown(fd, Int32(SHUT_RDWR))
        }
    }

    /// One direction ended; the second closes both sockets.
    func sideEnded() {
        lock.lock()
        closedSides += 1
        let last = closedSides == 2
        lock.unlock()
        if last {
            close(client)
            close(server)
        }
    }
}

/// Bytes read from one socket, written to the other once their delay has passed, in order.
final class DelayedPipe: @unchecked Sendable {
    private let condition = NSCondition()
    private var queue: [(deadline: UInt64, bytes: [UInt8])] = []
    private var head = 0
    private var ended = false

    func push(_ bytes: [UInt8], deadline: UInt64) {
        condition.lock()
        queue.append((deadline, bytes))
        condition.signal()
        condition.unlock()
    }

    func end() {
        condition.lock()
        ended = true
        condition.signal()
        condition.unlock()
    }

    /// The next chunk (nil at the end).
    func pop() -> (deadline: UInt64, bytes: [UInt8])? {
        condition.lock()
        defer { condition.unlock() }
        while head == queue.count && !ended { condition.wait() }
        guard head < queue.count else { return nil }
        let item = queue[head]
        head += 1
        if head > 1024 && head * 2 > queue.count {
            queue.removeFirst(head)
            head = 0
        }
        return item
    }
}

func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
    var done = 0
    while done < bytes.count {
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + done, bytes.count - done) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { return false }
        done += n
    }
    return true
}

/// Forwards `from` → `to` through a delay; counts, stalls and cuts on `link` (a cut begins
/// an outage of `outage` ns).
func forward(_ link: Link, from: Int32, to: Int32, delay: UInt64, outage: UInt64, bytesPerSecond: Double) {
    let pipe = DelayedPipe()
    let writer = Thread {
        // With a rate: when the link is free again (bytes leave no faster than the rate).
        var free: UInt64 = 0
        while let (deadline, bytes) = pipe.pop() {
            if deadline > now() { sleep(until: deadline) }
            guard bytesPerSecond > 0 else {
                if !writeAll(to, bytes) { break }
                continue
            }
            var done = 0
            var failed = false
            while done < bytes.count {  // 1,500-byte packets, each after the last left
                let n = min(1500, bytes.count - done)
                free = max(free, now()) + UInt64(Double(n) / bytesPerSecond * 1e9)
                sleep(until: free)
                if !writeAll(to, Array(bytes[done..<(done + n)])) { failed = true; break }
                done += n
            }
            if failed { break }
        }
        shutdown(to, Int32(SHUT_WR))
        link.sideEnded()
    }
    writer.stackSize = 256 << 10
    writer.start()
    var buffer = [UInt8](repeating: 0, count: 256 << 10)
    while true {
        let n = buffer.withUnsafeMutableBytes { read(from, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { break }
        let (cut, stallUntil) = link.count(n)
        if cut {
            say("cut")
            Outage.shared.begin(outage)
            link.cut()
            break
        }
        pipe.push(Array(buffer[0..<n]), deadline: max(now(), stallUntil) + delay)
    }
    pipe.end()
}

func connectUpstream(_ host: String, _ port: Int) -> Int32? {
    var hints = addrinfo()
    hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
    var result: UnsafeMutablePointer<addrinfo>?
    guard getaddrinfo(host, "\(port)", &hints, &result) == 0, let first = result else { return nil }
    defer { freeaddrinfo(result) }
    let fd = socket(first.pointee.ai_family, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0, connect(fd, first.pointee.ai_addr, first.pointee.ai_addrlen) == 0 else {
        if fd >= 0 { close(fd) }
        return nil
    }
    return fd
}

func noDelay(_ fd: Int32) {
    var one: Int32 = 1
    setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
}

/// Accepts connections on `settings.listenAddress`:`settings.listen` and proxies each to the upstream.
func serve(_ settings: Settings) -> Never {
    signal(SIGPIPE, SIG_IGN)
    let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var one: Int32 = 1
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr(settings.listenAddress)
    address.sin_port = UInt16(settings.listen).bigEndian
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard bound == 0, listen(listener, 128) == 0 else { usage("cannot listen on \(settings.listenAddress):\(settings.listen): \(String(cString: strerror(errno)))") }
    var actual = sockaddr_in()
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &actual) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) } }
    if let file = settings.countFile { Crossed.shared.keepWriting(to: file) }
    say("listening \(UInt16(bigEndian: actual.sin_port))")

    var connections = 0
    while true {
        let client = accept(listener, nil, nil)
        if client < 0 { continue }
        if Outage.shared.isDown {
            var reset = linger(l_onoff: 1, l_linger: 0)
            setsockopt(client, SOL_SOCKET, SO_LINGER, &reset, socklen_t(MemoryLayout<linger>.size))
            close(client)
            continue
        }
        guard let server = connectUpstream(settings.host, settings.port) else {
            say("cannot reach \(settings.host):\(settings.port): \(String(cString: strerror(errno)))")
            close(client)
            continue
        }
        noDelay(client)
        noDelay(server)
        let link = Link(client: client, server: server, cutAfter: connections < settings.cuts ? settings.cutAfter : nil,
                        stallAfter: connections == 0 ? settings.stallAfter : nil, stallNanoseconds: settings.stallNanoseconds)
        connections += 1
        let delay = settings.delayNanoseconds, outage = settings.outageNanoseconds, rate = settings.bytesPerSecond
        for (from, to) in [(client, server), (server, client)] {
            let t = Thread { forward(link, from: from, to: to, delay: delay, outage: outage, bytesPerSecond: rate) }
            t.stackSize = 512 << 10
            t.start()
        }
    }
}

serve(parse(Array(CommandLine.arguments.dropFirst())))
