import Glibc

/// Files the server writes for itself (keys, credentials, certificates): mode 0600,
/// written whole and synced.
enum PrivateFile {
    /// Makes `path` holding `bytes`; fails if it exists (a key made once, never replaced).
    static func create(_ path: String, _ bytes: [UInt8]) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw ServerError.internalError("cannot create \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        try fill(fd, bytes, path)
    }

    /// Replaces `path` with `text` (a temporary renamed over: never seen half written).
    static func write(_ path: String, _ text: String) throws {
        try write(path, Array(text.utf8))
    }

    /// Replaces `path` with `bytes`, as ``write(_:_:)-(_,String)`` does.
    static func write(_ path: String, _ bytes: [UInt8]) throws {
        let temporary = path + ".tmp-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw ServerError.internalError("cannot create \(temporary): \(String(cString: strerror(errno)))") }
        do {
            try fill(fd, bytes, path)
            close(fd)
        } catch {
            close(fd)
            unlink(temporary)
            throw error
        }
        guard rename(temporary, path) == 0 else {
            unlink(temporary)
            throw ServerError.internalError("cannot write \(path): \(String(cString: strerror(errno)))")
        }
    }

    private static func fill(_ fd: Int32, _ bytes: [UInt8], _ path: String) throws {
        guard Glibc.write(fd, bytes, bytes.count) == bytes.count, fsync(fd) == 0 else {
            throw ServerError.internalError("cannot write \(path): \(String(cString: strerror(errno)))")
        }
    }
}
