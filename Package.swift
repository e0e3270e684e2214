// swift-tools-version:6.0
import PackageDescription

let swiftSettings: [SwiftSetting] = [.swiftLanguageMode(.v6)]

let package = Package(
    name: "Ferry",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "ferry", targets: ["ferry"]),
        .library(name: "FerryCore", targets: ["FerryCore"]),
        .library(name: "FerryEngine", targets: ["FerryEngine"]),
        .library(name: "FerryLocal", targets: ["FerryLocal"]),
        .library(name: "FerryS3", targets: ["FerryS3"]),
        .library(name: "FerryBlock", targets: ["FerryBlock"]),
        .library(name: "FerryNFS", targets: ["FerryNFS"]),
        .library(name: "FerrySMB", targets: ["FerrySMB"]),
        .library(name: "FerryServer", targets: ["FerryServer"]),
        .library(name: "FerryRemote", targets: ["FerryRemote"]),
        .library(name: "FerryTesting", targets: ["FerryTesting"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.36.0"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1", from: "1.5.0"),
    ],
    targets: [
        // Syscalls Glibc does not expose (openat2, copy_file_range, xattrs, SEEK_DATA, ...)
        // and the XXH3 checksum (libxxhash's header, inlined).
        // zlib for CRC32 (S3 part checksums); zstd for FerryRemote's compressed data.
        .target(name: "CFerry", cSettings: [.unsafeFlags(["-O2"])], linkerSettings: [.linkedLibrary("z"), .linkedLibrary("zstd")]),
        .target(
            name: "FerryCore",
            dependencies: ["CFerry", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings),
        .target(
            name: "FerryEngine",
            dependencies: ["FerryCore", "CFerry", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings),
        .target(
            name: "FerryLocal",
            dependencies: ["FerryCore", "CFerry", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings),
        .target(
            name: "FerryS3",
            dependencies: [
                "FerryCore",
                "CFerry",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings),
        // libnfs (Debian's libnfs-dev): Ferry's own NFS client, no kernel mount.
        .systemLibrary(name: "CLibNFS", pkgConfig: "libnfs", providers: [.apt(["libnfs-dev"])]),
        .target(
            name: "FerryNFS",
            dependencies: ["FerryCore", "CLibNFS", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings),
        // libsmbclient (Debian's libsmbclient-dev): Ferry's own SMB client, no kernel mount.
        .systemLibrary(name: "CLibSMB", providers: [.apt(["libsmbclient-dev"])]),
        // Samba's thread hooks, so that libsmbclient contexts may be used from several threads.
        .target(name: "CSMBThreads", linkerSettings: [.linkedLibrary("dl")]),
        .target(
            name: "FerrySMB",
            dependencies: ["FerryCore", "CLibSMB", "CSMBThreads"],
            swiftSettings: swiftSettings),
        .target(
            name: "FerryBlock",
            dependencies: ["FerryCore", "FerryS3", "CFerry", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: swiftSettings),
        // A location served to a remote Ferry over TCP and TLS in frames of its own, and the client for it.
        .target(
            name: "FerryRemote",
            dependencies: [
                "FerryCore",
                "CFerry",
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings),
        .target(
            name: "FerryStore",
            dependencies: [.product(name: "GRDB", package: "GRDB.swift")],
            swiftSettings: swiftSettings),
        .target(
            name: "FerryServer",
            dependencies: [
                "FerryCore", "FerryEngine", "FerryLocal", "FerryS3", "FerryNFS", "FerrySMB", "FerryStore", "FerryRemote",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            resources: [.copy("Resources")],
            swiftSettings: swiftSettings),
        .target(
            name: "FerryTesting",
            dependencies: ["FerryCore", "CFerry"],
            swiftSettings: swiftSettings),
        .executableTarget(
            name: "ferry",
            dependencies: [
                "FerryCore", "FerryEngine", "FerryLocal", "FerryS3", "FerryNFS", "FerrySMB", "FerryServer", "FerryStore", "FerryBlock",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings,
            // No dynamic symbol table of the whole static binary (44,808 symbols): the
            // runtime's start-up `dladdr` scans it, 0.7 ms of every run (docs/PERFORMANCE.md).
            linkerSettings: [.unsafeFlags(["-Xlinker", "--no-export-dynamic"], .when(platforms: [.linux]))]),
        // A TCP proxy that delays, stalls and cuts (the kernel here has no netem): bench/ and tests.
        .executableTarget(name: "ferry-netem", swiftSettings: swiftSettings),
        .testTarget(
            name: "FerryTests",
            dependencies: ["FerryCore", "FerryEngine", "FerryLocal", "FerryS3", "FerryNFS", "FerrySMB", "FerryServer", "FerryStore", "FerryBlock", "FerryRemote", "FerryTesting", "CFerry", "ferry", "ferry-netem",
                           .product(name: "Crypto", package: "swift-crypto")],
            resources: [.copy("Fixtures")],
            swiftSettings: swiftSettings),
    ]
)
