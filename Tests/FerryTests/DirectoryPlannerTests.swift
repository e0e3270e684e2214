import FerryCore
@testable import FerryEngine
import Testing

/// The planner's decisions, one row each: what a pair of entries (or one) becomes, under
/// the options that matter; and the merge-join's defences (duplicates, order, case).
@Suite struct DirectoryPlannerTests {
    static func entry(_ name: String, _ kind: EntryKind = .file, size: Int64 = 10, mtime: Int64 = 1000, mode: UInt32 = 0o644,
                      uid: UInt32 = 0, target: String? = nil, device: UInt64 = 0, standIn: Bool = false, tag: Bool = false) -> Entry {
        let t = Timestamp(seconds: mtime, nanoseconds: 0)
        let m = FileMetadata(permissions: mode, uid: uid, gid: 0, mtime: t, atime: t, ctime: t, size: size, deviceNumber: device)
        return Entry(name: Array(name.utf8), kind: kind, metadata: m, symlinkTarget: target.map { Array($0.utf8) },
                     contentTag: tag ? ContentTag(high: 1, low: 2, parts: 0) : nil, mtimeIsStandIn: standIn)
    }

    static func planner(_ configure: (inout TransferOptions) -> Void = { _ in }, filters: Filters = Filters(),
                        caseSensitive: Bool = true) -> DirectoryPlanner {
        var o = TransferOptions()
        configure(&o)
        var caps = Capabilities.everything
        caps.caseSensitive = caseSensitive
        return DirectoryPlanner(options: o, filters: filters, selection: o.metadataSelection, destinationCapabilities: caps)
    }

    /// The plan's items as `name:action` strings, in order.
    static func describe(_ plan: DirectoryPlanner.DirectoryPlan) -> [String] {
        plan.items.map { item in
            let name = String(decoding: item.path.name, as: UTF8.self)
            switch item.action {
            case .directory(let exists, let replacing): return "\(name):directory(\(exists),\(replacing.map { "\($0)" } ?? "-"))"
            case .copyFile(let replacing): return "\(name):copy(\(replacing.map { "\($0)" } ?? "-"))"
            case .updateMetadata: return "\(name):metadata"
            case .compareContent: return "\(name):compare"
            case .place(let replacing): return "\(name):place(\(replacing.map { "\($0)" } ?? "-"))"
            case .delete: return "\(name):delete"
            case .unchanged: return "\(name):unchanged"
            case .skip(let kind, _): return "\(name):skip(\(kind.rawValue))"
            }
        }
    }

    typealias Row = (label: String, source: [Entry], destination: [Entry], options: @Sendable (inout TransferOptions) -> Void, expected: [String], unchanged: Int)

    static let rows: [Row] = [
        ("new file", [entry("a")], [], { _ in }, ["a:copy(-)"], 0),
        ("same size and mtime", [entry("a")], [entry("a")], { _ in }, [], 1),
        ("size differs", [entry("a", size: 11)], [entry("a")], { _ in }, ["a:copy(-)"], 0),
        ("mtime differs", [entry("a", mtime: 2000)], [entry("a")], { _ in }, ["a:copy(-)"], 0),
        ("mode differs only", [entry("a", mode: 0o600)], [entry("a")], { _ in }, ["a:metadata"], 0),
        ("owner differs, Uid NONE", [entry("a", uid: 5)], [entry("a")], { $0.uid = .none; $0.gid = .none }, [], 1),
        ("a directory where the source has a file", [entry("a")], [entry("a", .directory)], { _ in }, ["a:copy(directory)"], 0),
        ("a file where the source has a directory", [entry("a", .directory)], [entry("a")], { _ in }, ["a:directory(false,file)"], 0),
        ("existing directory", [entry("d", .directory)], [entry("d", .directory)], { _ in }, ["d:directory(true,-)"], 0),
        ("destination only, PRESERVE", [], [entry("x")], { _ in }, [], 0),
        ("destination only, REMOVE", [], [entry("x")], { $0.preserveDeletedFiles = .remove }, ["x:delete"], 0),
        ("OverwriteMode NEVER", [entry("a", size: 11)], [entry("a")], { $0.overwriteMode = .never }, ["a:skip(OVERWRITE_NEVER)"], 0),
        ("TransferMode ALL", [entry("a")], [entry("a")], { $0.transferMode = .all }, ["a:copy(-)"], 0),
        ("symlink, same target", [entry("l", .symlink, target: "t")], [entry("l", .symlink, target: "t")], { _ in }, [], 1),
        ("symlink, other target", [entry("l", .symlink, target: "t")], [entry("l", .symlink, target: "u")], { _ in }, ["l:place(-)"], 0),
        ("socket", [entry("s", .socket)], [], { $0.preserveDevices = .preserve }, ["s:skip(UNSUPPORTED)"], 0),
        ("FIFO without PreserveDevices", [entry("p", .fifo)], [], { _ in }, ["p:skip(UNSUPPORTED)"], 0),
        ("FIFO with PreserveDevices", [entry("p", .fifo)], [], { $0.preserveDevices = .preserve }, ["p:place(-)"], 0),
        ("device number differs", [entry("c", .characterDevice, device: 1)], [entry("c", .characterDevice, device: 2)],
         { $0.preserveDevices = .preserve }, ["c:place(-)"], 0),
        ("stand-in mtime with a tag", [entry("a")], [entry("a", mtime: 5, standIn: true, tag: true)], { _ in }, ["a:compare"], 0),
        ("names in byte order", [entry("B"), entry("a"), entry("b")].sorted { $0.name.lexicographicallyPrecedes($1.name) }, [],
         { _ in }, ["B:copy(-)", "a:copy(-)", "b:copy(-)"], 0),
    ]

    @Test(arguments: rows.indices)
    func decision(_ index: Int) throws {
        let row = Self.rows[index]
        let plan = try Self.planner(row.options).plan(directory: .root, source: row.source, destination: row.destination)
        #expect(Self.describe(plan) == row.expected, "\(row.label)")
        #expect(plan.unchanged == row.unchanged, "\(row.label)")
        #expect(plan.duplicates.isEmpty, "\(row.label)")
    }

    @Test func filtersLeaveEntriesOut() throws {
        let filters = Filters(excludes: try FilterRule("/skip*"))
        let planner = Self.planner({ $0.preserveDeletedFiles = .remove }, filters: filters)
        let plan = try planner.plan(directory: .root, source: [Self.entry("keep"), Self.entry("skipme")], destination: [Self.entry("skipold")])
        #expect(Self.describe(plan) == ["keep:copy(-)"], "an excluded destination entry is not deleted either")
    }

    @Test func anObjectAndAPrefixOfOneNameKeepTheDirectory() throws {
        for order in [[Self.entry("a"), Self.entry("a", .directory)], [Self.entry("a", .directory), Self.entry("a")]] {
            let plan = try Self.planner().plan(directory: .root, source: order + [Self.entry("b")], destination: [])
            #expect(Self.describe(plan) == ["a:directory(false,-)", "b:copy(-)"])
            let duplicate = try #require(plan.duplicates.first)
            #expect(plan.duplicates.count == 1 && duplicate.side == .source && duplicate.kept.kind == .directory && duplicate.dropped.kind == .file)
            #expect(duplicate.reason.contains("prefix \"a/\"") && duplicate.reason.contains("the directory was kept"), "\(duplicate.reason)")
        }
    }

    @Test func destinationDuplicatesKeepTheSourcesKind() throws {
        let plan = try Self.planner().plan(directory: .root, source: [Self.entry("a")],
                                           destination: [Self.entry("a", .directory), Self.entry("a")])
        #expect(Self.describe(plan) == [], "the file matches the file: unchanged, the directory is not replaced")
        #expect(plan.unchanged == 1 && plan.duplicates.count == 1 && plan.duplicates[0].side == .destination
                && plan.duplicates[0].dropped.kind == .directory)
    }

    @Test func aListingOutOfOrderIsFatal() throws {
        for (source, destination) in [([Self.entry("b"), Self.entry("a")], []), ([], [Self.entry("z"), Self.entry("y")])] {
            do {
                _ = try Self.planner().plan(directory: EntryPath("dir")!, source: source, destination: destination)
                Issue.record("an unsorted listing was planned")
            } catch {
                #expect(error.retryClass == .fatal && error.message.contains("not sorted") && error.message.contains("dir"), "\(error)")
            }
        }
    }

    @Test func aDestinationThatIgnoresCaseIsMatchedByFoldedNames() throws {
        let planner = Self.planner({ $0.preserveDeletedFiles = .remove }, caseSensitive: false)
        let plan = try planner.plan(directory: .root, source: [Self.entry("Read.ME"), Self.entry("b")],
                                    destination: [Self.entry("a"), Self.entry("read.me")])
        #expect(Self.describe(plan) == ["a:delete", "b:copy(-)"], "Read.ME is read.me there: unchanged")
        #expect(plan.unchanged == 1)
        let twice = try planner.plan(directory: .root, source: [Self.entry("X"), Self.entry("x", size: 3)], destination: [])
        #expect(Self.describe(twice) == ["X:copy(-)"] && twice.duplicates.count == 1, "two source names that are one name there")
        #expect(twice.duplicates.first?.reason.contains("case") == true)
    }
}
