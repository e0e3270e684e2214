import CFerry
import FerryCore
import Glibc

/// The entries of one huge directory, as sorted runs written to an unnamed temporary file
/// (`O_TMPFILE`: nothing to clean up after a crash), then read back merged. Memory stays
/// at one run while listing and one read buffer per run while merging, whatever the
/// directory's size (DESIGN.md §4: "a directory with millions of entries spills to disk").
final class EntrySpool: @unchecked Sendable {
    fileprivate let fd: Int32
    private var end: Int64 = 0
    /// Each run's byte range in the file and entry count.
    private(set) var runs: [(offset: Int64, length: Int64, count: Int)] = []
    var count: Int { runs.reduce(0) { $0 + $1.count } }

    /// An unnamed file in `directory` (default `/tmp`), mode 0600.
    init(directory: String) throws(FerryError) {
        let fd = Glibc.open(directory, O_RDWR | cferry_O_TMPFILE | O_CLOEXEC, 0o600)
        if fd < 0 {
            throw FerryError(.fatal, "cannot make a spill file in \(directory) for a huge directory's listing: \(String(cString: strerror(errno)))")
        }
        self.fd = fd
    }

    deinit { _ = Glibc.close(fd) }

    /// Appends one run, sorted by name bytes.
    func append(run entries: [Entry]) throws(FerryError) {
        var buffer = SpillWriter()
        for e in entries { buffer.put(e) }
        let bytes = buffer.bytes
        if !bytes.withUnsafeBytes({ FileIO.pwriteFully(fd, $0, end) }) { throw FerryError(.fatal, "cannot write a huge directory's listing to its spill file: \(String(cString: strerror(errno)))") }
        runs.append((end, Int64(bytes.count), entries.count))
        end += Int64(bytes.count)
    }

    /// A reader of run `index`, `bufferSize` bytes at a time.
    func reader(_ index: Int, bufferSize: Int = 64 << 10) -> RunReader {
        RunReader(spool: self, offset: runs[index].offset, end: runs[index].offset + runs[index].length, bufferSize: bufferSize)
    }

    /// Reads one run's entries in order.
    struct RunReader {
        /// Holds the file open while the run is read.
        let spool: EntrySpool
        var offset: Int64
        let end: Int64
        let bufferSize: Int
        private var buffer: [UInt8] = []
        private var position = 0

        init(spool: EntrySpool, offset: Int64, end: Int64, bufferSize: Int) {
            self.spool = spool
            self.offset = offset
            self.end = end
            self.bufferSize = bufferSize
        }

        /// The next entry, nil at the run's end.
        mutating func next() throws(FerryError) -> Entry? {
            if position >= buffer.count && offset >= end { return nil }
            // An entry's length comes first; make sure the whole entry is buffered.
            try fill(4)
            let length = Int(SpillReader.u32(buffer, position))
            try fill(4 + length)
            var r = SpillReader(bytes: buffer, position: position + 4)
            let entry = r.entry()
            position += 4 + length
            return entry
        }

        private mutating func fill(_ need: Int) throws(FerryError) {
            if buffer.count - position >= need { return }
            let keep = Array(buffer[position...])
            let want = min(Int64(max(bufferSize, need)), end - offset)
            var chunk = [UInt8](repeating: 0, count: Int(want))
            let n = chunk.withUnsafeMutableBytes { FileIO.preadFully(spool.fd, $0, offset) }
            if n != want { throw FerryError(.fatal, "cannot read back a huge directory's spill file: \(String(cString: strerror(errno)))") }
            offset += want
            buffer = keep + chunk
            position = 0
            if buffer.count < need { throw FerryError(.fatal, "a huge directory's spill file ends inside an entry") }
        }
    }
}

/// Entries as bytes: `[length u32][name][kind][metadata][target][content]`, little-endian.
struct SpillWriter {
    var bytes: [UInt8] = []

    mutating func put(_ e: Entry) {
        let start = bytes.count
        u32(0)  // the length, set below
        blob(e.name)
        bytes.append(e.kind.rawValue)
        let m = e.metadata
        u32(m.permissions); u32(m.uid); u32(m.gid)
        time(m.mtime); time(m.atime); time(m.ctime)
        u64(UInt64(bitPattern: m.size))
        u64(m.allocatedBytes.map { UInt64(bitPattern: $0) } ?? .max)
        u64(m.deviceNumber)
        if let id = m.fileID { bytes.append(1); u64(id.device); u64(id.inode) } else { bytes.append(0) }
        u32(m.linkCount)
        if let t = e.symlinkTarget { bytes.append(1); blob(t) } else { bytes.append(0) }
        if let c = e.content {
            bytes.append(1)
            if let tag = c.tag { bytes.append(1); u64(tag.high); u64(tag.low); u32(tag.parts) } else { bytes.append(0) }
            bytes.append(c.mtimeIsStandIn ? 1 : 0)
            if let w = c.writtenFromMtime { bytes.append(1); time(w) } else { bytes.append(0) }
        } else {
            bytes.append(0)
        }
        let length = UInt32(bytes.count - start - 4)
        for i in 0..<4 { bytes[start + i] = UInt8(truncatingIfNeeded: length >> (8 * i)) }
    }

    private mutating func u32(_ v: UInt32) { for i in 0..<4 { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * i))) } }
    private mutating func u64(_ v: UInt64) { for i in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * i))) } }
    private mutating func time(_ t: Timestamp) { u64(UInt64(bitPattern: t.seconds)); u32(UInt32(bitPattern: t.nanoseconds)) }
    private mutating func blob(_ b: [UInt8]) { u32(UInt32(b.count)); bytes += b }
}

/// Reads what ``SpillWriter`` wrote.
struct SpillReader {
    let bytes: [UInt8]
    var position: Int

    static func u32(_ b: [UInt8], _ at: Int) -> UInt32 {
        UInt32(b[at]) | UInt32(b[at + 1]) << 8 | UInt32(b[at + 2]) << 16 | UInt32(b[at + 3]) << 24
    }

    mutating func entry() -> Entry {
        let name = blob()
        let kind = EntryKind(rawValue: byte()) ?? .file
        let permissions = u32(), uid = u32(), gid = u32()
        let mtime = time(), atime = time(), ctime = time()
        let size = Int64(bitPattern: u64())
        let allocated = u64()
        let device = u64()
        let fileID: FileID? = byte() == 1 ? FileID(device: u64(), inode: u64()) : nil
        let links = u32()
        let m = FileMetadata(permissions: permissions, uid: uid, gid: gid, mtime: mtime, atime: atime, ctime: ctime, size: size,
                             allocatedBytes: allocated == .max ? nil : Int64(bitPattern: allocated), deviceNumber: device,
                             fileID: fileID, linkCount: links)
        let target: [UInt8]? = byte() == 1 ? blob() : nil
        var tag: ContentTag?, standIn = false, written: Timestamp?
        if byte() == 1 {
            tag = byte() == 1 ? ContentTag(high: u64(), low: u64(), parts: u32()) : nil
            standIn = byte() == 1
            written = byte() == 1 ? time() : nil
        }
        return Entry(name: name, kind: kind, metadata: m, symlinkTarget: target, contentTag: tag, mtimeIsStandIn: standIn,
                     writtenFromMtime: written)
    }

    private mutating func byte() -> UInt8 { position += 1; return bytes[position - 1] }
    private mutating func u32() -> UInt32 { position += 4; return SpillReader.u32(bytes, position - 4) }
    private mutating func u64() -> UInt64 { UInt64(u32()) | UInt64(u32()) << 32 }
    private mutating func time() -> Timestamp { Timestamp(seconds: Int64(bitPattern: u64()), nanoseconds: Int32(bitPattern: u32())) }
    private mutating func blob() -> [UInt8] {
        let n = Int(u32())
        position += n
        return Array(bytes[(position - n)..<position])
    }
}
