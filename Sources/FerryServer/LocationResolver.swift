import FerryCore
import FerryLocal
import FerryNFS
import FerryRemote
import FerryS3
import FerrySMB
import FerryStore
import Foundation
import NIOSSL

/// A location opened for an execution and what closes its connections afterwards.
struct ResolvedLocation: Sendable {
    let location: any Location
    let close: @Sendable () async -> Void
}

/// Turns a stored location into a ``Location`` the engine can use on the built-in agent:
/// NFS → Ferry's NFS client to the export on ServerHostname; SMB → its SMB client to the
/// share, with the location's (sealed) password; object storage → an S3 client for that
/// endpoint with the location's keys (and CA certificate); S3 → the server's configured
/// S3 endpoint. An agent process opens the locations of its leases with one of its own
/// (no store: the lease carries the bodies, secrets opened).
struct LocationResolver: Sendable {
    let store: Store?
    let s3Endpoint: S3Configuration.Overrides
    let dataDirectory: String
    /// Object metadata remembered between executions (`DATA_DIR/cache`).
    let metadataCache: S3MetadataCache?
    /// Opens the location secrets the store keeps sealed (nil: the bodies carry them open).
    let secrets: SecretBox?
    /// On an agent: its certificate and the agents' CA, to reach a location another agent
    /// serves (agent to agent).
    var peerTLS: TLSConfiguration? = nil
    /// On an agent started with `--local-root`: the directories of its own host an NFS
    /// location whose ServerHostname is `localhost` may name (read and written as a local
    /// file system, no NFS; a Ferry extension).
    var localRoots: [String] = []

    /// A location another agent serves under `name` at `endpoint` (`host:port`), over
    /// mutual TLS. The other agent may be opening it still: the transport tries again
    /// (refused connections, "not served") for its outage limit.
    func openRemote(endpoint: String, name: String, agent: String) async throws -> ResolvedLocation {
        guard let tls = peerTLS else {
            throw ServerError.internalError("this process has no agent certificate to reach agent \(agent) with")
        }
        // Several connections at once (``RemoteLocation/connections``): a lossy or
        // flow-capped path carries several TCP streams.
        let context = try NIOSSLContext(configuration: tls)
        let transport = SpreadTransport(try (0..<RemoteLocation.connections).map { _ in
            try FrameRemoteTransport(endpoint: endpoint, name: name, context: context)
        })
        do {
            let location = try await RemoteLocation.connect(transport)
            return ResolvedLocation(location: location) { await location.close() }
        } catch {
            await transport.close()
            throw ServerError.invalid("the destination served by agent \(agent) at \(endpoint) could not be reached: \(error)")
        }
    }

    /// The location, connected; `securityDescriptors` is the task's SecurityDescriptorCopyFlags.
    func resolve(_ arn: String, asDestination: Bool, securityDescriptors: SecurityDescriptorCopy = .ownerDACL) throws -> ResolvedLocation {
        guard let r = try store?.get(arn), r.kind == .location else { throw ServerError.notFound("Location", arn) }
        return try open(r.body, arn: arn, asDestination: asDestination, securityDescriptors: securityDescriptors)
    }

    /// `directory` when it lies under one of ``localRoots`` (after symlinks are resolved: a
    /// link cannot lead out of them); an error naming the roots otherwise.
    func localPath(_ directory: String, arn: String) throws -> String {
        let components = directory.split(separator: "/")
        guard !components.contains(where: { $0 == ".." || $0 == "." }) else {
            throw ServerError.invalid("Location \(arn): the local path \(directory) has . or .. in it")
        }
        let path = "/" + components.joined(separator: "/")
        // The deepest part of the path that exists, resolved (a destination may not exist yet).
        var existing = path
        while !FileManager.default.fileExists(atPath: existing), existing != "/" {
            existing = (existing as NSString).deletingLastPathComponent
        }
        let resolved = (existing as NSString).resolvingSymlinksInPath + String(path.dropFirst(existing.count))
        for root in localRoots {
            let r = (root as NSString).resolvingSymlinksInPath
            if resolved == r || resolved.hasPrefix(r.hasSuffix("/") ? r : r + "/") { return path }
        }
        throw ServerError.invalid(
            "Location \(arn): \(path) is not under this agent's local roots (\(localRoots.joined(separator: ", "))); start the agent with --local-root covering it")
    }

    /// A stored location's secret member, opened.
    func reveal(_ stored: String) throws -> String {
        try secrets?.reveal(stored) ?? stored
    }

    /// `body` with its secret members opened, for an agent's lease.
    func revealed(_ body: JSONValue) throws -> JSONValue {
        var out = body
        for m in ControlPlane.secretMembers { if let v = body[m]?.string { out[m] = .string(try reveal(v)) } }
        return out
    }

    /// The location a body describes, connected.
    func open(_ b: JSONValue, arn: String, asDestination: Bool, securityDescriptors: SecurityDescriptorCopy = .ownerDACL) throws -> ResolvedLocation {
        switch b["Type"]?.string {
        case "NFS" where b["ServerHostname"]?.string == "localhost" && !localRoots.isEmpty:
            let path = try localPath(ControlPlane.subdirectory(b["Subdirectory"]?.string), arn: arn)
            return ResolvedLocation(location: try POSIXLocation(path: path, create: asDestination)) {}
        case "NFS":
            let version = try NFSVersion(parsing: b["MountOptions"]?["Version"]?.string ?? "AUTOMATIC")
            let client = try NFSClient.connect(host: b["ServerHostname"]?.string ?? "", port: nil, path: ControlPlane.subdirectory(b["Subdirectory"]?.string),
                                               version: version, create: asDestination, writing: asDestination)
            return ResolvedLocation(location: NFSLocation(client: client)) { client.close() }
        case "SMB":
            let credentials = SMBCredentials(user: b["User"]?.string ?? "", domain: b["Domain"]?.string,
                                             password: try reveal(b["Password"]?.string ?? ""))
            let client = try SMBClient.connect(host: b["ServerHostname"]?.string ?? "", port: nil, path: ControlPlane.subdirectory(b["Subdirectory"]?.string),
                                               credentials: credentials, version: try SMBVersion(parsing: b["MountOptions"]?["Version"]?.string ?? "AUTOMATIC"),
                                               securityDescriptors: securityDescriptors, create: asDestination)
            return ResolvedLocation(location: SMBLocation(client: client)) { client.close() }
        case "OBJECT_STORAGE":
            var caPath: String?
            if let cert = b["ServerCertificate"]?.string, let pem = Data(base64Encoded: cert) {
                caPath = dataDirectory + "/certificates/" + (arn.split(separator: "/").last.map(String.init) ?? "location") + ".pem"
                try FileManager.default.createDirectory(atPath: dataDirectory + "/certificates", withIntermediateDirectories: true,
                                                        attributes: [.posixPermissions: 0o700])
                if FileManager.default.contents(atPath: caPath!) != pem,  // written once per certificate, not per execution
                   !FileManager.default.createFile(atPath: caPath!, contents: pem, attributes: [.posixPermissions: 0o600]) {
                    throw ServerError.internalError("could not write the server certificate of location \(arn) to \(caPath!)")
                }
            }
            guard let url = LocationResolver.objectStorageURL(b) else {
                throw ServerError.invalid("Location \(arn) has an endpoint that is not a URL.")
            }
            let endpoint = S3Endpoint(url: url, region: "us-east-1", pathStyle: true,
                                      credentials: AWSCredentials(accessKeyID: b["AccessKey"]?.string ?? "",
                                                                  secretAccessKey: try reveal(b["SecretKey"]?.string ?? "")),
                                      caBundlePath: caPath)
            let client = try S3Client(endpoint: endpoint)
            let prefix = LocationResolver.keyPrefix(b)
            return ResolvedLocation(location: S3Location(client: client, bucket: b["BucketName"]?.string ?? "", prefix: prefix, metadataCache: metadataCache)) {
                await client.shutdown()
            }
        case "S3":
            let bucket = LocationResolver.bucketName(arn: b["S3BucketArn"]?.string ?? "")
            let endpoint = try S3Configuration.endpoint(s3Endpoint)
            let client = try S3Client(endpoint: endpoint)
            let prefix = LocationResolver.keyPrefix(b)
            return ResolvedLocation(location: S3Location(client: client, bucket: bucket, prefix: prefix, metadataCache: metadataCache)) {
                await client.shutdown()
            }
        default:
            throw ServerError.invalid("Location \(arn) has a type Ferry cannot run.")
        }
    }

    /// The key prefix of a bucket location: its Subdirectory without the leading `/`.
    static func keyPrefix(_ b: JSONValue) -> String {
        String(ControlPlane.subdirectory(b["Subdirectory"]?.string).dropFirst())
    }

    /// The bucket an S3 bucket ARN (`arn:aws:s3:::BUCKET`) names.
    static func bucketName(arn: String) -> String {
        String(arn.split(separator: ":").last ?? "")
    }

    /// The endpoint of an OBJECT_STORAGE location.
    static func objectStorageURL(_ b: JSONValue) -> URL? {
        let proto = (b["ServerProtocol"]?.string ?? "HTTPS").lowercased()
        let port = b["ServerPort"]?.int ?? (proto == "https" ? 443 : 80)
        return URL(string: "\(proto)://\(b["ServerHostname"]?.string ?? "localhost"):\(port)")
    }

    /// Where a stored location's tree lies, as the location ``resolve(_:asDestination:)``
    /// makes would say, without opening it (CreateTask refuses overlapping pairs with it).
    static func scope(_ b: JSONValue, s3Endpoint: S3Configuration.Overrides) -> LocationScope? {
        let prefix = LocationResolver.keyPrefix(b)
        switch b["Type"]?.string {
        case "NFS":
            let path = ControlPlane.subdirectory(b["Subdirectory"]?.string)
            return NFSLocation.scope(host: b["ServerHostname"]?.string ?? "", port: nil, path: path, display: b["LocationUri"]?.string ?? path)
        case "SMB":
            let path = ControlPlane.subdirectory(b["Subdirectory"]?.string)
            return SMBLocation.scope(host: b["ServerHostname"]?.string ?? "", port: nil, path: path, display: b["LocationUri"]?.string ?? path)
        case "OBJECT_STORAGE":
            guard let url = objectStorageURL(b) else { return nil }
            return LocationScope.bucket(endpoint: url.absoluteString, bucket: b["BucketName"]?.string ?? "", prefix: prefix)
        case "S3":
            guard let endpoint = try? S3Configuration.endpoint(s3Endpoint) else { return nil }
            let bucket = LocationResolver.bucketName(arn: b["S3BucketArn"]?.string ?? "")
            return LocationScope.bucket(endpoint: endpoint.url.absoluteString, bucket: bucket, prefix: prefix)
        default:
            return nil
        }
    }
}
