import FerryTesting
import Foundation
import Glibc
import Testing

/// The server's NFS and SMB locations reach real file servers by name (nfs-ganesha through
/// rpcbind, smbd on port 445), driven by the `aws datasync` CLI: an NFS export to a share
/// and back, the SMB password sealed at rest and never described, options Ferry cannot
/// honour refused by name, a wrong password or an unknown host named in the execution's error.
@Suite struct ServerFileServerTests {
    @Test func nfsToSmbAndBackThroughTheAWSCLI() async throws {
        let smb = try SMBTests.server()
        let f = try Fixture("server-smb")
        defer { f.cleanUp() }
        try SampleTrees.smallFiles(f.source, files: 60, directories: 3)
        try f.source.file("big.bin", TestTree.bytes(3 << 20 | 5, seed: 4))
        let server = try FerryServerProcess(dataDirectory: f.destinationRoot + "-state")
        defer { server.kill() }
        let (agent, source, back) = try server.nfsLocations(f)
        let sub = "server-\(UInt32.random(in: 0..<UInt32.max))"
        let share = try server.ok(["create-location-smb", "--server-hostname", "127.0.0.1", "--subdirectory", "/share1/\(sub)",
                                   "--user", smb.user, "--password", smb.password, "--agent-arns", agent,
                                   "--mount-options", "Version=SMB3"])["LocationArn"] as? String ?? ""

        // Described with every member but the password; sealed at rest under a 0600 key.
        let described = try server.ok(["describe-location-smb", "--location-arn", share])
        #expect(described["LocationUri"] as? String == "smb://127.0.0.1/share1/\(sub)/" && described["User"] as? String == smb.user
                && (described["MountOptions"] as? [String: Any])?["Version"] as? String == "SMB3"
                && described["AuthenticationType"] as? String == "NTLM" && described["Password"] == nil, "\(described)")
        var st = stat()
        #expect(stat(server.dataDirectory + "/secret.key", &st) == 0 && st.st_mode & 0o777 == 0o600)
        #expect(try ServerFileServerTests.filesContaining(smb.password, under: server.dataDirectory) == [])

        // NFS → SMB: the bytes and times arrive on the share.
        func run(_ from: String, _ to: String) throws -> [String: Any] {
            let task = try server.ok(["create-task", "--source-location-arn", from, "--destination-location-arn", to,
                                      "--options", "VerifyMode=ONLY_FILES_TRANSFERRED,LogLevel=TRANSFER"])["TaskArn"] as? String ?? ""
            let execution = try server.ok(["start-task-execution", "--task-arn", task])["TaskExecutionArn"] as? String ?? ""
            return server.waitForEnd(execution, seconds: 120)
        }
        let up = try run(source, share)
        #expect(up["Status"] as? String == "SUCCESS" && up["FilesTransferred"] as? Int == 65, "\(up)")  // 61 files, 3 directories and the root
        let onShare = smb.path("share1") + "/\(sub)"
        #expect(SMBTests.beyondSMBRules(TreeSnapshot.differences(try TreeSnapshot(f.source.root), try TreeSnapshot(onShare),
                                                                               compareAtime: false)) == [])

        // SMB → NFS: back again, with DataSync's POSIX defaults.
        let down = try run(share, back)
        #expect(down["Status"] as? String == "SUCCESS", "\(down)")
        #expect(SMBTests.beyondSMBRules(try f.differences(compareAtime: false)) == [])
        let owned = try TreeSnapshot(f.destinationRoot).entries.values
        #expect(owned.allSatisfy { $0.uid == 65534 && $0.gid == 65534 })

        // A wrong password: the execution fails naming the share; the password is nowhere.
        _ = try server.ok(["update-location-smb", "--location-arn", share, "--password", "Not-The-Password-42"])
        let refused = try run(share, back)
        let detail = (refused["Result"] as? [String: Any])?["ErrorDetail"] as? String ?? ""
        #expect(refused["Status"] as? String == "ERROR" && detail.contains("127.0.0.1") && detail.contains("share1"), "\(refused)")
        #expect(!detail.contains("Not-The-Password-42"))
        #expect(try ServerFileServerTests.filesContaining("Not-The-Password-42", under: server.dataDirectory) == [])

        // What Ferry cannot honour is refused by name.
        for (extra, named) in [(["--authentication-type", "KERBEROS", "--kerberos-principal", "a@B"], "Kerberos"),
                               (["--mount-options", "Version=SMB1"], "SMB1")] {
            let r = try server.aws(["create-location-smb", "--server-hostname", "127.0.0.1", "--subdirectory", "/share1",
                                    "--user", smb.user, "--password", "x", "--agent-arns", agent] + extra)
            #expect(r.status != 0 && r.stderr.contains("InvalidRequestException") && r.stderr.contains(named), "\(r.stderr)")
        }
    }

    /// An NFS location on a host that does not exist: the execution ends in ERROR naming it.
    @Test func anUnknownNfsHostIsNamed() async throws {
        let f = try Fixture("server-nfs-unknown")
        defer { f.cleanUp() }
        let server = try FerryServerProcess(dataDirectory: f.destinationRoot + "-state")
        defer { server.kill() }
        let (agent, _, destination) = try server.nfsLocations(f)
        let nowhere = try server.ok(["create-location-nfs", "--server-hostname", "nas1.invalid", "--subdirectory", "/export/projects",
                                     "--on-prem-config", "AgentArns=\(agent)"])["LocationArn"] as? String ?? ""
        let task = try server.ok(["create-task", "--source-location-arn", nowhere, "--destination-location-arn", destination])["TaskArn"] as? String ?? ""
        let execution = try server.ok(["start-task-execution", "--task-arn", task])["TaskExecutionArn"] as? String ?? ""
        let ended = server.waitForEnd(execution, seconds: 120)
        let detail = (ended["Result"] as? [String: Any])?["ErrorDetail"] as? String ?? ""
        #expect(ended["Status"] as? String == "ERROR" && detail.contains("nas1.invalid") && detail.contains("/export/projects"), "\(ended)")
    }

    /// Regular files under `directory` whose bytes contain `secret`.
    static func filesContaining(_ secret: String, under directory: String) throws -> [String] {
        let needle = Data(secret.utf8)
        var found: [String] = []
        let walker = FileManager.default.enumerator(atPath: directory)
        while let name = walker?.nextObject() as? String {
            let path = directory + "/" + name
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue,
                  let bytes = FileManager.default.contents(atPath: path) else { continue }
            if bytes.range(of: needle) != nil { found.append(name) }
        }
        return found
    }
}
