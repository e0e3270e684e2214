import FerryCore
import Glibc
import Logging

/// Everything one execution needs: both locations, DataSync options, filters and limits.
public struct SyncConfiguration: Sendable {
    public var source: any Location
    public var destination: any Location
    public var options: TransferOptions
    public var filters: Filters
    /// Work items (directory listings, file transfers) in flight at once; unless given,
    /// the larger of the two locations' ``Capabilities/itemsInFlight`` (16 for local trees
    /// and object stores).
    public var parallel: Int
    /// Plan and report, change nothing.
    public var dryRun: Bool
    public var logger: Logger
    /// Called for each item acted on (or that would be, in a dry run); for `-v` and `--dry-run` output.
    public var onItem: (@Sendable (ItemEvent) -> Void)?
    /// Entries of one directory side held in memory at most: a directory with more is
    /// listed as sorted runs of this many into an unnamed file in ``spillDirectory`` and
    /// merged from there (DESIGN.md §4), so memory does not grow with the directory.
    public var spillThreshold = 100_000
    /// Where spill files are made (`O_TMPFILE`): `$TMPDIR`, else `/tmp`.
    public var spillDirectory: String = {
        if let t = getenv("TMPDIR"), let s = String(validatingCString: t), !s.isEmpty { return s }
        return "/tmp"
    }()

    public init(
        source: any Location, destination: any Location, options: TransferOptions = TransferOptions(),
        filters: Filters = Filters(), parallel: Int? = nil, dryRun: Bool = false,
        logger: Logger = Logger(label: "ferry.engine"), onItem: (@Sendable (ItemEvent) -> Void)? = nil
    ) {
        self.source = source
        self.destination = destination
        self.options = options
        self.filters = filters
        self.parallel = max(1, parallel ?? max(source.capabilities.itemsInFlight, destination.capabilities.itemsInFlight))
        self.dryRun = dryRun
        self.logger = logger
        self.onItem = onItem
    }
}

/// One thing the engine did (or would do) to one path.
public struct ItemEvent: Sendable {
    public enum Kind: String, Sendable {
        case create = "create", update = "update", metadata = "metadata", link = "link"
        case delete = "delete", skip = "skip", fail = "fail"
    }
    public var kind: Kind
    public var path: EntryPath
    public var entryKind: EntryKind
    public var size: Int64
    public var reason: String?
}
