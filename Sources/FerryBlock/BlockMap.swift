import Crypto
import Foundation

/// What a destination holds, block by block: block size, image size, a strong hash per
/// block (``BlockHash/zero`` for zero blocks), the generation (complete syncs so far), the
/// source it came from and, while a sync runs, which blocks are being rewritten.
///
/// A map never claims more than the destination holds: before a range of blocks is
/// written, the map is saved with that range marked ``Header/dirty`` (unknown); after the
/// writes are synced, the next save records their new hashes. Blocks before
/// ``Header/committedBlocks`` already hold the generation being made.
///
/// Encoding: the line `ferry-blockmap 1`, one line of JSON (the header), then 32 raw
/// bytes per block. The same encoding is the manifest of an image kept on object storage.
public struct BlockMap: Sendable {
    public struct Header: Codable, Sendable {
        public var blockSize: Int
        public var size: Int64
        /// Complete syncs that made this content.
        public var generation: Int
        /// False while a sync is under way (or was interrupted).
        public var complete: Bool
        /// Blocks whose content is unknown (being written when the map was saved).
        public var dirty: Range<Int>?
        /// While incomplete: blocks `[0, committedBlocks)` hold the generation being made.
        public var committedBlocks: Int
        /// The path that was read (the snapshot's, if one was used) and who it was.
        public var sourcePath: String?
        public var source: ImageIdentity?
        /// The destination file as it was left (nil for devices and object storage).
        public var destination: ImageIdentity?
        /// The snapshot made for this generation (a hook's path), removed after the next success.
        public var snapshot: String?
        /// SHA-256 over the block size, the size and every block hash: the image's digest.
        public var digest: String?
        /// When the generation was completed (ISO 8601).
        public var completedAt: String?
        /// The block hash the map was made with (``BlockMap/hashName``); a map made with
        /// another is set aside rather than compared.
        public var hash: String?
    }

    /// The block hash of this version: SHA-256 over the length, the zero-page bitmap and the data pages.
    public static let hashName = "sha256-pages-v1"

    /// Whether this map's hashes can be compared with the ones this version computes.
    public var hashIsCurrent: Bool { header.hash == BlockMap.hashName }

    public var header: Header
    public var hashes: [BlockHash]

    public init(blockSize: Int, size: Int64, hashes: [BlockHash]) {
        header = Header(blockSize: blockSize, size: size, generation: 0, complete: false, dirty: nil, committedBlocks: 0, hash: BlockMap.hashName)
        self.hashes = hashes
    }

    /// Blocks of `blockSize` needed for `size` bytes.
    public static func blockCount(size: Int64, blockSize: Int) -> Int {
        Int((size + Int64(blockSize) - 1) / Int64(blockSize))
    }

    /// Whether block `i`'s hash is known (not in the dirty range, within the map).
    public func isKnown(_ i: Int) -> Bool {
        i < hashes.count && !(header.dirty?.contains(i) ?? false)
    }

    /// The whole-image digest of these hashes.
    public static func digest(blockSize: Int, size: Int64, hashes: [BlockHash]) -> String {
        var h = SHA256()
        h.update(data: Array("ferry-image \(blockSize) \(size)\n".utf8))
        var buffer: [UInt8] = []
        buffer.reserveCapacity(32 * 1024)
        for hash in hashes {
            buffer.append(contentsOf: hash.bytes)
            if buffer.count >= 32 * 1024 { h.update(data: buffer); buffer.removeAll(keepingCapacity: true) }
        }
        h.update(data: buffer)
        return h.finalize().map { String(format: "%02x", $0) }.joined()
    }

    private static let magic = Array("ferry-blockmap 1\n".utf8)

    public func encoded() throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var out = BlockMap.magic
        out.append(contentsOf: try encoder.encode(header))
        out.append(10)
        out.reserveCapacity(out.count + hashes.count * 32)
        for hash in hashes { out.append(contentsOf: hash.bytes) }
        return out
    }

    /// Decodes a map; `what` names it in errors.
    public static func decode(_ bytes: [UInt8], what: String) throws(BlockError) -> BlockMap {
        guard bytes.starts(with: magic), let nl = bytes[magic.count...].firstIndex(of: 10) else {
            throw BlockError(.badBlockMap, "\(what) is not a Ferry block map")
        }
        let header: Header
        do {
            header = try JSONDecoder().decode(Header.self, from: Data(bytes[magic.count..<nl]))
        } catch {
            throw BlockError(.badBlockMap, "\(what): the block map header cannot be read (\(error))")
        }
        let body = bytes[(nl + 1)...]
        let count = blockCount(size: header.size, blockSize: header.blockSize)
        guard header.blockSize > 0, header.size >= 0, body.count == count * 32 else {
            throw BlockError(.badBlockMap, "\(what): the block map is truncated or damaged (\(body.count) bytes of hashes for \(count) blocks)")
        }
        var hashes: [BlockHash] = []
        hashes.reserveCapacity(count)
        var i = body.startIndex
        while i < body.endIndex {
            hashes.append(BlockHash(bytes: body[i..<(i + 32)]))
            i += 32
        }
        var map = BlockMap(blockSize: header.blockSize, size: header.size, hashes: hashes)
        map.header = header
        return map
    }

    /// Reads a map file; nil if there is none.
    public static func load(_ path: String) throws(BlockError) -> BlockMap? {
        guard let data = FileManager.default.contents(atPath: path) else {
            if access(path, F_OK) == 0 { throw BlockError(.badBlockMap, "the block map \(path) cannot be read") }
            return nil
        }
        return try decode(Array(data), what: path)
    }

    /// Writes the map to `path` atomically and durably: a 0600 temporary beside it,
    /// `fsync`, `rename`, `fsync` of the directory.
    public func save(to path: String) throws(BlockError) {
        let bytes: [UInt8]
        do { bytes = try encoded() } catch { throw BlockError(.badBlockMap, "cannot encode the block map for \(path): \(error)") }
        let tmp = path + ".tmp-\(getpid())"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .syscall("open", tmp) }
        var ok = bytes.withUnsafeBytes { buf in
            var done = 0
            while done < buf.count {
                let n = Glibc.write(fd, buf.baseAddress! + done, buf.count - done)
                if n < 0 { if errno == EINTR { continue }; return false }
                done += n
            }
            return true
        }
        let e0 = errno
        ok = ok && fsync(fd) == 0
        let e = ok ? 0 : (errno != 0 ? errno : e0)
        close(fd)
        guard ok else { unlink(tmp); throw .syscall("write", tmp, errno: e) }
        guard rename(tmp, path) == 0 else { let e = errno; unlink(tmp); throw .syscall("rename", path, errno: e) }
        let dir = (path as NSString).deletingLastPathComponent
        let dfd = open(dir.isEmpty ? "." : dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 { fsync(dfd); close(dfd) }
    }
}
