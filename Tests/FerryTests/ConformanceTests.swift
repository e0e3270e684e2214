import FerryCore
import FerryLocal
import FerryNFS
import FerryS3
import FerryTesting
import Testing

/// The locations under test, each run through every check of ``LocationConformance``.
enum ConformanceTarget: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case posixDisk, posixTmpfs, s3Moto, s3JuiceFS, nfs3, smb, remotePOSIX

    var testDescription: String { rawValue }

    /// Capability checks this location is expected to skip (it does not claim them).
    var expectedSkips: Set<String> {
        switch self {
        case .posixDisk, .posixTmpfs: ["server-side copy", "content comparison by a native tag"]
        // A POSIX tree served over the network: what only works on one host (copies
        // between two trees of it, sorted runs of a huge listing) is not offered; nor, yet,
        // its scope (two hosts' trees never overlap) or what an unprivileged server withholds.
        case .remotePOSIX: ["server-side copy", "content comparison by a native tag", "listing in sorted runs", "direct copies to another tree",
                            "scope of the tree", "metadata withheld only where it cannot be applied"]
        // NFSv3 has no xattrs nor SEEK_DATA; Ferry's NFS client lists a directory at once.
        // (NFSv4.0 serves sources only, so the write checks do not apply to it: NFSTests.)
        case .nfs3: ["data extents of a sparse file", "extended attributes", "server-side copy", "content comparison by a native tag",
                            "listing in sorted runs", "direct copies to another tree"]
        // An SMB share: no owners, modes, FIFOs or devices (DataSync's rules), case-insensitive.
        case .smb: ["names that differ only in case", "FIFOs and device nodes", "extended attributes", "sparse writes leave holes", "data extents of a sparse file",
                    "server-side copy", "content comparison by a native tag", "listing in sorted runs", "direct copies to another tree",
                    "metadata withheld only where it cannot be applied"]
        case .s3Moto: ["sparse writes leave holes", "data extents of a sparse file", "direct copies to another tree"]
        // The gateway lists no ETags: nothing to compare content by.
        case .s3JuiceFS: ["sparse writes leave holes", "data extents of a sparse file", "direct copies to another tree",
                          "content comparison by a native tag"]
        }
    }

    /// Checks this location is known to fail, with the fields each failure names: exactly
    /// what the JuiceFS gateway (without `--object-meta`) drops, the user metadata in which
    /// mode, owner, times, kind, link groups and xattrs travel. Everything else is required.
    var expectedFailures: [String: Set<String>] {
        if self == .smb {
            // DataSync's rule: symlinks and hard links end a task to SMB. A write abandoned
            // in this process still holds its file open, and SMB refuses to delete an open
            // file (a killed process's handles are closed by the server).
            return ["symlinks": ["threw"], "hard links": ["threw"], "a write cut off before commit: invisible, its leftovers cleared": ["threw"]]
        }
        guard self == .s3JuiceFS else { return [:] }
        return [
            "write, list, stat, read back": ["mtime", "mode"],
            "metadata in place": ["mtime", "mode", "owner"],
            "atime kept": ["atime"],
            "symlinks": ["kind", "target"],
            "hard links": ["fileID"],
            "FIFOs and device nodes": ["kind", "device", "mtime"],
            "extended attributes": ["xattrs"],
            "server-side copy": ["mtime"],
        ]
    }

    /// Runs `check` on a fresh location of this kind.
    func run(_ check: LocationConformance.Check) async throws -> LocationConformance.Outcome {
        switch self {
        case .posixDisk, .posixTmpfs:
            let trees = TreeList()
            defer { trees.removeAll() }
            let base = self == .posixDisk ? "/tmp" : "/dev/shm"
            return await LocationConformance.run(check) {
                let tree = try TestTree(label: "conformance", base: base)
                trees.add(tree)
                return try POSIXLocation(path: tree.root)
            }
        case .smb:
            return try await ConformanceTarget.smbLocation(check)
        case .remotePOSIX:
            return try await RemoteTests.conformance(check)
        case .nfs3:
            let server = try NFSTests.server()
            let clients = ClientList()
            defer { clients.closeAll() }
            return await LocationConformance.run(check) {
                let dir = try server.directory("conformance")
                let client = try NFSClient.connect(host: "127.0.0.1", port: server.port, path: "\(server.export)/\(dir.name)",
                                                   version: .v3, create: false, writing: true)
                clients.add(client)
                return NFSLocation(client: client)
            }
        case .s3Moto, .s3JuiceFS:
            let server = self == .s3Moto ? try S3Tests.server() : try JuiceFSGatewayTests.server()
            let client = self == .s3Moto ? try S3Tests.client(server) : try JuiceFSGatewayTests.client(server)
            let bucket: String
            if let b = server.bucket { bucket = b } else { bucket = try await S3Tests.bucket(client) }
            let outcome = await LocationConformance.run(check) {
                var location = S3Location(client: client, bucket: bucket, prefix: "c\(UInt32.random(in: 0..<UInt32.max))")
                location.listPageSize = 10  // listings of more than one page, and runs made of several
                return location
            }
            await client.shutdown()
            return outcome
        }
    }
}

/// The location contract: every check a test of its own per location, a capability the
/// location lacks recorded as a skip by name, a known shortfall named field by field.
@Suite struct ConformanceTests {
    @Test(arguments: ConformanceTarget.allCases, LocationConformance.checks.map(\.name))
    func conformance(_ target: ConformanceTarget, _ name: String) async throws {
        let check = try #require(LocationConformance.check(name))
        let outcome = try await target.run(check)
        switch outcome {
        case .passed:
            #expect(target.expectedFailures[name] == nil && !target.expectedSkips.contains(name), "\(target): \(name) passed")
        case .skipped(let capability):
            print("conformance \(target.rawValue): \"\(name)\" skipped: the location does not claim \(capability)")
            #expect(target.expectedSkips.contains(name), "\(target): \(name) skipped (\(capability))")
        case .failed(let failures):
            print("conformance \(target.rawValue): \"\(name)\" failed: \(failures)")
            let fields = Set(failures.map { String($0.prefix { $0 != " " }) })
            #expect(fields == target.expectedFailures[name] ?? [], "\(target): \(name): \(failures)")
        }
    }

    /// A location written against the core alone (no capability claimed) passes the core
    /// checks and skips every capability check by name.
    @Test func aCoreOnlyLocationSkipsTheCapabilityChecks() async throws {
        let trees = TreeList()
        defer { trees.removeAll() }
        var skipped: [String] = []
        for check in LocationConformance.checks {
            let outcome = await LocationConformance.run(check) {
                let tree = try TestTree(label: "core-only", base: "/dev/shm")
                trees.add(tree)
                return CoreOnlyLocation(base: try POSIXLocation(path: tree.root))
            }
            switch outcome {
            case .passed: #expect(check.capability == nil || check.capability == "caseSensitive", "\(check.name)")
            case .skipped: skipped.append(check.name)
            case .failed(let f): Issue.record("\(check.name): \(f)")
            }
        }
        // Case sensitivity is the default a location gives up by saying so; every other
        // capability check is skipped.
        let capabilityChecks = LocationConformance.checks.filter { $0.capability != nil && $0.capability != "caseSensitive" }
        #expect(Set(skipped) == Set(capabilityChecks.map(\.name)), "\(skipped)")
    }
}

/// Features fold what a location conforms to; a flag it claims without the function is not kept.
@Suite struct FeaturesTests {
    @Test func theCapabilityIsTheFunction() throws {
        let tree = try TestTree(label: "features", base: "/dev/shm")
        defer { tree.remove() }
        let posix = Features(try POSIXLocation(path: tree.root))
        #expect(posix.capabilities.symlinks && posix.capabilities.hardLinks && posix.capabilities.deviceNodes && posix.capabilities.extendedAttributes)
        #expect(Set(posix.conformances) == ["SymlinkWriting", "HardLinkWriting", "SpecialFileWriting", "ExtendedAttributeStoring", "RunListing",
                                            "DirectCopying", "TemporaryKeeping", "ScopeTelling", "MetadataLimiting"])
        let claims = Features(CoreOnlyLocation(base: try POSIXLocation(path: tree.root), claimed: .everything))
        #expect(claims.conformances == [])
        #expect(!claims.capabilities.symlinks && !claims.capabilities.hardLinks && !claims.capabilities.deviceNodes
                && !claims.capabilities.extendedAttributes && !claims.capabilities.fetchesContentsWhileListing)
        #expect(claims.capabilities.ownership && claims.capabilities.sparseFiles, "what is not a function is the location's word")
    }
}

/// A location written against the core alone: the nine required members, forwarded to a
/// POSIX tree; its capabilities what it `claimed` (default: none).
struct CoreOnlyLocation: ForwardingToPOSIX {
    let base: POSIXLocation
    var claimed = Capabilities()
    var uri: String { "core-only:" + base.rootPath }
    var capabilities: Capabilities { claimed }
}
