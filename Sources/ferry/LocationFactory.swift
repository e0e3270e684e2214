import FerryCore
import FerryLocal
import FerryNFS
import FerrySMB
import FerryS3
import Foundation

/// Turns command-line arguments into locations: plain paths and `file://` URIs (POSIX),
/// and `s3://bucket/prefix` (S3-compatible, configured by flags, environment, profile).
/// Owns the S3 clients it makes; ``close()`` shuts them down.
final class LocationFactory {
    enum Role { case source, destination }

    let s3Overrides: S3Configuration.Overrides
    private(set) var clients: [S3Client] = []
    /// Where S3 object metadata is remembered between runs (nil: not at all).
    let cacheDirectory: String?
    private var cache: S3MetadataCache?

    /// List S3 trees flat (`--fast-list`).
    let flatListing: Bool
    /// How nfs:// and smb:// locations are reached.
    let fileServers: FileServerFlags
    private var nfsClients: [NFSClient] = []
    private var smbClients: [SMBClient] = []

    init(s3Overrides: S3Configuration.Overrides, cacheDirectory: String? = nil, flatListing: Bool = false,
         fileServers: FileServerFlags = FileServerFlags()) {
        self.s3Overrides = s3Overrides
        self.cacheDirectory = cacheDirectory
        self.flatListing = flatListing
        self.fileServers = fileServers
    }

    /// The metadata cache, opened on first use; a cache that cannot be opened is reported
    /// once and the run goes on without it (every object gets a HEAD).
    private func metadataCache() -> S3MetadataCache? {
        guard let dir = cacheDirectory else { return nil }
        if cache == nil {
            do {
                cache = try S3MetadataCache(directory: dir)
            } catch {
                FileHandle.standardError.write(Data("ferry: warning: the metadata cache in \(dir) cannot be used (\(error)); every object will be read with a HEAD\n".utf8))
            }
        }
        return cache
    }

    /// Parses an argument (``LocationURI``), or a usage error naming what is wrong or not
    /// served yet: `ferry sync` takes paths, `file://`, `s3://` and `nfs://`.
    static func parse(_ argument: String) throws -> LocationURI {
        let uri = try LocationURI.parse(argument)
        switch uri {
        case .posix, .s3, .nfs, .smb: return uri
        case .block: throw FerryError(.unsupported, "\(argument): a block:// location is synced with `ferry block sync`")
        default:
            throw FerryError(.unsupported, "\(argument): \(uri.scheme):// locations are not served yet (paths, file://, s3://, nfs:// and smb:// are)")
        }
    }

    /// Where an argument's tree lies (``LocationScope``), told before anything is opened
    /// or made: a destination inside its source is refused before it is created there.
    static func scope(_ argument: String, s3Overrides: S3Configuration.Overrides) throws -> LocationScope {
        switch try parse(argument) {
        case .s3(let bucket, let prefix):
            let endpoint = (try? S3Configuration.endpoint(s3Overrides))?.url.absoluteString ?? ""
            return LocationScope.bucket(endpoint: endpoint, bucket: bucket, prefix: prefix)
        case .posix(let path), .block(let path):
            return LocationScope.posix(path)
        case .nfs(let host, let port, let path):
            return NFSLocation.scope(host: host, port: port, path: path, display: argument)
        case .smb(_, _, let host, let port, let path):
            return SMBLocation.scope(host: host, port: port, path: path, display: argument)
        default:
            throw FerryError(.unsupported, "\(argument) is not a location `ferry sync` serves")
        }
    }

    func open(_ argument: String, role: Role, create: Bool) throws -> any Location {
        switch try LocationFactory.parse(argument) {
        case .posix(let path):
            do {
                return try POSIXLocation(path: path, create: create)
            } catch let error as LocalError where error.code == .rootMissing {
                throw FerryError(.invalidLocation, "the \(role == .source ? "source" : "destination") \(path) does not exist")
            }
        case .s3(let bucket, let prefix):
            let client = try S3Client(endpoint: try S3Configuration.endpoint(s3Overrides))
            clients.append(client)
            var location = S3Location(client: client, bucket: bucket, prefix: prefix, metadataCache: metadataCache())
            location.flatListing = flatListing
            return location
        case .nfs(let host, let port, let path):
            let client = try NFSClient.connect(host: host, port: port, path: path, version: try fileServers.validatedNFSVersion(),
                                               create: create, writing: role == .destination, connections: max(1, fileServers.nfsConnections))
            nfsClients.append(client)
            return NFSLocation(client: client)
        case .smb(let domain, let user, let host, let port, let path):
            let client = try SMBClient.connect(
                host: host, port: port, path: path, credentials: try fileServers.smbCredentials(user: user, domain: domain),
                version: try SMBVersion(parsing: fileServers.smbVersion),
                securityDescriptors: try SecurityDescriptorCopy(parsing: fileServers.securityDescriptorCopyFlags),
                create: create, workers: max(1, fileServers.smbConnections))
            smbClients.append(client)
            return SMBLocation(client: client)
        default:
            throw FerryError(.unsupported, "\(argument) is not a location `ferry sync` serves")
        }
    }

    /// S3 requests made so far by all clients.
    var s3Requests: Int { clients.reduce(0) { $0 + $1.requestCount.load(ordering: .relaxed) } }

    func close() async {
        cache?.flush()
        for c in clients { await c.shutdown() }
        clients = []
        for c in nfsClients { c.close() }
        nfsClients = []
        for c in smbClients { c.close() }
        smbClients = []
    }
}
