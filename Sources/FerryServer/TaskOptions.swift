import FerryCore
import FerrySMB
import FerryStore

/// DataSync's task `Options`: every default filled in, overrides laid over a base, the
/// combinations DataSync refuses refused, and the engine's ``TransferOptions`` made from them.
enum TaskOptions {
    static let defaults: [String: JSONValue] = [
        "VerifyMode": "POINT_IN_TIME_CONSISTENT", "OverwriteMode": "ALWAYS", "Atime": "BEST_EFFORT", "Mtime": "PRESERVE",
        "Uid": "INT_VALUE", "Gid": "INT_VALUE", "PreserveDeletedFiles": "PRESERVE", "PreserveDevices": "NONE",
        "PosixPermissions": "PRESERVE", "BytesPerSecond": -1, "TaskQueueing": "ENABLED", "LogLevel": "OFF",
        "TransferMode": "CHANGED", "SecurityDescriptorCopyFlags": "OWNER_DACL", "ObjectTags": "PRESERVE",
    ]

    /// `base` (defaults when nil) with the members of `overrides` laid over it, checked.
    static func merged(_ base: JSONValue?, _ overrides: JSONValue?) throws -> JSONValue {
        var result = base?.object ?? defaults
        for (k, v) in overrides?.object ?? [:] where v != .null { result[k] = v }
        let options = JSONValue.object(result)
        _ = try transferOptions(options)
        _ = try securityDescriptorCopy(options)
        return options
    }

    /// The engine's options; throws DataSync's InvalidRequestException for refused combinations.
    static func transferOptions(_ o: JSONValue) throws -> TransferOptions {
        var t = TransferOptions()
        func value<E: RawRepresentable>(_ key: String, _: E.Type) -> E? where E.RawValue == String {
            o[key]?.string.flatMap(E.init(rawValue:))
        }
        t.verifyMode = value("VerifyMode", TransferOptions.VerifyMode.self) ?? t.verifyMode
        t.transferMode = value("TransferMode", TransferOptions.TransferMode.self) ?? t.transferMode
        t.overwriteMode = value("OverwriteMode", TransferOptions.OverwriteMode.self) ?? t.overwriteMode
        t.preserveDeletedFiles = value("PreserveDeletedFiles", TransferOptions.PreserveDeletedFiles.self) ?? t.preserveDeletedFiles
        t.atime = value("Atime", TransferOptions.Atime.self) ?? t.atime
        t.mtime = value("Mtime", TransferOptions.Mtime.self) ?? t.mtime
        t.uid = value("Uid", TransferOptions.IDMode.self) ?? t.uid
        t.gid = value("Gid", TransferOptions.IDMode.self) ?? t.gid
        t.posixPermissions = value("PosixPermissions", TransferOptions.PosixPermissions.self) ?? t.posixPermissions
        t.preserveDevices = value("PreserveDevices", TransferOptions.PreserveDevices.self) ?? t.preserveDevices
        let bps = o["BytesPerSecond"]?.int ?? -1
        if bps == 0 || bps < -1 { throw ServerError.invalid("BytesPerSecond must be -1 (no limit) or a positive number of bytes per second.") }
        t.bytesPerSecond = bps == -1 ? nil : bps
        do {
            try t.validate()
        } catch {
            throw ServerError.invalid(error.message)
        }
        return t
    }

    /// SecurityDescriptorCopyFlags, for SMB locations.
    static func securityDescriptorCopy(_ o: JSONValue) throws -> SecurityDescriptorCopy {
        do {
            return try SecurityDescriptorCopy(parsing: o["SecurityDescriptorCopyFlags"]?.string ?? "OWNER_DACL")
        } catch {
            throw ServerError.invalid(error.message)
        }
    }

    /// DataSync's `Includes`/`Excludes` (one SIMPLE_PATTERN filter, `|`-separated values).
    static func filters(includes: JSONValue?, excludes: JSONValue?) throws -> Filters {
        func rule(_ list: JSONValue?) throws -> FilterRule? {
            guard let f = list?.array?.first, let value = f["Value"]?.string, !value.isEmpty else { return nil }
            if let type = f["FilterType"]?.string, type != "SIMPLE_PATTERN" {
                throw ServerError.invalid("FilterType \(type) is not supported; use SIMPLE_PATTERN.")
            }
            do {
                return try FilterRule(value)
            } catch {
                throw ServerError.invalid(error.message)
            }
        }
        return Filters(includes: try rule(includes), excludes: try rule(excludes))
    }
}
