import FerryBlock
import FerryTesting
import Foundation
import Testing

/// The block hash, the map's encoding and change-list parsing, without I/O.
@Suite struct BlockMapTests {
    func hash(_ bytes: [UInt8]) -> BlockHash { bytes.withUnsafeBytes { BlockHash.of($0) } }

    @Test func zeroPagesAreLeftOutButStillCount() {
        let page = TestTree.bytes(4096, seed: 1)
        let zeros = [UInt8](repeating: 0, count: 4096)
        #expect(hash(zeros + zeros) == .zero)
        // The same data page in a different place, or with a different length, is another block.
        #expect(hash(page + zeros) != hash(zeros + page))
        #expect(hash(page + zeros) != hash(page))
        #expect(hash(page + zeros) == hash(page + zeros))
        // A zero page is not the same as a page of another byte.
        #expect(hash(page + zeros) != hash(page + [UInt8](repeating: 1, count: 4096)))
        // A short last block hashes its own length.
        #expect(hash(Array(page.prefix(100))) != hash(Array(page.prefix(100)) + [0]))
    }

    @Test func mapRoundTripsAndRefusesDamage() throws {
        var map = BlockMap(blockSize: 65536, size: 3 * 65536 + 10, hashes: [.zero, hash([1, 2, 3]), .zero, hash([9])])
        map.header.generation = 4
        map.header.dirty = 1..<3
        map.header.complete = false
        let bytes = try map.encoded()
        let back = try BlockMap.decode(bytes, what: "test")
        #expect(back.hashes == map.hashes && back.header.generation == 4 && back.header.dirty == 1..<3)
        #expect(back.isKnown(0) && !back.isKnown(1) && !back.isKnown(2) && back.isKnown(3))
        #expect(back.hashIsCurrent)
        // A map of another block hash is recognised, not compared.
        var other = map
        other.header.hash = "sha256"
        #expect(!(try BlockMap.decode(try other.encoded(), what: "test")).hashIsCurrent)
        #expect(BlockMap.digest(blockSize: 65536, size: map.header.size, hashes: map.hashes)
            != BlockMap.digest(blockSize: 65536, size: map.header.size, hashes: [.zero, .zero, .zero, hash([9])]))
        #expect(throws: BlockError.self) { try BlockMap.decode(Array(bytes.dropLast(5)), what: "test") }
        #expect(throws: BlockError.self) { try BlockMap.decode(Array("not a map".utf8), what: "test") }
    }

    @Test func changeListsParseAndMerge() throws {
        let rbd = #"[{"offset":0,"length":4096,"exists":"true"},{"offset":4096,"length":4096,"exists":"false"},{"offset":3145728,"length":1,"exists":"true"}]"#
        let a = try ChangedExtents.parse(Array(rbd.utf8), file: "rbd.json")
        #expect(a == [0..<8192, 3145728..<3145729])
        #expect(ChangedExtents.blocks(a, blockSize: 1 << 20, blockCount: 8) == [0, 3])
        let plain = try ChangedExtents.parse(Array("# cbt\n1048576, 2097152\n\n0,1\n".utf8), file: "cbt.txt")
        #expect(plain == [0..<1, 1048576..<3145728])
        #expect(ChangedExtents.blocks(plain, blockSize: 1 << 20, blockCount: 2) == [0, 1])
        #expect(throws: BlockError.self) { try ChangedExtents.parse(Array("5,-1\n".utf8), file: "x") }
        #expect(throws: BlockError.self) { try ChangedExtents.parse(Array(#"[{"offset":1}]"#.utf8), file: "x") }
    }
}
