import ArgumentParser
import FerryCore

extension TransferOptions.VerifyMode: ExpressibleByArgument {
    public init?(argument: String) {
        if let mode = Self(rawValue: argument) { self = mode; return }  // DataSync's spelling, as --help shows the default
        switch argument {
        case "point-in-time-consistent": self = .pointInTimeConsistent
        case "only-files-transferred": self = .onlyFilesTransferred
        case "none": self = .none
        default: return nil
        }
    }
    public static var allValueStrings: [String] { ["point-in-time-consistent", "only-files-transferred", "none"] }
}

/// Lower-case, dash-separated spellings of DataSync's enum values (`INT_VALUE` → `int-value`);
/// DataSync's own spelling (`INT_VALUE`, what `--help` shows as the default) is taken too.
protocol DashedArgument: ExpressibleByArgument, CaseIterable, RawRepresentable where RawValue == String {}

extension DashedArgument {
    public init?(argument: String) {
        guard let match = Self.allCases.first(where: { $0.dashed == argument || $0.rawValue == argument }) else { return nil }
        self = match
    }
    public static var allValueStrings: [String] { allCases.map(\.dashed) }
    /// Stdlib only: Foundation's `replacingOccurrences` cost 3 % of a sync's start-up.
    var dashed: String { String(rawValue.lowercased().map { $0 == "_" ? "-" : $0 }) }
}

extension TransferOptions.TransferMode: DashedArgument {}
extension TransferOptions.OverwriteMode: DashedArgument {}
extension TransferOptions.Atime: DashedArgument {}
extension TransferOptions.Mtime: DashedArgument {}
extension TransferOptions.PosixPermissions: DashedArgument {}

/// `--uid`/`--gid`: numeric ids are kept (`int-value`) or not (`none`).
enum IDArgument: String, ExpressibleByArgument, CaseIterable {
    case intValue = "int-value", none = "none"
    var mode: TransferOptions.IDMode { self == .intValue ? .intValue : .none }
}

/// `--bwlimit`: bytes per second, with an optional k/M/G/T suffix (binary multiples).
struct Rate: ExpressibleByArgument {
    let bytesPerSecond: Int64
    init?(argument: String) {
        guard let v = TransferOptions.parseRate(argument) else { return nil }
        bytesPerSecond = v
    }
    static var defaultCompletionKind: CompletionKind { .default }
}
