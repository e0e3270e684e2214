import Crypto
import Foundation

/// One block to put at the destination: its bytes, or nil for a zero block.
public struct BlockWrite: Sendable {
    public var index: Int
    public var offset: Int64
    /// The block's length (the last block of an image may be short).
    public var length: Int
    public var hash: BlockHash
    public var data: [UInt8]?
}

/// What the destination holds when a sync starts, block by block.
public struct TargetState: Sendable {
    /// The hash of each block of the new size, where ``known`` says it is known.
    public var hashes: [BlockHash]
    public var known: [Bool]
    /// The map it came from (its generation, snapshot, interrupted progress).
    public var map: BlockMap?
    /// What the user should know (a stale map, a size change).
    public var notes: [String]
}

/// Where block sync writes: an image file or device (``ImageTarget``), or an
/// object-storage prefix (``ObjectImageTarget``).
public protocol BlockTarget: Sendable {
    var description: String { get }
    /// Opens what the destination holds for an image of `size` bytes in blocks of `blockSize`.
    func prepare(size: Int64, blockSize: Int) async throws -> TargetState
    /// Puts blocks in place; returns the bytes written or sent.
    func write(_ blocks: [BlockWrite]) async throws -> Int64
    /// Makes what was written durable (before the map may claim it).
    func flush() async throws
    /// Records progress (a map with a dirty range) where an interrupted run will find it.
    func saveProgress(_ map: BlockMap) async throws
    /// Records a complete generation; returns notes (pruned generations, …).
    func finish(_ map: BlockMap) async throws -> [String]
    /// The hashes of what the destination holds at `indices` (verification), where
    /// `expected` is the map the sync is about to record.
    func hashes(at indices: [Int], expected: BlockMap) async throws -> [BlockHash]
}

/// Where Ferry keeps its own copy of each destination's block map:
/// `STATE/block/<first 16 hex of SHA-256(destination)>.blockmap`.
public enum BlockState {
    /// `--state-dir`, else FERRY_STATE_DIR, XDG_STATE_HOME/ferry, ~/.local/state/ferry.
    public static func directory(_ explicit: String?) -> String {
        if let explicit { return explicit }
        let env = ProcessInfo.processInfo.environment
        if let d = env["FERRY_STATE_DIR"], !d.isEmpty { return d }
        if let d = env["XDG_STATE_HOME"], !d.isEmpty { return d + "/ferry" }
        return (env["HOME"] ?? "/root") + "/.local/state/ferry"
    }

    static func mapPath(stateDirectory: String, destination: String) throws(BlockError) -> String {
        let dir = stateDirectory + "/block"
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw BlockError(.imageIO, "cannot create the state directory \(dir): \(error.localizedDescription)")
        }
        let digest = SHA256.hash(data: Array(destination.utf8)).prefix(8).map { String(format: "%02x", $0) }.joined()
        return "\(dir)/\(digest).blockmap"
    }

    /// The more advanced of two maps of the same destination (generation, then progress).
    static func newer(_ a: BlockMap?, _ b: BlockMap?) -> BlockMap? {
        guard let a else { return b }
        guard let b else { return a }
        // An interrupted run after generation g is ahead of g, behind g + 1.
        let ka = (a.header.generation, a.header.complete ? 0 : 1, a.header.committedBlocks)
        let kb = (b.header.generation, b.header.complete ? 0 : 1, b.header.committedBlocks)
        return kb > ka ? b : a
    }
}
