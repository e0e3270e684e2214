import FerryCore
import FerryEngine
import FerryLocal
import FerryTesting
import Foundation
import Glibc

/// A source and a destination tree for one test, removed at the end.
struct Fixture {
    let source: TestTree
    let destinationRoot: String
    var destination: TestTree { TestTree(existing: destinationRoot) }

    init(_ label: String, base: String = "/tmp") throws {
        source = try TestTree(label: label + "-src", base: base)
        let parent = try TestTree(label: label + "-dst", base: base)
        destinationRoot = parent.root + "/dest"
    }

    /// Removes both trees (best effort).
    func remove() {
        source.remove()
        TestTree(existing: (destinationRoot as NSString).deletingLastPathComponent).remove()
    }

    /// Runs one execution with the given options and returns its result.
    @discardableResult
    func sync(
        _ options: TransferOptions = Fixture.defaultOptions, filters: Filters = Filters(), dryRun: Bool = false,
        parallel: Int = 8, report: TaskReportSink = TaskReportSink(spoolDirectory: nil)
    ) async throws -> ExecutionResult {
        let src = try POSIXLocation(path: source.root)
        let dst = try POSIXLocation(path: destinationRoot, create: true)
        let engine = SyncEngine(SyncConfiguration(source: src, destination: dst, options: options, filters: filters,
                                                  parallel: parallel, dryRun: dryRun), report: report)
        return await engine.run()
    }

    /// The CLI default: verify only what was transferred.
    static var defaultOptions: TransferOptions {
        var o = TransferOptions()
        o.verifyMode = .onlyFilesTransferred
        o.preserveDevices = .preserve
        return o
    }

    func differences(compareAtime: Bool = true) throws -> [String] {
        TreeSnapshot.differences(try TreeSnapshot(source.root), try TreeSnapshot(destinationRoot), compareAtime: compareAtime)
    }

    /// The differences NFSv3 leaves out of it: none but times below the microsecond and
    /// xattrs (NFSv3 carries neither; the server's NFS locations are reached over it).
    /// Atimes are not compared: the NFS server's reads move the source's own.
    func differencesBeyondNFS() throws -> [String] {
        NFSEndToEndTests.beyondMicroseconds(try differences(compareAtime: false)).filter { !$0.contains(": xattrs ") }
    }

    /// Paths of leftover temporary files anywhere in the destination.
    /// Top-level destination files (temporaries aside) whose bytes differ from the source's.
    func partialUnderFinalNames() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: destinationRoot)) ?? []).filter { name in
            !name.hasPrefix(".ferry-tmp-")
                && FileManager.default.contents(atPath: "\(destinationRoot)/\(name)") != FileManager.default.contents(atPath: "\(source.root)/\(name)")
        }
    }

    func temporaries() throws -> [EntryPath] {
        try TreeSnapshot(destinationRoot).entries.keys.filter { $0.name.starts(with: Array(".ferry-tmp-".utf8)) }
    }

    /// Polls `condition` every 10 ms on this thread (not on a timer that busy async work
    /// could delay) until it holds or `seconds` pass; returns whether it held.
    static func waitUntil(seconds: Double, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition() { return true }
            usleep(10_000)
        }
        return condition()
    }

    /// A source file nobody but its owner (uid 4000) may read; see ``CLI/withoutDACOverride``.
    func lockedSourceFile(_ relative: String) throws {
        try source.file(relative, [2], mode: 0o000)
        try source.chown(relative, uid: 4000, gid: 4000)
    }

    func cleanUp() {
        source.remove()
        TestTree(existing: (destinationRoot as NSString).deletingLastPathComponent).remove()
    }
}

/// Runs the built `ferry` executable (next to the test bundle) and captures its output.
struct CLI {
    static var executable: String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        let exe = String(cString: Array(buffer[0..<max(n, 0)]) + [0])
        var dir = (exe as NSString).deletingLastPathComponent
        while !dir.isEmpty && dir != "/" {
            let candidate = dir + "/ferry"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            dir = (dir as NSString).deletingLastPathComponent
        }
        return FileManager.default.currentDirectoryPath + "/.build/debug/ferry"
    }

    /// Root without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH is refused like any other user,
    /// while CAP_CHOWN/CAP_FOWNER still let it set owners and times at the destination.
    static let withoutDACOverride = [
        "setpriv", "--inh-caps=-dac_override,-dac_read_search", "--bounding-set=-dac_override,-dac_read_search", "--",
    ]

    struct Run {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs `ferry args…`, optionally through a wrapper (e.g. `setpriv …`).
    /// With `direct`, `wrapper` is the whole command and `args` its arguments (no ferry).
    static func run(_ args: [String], wrapper: [String] = [], direct: Bool = false, environment: [String: String]? = nil) throws -> Run {
        let p = Process()
        if let environment { p.environment = environment }
        let argv = direct ? wrapper + args : wrapper + [executable] + args
        p.executableURL = URL(fileURLWithPath: argv[0].hasPrefix("/") ? argv[0] : (S3TestServer.which(argv[0]) ?? "/usr/bin/" + argv[0]))
        p.arguments = Array(argv.dropFirst())
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return Run(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
    }
}
