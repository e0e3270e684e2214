import FerryStore
import Foundation

/// ListAgents, DescribeAgent, and tags on every resource.
extension ControlPlane {
    func listAgents(_ input: JSONValue) throws -> JSONValue {
        let (items, next) = try Pagination.page(store, .agent, input: input)
        var out: JSONValue = ["Agents": .array(items.map { r in
            ["AgentArn": .string(r.arn), "Name": r.body["Name"] ?? .null, "Status": r.body["Status"] ?? "ONLINE",
             "Platform": r.body["Platform"] ?? .null]
        })]
        if let next { out["NextToken"] = .string(next) }
        return out
    }

    func describeAgent(_ input: JSONValue) throws -> JSONValue {
        let arn = input["AgentArn"]?.string ?? ""
        guard let r = try store.get(arn), r.kind == .agent else {
            throw ServerError.invalid("Agent \(arn) does not exist.")
        }
        var out = r.body
        out["LastConnectionTime"] = ControlPlane.now()
        return out
    }

    func taggable(_ arn: String) throws {
        guard try store.get(arn) != nil else { throw ServerError.notFound("Resource", arn) }
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
