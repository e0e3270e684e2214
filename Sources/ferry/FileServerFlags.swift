import ArgumentParser
import Foundation
import FerryCore
import FerryNFS
import FerrySMB

/// Flags for `nfs://` and `smb://` locations of `ferry sync` (Ferry's own clients, no mount).
struct FileServerFlags: ParsableArguments {
    @Option(help: ArgumentHelp("NFS version for nfs:// locations: 3, 4 (= 4.0), 4.0, 4.1 or auto (the best both sides speak; Ferry speaks 3 and 4.0).", valueName: "version"))
    var nfsVersion: String = "auto"

    @Option(help: ArgumentHelp("Concurrent NFS connections per nfs:// location (each carries many requests at once).", valueName: "n"))
    var nfsConnections: Int = 2

    @Option(help: ArgumentHelp("File whose first line is the SMB password for smb:// locations (else FERRY_SMB_PASSWORD; never on the command line).", valueName: "file"))
    var passwordFile: String?

    @Option(help: ArgumentHelp("SMB version for smb:// locations: auto (2.0 to 3.1.1), 2.0, 2 (2.1) or 3.", valueName: "version"))
    var smbVersion: String = "auto"

    @Option(help: ArgumentHelp("Between SMB shares, which parts of each security descriptor are copied: NONE, OWNER_DACL or OWNER_DACL_SACL.", valueName: "flags"))
    var securityDescriptorCopyFlags: String = "OWNER_DACL"

    @Option(help: ArgumentHelp("SMB sessions per smb:// location (each carries one request at a time).", valueName: "n"))
    var smbConnections: Int = SMBClient.defaultSessions

    func validatedNFSVersion() throws(FerryError) -> NFSVersion { try NFSVersion(parsing: nfsVersion) }

    /// The credentials for an smb:// URI's user and domain (FERRY_SMB_USER when it names none).
    func smbCredentials(user: String?, domain: String?) throws(FerryError) -> SMBCredentials {
        guard let user = user ?? ProcessInfo.processInfo.environment["FERRY_SMB_USER"] else {
            throw FerryError(.invalidLocation, "an smb:// location needs a user: smb://[DOMAIN;]USER@HOST/SHARE/PATH, or FERRY_SMB_USER")
        }
        return SMBCredentials(user: user, domain: domain, password: try SMBCredentials.password(file: passwordFile))
    }
}
