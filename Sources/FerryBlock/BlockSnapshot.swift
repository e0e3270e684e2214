import CFerry
import Foundation

/// A consistent view of the source to read from: a reflink clone of an image file
/// (`FICLONE`), or whatever a user's command makes (an LVM or `rbd snap` snapshot,
/// mapped), named by the last line that command prints.
public struct BlockSnapshot: Sendable {
    public enum Mode: Sendable, Equatable {
        case reflink
        /// `create` prints the path to read; `cleanup` removes an older snapshot
        /// (FERRY_SNAPSHOT names it, FERRY_LATEST_SNAPSHOT the one kept).
        case command(create: String, cleanup: String?)
    }

    /// The path to read.
    public let path: String
    /// Ferry's own clone, removed when the sync ends.
    let temporary: Bool

    /// Makes the snapshot of `source`.
    public static func take(_ mode: Mode, of source: String) throws(BlockError) -> BlockSnapshot {
        switch mode {
        case .reflink:
            let dir = (source as NSString).deletingLastPathComponent
            let name = (source as NSString).lastPathComponent
            let path = (dir.isEmpty ? "." : dir) + "/.ferry-snapshot-\(name)-\(getpid())"
            let src = open(source, O_RDONLY | O_CLOEXEC)
            guard src >= 0 else { throw .syscall("open", source) }
            defer { close(src) }
            let dst = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            guard dst >= 0 else { throw .syscall("open", path) }
            defer { close(dst) }
            if cferry_ficlone(dst, src) != 0 {
                let e = errno
                unlink(path)
                throw BlockError(.snapshotFailed, "--snapshot reflink: FICLONE of \(source) failed: \(String(cString: strerror(e))) — the file system must support reflinks (XFS with reflink=1, btrfs; ext4 and tmpfs do not); use --snapshot-cmd, or no snapshot", errno: e)
            }
            return BlockSnapshot(path: path, temporary: true)
        case .command(let create, _):
            let (status, output) = try run(create, environment: ["FERRY_SOURCE": source])
            guard status == 0 else {
                throw BlockError(.snapshotFailed, "--snapshot-cmd exited with status \(status): \(output.suffix(500))")
            }
            guard let last = output.split(separator: "\n").last.map({ $0.trimmingCharacters(in: .whitespaces) }), !last.isEmpty else {
                throw BlockError(.snapshotFailed, "--snapshot-cmd printed nothing: it must print the path of the snapshot to read as its last line")
            }
            guard access(last, R_OK) == 0 else {
                throw BlockError(.snapshotFailed, "--snapshot-cmd printed \(last), which cannot be read: \(String(cString: strerror(errno)))")
            }
            return BlockSnapshot(path: last, temporary: false)
        }
    }

    /// Removes Ferry's own clone (a hook's snapshot stays: it is the latest).
    public func release() {
        if temporary { unlink(path) }
    }

    /// Runs the cleanup hook for an older snapshot, keeping `latest`.
    public static func cleanup(_ command: String, old: String, latest: String) throws(BlockError) {
        let (status, output) = try run(command, environment: ["FERRY_SNAPSHOT": old, "FERRY_LATEST_SNAPSHOT": latest])
        guard status == 0 else {
            throw BlockError(.snapshotFailed, "--snapshot-cleanup-cmd for \(old) exited with status \(status): \(output.suffix(500))")
        }
    }

    /// `/bin/sh -c command` with extra environment; (status, stdout + stderr).
    static func run(_ command: String, environment: [String: String]) throws(BlockError) -> (Int32, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", command]
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.standardError
        do { try process.run() } catch {
            throw BlockError(.snapshotFailed, "cannot run /bin/sh -c \(command): \(error.localizedDescription)")
        }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}
