import Foundation
import FerryCore

/// An image file or block device as the destination. Its map is kept beside it
/// (`DST.ferry-blockmap`, files only) and in Ferry's state directory; the more advanced
/// of the two is used. A file changed since Ferry last wrote it (size, mtime or inode not
/// as recorded) has its map set aside: every block is written again.
public final class ImageTarget: BlockTarget {
    public let image: BlockImage
    let created: Bool
    let besidePath: String?
    let statePath: String

    public init(path: String, stateDirectory: String) throws(BlockError) {
        let (image, created) = try BlockImage.openDestination(path)
        self.image = image
        self.created = created
        let absolute = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        besidePath = image.kind == .file ? path + ".ferry-blockmap" : nil
        statePath = try BlockState.mapPath(stateDirectory: stateDirectory, destination: "image:" + absolute)
    }

    public var description: String { image.path }

    /// The granularity of holes left in an image file for zero pages.
    static let pageSize = 4096

    public func prepare(size: Int64, blockSize: Int) async throws -> TargetState {
        let count = BlockMap.blockCount(size: size, blockSize: blockSize)
        var notes: [String] = []
        if created {
            try image.resize(to: size)
            return .uniform(count: count, known: true, map: nil, notes: [])
        }
        var map = try BlockState.newer(besidePath.flatMap { try BlockMap.load($0) }, BlockMap.load(statePath))
        if let m = map, let recorded = m.header.destination, image.kind == .file {
            let now = try image.identity()
            let same = m.header.complete ? now == recorded : now.inode == recorded.inode
            if !same {
                notes.append("\(image.path) changed since Ferry last wrote it (size, time or inode): its block map is set aside and every block is written")
                map = nil
            }
        }
        if let reason = map?.unusableReason(blockSize: blockSize, what: "the block map of \(image.path)", consequence: "every block is written") {
            notes.append(reason)
            map = nil
        }
        let currentSize = image.kind == .file ? try image.size() : size
        let oldSize = map?.header.size ?? currentSize
        if image.kind == .file && oldSize != size || image.kind == .device {
            try image.resize(to: size)
        }
        guard let map else { return .uniform(count: count, known: false, map: nil, notes: notes) }
        // Blocks the old size did not reach are holes (zero) after a file's resize.
        return TargetState(map: map, size: size, blockSize: blockSize, extensionKnown: image.kind == .file, notes: notes)
    }

    public func write(_ blocks: [BlockWrite]) async throws -> Int64 {
        var written: Int64 = 0
        var zeroRun: Range<Int64>?
        func flushZeros() throws {
            if let z = zeroRun { try image.zero(offset: z.lowerBound, length: Int64(z.count)) }
            zeroRun = nil
        }
        for block in blocks.sorted(by: { $0.index < $1.index }) {
            if let data = block.data {
                guard image.kind == .file else {
                    try flushZeros()
                    try data.withUnsafeBytes { buf in try image.write(buf, at: block.offset) }
                    written += Int64(data.count)
                    continue
                }
                // Page by page: zero pages become holes, so the file stays as sparse as the source.
                try data.withUnsafeBytes { buf in
                    var page = 0
                    while page < buf.count {
                        let end = min(page + ImageTarget.pageSize, buf.count)
                        let bytes = UnsafeRawBufferPointer(rebasing: buf[page..<end])
                        let at = block.offset + Int64(page)
                        if FileIO.isAllZero(bytes) {
                            if let z = zeroRun, z.upperBound == at { zeroRun = z.lowerBound..<(at + Int64(bytes.count)) }
                            else { try flushZeros(); zeroRun = at..<(at + Int64(bytes.count)) }
                        } else {
                            try flushZeros()
                            var runEnd = end
                            while runEnd < buf.count {
                                let next = min(runEnd + ImageTarget.pageSize, buf.count)
                                if FileIO.isAllZero(UnsafeRawBufferPointer(rebasing: buf[runEnd..<next])) { break }
                                runEnd = next
                            }
                            try image.write(UnsafeRawBufferPointer(rebasing: buf[page..<runEnd]), at: at)
                            written += Int64(runEnd - page)
                            page = runEnd
                            continue
                        }
                        page = end
                    }
                }
            } else {
                let length = Int64(block.length)
                if let z = zeroRun, z.upperBound == block.offset { zeroRun = z.lowerBound..<(block.offset + length) }
                else { try flushZeros(); zeroRun = block.offset..<(block.offset + length) }
            }
        }
        try flushZeros()
        return written
    }

    public func flush() async throws { try image.sync() }

    public func saveProgress(_ map: BlockMap) async throws {
        try map.save(to: statePath)
        if let besidePath { try map.save(to: besidePath) }
    }

    public func finish(_ map: BlockMap) async throws -> [String] {
        try image.sync()
        var m = map
        if image.kind == .file { m.header.destination = try image.identity() }
        try await saveProgress(m)
        return []
    }

    public func hashes(at indices: [Int], expected: BlockMap) async throws -> [BlockHash] {
        try await BlockReading.hash(image, indices: indices, blockSize: expected.header.blockSize, size: expected.header.size)
    }
}
