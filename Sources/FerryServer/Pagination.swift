import FerryStore
import Foundation

/// `MaxResults` / `NextToken` over a store listing: the token names the last sequence
/// number returned plus a random salt, so no two pages share a token (the CLI stops
/// auto-paginating if it sees the same token twice).
enum Pagination {
    static func page(_ store: Store, _ kind: Store.Kind, parent: String? = nil, input: JSONValue,
                     where keep: (Store.Resource) -> Bool = { _ in true }) throws -> (items: [Store.Resource], next: String?) {
        let limit = max(1, min(Int(input["MaxResults"]?.int ?? 100), 100))
        var after: Int64 = 0
        if let token = input["NextToken"]?.string {
            guard let parsed = decode(token) else { throw ServerError.invalid("Invalid NextToken: \(token.prefix(64))") }
            after = parsed
        }
        var items: [Store.Resource] = []
        var cursor = after
        while items.count <= limit {
            let batch = try store.list(kind, parent: parent, after: cursor, limit: 500)
            if batch.isEmpty { break }
            for r in batch where keep(r) { items.append(r) }
            cursor = batch.last!.sequence
        }
        if items.count > limit {
            let page = Array(items.prefix(limit))
            return (page, encode(page.last!.sequence))
        }
        return (items, nil)
    }

    static func encode(_ sequence: Int64) -> String {
        "\(sequence)-\(UInt32.random(in: 0..<UInt32.max))"
    }

    static func decode(_ token: String) -> Int64? {
        guard let dash = token.firstIndex(of: "-") else { return nil }
        return Int64(token[..<dash])
    }
}
