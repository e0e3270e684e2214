import CFerry
import FerryCore
import Glibc
import Synchronization

/// Small helpers over raw syscalls: NUL-terminated byte paths, `stat` → ``FileMetadata``.
enum Sys {
    /// Calls `body` with `bytes` as a NUL-terminated C string (`.` for an empty path). The
    /// copy with its NUL is made in temporary storage (on the stack for names and most
    /// paths), not in a new array: this runs several times for every file.
    @inline(__always)
    static func withCString<R, E: Error>(_ bytes: [UInt8], _ body: (UnsafePointer<CChar>) throws(E) -> R) throws(E) -> R {
        try withCString(bytes[...], body)
    }

    /// ``withCString(_:_:)`` of a slice (a path's last component, without copying it out first).
    @inline(__always)
    static func withCString<R, E: Error>(_ bytes: ArraySlice<UInt8>, _ body: (UnsafePointer<CChar>) throws(E) -> R) throws(E) -> R {
        let result: Result<R, E> = withUnsafeTemporaryAllocation(of: CChar.self, capacity: max(bytes.count, 1) + 1) { buffer in
            let base = buffer.baseAddress!
            if bytes.isEmpty {
                base[0] = CChar(UInt8(ascii: "."))
                base[1] = 0
            } else {
                bytes.withUnsafeBytes { raw in
                    UnsafeMutableRawPointer(base).copyMemory(from: raw.baseAddress!, byteCount: raw.count)
                }
                base[bytes.count] = 0
            }
            do throws(E) { return .success(try body(base)) } catch { return .failure(error) }
        }
        return try result.get()
    }

    /// `CLOCK_MONOTONIC` in nanoseconds.
    static func monotonicNanoseconds() -> Int64 {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return Int64(t.tv_sec) * 1_000_000_000 + Int64(t.tv_nsec)
    }

    static func timestamp(_ t: timespec) -> Timestamp {
        Timestamp(seconds: Int64(t.tv_sec), nanoseconds: Int32(t.tv_nsec))
    }

    static func timespecOf(_ t: Timestamp) -> timespec {
        timespec(tv_sec: Int(t.seconds), tv_nsec: Int(t.nanoseconds))
    }

    /// `body` with the two times `futimens`/`utimensat` take for `metadata`: atime, then
    /// mtime, `UTIME_OMIT` for a time `selection` leaves alone. On the stack (an array
    /// cost an allocation for every file).
    static func withTimes<R>(_ metadata: FileMetadata, _ selection: MetadataSelection, _ body: (UnsafePointer<timespec>) -> R) -> R {
        let omit = timespec(tv_sec: 0, tv_nsec: cferry_UTIME_OMIT)
        var times = (selection.atime ? timespecOf(metadata.atime) : omit, selection.mtime ? timespecOf(metadata.mtime) : omit)
        return withUnsafePointer(to: &times) { $0.withMemoryRebound(to: timespec.self, capacity: 2, body) }
    }

    static func kind(_ mode: UInt32) -> EntryKind? { EntryKind(modeTypeBits: mode) }

    static func metadata(_ st: stat) -> FileMetadata {
        FileMetadata(
            permissions: UInt32(st.st_mode) & 0o7777,
            uid: st.st_uid, gid: st.st_gid,
            mtime: timestamp(st.st_mtim), atime: timestamp(st.st_atim), ctime: timestamp(st.st_ctim),
            size: Int64(st.st_size), allocatedBytes: Int64(st.st_blocks) * 512,
            deviceNumber: UInt64(st.st_rdev),
            fileID: FileID(device: UInt64(st.st_dev), inode: UInt64(st.st_ino)),
            linkCount: UInt32(st.st_nlink))
    }

    /// `fstatat(dirfd, name, AT_SYMLINK_NOFOLLOW)`.
    static func lstatAt(_ dirfd: Int32, _ name: UnsafePointer<CChar>) -> stat? {
        var st = stat()
        return fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 ? st : nil
    }

    /// `readlinkat`, growing the buffer until the target fits.
    static func readLink(_ dirfd: Int32, _ name: UnsafePointer<CChar>, sizeHint: Int) -> [UInt8]? {
        var capacity = max(sizeHint + 1, 256)
        while true {
            var buf = [UInt8](repeating: 0, count: capacity)
            let n = buf.withUnsafeMutableBufferPointer { p in
                p.baseAddress!.withMemoryRebound(to: CChar.self, capacity: capacity) { readlinkat(dirfd, name, $0, capacity) }
            }
            if n < 0 { return nil }
            if n < capacity { return Array(buf[..<n]) }
            capacity *= 2
        }
    }


    /// Extended attributes of an open file (`flistxattr` + `fgetxattr`).
    static func xattrs(fd: Int32) -> [ExtendedAttribute]? {
        xattrs(XattrTarget.descriptor(fd))
    }

    /// Extended attributes of `target`, sorted by name; nil when they cannot be listed.
    /// (Calls `target`'s methods directly: passing `target.list` as a closure allocated two
    /// contexts per file copied.)
    static func xattrs(_ target: XattrTarget) -> [ExtendedAttribute]? {
        var size = target.list(nil, 0)
        if size < 0 { return (errno == ENOTSUP || errno == EOPNOTSUPP) ? [] : nil }
        if size == 0 { return [] }
        var names = [CChar](repeating: 0, count: size + 1)
        size = names.withUnsafeMutableBufferPointer { target.list($0.baseAddress, size) }
        if size < 0 { return nil }
        var result: [ExtendedAttribute] = []
        var start = 0
        while start < size {
            var end = start
            while end < size && names[end] != 0 { end += 1 }
            let nameBytes = names[start..<end].map { UInt8(bitPattern: $0) }
            let value: [UInt8]? = names.withUnsafeBufferPointer { nb -> [UInt8]? in
                let namePtr = nb.baseAddress! + start
                let len = target.get(namePtr, nil, 0)
                if len < 0 { return nil }
                var v = [UInt8](repeating: 0, count: max(len, 1))
                let got = v.withUnsafeMutableBytes { target.get(namePtr, $0.baseAddress, len) }
                return got < 0 ? nil : Array(v[..<got])
            }
            if let value { result.append(ExtendedAttribute(name: nameBytes, value: value)) }
            start = end + 1
        }
        return result.sorted { $0.name.lexicographicallyPrecedes($1.name) }
    }
}

/// Where extended attributes are read and written: an open descriptor (files and
/// directories), or a path whose last component is not followed (FIFOs and device nodes,
/// which cannot be opened without blocking or reaching the device; see
/// ``POSIXLocation/withEntryPath(_:operation:_:)``).
enum XattrTarget {
    case descriptor(Int32)
    case path(UnsafePointer<CChar>)

    /// The `*listxattr` call: names, NUL-separated, into `buffer` (its size with nil).
    func list(_ buffer: UnsafeMutablePointer<CChar>?, _ size: Int) -> Int {
        switch self {
        case .descriptor(let fd): cferry_flistxattr(fd, buffer, size)
        case .path(let path): cferry_llistxattr(path, buffer, size)
        }
    }

    /// The `*getxattr` call: `name`'s value into `value` (its size with nil).
    func get(_ name: UnsafePointer<CChar>, _ value: UnsafeMutableRawPointer?, _ size: Int) -> Int {
        switch self {
        case .descriptor(let fd): cferry_fgetxattr(fd, name, value, size)
        case .path(let path): cferry_lgetxattr(path, name, value, size)
        }
    }

    /// The `*setxattr` call (create or replace).
    func set(_ name: UnsafePointer<CChar>, _ value: UnsafeRawPointer?, _ size: Int) -> Int32 {
        switch self {
        case .descriptor(let fd): cferry_fsetxattr(fd, name, value, size, 0)
        case .path(let path): cferry_lsetxattr(path, name, value, size, 0)
        }
    }

    /// The `*removexattr` call.
    func remove(_ name: UnsafePointer<CChar>) -> Int32 {
        switch self {
        case .descriptor(let fd): cferry_fremovexattr(fd, name)
        case .path(let path): cferry_lremovexattr(path, name)
        }
    }

    /// The system call's name for error messages: `f…` or `l…` + `operation`.
    func call(_ operation: String) -> String {
        switch self {
        case .descriptor: "f" + operation
        case .path: "l" + operation
        }
    }
}

/// An owned file descriptor, closed when released.
final class FileDescriptor: @unchecked Sendable {
    let fd: Int32
    /// 0: not asked yet, 1: no default ACL, 2: has one (or could not tell).
    private let defaultACL = Atomic<UInt8>(0)

    init(_ fd: Int32) { self.fd = fd }
    deinit { _ = Glibc.close(fd) }

    /// Whether this directory has a default ACL, which files created in it inherit as an
    /// access ACL of their own. Asked once per descriptor (through `/proc/self/fd`, as the
    /// descriptor may be `O_PATH`); when it cannot tell, it says yes.
    var hasDefaultACL: Bool {
        let known = defaultACL.load(ordering: .relaxed)
        if known != 0 { return known == 2 }
        let has = Sys.withCString(Array("/proc/self/fd/\(fd)".utf8)) { path -> Bool in
            cferry_getxattr(path, "system.posix_acl_default", nil, 0) >= 0 || (errno != ENODATA && errno != EOPNOTSUPP)
        }
        defaultACL.store(has ? 2 : 1, ordering: .relaxed)
        return has
    }
}

/// The process's file-descriptor table. The kernel doubles it as descriptors are opened
/// (64, 128, 256, ...), and in a process with more than one thread every growth waits for
/// an RCU grace period (`synchronize_rcu` in `expand_files`), several milliseconds in which
/// each thread that opens a file sleeps. A run keeps up to 256 directories open per location
/// besides the files in flight: four growths, 10–20 ms of a 0.3 s copy of 20,000 small files
/// with both cores idle. Growing it once at start, before worker threads exist, costs nothing.
public enum DescriptorTable {
    /// Grows the table to hold at least `count` descriptors (within `RLIMIT_NOFILE`): a
    /// descriptor duplicated into the lowest free slot at or above `count - 1`, then closed
    /// (the table never shrinks).
    public static func reserve(_ count: Int) {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return }
        let top = Int32(clamping: min(count, Int(clamping: limit.rlim_cur)) - 1)
        guard top > 64 else { return }
        let fd = Glibc.open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        let high = fcntl(fd, F_DUPFD_CLOEXEC, top)
        if high >= 0 { _ = Glibc.close(high) }
        _ = Glibc.close(fd)
    }

    /// The table's size now (`FDSize` in `/proc/self/status`), nil where it cannot be read.
    public static var size: Int? {
        Sys.processStatus("FDSize").flatMap { Int(String($0.filter(\.isNumber))) }
    }
}

extension Sys {
    /// The value of one field of `/proc/self/status` (`FDSize`, `CapEff`), without the name;
    /// nil where the file or field is missing.
    static func processStatus(_ field: String) -> Substring? {
        let fd = Glibc.open("/proc/self/status", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { _ = Glibc.close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            bytes += chunk[0..<n]
        }
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") where line.hasPrefix(field + ":") {
            return line.dropFirst(field.count + 1)
        }
        return nil
    }
}
