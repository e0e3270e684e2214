import ArgumentParser
import FerryCore
import FerryNFS

/// Flags for `nfs://` and `smb://` locations of `ferry sync` (Ferry's own clients, no mount).
struct FileServerFlags: ParsableArguments {
    @Option(help: ArgumentHelp("NFS version for nfs:// locations: 3, 4 (= 4.0), 4.0, 4.1 or auto (the best both sides speak; Ferry speaks 3 and 4.0).", valueName: "version"))
    var nfsVersion: String = "auto"

    @Option(help: ArgumentHelp("Concurrent NFS connections per nfs:// location (each carries many requests at once).", valueName: "n"))
    var nfsConnections: Int = 2

    func validatedNFSVersion() throws(FerryError) -> NFSVersion { try NFSVersion(parsing: nfsVersion) }
}
