import ArgumentParser
import FerryS3

extension S3Configuration.AddressingStyle: ExpressibleByArgument {}

/// How to reach an S3-compatible server; each flag overrides the AWS environment and profile.
struct S3ConnectionFlags: ParsableArguments {
    @Option(help: ArgumentHelp("S3-compatible endpoint, e.g. http://127.0.0.1:9000 (else AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, the profile, or AWS).", valueName: "url"))
    var endpointUrl: String?

    @Option(help: ArgumentHelp("Region to sign for (else AWS_REGION, AWS_DEFAULT_REGION, the profile, or us-east-1).", valueName: "region"))
    var region: String?

    @Option(help: ArgumentHelp("Profile in ~/.aws/credentials and ~/.aws/config (else AWS_PROFILE, or default).", valueName: "name"))
    var profile: String?

    @Option(help: ArgumentHelp("PEM file of CA certificates to trust for https endpoints (else AWS_CA_BUNDLE).", valueName: "file"))
    var caBundle: String?

    @Option(help: ArgumentHelp("path (host/bucket/key) or virtual (bucket.host/key); default: path with --endpoint-url, virtual for AWS.", valueName: "style"))
    var addressingStyle: S3Configuration.AddressingStyle?

    var overrides: S3Configuration.Overrides {
        S3Configuration.Overrides(endpointURL: endpointUrl, region: region, profile: profile, caBundle: caBundle, addressingStyle: addressingStyle)
    }
}

/// Flags for `s3://` locations of `ferry sync`: the connection and how object metadata is
/// remembered and listed.
struct S3Flags: ParsableArguments {
    @OptionGroup var connection: S3ConnectionFlags

    @Option(help: ArgumentHelp("Where Ferry remembers object metadata between runs, so unchanged objects need no HEAD (else FERRY_CACHE_DIR, XDG_CACHE_HOME/ferry or ~/.cache/ferry).", valueName: "dir"))
    var cacheDir: String?

    @Flag(help: "Do not remember object metadata between runs: HEAD every listed object.")
    var noMetadataCache = false

    @Flag(help: "List each S3 tree flat in pages of 1,000 keys instead of directory by directory: fewer requests, every key held in memory (rclone's --fast-list).")
    var fastList = false

    var overrides: S3Configuration.Overrides { connection.overrides }
}
