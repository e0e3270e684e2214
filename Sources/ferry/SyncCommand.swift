import ArgumentParser
import CFerry
import FerryCore
import FerryEngine
import FerryS3
import Foundation
import Logging

/// `ferry sync SRC DST`: one execution with no server, DataSync's options and semantics.
struct SyncCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sync",
        abstract: "Copy a tree from SRC to DST; a second run moves only what changed.",
        discussion: """
            SRC and DST are directories (plain paths or file:// URIs; DST is created if missing) or S3 prefixes (s3://bucket/prefix; see the S3 options and the AWS_* environment).
            Exit status: 0 success, 1 failed, 2 some files skipped or failed, 3 verification failed, 64 bad usage.
            """)

    @Argument(help: "The source location (path, file:// URI, or s3://bucket/prefix).")
    var source: String

    @Argument(help: "The destination location (path, file:// URI, or s3://bucket/prefix).")
    var destination: String

    @Option(help: ArgumentHelp(
        "How to verify: point-in-time-consistent (list both sides again and compare everything), only-files-transferred (checksum and metadata of what was transferred; the default), or none.",
        valueName: "mode"))
    var verifyMode: TransferOptions.VerifyMode = .onlyFilesTransferred

    @Option(help: ArgumentHelp("changed: only what differs (size, mtime, metadata); all: everything.", valueName: "mode"))
    var transferMode: TransferOptions.TransferMode = .changed

    @Option(help: ArgumentHelp("always: replace what differs at DST; never: leave existing entries alone.", valueName: "mode"))
    var overwriteMode: TransferOptions.OverwriteMode = .always

    @Flag(help: "Remove entries at DST that are not at SRC (PreserveDeletedFiles=REMOVE); not with --transfer-mode all.")
    var delete = false

    @Option(help: ArgumentHelp("preserve or none (with none, --atime must be none too).", valueName: "mode"))
    var mtime: TransferOptions.Mtime = .preserve

    @Option(help: ArgumentHelp("best-effort or none (best-effort needs --mtime preserve).", valueName: "mode"))
    var atime: TransferOptions.Atime = .bestEffort

    @Option(help: ArgumentHelp("int-value: keep numeric owner ids; none: leave them to the writer.", valueName: "mode"))
    var uid: IDArgument = .intValue

    @Option(help: ArgumentHelp("int-value: keep numeric group ids; none: leave them to the writer.", valueName: "mode"))
    var gid: IDArgument = .intValue

    @Option(help: ArgumentHelp("preserve: keep mode bits incl. setuid/setgid/sticky; none: do not.", valueName: "mode"))
    var posixPermissions: TransferOptions.PosixPermissions = .preserve

    @Flag(help: "Also transfer FIFOs and device nodes (PreserveDevices=PRESERVE).")
    var preserveDevices = false

    @Option(name: .customLong("bwlimit"), help: ArgumentHelp("Bytes per second for the whole run, e.g. 1048576, 10M, 1G.", valueName: "rate"))
    var bandwidth: Rate?

    @Option(help: ArgumentHelp("Only transfer what matches: patterns joined by |, * wildcard, leading / anchors at the root, e.g. '/photos|*.jpg'.", valueName: "patterns"))
    var include: String?

    @Option(help: ArgumentHelp("Leave out what matches (same syntax as --include); excluded entries are never deleted.", valueName: "patterns"))
    var exclude: String?

    @Flag(help: "Print what would change and change nothing.")
    var dryRun = false

    @Option(help: ArgumentHelp("Write a JSON task report (transferred, skipped, verified, deleted) to this file.", valueName: "file"))
    var report: String?

    @Flag(help: "Print the summary as JSON on stdout.")
    var json = false

    @Option(help: ArgumentHelp("Work items (listings, files) in flight at once (default: 16; 128 with an NFS end, the sessions with an SMB end).", valueName: "n"))
    var parallel: Int?

    @OptionGroup(title: "NFS and SMB locations (nfs://host[:port]/export/path, smb://[domain;][user@]host/share/path)")
    var fileServers: FileServerFlags

    @OptionGroup(title: "S3 locations (s3://bucket/prefix)")
    var s3: S3Flags

    @Flag(name: .shortAndLong, help: "Print nothing but errors.")
    var quiet = false

    @Flag(name: .shortAndLong, help: "Print every item acted on.")
    var verbose = false

    var transferOptions: TransferOptions {
        var o = TransferOptions()
        o.verifyMode = verifyMode
        o.transferMode = transferMode
        o.overwriteMode = overwriteMode
        o.preserveDeletedFiles = delete ? .remove : .preserve
        o.mtime = mtime
        o.atime = atime
        o.uid = uid.mode
        o.gid = gid.mode
        o.posixPermissions = posixPermissions
        o.preserveDevices = preserveDevices ? .preserve : .none
        o.bytesPerSecond = bandwidth?.bytesPerSecond
        return o
    }

    func validate() throws {
        do {
            try transferOptions.validate()
            _ = try filters()
            try LocationScope.checkDisjoint(source: LocationFactory.scope(source, s3Overrides: s3.overrides),
                                            destination: LocationFactory.scope(destination, s3Overrides: s3.overrides))
        } catch let error as any LocationError {
            throw ValidationError(error.description)
        }
        if let parallel, parallel < 1 || parallel > 4096 { throw ValidationError("--parallel must be between 1 and 4096") }
        if quiet && verbose { throw ValidationError("--quiet and --verbose cannot be used together") }
    }

    func filters() throws(FerryError) -> Filters {
        Filters(includes: try include.map { v throws(FerryError) in try FilterRule(v) },
                excludes: try exclude.map { v throws(FerryError) in try FilterRule(v) })
    }

    func run() async throws {
        _ = cferry_raise_nofile()
        var logger = Logger(label: "ferry")
        logger.logLevel = verbose ? .info : .critical
        let output = Output(json: json, quiet: quiet, verbose: verbose, dryRun: dryRun)

        let sourceLocation: any Location
        var destinationLocation: any Location
        var placeholder: String?
        let factory = LocationFactory(s3Overrides: s3.overrides,
                                      cacheDirectory: s3.noMetadataCache ? nil : (s3.cacheDir ?? S3MetadataCache.defaultDirectory()),
                                      flatListing: s3.fastList, fileServers: fileServers)
        do {
            sourceLocation = try factory.open(source, role: .source, create: false)
            do {
                destinationLocation = try factory.open(destination, role: .destination, create: !dryRun)
            } catch let e as FerryError where dryRun && e.code == .invalidLocation {
                // A dry run against a destination that does not exist yet: compare with an empty tree.
                placeholder = NSTemporaryDirectory() + "ferry-dry-run-\(getpid())"
                destinationLocation = try factory.open(placeholder!, role: .destination, create: true)
            }
        } catch {
            await factory.close()
            output.fatal("\(error)")
            throw ExitCode(ExitStatus.failed)
        }
        defer { if let placeholder { try? FileManager.default.removeItem(atPath: placeholder) } }

        let spool = report.map { URL(fileURLWithPath: $0 + ".ferry-spool-\(getpid())") }
        let sink = TaskReportSink(spoolDirectory: spool)
        let configuration = SyncConfiguration(
            source: sourceLocation, destination: destinationLocation, options: transferOptions,
            filters: try filters(), parallel: parallel, dryRun: dryRun, logger: logger,
            onItem: (verbose || dryRun) ? output.itemPrinter() : nil)
        let engine = SyncEngine(configuration, report: sink)
        let progress = ProgressDisplay(counters: engine.counters, enabled: !quiet && !json && cferry_isatty(2) == 1)
        var result = await progress.whileRunning { await engine.run() }
        if verbose && !factory.clients.isEmpty {
            FileHandle.standardError.write(Data("S3 requests: \(factory.s3Requests)\n".utf8))
        }
        await factory.close()
        if placeholder != nil { result.destination = "file://" + destination }

        if let report {
            do {
                try sink.writeReport(to: URL(fileURLWithPath: report), summary: result)
            } catch {
                output.fatal("could not write the report to \(report): \(error)")
            }
        }
        output.summary(result)
        switch result.outcome {
        case .success: return
        case .partial: throw ExitCode(ExitStatus.partial)
        case .verificationFailed: throw ExitCode(ExitStatus.verificationFailed)
        case .failed: throw ExitCode(ExitStatus.failed)
        }
    }
}
