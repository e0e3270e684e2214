/// The summary of one block sync or restore (`--json`, `--report`).
public struct BlockSyncReport: Codable, Sendable {
    public struct Verification: Codable, Sendable {
        /// full, changed or none.
        public var mode: String
        public var blocksChecked = 0
        /// Digest of the image as read (the snapshot's, if one was used) and of the destination.
        public var sourceDigest: String?
        public var destinationDigest: String?
        /// Byte ranges (`offset-end`) whose blocks differ.
        public var mismatchedRanges: [String] = []
        /// The block indexes behind `mismatchedRanges` (not encoded).
        var mismatchedBlocks: [Int] = []
        public var ok: Bool { mismatchedBlocks.isEmpty && mismatchedRanges.isEmpty }

        enum CodingKeys: String, CodingKey { case mode, blocksChecked, sourceDigest, destinationDigest, mismatchedRanges }
    }

    public var source: String
    /// The path actually read: the snapshot's when one was taken.
    public var sourceRead: String
    public var destination: String
    public var snapshot: String?
    /// The snapshot the previous generation was read from (a hook's, to clean up now).
    public var previousSnapshot: String?
    public var blockSize: Int
    public var size: Int64
    public var previousSize: Int64?
    /// The generation the destination now holds.
    public var generation: Int
    /// Where an interrupted run was taken up (bytes already committed), nil if not resumed.
    public var resumedAtByte: Int64?
    public var blocksTotal = 0
    /// Blocks examined in this run (read, or found in a hole).
    public var blocksScanned = 0
    /// Examined blocks that are zero (holes or zero bytes): never sent.
    public var blocksZero = 0
    /// Blocks whose hash differs from what the destination holds.
    public var blocksChanged = 0
    /// Blocks whose bytes were written or uploaded.
    public var blocksSent = 0
    public var bytesRead: Int64 = 0
    public var bytesWritten: Int64 = 0
    public var durationSeconds = 0.0
    /// Image bytes examined per second (MB/s).
    public var throughputMBps = 0.0
    /// False when blocks changed while they were read (no snapshot): named in `changedWhileReading`.
    public var pointInTimeConsistent = true
    public var changedWhileReading: [String] = []
    public var verification: Verification
    public var notes: [String] = []
    /// SUCCESS, or what went wrong in a word (VERIFICATION_FAILED, NOT_POINT_IN_TIME).
    public var result = "SUCCESS"

    /// `offset-end` strings for runs of consecutive block indexes.
    static func ranges(_ indices: [Int], blockSize: Int, size: Int64) -> [String] {
        var out: [String] = []
        var runStart: Int?, last = -2
        for i in indices.sorted() + [Int.max] {
            if i != last + 1 {
                if let s = runStart {
                    out.append("\(Int64(s) * Int64(blockSize))-\(min(Int64(last + 1) * Int64(blockSize), size))")
                }
                runStart = i
            }
            last = i
        }
        return out
    }
}
