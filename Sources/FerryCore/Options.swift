/// DataSync's task `Options`, same names, values and defaults.
public struct TransferOptions: Sendable, Hashable, Codable {
    public enum VerifyMode: String, Sendable, Codable, CaseIterable {
        case pointInTimeConsistent = "POINT_IN_TIME_CONSISTENT"
        case onlyFilesTransferred = "ONLY_FILES_TRANSFERRED"
        case none = "NONE"
    }
    public enum TransferMode: String, Sendable, Codable, CaseIterable {
        case changed = "CHANGED", all = "ALL"
    }
    public enum OverwriteMode: String, Sendable, Codable, CaseIterable {
        case always = "ALWAYS", never = "NEVER"
    }
    public enum PreserveDeletedFiles: String, Sendable, Codable, CaseIterable {
        case preserve = "PRESERVE", remove = "REMOVE"
    }
    public enum Atime: String, Sendable, Codable, CaseIterable {
        case bestEffort = "BEST_EFFORT", none = "NONE"
    }
    public enum Mtime: String, Sendable, Codable, CaseIterable {
        case preserve = "PRESERVE", none = "NONE"
    }
    public enum IDMode: String, Sendable, Codable, CaseIterable {
        case intValue = "INT_VALUE", name = "NAME", both = "BOTH", none = "NONE"
    }
    public enum PosixPermissions: String, Sendable, Codable, CaseIterable {
        case preserve = "PRESERVE", none = "NONE"
    }
    public enum PreserveDevices: String, Sendable, Codable, CaseIterable {
        case none = "NONE", preserve = "PRESERVE"
    }

    public var verifyMode: VerifyMode = .pointInTimeConsistent
    public var transferMode: TransferMode = .changed
    public var overwriteMode: OverwriteMode = .always
    public var preserveDeletedFiles: PreserveDeletedFiles = .preserve
    public var atime: Atime = .bestEffort
    public var mtime: Mtime = .preserve
    public var uid: IDMode = .intValue
    public var gid: IDMode = .intValue
    public var posixPermissions: PosixPermissions = .preserve
    public var preserveDevices: PreserveDevices = .none
    /// Bytes per second for all workers together; nil (DataSync's -1) means no limit.
    public var bytesPerSecond: Int64?

    /// DataSync's defaults.
    public init() {}

    enum CodingKeys: String, CodingKey {
        case verifyMode = "VerifyMode", transferMode = "TransferMode", overwriteMode = "OverwriteMode"
        case preserveDeletedFiles = "PreserveDeletedFiles", atime = "Atime", mtime = "Mtime", uid = "Uid", gid = "Gid"
        case posixPermissions = "PosixPermissions", preserveDevices = "PreserveDevices", bytesPerSecond = "BytesPerSecond"
    }

    /// Checks the combinations DataSync refuses, with DataSync's wording where it has one.
    public func validate() throws(FerryError) {
        if atime == .bestEffort && mtime == .none {
            throw FerryError(.invalidOption, "Atime BEST_EFFORT requires Mtime PRESERVE: set --mtime preserve, or --atime none with --mtime none")
        }
        if atime == .none && mtime == .preserve {
            throw FerryError(.invalidOption, "Mtime PRESERVE requires Atime BEST_EFFORT: set --atime best-effort, or --mtime none with --atime none")
        }
        if preserveDeletedFiles == .remove && transferMode == .all {
            throw FerryError(.invalidOption, "PreserveDeletedFiles REMOVE cannot be used with TransferMode ALL (--delete needs --transfer-mode changed)")
        }
        if let bps = bytesPerSecond, bps <= 0 {
            throw FerryError(.invalidOption, "BytesPerSecond must be a positive number of bytes per second")
        }
    }

    /// The metadata a write applies under these options.
    public var metadataSelection: MetadataSelection {
        var s = MetadataSelection()
        s.mtime = mtime == .preserve
        s.atime = atime == .bestEffort
        s.uid = uid != .none
        s.gid = gid != .none
        s.ownership = s.uid || s.gid
        s.permissions = posixPermissions == .preserve
        s.extendedAttributes = true
        return s
    }
}

extension TransferOptions {
    /// Parses a byte rate like `1048576`, `10M`, `1G`, `512k`, `1.5M` (binary multiples).
    public static func parseRate(_ text: String) -> Int64? {
        var digits = Substring(text.trimmingCharactersAsciiSpace())
        guard let last = digits.last else { return nil }
        var multiplier: Double = 1
        switch last {
        case "k", "K": multiplier = 1024
        case "m", "M": multiplier = 1024 * 1024
        case "g", "G": multiplier = 1024 * 1024 * 1024
        case "t", "T": multiplier = 1024 * 1024 * 1024 * 1024
        default: break
        }
        if multiplier != 1 { digits = digits.dropLast() }
        if digits.hasSuffix("i") || digits.hasSuffix("B") { return nil }
        guard let value = Double(digits), value > 0, value.isFinite else { return nil }
        let result = value * multiplier
        guard result >= 1, result < 9.2e18 else { return nil }
        return Int64(result)
    }
}

extension String {
    func trimmingCharactersAsciiSpace() -> String {
        var s = Substring(self)
        while s.first == " " { s = s.dropFirst() }
        while s.last == " " { s = s.dropLast() }
        return String(s)
    }
}
