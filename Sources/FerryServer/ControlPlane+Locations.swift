import FerryCore
import FerryNFS
import FerrySMB
import FerryStore
import Foundation

/// NFS (an export on ServerHostname, reached by Ferry's own NFS client), SMB (a share on
/// ServerHostname, Ferry's own SMB client), object storage (any S3-compatible endpoint) and
/// S3 (a bucket ARN served by the configured S3 endpoint) locations.
extension ControlPlane {
    /// Members a Describe call never returns.
    static let secretMembers: Set<String> = ["SecretKey", "Password", "KerberosKeytab", "SasConfiguration", "CmkSecretConfig", "CustomSecretConfig"]

    static func subdirectory(_ s: String?) -> String {
        var d = s ?? "/"
        if !d.hasPrefix("/") { d = "/" + d }
        if !d.hasSuffix("/") { d += "/" }
        return d
    }

    func agents(_ input: JSONValue, member: String) throws -> JSONValue {
        let given = input[member]?.array?.compactMap(\.string) ?? []
        for a in given { _ = try existing(a, .agent, "Agent") }
        return .array((given.isEmpty ? [builtInAgentArn] : given).map { .string($0) })
    }

    /// Stores a new location: the create call's members (without Tags) plus its ARN, type,
    /// URI and creation time, secrets sealed (``SecretBox``), then its tags.
    private func insertLocation(_ input: JSONValue, type: String, uri: String, _ fill: (inout JSONValue) throws -> Void = { _ in }) throws -> JSONValue {
        let arn = arns.location()
        var body = input
        body["Tags"] = nil
        body["LocationArn"] = .string(arn)
        body["Type"] = .string(type)
        body["LocationUri"] = .string(uri)
        body["CreationTime"] = ControlPlane.now()
        try fill(&body)
        try store.insert(arn: arn, kind: .location, body: try secrets.sealing(body, members: ControlPlane.secretMembers))
        try storeTags(arn, input)
        return ["LocationArn": .string(arn)]
    }

    /// MountOptions.Version of an NFS location: one Ferry speaks, or an error naming it.
    static func checkNfsVersion(_ input: JSONValue) throws {
        guard let text = input["MountOptions"]?["Version"]?.string else { return }
        let version: NFSVersion
        do { version = try NFSVersion(parsing: text) } catch { throw ServerError.invalid("MountOptions Version=\(text): \(error.message)") }
        if let refusal = version.refusal { throw ServerError.invalid("MountOptions Version=\(text): \(refusal).") }
    }

    /// An SMB location's options Ferry cannot honour, refused by name: SMB1, Kerberos, and
    /// passwords kept in AWS Secrets Manager.
    static func checkSmbOptions(_ input: JSONValue) throws {
        if let text = input["MountOptions"]?["Version"]?.string {
            do { _ = try SMBVersion(parsing: text) } catch { throw ServerError.invalid("MountOptions Version=\(text): \(error.message)") }
        }
        if input["AuthenticationType"]?.string == "KERBEROS" || input["KerberosKeytab"] != nil || input["KerberosPrincipal"] != nil {
            throw ServerError.invalid("Kerberos is not supported by Ferry's SMB client yet; use AuthenticationType NTLM with User, Domain and Password.")
        }
        for member in ["CmkSecretConfig", "CustomSecretConfig"] where input[member] != nil {
            throw ServerError.invalid("\(member) (a password in AWS Secrets Manager) is not supported by Ferry; give Password, which Ferry keeps encrypted.")
        }
    }

    func createLocationNfs(_ input: JSONValue) throws -> JSONValue {
        try ControlPlane.checkNfsVersion(input)
        let uri = LocationURI.nfs(host: input["ServerHostname"]?.string ?? "", port: nil,
                                  path: ControlPlane.subdirectory(input["Subdirectory"]?.string)).description
        return try insertLocation(input, type: "NFS", uri: uri) { body in
            body["OnPremConfig"] = ["AgentArns": try agents(input["OnPremConfig"] ?? [:], member: "AgentArns")]
            body["MountOptions"] = input["MountOptions"] ?? ["Version": "AUTOMATIC"]
        }
    }

    func createLocationSmb(_ input: JSONValue) throws -> JSONValue {
        try ControlPlane.checkSmbOptions(input)
        return try insertLocation(input, type: "SMB", uri: ControlPlane.smbURI(input)) { body in
            body["AgentArns"] = try agents(input, member: "AgentArns")
            body["MountOptions"] = input["MountOptions"] ?? ["Version": "AUTOMATIC"]
            body["AuthenticationType"] = input["AuthenticationType"] ?? "NTLM"
        }
    }

    /// `smb://HOST/SHARE/PATH/` of an SMB location's members (DataSync's LocationUri names
    /// no user).
    static func smbURI(_ b: JSONValue) -> String {
        LocationURI.smb(domain: nil, user: nil, host: b["ServerHostname"]?.string ?? "", port: nil,
                        path: ControlPlane.subdirectory(b["Subdirectory"]?.string)).description
    }

    func createLocationObjectStorage(_ input: JSONValue) throws -> JSONValue {
        let uri = LocationURI.objectStorage(host: input["ServerHostname"]?.string ?? "", port: nil, bucket: input["BucketName"]?.string ?? "",
                                            prefix: LocationResolver.keyPrefix(input)).description
        return try insertLocation(input, type: "OBJECT_STORAGE", uri: uri) { body in
            let proto = input["ServerProtocol"]?.string ?? "HTTPS"
            body["ServerProtocol"] = .string(proto)
            body["ServerPort"] = input["ServerPort"] ?? .number(proto == "HTTPS" ? 443 : 80)
            body["AgentArns"] = try agents(input, member: "AgentArns")
        }
    }

    func createLocationS3(_ input: JSONValue) throws -> JSONValue {
        let bucketArn = input["S3BucketArn"]?.string ?? ""
        guard bucketArn.contains(":::") else {
            throw ServerError.invalid("Only bucket ARNs (arn:aws:s3:::BUCKET) are supported by Ferry; access points and Outposts are not.")
        }
        let bucket = LocationResolver.bucketName(arn: bucketArn)
        return try insertLocation(input, type: "S3", uri: LocationURI.s3(
            bucket: bucket, prefix: LocationResolver.keyPrefix(input)).description) { body in
            body["S3StorageClass"] = input["S3StorageClass"] ?? "STANDARD"
            if input["AgentArns"] != nil { body["AgentArns"] = try agents(input, member: "AgentArns") }
        }
    }

    /// The fields of a Describe answer, never a secret.
    static let describedMembers: [String: [String]] = [
        "NFS": ["LocationArn", "LocationUri", "OnPremConfig", "MountOptions", "CreationTime"],
        "SMB": ["LocationArn", "LocationUri", "AgentArns", "User", "Domain", "MountOptions", "CreationTime", "DnsIpAddresses", "AuthenticationType"],
        "OBJECT_STORAGE": ["LocationArn", "LocationUri", "AccessKey", "ServerPort", "ServerProtocol", "AgentArns", "CreationTime", "ServerCertificate"],
        "S3": ["LocationArn", "LocationUri", "S3StorageClass", "S3Config", "AgentArns", "CreationTime"],
    ]

    func location(_ input: JSONValue, type: String) throws -> Store.Resource {
        let arn = input["LocationArn"]?.string ?? ""
        let r = try existing(arn, .location, "Location")
        guard r.body["Type"]?.string == type else {
            throw ServerError.invalid("Location \(arn) is a \(r.body["Type"]?.string ?? "?") location, not \(type).")
        }
        return r
    }

    func describeLocation(_ input: JSONValue, type: String) throws -> JSONValue {
        let r = try location(input, type: type)
        var out: [String: JSONValue] = [:]
        for m in ControlPlane.describedMembers[type] ?? [] where !ControlPlane.secretMembers.contains(m) {
            if let v = r.body[m] { out[m] = v }
        }
        return .object(out)
    }

    func updateLocation(_ input: JSONValue, type: String) throws -> JSONValue {
        let r = try location(input, type: type)
        if type == "NFS" { try ControlPlane.checkNfsVersion(input) }
        if type == "SMB" { try ControlPlane.checkSmbOptions(input) }
        let sealed = try secrets.sealing(input, members: ControlPlane.secretMembers)
        try store.modify(r.arn) { body in
            for (k, v) in sealed.object ?? [:] where k != "LocationArn" { body[k] = v }
            if type == "SMB" {
                body["LocationUri"] = .string(ControlPlane.smbURI(body))
                return
            }
            if let uri = body["LocationUri"]?.string, let parsed = try? LocationURI.parse(uri) {
                // The stored URI with the host and subdirectory the update gives (LocationURI parses and writes it).
                let sub = input["Subdirectory"]?.string.map(ControlPlane.subdirectory)
                let prefix = input["Subdirectory"] == nil ? nil : LocationResolver.keyPrefix(input)
                let host = input["ServerHostname"]?.string
                switch parsed {
                case .nfs(let h, let port, let path):
                    body["LocationUri"] = .string(LocationURI.nfs(host: host ?? h, port: port, path: sub ?? path).description)
                case .s3(let bucket, let oldPrefix):
                    body["LocationUri"] = .string(LocationURI.s3(bucket: bucket, prefix: prefix ?? oldPrefix).description)
                case .objectStorage(let h, let port, let bucket, let oldPrefix):
                    body["LocationUri"] = .string(LocationURI.objectStorage(host: host ?? h, port: port, bucket: bucket,
                                                                            prefix: prefix ?? oldPrefix).description)
                default:
                    break
                }
            }
        }
        return [:]
    }

    func listLocations(_ input: JSONValue) throws -> JSONValue {
        let filters = input["Filters"]?.array ?? []
        let (items, next) = try Pagination.page(store, .location, input: input) { r in
            filters.allSatisfy { f in ControlPlane.matches(r.body, filter: f) }
        }
        var out: JSONValue = ["Locations": .array(items.map { ["LocationArn": $0.body["LocationArn"] ?? .null, "LocationUri": $0.body["LocationUri"] ?? .null] })]
        if let next { out["NextToken"] = .string(next) }
        return out
    }

    /// ListLocations' `Filters`: `LocationUri`, `LocationType`, `CreationTime` with
    /// Equals / NotEquals / In / LessThan(OrEqual) / GreaterThan(OrEqual) / Contains /
    /// NotContains / BeginsWith.
    static func matches(_ body: JSONValue, filter: JSONValue) -> Bool {
        let name = filter["Name"]?.string ?? ""
        let op = filter["Operator"]?.string ?? "Equals"
        let values = filter["Values"]?.array?.compactMap(\.string) ?? []
        let field: String
        switch name {
        case "LocationUri": field = body["LocationUri"]?.string ?? ""
        case "LocationType": field = body["Type"]?.string == "OBJECT_STORAGE" ? "OBJECT_STORAGE" : body["Type"]?.string ?? ""
        case "CreationTime": field = "\(Int64(body["CreationTime"]?.number ?? 0))"
        default: return true
        }
        return ControlPlane.apply(op, field, values)
    }

    static func apply(_ op: String, _ field: String, _ values: [String]) -> Bool {
        let numeric = Double(field)
        func cmp(_ v: String, _ f: (Double, Double) -> Bool, _ g: (String, String) -> Bool) -> Bool {
            if let a = numeric, let b = Double(v) { return f(a, b) }
            return g(field, v)
        }
        switch op {
        case "Equals", "In": return values.contains(field)
        case "NotEquals": return !values.contains(field)
        case "Contains": return values.contains { field.contains($0) }
        case "NotContains": return !values.contains { field.contains($0) }
        case "BeginsWith": return values.contains { field.hasPrefix($0) }
        case "LessThan": return values.allSatisfy { cmp($0, <, <) }
        case "LessThanOrEqual": return values.allSatisfy { cmp($0, <=, <=) }
        case "GreaterThan": return values.allSatisfy { cmp($0, >, >) }
        case "GreaterThanOrEqual": return values.allSatisfy { cmp($0, >=, >=) }
        default: return true
        }
    }

    func deleteLocation(_ input: JSONValue) throws -> JSONValue {
        let arn = input["LocationArn"]?.string ?? ""
        _ = try existing(arn, .location, "Location")
        let users = try store.referencing(arn, kind: .task, fields: ["SourceLocationArn", "DestinationLocationArn"])
        if let task = users.first {
            throw ServerError.invalid("Location \(arn) is used by task \(task); delete the task first.")
        }
        try store.delete(arn)
        return [:]
    }
}
