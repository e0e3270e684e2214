import ArgumentParser
import CFerry
import FerryBlock
import FerryCore
import FerryS3
import Foundation

/// `ferry block …`: block-level sync of disk images and block devices.
struct BlockCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "block",
        abstract: "Block-level incremental sync of disk images and block devices.",
        subcommands: [BlockSyncCommand.self, BlockRestoreCommand.self])
}

/// Options shared by `block sync` and `block restore`.
struct BlockOutputFlags: ParsableArguments {
    @Flag(help: "Print the summary as JSON on stdout.")
    var json = false

    @Option(help: ArgumentHelp("Also write the JSON summary to this file.", valueName: "file"))
    var report: String?

    @Flag(name: .shortAndLong, help: "Print nothing but errors.")
    var quiet = false

    @Option(help: ArgumentHelp("Where Ferry keeps its copy of each destination's block map (else FERRY_STATE_DIR, XDG_STATE_HOME/ferry or ~/.local/state/ferry).", valueName: "dir"))
    var stateDir: String?

    /// A one-line progress display on a terminal's stderr (nil when quiet, JSON or not a terminal).
    var progress: (@Sendable (BlockSyncReport) -> Void)? {
        guard !quiet && !json && cferry_isatty(2) == 1 else { return nil }
        return { r in
            let line = String(format: "\rblocks %d/%d scanned, %d changed, %d sent, %.1f MB written, %.1f s ",
                              r.blocksScanned, r.blocksTotal, r.blocksChanged, r.blocksSent, Double(r.bytesWritten) / 1e6, r.durationSeconds)
            FileHandle.standardError.write(Data(line.utf8))
        }
    }

    /// Prints and writes the summary; the exit status for its result.
    func finish(_ report: BlockSyncReport) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let json = (try? encoder.encode(report)) ?? Data()
        if let path = self.report {
            if !FileManager.default.createFile(atPath: path, contents: json + Data("\n".utf8), attributes: [.posixPermissions: 0o600]) {
                FileHandle.standardError.write(Data("ferry: could not write the report to \(path)\n".utf8))
            }
        }
        if progress != nil { FileHandle.standardError.write(Data("\n".utf8)) }
        if self.json {
            FileHandle.standardOutput.write(json + Data("\n".utf8))
        } else if !quiet {
            FileHandle.standardOutput.write(Data(BlockOutputFlags.text(report).utf8))
        }
        for note in report.notes where quiet || self.json {
            FileHandle.standardError.write(Data("ferry: \(note)\n".utf8))
        }
        switch report.result {
        case "SUCCESS": return
        case "VERIFICATION_FAILED": throw ExitCode(ExitStatus.verificationFailed)
        default: throw ExitCode(ExitStatus.partial)
        }
    }

    static func text(_ r: BlockSyncReport) -> String {
        func mb(_ n: Int64) -> String { String(format: "%.1f MB", Double(n) / 1e6) }
        var lines = [
            "\(r.source) -> \(r.destination): generation \(r.generation), \(r.result)",
            "  blocks: \(r.blocksTotal) of \(r.blockSize) bytes; scanned \(r.blocksScanned), zero \(r.blocksZero), changed \(r.blocksChanged), sent \(r.blocksSent)",
            "  read \(mb(r.bytesRead)), written \(mb(r.bytesWritten)) in \(String(format: "%.2f", r.durationSeconds)) s (\(String(format: "%.0f", r.throughputMBps)) MB/s of image)",
        ]
        if r.verification.mode != "none" {
            lines.append("  verified \(r.verification.blocksChecked) block(s): " + (r.verification.ok ? "ok" : "MISMATCH at \(r.verification.mismatchedRanges.prefix(10).joined(separator: ", "))"))
        }
        if !r.pointInTimeConsistent { lines.append("  changed while read: \(r.changedWhileReading.prefix(10).joined(separator: ", "))") }
        lines += r.notes.map { "  note: \($0)" }
        return lines.joined(separator: "\n") + "\n"
    }
}

extension BlockSyncOptions.Verify: ExpressibleByArgument {}

/// `ferry block sync SRC DST`.
struct BlockSyncCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sync",
        abstract: "Copy a disk image or block device; later runs send only the blocks that changed.",
        discussion: """
            SRC is an image file or a block device (/dev/...). DST is an image file (created if missing, sparse where the source is zero), a block device, or s3://bucket/prefix (chunk objects plus one manifest per generation).
            A block map (block size, SHA-256 per block, generation) is kept beside an image destination (DST.ferry-blockmap) and in the state directory, so the next run reads only the source.
            Exit status: 0 success, 1 failed, 2 completed but not point-in-time consistent (blocks changed while read), 3 verification failed, 64 bad usage.
            """)

    @Argument(help: "The image file or block device to read.")
    var source: String

    @Argument(help: "The image file, block device or s3://bucket/prefix to write.")
    var destination: String

    @Option(help: ArgumentHelp("Block size, a power of two from 4K to 64M.", valueName: "size"))
    var blockSize: String = "1M"

    @Option(help: ArgumentHelp("full: hash the whole destination and compare image digests; changed: read back only the blocks written; none.", valueName: "mode"))
    var verify: BlockSyncOptions.Verify = .full

    @Option(help: ArgumentHelp("Only these ranges changed since the last sync: the JSON of `rbd diff --format json`, or lines of offset,length (bytes).", valueName: "file"))
    var changedExtents: String?

    @Option(help: ArgumentHelp("reflink: read a FICLONE clone of the image file (XFS, btrfs).", valueName: "kind"))
    var snapshot: String?

    @Option(help: ArgumentHelp("A command that makes a snapshot of the source (FERRY_SOURCE) and prints the path to read as its last line.", valueName: "command"))
    var snapshotCmd: String?

    @Option(help: ArgumentHelp("A command that removes an older snapshot (FERRY_SNAPSHOT) after a successful sync; the latest (FERRY_LATEST_SNAPSHOT) is kept.", valueName: "command"))
    var snapshotCleanupCmd: String?

    @Flag(help: "Without a snapshot, do not hash the blocks read a second time to find ones that changed meanwhile.")
    var noConsistencyCheck = false

    @Option(help: ArgumentHelp("Generations kept on object storage.", valueName: "n"))
    var keep = 3

    @Option(name: .customLong("bwlimit"), help: ArgumentHelp("Bytes written or sent per second, e.g. 10M.", valueName: "rate"))
    var bandwidth: Rate?

    @OptionGroup var output: BlockOutputFlags
    @OptionGroup var s3: S3ConnectionFlags

    var blockSizeBytes: Int? {
        guard let v = TransferOptions.parseRate(blockSize), v >= 4096, v <= 64 << 20, v & (v - 1) == 0 else { return nil }
        return Int(v)
    }

    /// A path from a plain path, `file:///path` or `block:///dev/…` (DESIGN's location URIs).
    static func path(_ argument: String) -> String {
        for scheme in ["block://", "file://"] where argument.hasPrefix(scheme) {
            let rest = String(argument.dropFirst(scheme.count))
            return rest.removingPercentEncoding ?? rest
        }
        return argument
    }

    func validate() throws {
        var a = stat(), b = stat()
        if stat(BlockSyncCommand.path(source), &a) == 0, stat(BlockSyncCommand.path(destination), &b) == 0,
           a.st_dev == b.st_dev && a.st_ino == b.st_ino {
            throw ValidationError("\(source) and \(destination) are the same file or device")
        }
        guard blockSizeBytes != nil else { throw ValidationError("--block-size must be a power of two from 4K to 64M, e.g. 1M (got \(blockSize))") }
        if snapshot != nil && snapshot != "reflink" { throw ValidationError("--snapshot takes reflink (for a hook use --snapshot-cmd)") }
        if snapshot != nil && snapshotCmd != nil { throw ValidationError("--snapshot and --snapshot-cmd cannot be used together") }
        if snapshotCleanupCmd != nil && snapshotCmd == nil { throw ValidationError("--snapshot-cleanup-cmd needs --snapshot-cmd") }
        if keep < 1 { throw ValidationError("--keep must be at least 1") }
        if source.hasPrefix("s3://") { throw ValidationError("the source of block sync is an image file or a block device; to restore from s3:// use `ferry block restore`") }
    }

    func run() async throws {
        var options = BlockSyncOptions()
        options.blockSize = blockSizeBytes!
        options.verify = verify
        options.consistencyCheck = !noConsistencyCheck
        options.bytesPerSecond = bandwidth?.bytesPerSecond
        let state = BlockState.directory(output.stateDir)
        var client: S3Client?
        var snap: BlockSnapshot?
        do {
            if let file = changedExtents {
                guard let bytes = FileManager.default.contents(atPath: file) else {
                    throw BlockError(.badChangeList, "--changed-extents \(file) cannot be read")
                }
                options.changedExtents = try ChangedExtents.parse(Array(bytes), file: file)
            }
            let target: any BlockTarget
            if destination.hasPrefix("s3://") {
                let (bucket, prefix) = try S3Configuration.parse(uri: destination)
                client = try S3Client(endpoint: try S3Configuration.endpoint(s3.overrides))
                target = try ObjectImageTarget(store: ObjectImageStore(client: client!, bucket: bucket, prefix: prefix), stateDirectory: state, keep: keep)
            } else {
                target = try ImageTarget(path: BlockSyncCommand.path(destination), stateDirectory: state)
            }
            let sourcePath = BlockSyncCommand.path(source)
            if snapshot == "reflink" { snap = try BlockSnapshot.take(.reflink, of: sourcePath) }
            if let snapshotCmd { snap = try BlockSnapshot.take(.command(create: snapshotCmd, cleanup: snapshotCleanupCmd), of: sourcePath) }
            options.snapshot = snap?.path
            let image = try BlockImage.openSource(snap?.path ?? sourcePath)
            let sync = BlockSync(source: image, sourceLabel: source, target: target, options: options)
            var report = try await sync.run(progress: output.progress ?? { _ in })
            snap?.release()
            if let cleanup = snapshotCleanupCmd, report.result != "VERIFICATION_FAILED",
               let old = report.previousSnapshot, let latest = snap?.path, old != latest {
                try BlockSnapshot.cleanup(cleanup, old: old, latest: latest)
                report.notes.append("removed the previous snapshot \(old)")
            }
            await client?.shutdown()
            try output.finish(report)
        } catch let exit as ExitCode {
            throw exit
        } catch {
            snap?.release()
            await client?.shutdown()
            FileHandle.standardError.write(Data("ferry: \(error)\n".utf8))
            throw ExitCode(ExitStatus.failed)
        }
    }
}

/// `ferry block restore s3://bucket/prefix TARGET`.
struct BlockRestoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Write an image kept on object storage back to a file or block device.",
        discussion: "Exit status: 0 success, 1 failed, 3 verification failed, 64 bad usage.")

    @Argument(help: "The s3://bucket/prefix that `ferry block sync` wrote.")
    var source: String

    @Argument(help: "The image file (created if missing) or block device to write.")
    var target: String

    @Option(help: ArgumentHelp("The generation to restore (default: the newest kept).", valueName: "n"))
    var generation: Int?

    @Flag(help: "Do not hash the target afterwards and compare it with the manifest.")
    var noVerify = false

    @OptionGroup var output: BlockOutputFlags
    @OptionGroup var s3: S3ConnectionFlags

    func validate() throws {
        guard source.hasPrefix("s3://") else { throw ValidationError("restore reads an s3://bucket/prefix written by `ferry block sync`") }
    }

    func run() async throws {
        var client: S3Client?
        do {
            let (bucket, prefix) = try S3Configuration.parse(uri: source)
            client = try S3Client(endpoint: try S3Configuration.endpoint(s3.overrides))
            let imageTarget = try ImageTarget(path: BlockSyncCommand.path(target), stateDirectory: BlockState.directory(output.stateDir))
            var restore = BlockRestore(store: ObjectImageStore(client: client!, bucket: bucket, prefix: prefix), generation: generation, target: imageTarget)
            restore.verify = !noVerify
            let report = try await restore.run(progress: output.progress ?? { _ in })
            await client?.shutdown()
            try output.finish(report)
        } catch let exit as ExitCode {
            throw exit
        } catch {
            await client?.shutdown()
            FileHandle.standardError.write(Data("ferry: \(error)\n".utf8))
            throw ExitCode(ExitStatus.failed)
        }
    }
}
