import Crypto
import FerryStore
import Foundation

/// CreateAgent, UpdateAgent, DeleteAgent, ListAgents, DescribeAgent, and tags on every
/// resource.
extension ControlPlane {
    /// What DescribeAgent returns of an agent's row (the rest — its certificate's serial
    /// number — stays in the control plane).
    static let describedAgentMembers = ["AgentArn", "Name", "Status", "LastConnectionTime", "CreationTime", "EndpointType", "Platform"]

    /// ONLINE or OFFLINE: heard from within the offline window (the built-in agent always).
    func agentStatus(_ arn: String) async -> String {
        if arn == builtInAgentArn { return "ONLINE" }
        return await hub.isOnline(arn) ? "ONLINE" : "OFFLINE"
    }

    func listAgents(_ input: JSONValue) async throws -> JSONValue {
        let (items, next) = try Pagination.page(store, .agent, input: input)
        var agents: [JSONValue] = []
        for r in items {
            agents.append(["AgentArn": .string(r.arn), "Name": r.body["Name"] ?? .null, "Status": .string(await agentStatus(r.arn)),
                           "Platform": r.body["Platform"] ?? .null])
        }
        var out: JSONValue = ["Agents": .array(agents)]
        if let next { out["NextToken"] = .string(next) }
        return out
    }

    func describeAgent(_ input: JSONValue) async throws -> JSONValue {
        let arn = input["AgentArn"]?.string ?? ""
        let r = try existing(arn, .agent, "Agent")
        var out: [String: JSONValue] = [:]
        for m in ControlPlane.describedAgentMembers { if let v = r.body[m] { out[m] = v } }
        out["Status"] = .string(await agentStatus(arn))
        if arn == builtInAgentArn {
            out["LastConnectionTime"] = ControlPlane.now()
        } else if let seen = await hub.lastConnection(arn) {
            out["LastConnectionTime"] = .number(seen.timeIntervalSince1970.rounded())
        }
        return .object(out)
    }

    /// CreateAgent: binds an activation key the agent got from this control plane to a new
    /// agent ARN and signs the agent's client certificate, which the agent fetches next.
    func createAgent(_ input: JSONValue) async throws -> JSONValue {
        let key = input["ActivationKey"]?.string ?? ""
        guard let activation = try store.get(ControlPlane.activationID(key)) else {
            throw ServerError.invalid("Activation key \(key) is not valid: no agent asked this control plane for it.")
        }
        if let used = activation.body["AgentArn"]?.string {
            throw ServerError.invalid("Activation key \(key) has already been used (agent \(used)); an activation key works once.")
        }
        if Date().timeIntervalSince1970 >= activation.body["Expires"]?.number ?? 0 {
            throw ServerError.invalid("Activation key \(key) has expired (keys are valid for 30 minutes); the agent asks for a new one by itself — read it again from its activation port or `ferry agent activation-key`.")
        }
        let arn = arns.agent()
        let certificate = try AgentAuthority(dataDirectory: dataDirectory)
            .issue(publicKeyPEM: activation.body["PublicKey"]?.string ?? "", agentArn: arn)
        var body: JSONValue = [
            "AgentArn": .string(arn), "CreationTime": ControlPlane.now(), "EndpointType": "PUBLIC",
            "Platform": ["Version": activation.body["Version"] ?? "ferry"], "CertificateSerial": .string(certificate.serial),
        ]
        if let name = input["AgentName"] { body["Name"] = name }
        try store.insert(arn: arn, kind: .agent, body: body)
        try storeTags(arn, input)
        try store.modify(activation.arn) { b in
            b["AgentArn"] = .string(arn)
            b["Certificate"] = .string(certificate.pem)
        }
        logger.info("agent activated", metadata: ["agent": "\(arn)"])
        return ["AgentArn": .string(arn)]
    }

    func updateAgent(_ input: JSONValue) throws -> JSONValue {
        let arn = input["AgentArn"]?.string ?? ""
        _ = try existing(arn, .agent, "Agent")
        if let name = input["Name"] { try store.modify(arn) { $0["Name"] = name } }
        return [:]
    }

    /// DeleteAgent: refused while a location names the agent (Terraform waits on "in-use
    /// by these location(s)"); afterwards the agent's certificate is refused.
    func deleteAgent(_ input: JSONValue) async throws -> JSONValue {
        let arn = input["AgentArn"]?.string ?? ""
        _ = try existing(arn, .agent, "Agent")
        if arn == builtInAgentArn {
            throw ServerError.invalid("Agent \(arn) is the server's built-in agent and cannot be deleted.")
        }
        let using = try store.list(.location, limit: Int.max).filter { ControlPlane.agentArns(of: $0.body).contains(arn) }.map(\.arn)
        if !using.isEmpty {
            throw ServerError.invalid("Agent \(arn) is in-use by these location(s): \(using.joined(separator: ", ")). Delete them or give them other agents first.")
        }
        try store.delete(arn)
        await hub.forget(arn)
        logger.info("agent deleted", metadata: ["agent": "\(arn)"])
        return [:]
    }

    /// The agents a location names (AgentArns, or OnPremConfig.AgentArns for NFS).
    static func agentArns(of location: JSONValue) -> [String] {
        (location["AgentArns"] ?? location["OnPremConfig"]?["AgentArns"])?.array?.compactMap(\.string) ?? []
    }

    /// The agents other than the built-in one a location names: where its executions run.
    static func remoteAgents(_ location: JSONValue, builtIn: String) -> Set<String> {
        Set(agentArns(of: location)).subtracting([builtIn])
    }

    // MARK: activation keys

    /// The store's name of an activation key's row.
    static func activationID(_ key: String) -> String { "activation/" + key }

    /// An agent asks for an activation key (no certificate yet): `{PublicKey, Version}` →
    /// `{ActivationKey, ClaimToken, ExpiresIn}`. The key goes to whoever runs CreateAgent;
    /// the claim token stays with the agent, which alone may fetch the certificate.
    func requestActivation(_ input: JSONValue) throws -> JSONValue {
        guard let publicKey = input["PublicKey"]?.string, publicKey.contains("PUBLIC KEY") else {
            throw ServerError.invalid("an activation request carries the agent's public key (PEM)")
        }
        let now = Date().timeIntervalSince1970
        var open = 0
        // Expired keys are kept a day, so that CreateAgent can say "expired", then dropped.
        for a in try store.list(.activation, limit: Int.max) where a.body["AgentArn"] == nil {
            let expires = a.body["Expires"]?.number ?? 0
            if now >= expires + 86_400 { try store.delete(a.arn) } else if now < expires { open += 1 }
        }
        guard open < 100 else { throw ServerError.invalid("100 activation keys are waiting to be used; use or let some expire first") }
        var g = SystemRandomNumberGenerator()
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
        let key = (0..<5).map { _ in String((0..<5).map { _ in alphabet[Int(g.next(upperBound: UInt8(alphabet.count)))] }) }.joined(separator: "-")
        let token = ControlPlane.randomHex(bytes: 32)
        try store.insert(arn: ControlPlane.activationID(key), kind: .activation, body: [
            "PublicKey": .string(publicKey), "Version": input["Version"] ?? "ferry",
            "ClaimTokenHash": .string(ControlPlane.hash(token)), "Expires": .number(now + activationLifetime),
        ])
        return ["ActivationKey": .string(key), "ClaimToken": .string(token), "ExpiresIn": .number(activationLifetime)]
    }

    /// The agent asks whether CreateAgent used its key: PENDING, EXPIRED, or ACTIVATED with
    /// its ARN and certificate.
    func claimActivation(_ input: JSONValue) async throws -> JSONValue {
        let key = input["ActivationKey"]?.string ?? ""
        guard let a = try store.get(ControlPlane.activationID(key)),
              a.body["ClaimTokenHash"]?.string == ControlPlane.hash(input["ClaimToken"]?.string ?? "") else {
            throw ServerError(type: "AccessDeniedException", status: 403, message: "no activation key \(key) was given to this agent")
        }
        if let arn = a.body["AgentArn"]?.string, let certificate = a.body["Certificate"]?.string {
            guard try store.get(arn) != nil else { throw ServerError(type: "AgentDeleted", status: 403, message: "agent \(arn) was deleted") }
            await hub.heard(arn)
            return ["Status": "ACTIVATED", "AgentArn": .string(arn), "Certificate": .string(certificate),
                    "AgentAuthority": .string(try AgentAuthority(dataDirectory: dataDirectory).authorityPEM())]
        }
        if Date().timeIntervalSince1970 >= a.body["Expires"]?.number ?? 0 { return ["Status": "EXPIRED"] }
        return ["Status": "PENDING"]
    }

    /// `bytes` random bytes in hexadecimal (claim tokens, names of served locations).
    static func randomHex(bytes: Int) -> String {
        var g = SystemRandomNumberGenerator()
        return (0..<bytes).map { _ in String(format: "%02x", g.next() as UInt8) }.joined()
    }

    static func hash(_ text: String) -> String {
        SHA256.hash(data: Data(text.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    // MARK: tags

    func taggable(_ arn: String) throws {
        guard let r = try store.get(arn), r.kind != .activation else { throw ServerError.notFound("Resource", arn) }
    }

    func tagResource(_ input: JSONValue) throws -> JSONValue {
        let arn = input["ResourceArn"]?.string ?? ""
        try taggable(arn)
        try storeTags(arn, input)
        return [:]
    }

    func untagResource(_ input: JSONValue) throws -> JSONValue {
        let arn = input["ResourceArn"]?.string ?? ""
        try taggable(arn)
        try store.untag(arn, keys: input["Keys"]?.array?.compactMap(\.string) ?? [])
        return [:]
    }

    func listTagsForResource(_ input: JSONValue) throws -> JSONValue {
        let arn = input["ResourceArn"]?.string ?? ""
        try taggable(arn)
        let all = try store.tags(arn)
        let limit = max(1, min(Int(input["MaxResults"]?.int ?? 100), 100))
        let start = input["NextToken"]?.string.flatMap(Pagination.decode).map(Int.init) ?? 0
        let page = all.dropFirst(start).prefix(limit)
        var out: JSONValue = ["Tags": .array(page.map { ["Key": .string($0.key), "Value": .string($0.value)] })]
        if start + page.count < all.count { out["NextToken"] = .string(Pagination.encode(Int64(start + page.count))) }
        return out
    }
}
