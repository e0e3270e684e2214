import FerryCore
import Foundation

/// Who Ferry is to the SMB server: user, domain and password (NTLM). The password comes
/// from a file or the environment, never from a command line the process table shows.
public struct SMBCredentials: Sendable, Hashable {
    public var user: String
    public var domain: String?
    public var password: String

    public init(user: String, domain: String?, password: String) {
        self.user = user
        self.domain = domain
        self.password = password
    }

    /// The password from `passwordFile` (its first line), else `FERRY_SMB_PASSWORD`.
    public static func password(file passwordFile: String?, environment: [String: String] = ProcessInfo.processInfo.environment) throws(FerryError) -> String {
        if let passwordFile {
            guard let data = FileManager.default.contents(atPath: passwordFile) else {
                throw FerryError(.invalidOption, "cannot read the password file \(passwordFile)")
            }
            return String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).first.map(String.init) ?? ""
        }
        if let p = environment["FERRY_SMB_PASSWORD"] { return p }
        throw FerryError(.invalidOption, "an smb:// location needs a password: --password-file FILE or FERRY_SMB_PASSWORD in the environment")
    }
}

/// DataSync's MountOptions.Version for SMB: the protocol versions Ferry may negotiate.
public enum SMBVersion: String, Sendable, Hashable, CaseIterable {
    case automatic = "AUTOMATIC"
    case smb2_0 = "SMB2_0"
    case smb2 = "SMB2"
    case smb3 = "SMB3"

    /// `auto`, `2.0`, `2`, `3` on the command line; DataSync's names at the server. SMB1 is refused.
    public init(parsing text: String) throws(FerryError) {
        switch text.uppercased() {
        case "AUTO", "AUTOMATIC": self = .automatic
        case "2.0", "SMB2_0": self = .smb2_0
        case "2", "2.1", "SMB2": self = .smb2
        case "3", "SMB3": self = .smb3
        case "1", "SMB1":
            throw FerryError(.unsupported, "Ferry does not speak SMB1 (insecure and retired); use SMB 2 or 3 (--smb-version 2|3|auto)")
        default:
            throw FerryError(.invalidOption, "\"\(text)\" is not an SMB version (auto, 2.0, 2, 3; DataSync: AUTOMATIC, SMB2_0, SMB2, SMB3)")
        }
    }

    /// The lowest and highest protocol libsmbclient may negotiate.
    var protocols: (min: String, max: String) {
        switch self {
        case .automatic: ("SMB2_02", "SMB3_11")
        case .smb2_0: ("SMB2_02", "SMB2_02")
        case .smb2: ("SMB2_10", "SMB2_10")
        case .smb3: ("SMB3_00", "SMB3_11")
        }
    }
}

/// DataSync's SecurityDescriptorCopyFlags: which parts of an NTFS security descriptor go
/// from one SMB share to another.
public enum SecurityDescriptorCopy: String, Sendable, Hashable, CaseIterable {
    case none = "NONE"
    case ownerDACL = "OWNER_DACL"
    case ownerDACLSACL = "OWNER_DACL_SACL"

    public init(parsing text: String) throws(FerryError) {
        guard let v = SecurityDescriptorCopy(rawValue: text.uppercased().replacingOccurrences(of: "-", with: "_")) else {
            throw FerryError(.invalidOption, "\"\(text)\" is not a SecurityDescriptorCopyFlags value (NONE, OWNER_DACL, OWNER_DACL_SACL)")
        }
        self = v
    }
}
