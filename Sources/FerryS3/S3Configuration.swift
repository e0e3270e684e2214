import FerryCore
import Foundation

/// How the endpoint, region, credentials and addressing of an `s3://` location are found:
/// command-line flags first, then the standard AWS environment variables, then the
/// profile in `~/.aws/credentials` and `~/.aws/config` (as the `aws` CLI does).
public struct S3Configuration: Sendable {
    public enum AddressingStyle: String, Sendable, CaseIterable { case path, virtual }

    /// Flags given on the command line (nil: not given).
    public struct Overrides: Sendable {
        public var endpointURL: String?
        public var region: String?
        public var profile: String?
        public var caBundle: String?
        public var addressingStyle: AddressingStyle?
        public init(endpointURL: String? = nil, region: String? = nil, profile: String? = nil, caBundle: String? = nil, addressingStyle: AddressingStyle? = nil) {
            self.endpointURL = endpointURL
            self.region = region
            self.profile = profile
            self.caBundle = caBundle
            self.addressingStyle = addressingStyle
        }
    }

    /// Splits `s3://bucket/prefix` into bucket and prefix.
    public static func parse(uri: String) throws -> (bucket: String, prefix: String) {
        let parsed: LocationURI
        do {
            parsed = try LocationURI.parse(uri)
        } catch {
            throw S3Error(.configuration, operation: "parse location", message: error.message)
        }
        guard case .s3(let bucket, let prefix) = parsed else {
            throw S3Error(.configuration, operation: "parse location", message: "\(uri) is not an s3:// URI")
        }
        return (bucket, prefix)
    }

    /// Resolves the endpoint from overrides, `environment` and the files under `home`.
    public static func endpoint(
        _ o: Overrides, environment: [String: String] = ProcessInfo.processInfo.environment,
        home: String = NSHomeDirectory()
    ) throws -> S3Endpoint {
        let profile = o.profile ?? environment["AWS_PROFILE"] ?? "default"
        let credentialsFile = environment["AWS_SHARED_CREDENTIALS_FILE"] ?? home + "/.aws/credentials"
        let configFile = environment["AWS_CONFIG_FILE"] ?? home + "/.aws/config"
        let credentialsINI = INI.read(credentialsFile)[profile] ?? [:]
        let configINI = INI.read(configFile)[profile == "default" ? "default" : "profile \(profile)"] ?? [:]

        let accessKey = environment["AWS_ACCESS_KEY_ID"] ?? credentialsINI["aws_access_key_id"] ?? configINI["aws_access_key_id"]
        let secretKey = environment["AWS_SECRET_ACCESS_KEY"] ?? credentialsINI["aws_secret_access_key"] ?? configINI["aws_secret_access_key"]
        let token = environment["AWS_ACCESS_KEY_ID"] != nil ? environment["AWS_SESSION_TOKEN"]
            : (credentialsINI["aws_session_token"] ?? configINI["aws_session_token"])
        guard let accessKey, let secretKey else {
            throw S3Error(.configuration, operation: "find credentials",
                          message: "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile in \(credentialsFile) (profile \"\(profile)\")")
        }
        let region = o.region ?? environment["AWS_REGION"] ?? environment["AWS_DEFAULT_REGION"] ?? configINI["region"] ?? "us-east-1"
        let endpointText = o.endpointURL ?? environment["AWS_ENDPOINT_URL_S3"] ?? environment["AWS_ENDPOINT_URL"]
            ?? configINI["s3.endpoint_url"] ?? configINI["endpoint_url"]
        let url: URL
        if let endpointText {
            guard let u = URL(string: endpointText), let scheme = u.scheme, ["http", "https"].contains(scheme), u.host != nil else {
                throw S3Error(.configuration, operation: "parse endpoint", message: "\(endpointText) is not an http(s):// endpoint URL")
            }
            url = u
        } else {
            url = URL(string: "https://s3.\(region).amazonaws.com")!
        }
        let style = o.addressingStyle ?? configINI["s3.addressing_style"].flatMap(AddressingStyle.init(rawValue:))
            ?? (endpointText == nil ? .virtual : .path)
        let ca = o.caBundle ?? environment["AWS_CA_BUNDLE"] ?? configINI["ca_bundle"]
        return S3Endpoint(url: url, region: region, pathStyle: style == .path,
                          credentials: AWSCredentials(accessKeyID: accessKey, secretAccessKey: secretKey, sessionToken: token),
                          caBundlePath: ca)
    }
}

/// The AWS CLI's INI files: `[section]`, `key = value`, and nested blocks (`s3 =` followed
/// by indented `key = value` lines, stored as `s3.key`).
enum INI {
    static func read(_ path: String) -> [String: [String: String]] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [:] }
        var out: [String: [String: String]] = [:]
        var section: String?
        var nested: String?
        for raw in text.components(separatedBy: .newlines) {
            let indented = raw.first == " " || raw.first == "\t"
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("[") && line.hasSuffix("]") {
                section = String(line.dropFirst().dropLast()).trimmingCharacters(in: .whitespaces)
                nested = nil
                continue
            }
            guard let section, let eq = line.firstIndex(of: "=") else { continue }
            let key = line[..<eq].trimmingCharacters(in: .whitespaces).lowercased()
            let value = line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)
            if indented, let nested {
                out[section, default: [:]]["\(nested).\(key)"] = value
            } else if value.isEmpty {
                nested = key
            } else {
                nested = nil
                out[section, default: [:]][key] = value
            }
        }
        return out
    }
}
